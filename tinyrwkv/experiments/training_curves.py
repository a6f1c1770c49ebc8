"""RWKV-4, GPT and LSTM of (nearly) the same size, trained the same way on the same characters.

The three language models at the end of the lineage, each with 0.224 M parameters, learn the
shipped small_tales corpus (character level, 61 symbols, 30 k training characters) under one recipe:

    Adam, lr warmed up over the first 5% of steps then cosine-decayed to 10% of its peak,
    gradient clip 1.0, 1000 steps of 16 random windows of 128 characters (the same windows for
    every model: same seed), validation loss (nats/char) on the held-out last 10% of the text
    every 50 steps. Each model gets its own peak lr, the best of a short sweep (``PEAK_LR``).

Sizes are matched by parameter count: RWKV-4 with 4 layers of width 64 (ffn 256) sets the target;
the GPT has 4 pre-norm layers of width 64 (4 heads) with its ffn width chosen to land on the target;
the LSTM has 2 layers with the hidden size that lands on it. The counts are in the legend.

What the saved run shows (numbers in ``training_curves.json``): RWKV-4 learns fastest (validation
1.88 nats/char after 100 steps, against 2.33 for the GPT and 2.22 for the LSTM) and reaches the best
validation loss (1.73 at step 250; LSTM 1.75 at step 600, GPT 1.84 at step 450). It also memorises
the small corpus fastest: its training loss ends at 0.37 nats/char while its validation loss climbs
back to 2.52. The shipped checkpoint is the RWKV at its best validation step.

The full run takes several CPU minutes, so ``make_figures`` (the figures command) draws the curves
that ``scripts/train_tiny_rwkv.py`` saved beside the shipped checkpoint
(``tinyrwkv/data/tiny_rwkv/training_curves.json``), and says so on the plot; ``--retrain`` reruns
them (minutes), ``--fast`` runs a short version (seconds) for CI and quick looks.

    python -m tinyrwkv.experiments.training_curves --out figures/ [--fast | --retrain]
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from ..data.corpus import load_corpus
# the recipe and the matched models live in the library (tinyrwkv/recipes.py); this script draws them
from ..recipes import PEAK_LR, RECIPE, RWKV_SIZE, build_models, train_with_curve  # noqa: F401
from ._cli import experiment_main
from ._plotting import output_folder

TINY_RWKV_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "tiny_rwkv"
CURVES_FILE = TINY_RWKV_DIR / "training_curves.json"


def run_comparison(corpus=None, recipe=None, rwkv_size=None, on_rwkv_eval=None, progress: bool = True) -> dict:
    """Trains the three matched models with one recipe (``RECIPE`` overridden by ``recipe``).

    Returns {"recipe", "corpus": {name, chars, unigram, bigram}, "models": {label: train_with_curve's
    dict}}. ``on_rwkv_eval(model, step, val_loss)`` sees every RWKV evaluation (to keep the best one).
    """
    corpus = corpus or load_corpus()
    recipe = {**RECIPE, **(recipe or {})}
    recipe["peak_lr"] = {**PEAK_LR, **recipe.get("peak_lr", {})}
    recipe["rwkv_size"] = {**RWKV_SIZE, **(rwkv_size or {})}
    models = build_models(corpus.vocab.size, recipe["seed"], rwkv_size)
    curves = {}
    for label, model in models.items():
        if progress:
            print(f"training {label} ({model.num_parameters():,} parameters) for {recipe['steps']} steps", flush=True)
        curves[label] = train_with_curve(
            model, corpus, steps=recipe["steps"], peak_lr=recipe["peak_lr"][label],
            batch_size=recipe["batch_size"], seq_len=recipe["seq_len"], eval_every=recipe["eval_every"],
            clip=recipe["clip"], seed=recipe["seed"], warmup_fraction=recipe["warmup_fraction"],
            final_lr_fraction=recipe["final_lr_fraction"],
            on_eval=on_rwkv_eval if label == "RWKV-4" else None, progress=progress)
    return {"recipe": recipe,
            "corpus": {"name": corpus.name, "train_chars": int(len(corpus.train_ids)),
                       "val_chars": int(len(corpus.val_ids)), "vocab_size": corpus.vocab.size,
                       "unigram": corpus.unigram_entropy(), "bigram": corpus.bigram_cross_entropy()},
            "models": curves}


# --------------------------------------------------------------------------- the figure


COLORS = {"RWKV-4": "tab:red", "GPT": "tab:blue", "LSTM": "tab:green"}


def smooth(values, window: int = 50) -> np.ndarray:
    """Running mean over the last ``window`` values (same length as ``values``)."""
    x = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(results: dict, path, note: str = "") -> None:
    """Two panels: validation loss vs step (left) and training loss vs step (right), nats/char,
    with the unigram and bigram baselines; legend labels carry the parameter counts."""
    from matplotlib.figure import Figure   # no pyplot: no global state, no display needed

    recipe, corpus = results["recipe"], results["corpus"]
    fig = Figure(figsize=(12, 4.8), dpi=120)
    ax_val, ax_train = fig.subplots(1, 2)
    window = max(1, min(50, recipe["steps"] // 10))
    for label, curve in results["models"].items():
        name = f"{label} ({curve['params']:,} params)"
        steps, val = zip(*curve["val"])
        ax_val.plot(steps, val, "o-", ms=3, color=COLORS.get(label), label=name)
        ax_train.plot(np.arange(1, len(curve["train"]) + 1), smooth(curve["train"], window),
                      color=COLORS.get(label), label=name)
    shipped = results.get("shipped")
    if shipped:
        ax_val.plot([shipped["best_step"]], [shipped["val"]], "*", ms=14, color=COLORS["RWKV-4"], mec="black",
                    label=f"shipped checkpoint (step {shipped['best_step']}, {shipped['val']:.2f})")
    for ax in (ax_val, ax_train):
        ax.axhline(corpus["unigram"], color="gray", ls=":", lw=1, label=f"unigram baseline {corpus['unigram']:.2f}")
        ax.axhline(corpus["bigram"], color="gray", ls="--", lw=1, label=f"bigram baseline {corpus['bigram']:.2f}")
        ax.set_xlabel(f"training step (one step = {recipe['batch_size']} x {recipe['seq_len']} characters)")
        ax.grid(alpha=0.3)
        ax.set_ylabel("cross-entropy (nats/char)")
        ax.set_ylim(0.0, 4.5)
    ax_val.set_title(f"validation loss (held-out last {corpus['val_chars']:,} chars)")
    ax_train.set_title(f"training loss (running mean of {window} steps)")
    ax_val.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Tiny RWKV-4 vs GPT vs LSTM, equal parameter count, char-level {corpus['name']} "
                 f"({corpus['train_chars']:,} training chars), same batches, Adam + cosine lr")
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path)


def summarize(results: dict) -> dict:
    """The numbers behind the figure: per model its size, best and final validation loss, final
    training loss (mean of the last 50 steps) and training time; plus the baselines."""
    out = {"baselines": {"unigram": results["corpus"]["unigram"], "bigram": results["corpus"]["bigram"]},
           "steps": results["recipe"]["steps"]}
    for label, curve in results["models"].items():
        best_step, best_val = min(curve["val"], key=lambda sv: sv[1])
        out[label] = {"params": curve["params"], "peak_lr": curve["peak_lr"],
                      "best_val": round(best_val, 4), "best_val_step": best_step,
                      "final_val": round(curve["val"][-1][1], 4),
                      "final_train": round(float(np.mean(curve["train"][-50:])), 4),
                      "seconds": curve["seconds"]}
    return out


def make_figures(outdir, fast: bool = False, retrain: bool = False) -> dict:
    """Writes training_curves.png to ``outdir``; returns ``summarize``'s numbers.

    Default: the curves precomputed by scripts/train_tiny_rwkv.py (CURVES_FILE), no training.
    ``retrain``: the full comparison again (several CPU minutes). ``fast``: tiny models (width 32),
    60 steps, for CI and quick looks (seconds; the curves barely start to separate).
    """
    outdir = output_folder(outdir)
    if fast:
        results = run_comparison(recipe={"steps": 60, "eval_every": 20, "batch_size": 8, "seq_len": 64},
                                 rwkv_size={"n_layer": 2, "n_embd": 32, "ffn_dim": 128}, progress=False)
        note = "fast mode: tiny models, 60 steps (python -m tinyrwkv.experiments.training_curves --retrain for the real run)"
    elif retrain:
        results = run_comparison()
        note = f"retrained just now ({sum(c['seconds'] for c in results['models'].values()):.0f} s of training on this CPU)"
    else:
        if not CURVES_FILE.is_file():
            raise FileNotFoundError(f"{CURVES_FILE} is missing: run scripts/train_tiny_rwkv.py, or make the "
                                    f"figure with --retrain")
        results = json.loads(CURVES_FILE.read_text())
        note = (f"curves precomputed by scripts/train_tiny_rwkv.py ({results.get('date', 'date unknown')}), "
                f"the run that produced the shipped tinyrwkv/data/tiny_rwkv; retrain with --retrain")
    plot_curves(results, outdir / "training_curves.png", note)
    return {**summarize(results), "source": "fast" if fast else "retrained" if retrain else "precomputed",
            "files": ["training_curves.png"]}


def main(argv=None):
    experiment_main(make_figures, "Loss curves of a tiny RWKV-4, GPT and LSTM of equal size.",
                    fast_help="tiny models, 60 steps (seconds)", argv=argv,
                    retrain="rerun the full comparison (several minutes)")


if __name__ == "__main__":
    main()
