"""What a fixed-size state cannot do: recall after a distractor, RWKV-4 against a GPT of equal size.

RWKV-4 carries 5 L C numbers from token to token, whatever it has read; a GPT keeps every key and
value (lesson 09). This experiment asks what that costs on the simplest memory test, associative
recall: the model reads P key -> value pairs, then D distractor tokens, then the keys again in a
new order and must answer each with its value.

    k1 v1 k2 v2 ... kP vP | n n n ... n (D of them) | kq1 [vq1] kq2 [vq2] ...   (bracketed: predicted)

Keys, values and distractors come from three disjoint alphabets of 16 symbols; the keys of one
sequence are distinct, values are drawn at random, so nothing but the pairs themselves tells the
answer. Only the value positions after the distractor are scored (every other target is ignored).

Both models (the tiny RWKV-4 of lesson 10's recipe at 2 layers of width 64, and a pre-norm GPT
whose ffn width matches the parameter count) train on the same batches: P uniform in 1..P_MAX and
D uniform in 0..D_MAX, per batch. Then each is scored on fresh sequences at every (P, D) of a grid.
What it measures is a trained tiny model's accuracy, so it says what *these* models learned in this
budget, not what the architectures can do in principle.

    recall.png   accuracy against the number of pairs (one line per distractor length), per model

The full run takes several CPU minutes; its numbers are saved in ``tinyrwkv/data/recall.json``
(``--retrain`` reruns it and rewrites that file), and ``make_figures`` draws from it by default.
``--fast`` trains for a few seconds: the figure then says its numbers are not meaningful.

    python -m tinyrwkv.experiments.recall --out figures/ [--fast | --retrain]

The models are tiny: on a busy machine run with OPENBLAS_NUM_THREADS=1 (measured on a 2-core machine
under load: 0.07 CPU s per training step with one BLAS thread, 1.5 s with the default thread pool).
"""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from ..models.base import IGNORE_INDEX
from ..recipes import WarmupCosine, matched_gpt, tiny_rwkv
from ..training import train
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

RESULTS_FILE = pathlib.Path(__file__).resolve().parents[1] / "data" / "recall.json"

N_KEYS = N_VALUES = N_DISTRACT = 16           # three disjoint alphabets
VOCAB = N_KEYS + N_VALUES + N_DISTRACT        # ids: keys 0..15, values 16..31, distractors 32..47
FULL = {"steps": 3000, "batch_size": 32, "max_pairs": 8, "max_distract": 48, "width": 64, "n_layer": 2,
        "peak_lr": 3e-3, "eval_pairs": [1, 2, 4, 8], "eval_distract": [0, 16, 48], "eval_batch": 256, "seed": 0}
FAST = {**FULL, "steps": 30, "batch_size": 8, "width": 16, "eval_pairs": [1, 4], "eval_distract": [0, 16],
        "eval_batch": 32}


def recall_batch(rng: np.random.Generator, batch_size: int, n_pairs: int, distract: int):
    """One batch of recall sequences: (inputs (B, T), targets (B, T)) with T = 4 n_pairs + distract - 1.

    targets hold the value to predict at each query-key position after the distractor, and
    IGNORE_INDEX everywhere else (the loss and the accuracy read only those positions).
    """
    if not 1 <= n_pairs <= N_KEYS:
        raise ValueError(f"recall_batch: n_pairs must be in 1..{N_KEYS}, got {n_pairs}")
    if distract < 0:
        raise ValueError(f"recall_batch: distract must be >= 0, got {distract}")
    P = n_pairs
    T = 4 * P + distract
    seq = np.empty((batch_size, T), np.int64)
    tgt = np.full((batch_size, T), IGNORE_INDEX, np.int64)
    q0 = 2 * P + distract                                             # where the queries start
    for b in range(batch_size):
        keys = rng.choice(N_KEYS, P, replace=False)
        values = N_KEYS + rng.integers(0, N_VALUES, P)
        seq[b, 0:2 * P:2], seq[b, 1:2 * P:2] = keys, values
        seq[b, 2 * P:q0] = N_KEYS + N_VALUES + rng.integers(0, N_DISTRACT, distract)
        order = rng.permutation(P)
        seq[b, q0::2], seq[b, q0 + 1::2] = keys[order], values[order]
        tgt[b, q0::2] = values[order]                                 # after reading a key: its value
    return seq[:, :-1], tgt[:, :-1]


def build_models(config: dict) -> dict:
    """label -> model: the tiny RWKV-4 and a GPT matched to its parameter count."""
    rwkv = tiny_rwkv(VOCAB, config["seed"], n_layer=config["n_layer"], n_embd=config["width"],
                     ffn_dim=4 * config["width"])
    gpt = matched_gpt(VOCAB, rwkv.num_parameters(), dim=config["width"], n_heads=4,
                      n_layers=config["n_layer"], seed=config["seed"])
    return {"RWKV-4": rwkv, "GPT": gpt}


def accuracy(model, n_pairs: int, distract: int, batch_size: int, seed: int) -> float:
    """Fraction of the values answered correctly (argmax) on fresh sequences of this (P, D)."""
    inputs, targets = recall_batch(np.random.default_rng(seed), batch_size, n_pairs, distract)
    logits, _ = model.forward(inputs)                                  # (B, T, V)
    scored = targets != IGNORE_INDEX
    return float((logits.argmax(-1)[scored] == targets[scored]).mean())


def run(config: dict, progress: bool = False) -> dict:
    """Trains both models on the same batches and scores them on the (P, D) grid.

    Returns {"config", "chance", "models": {label: {"params", "seconds", "final_loss",
    "accuracy": {P: {D: fraction}}}}} (keys as strings, for JSON).
    """
    def batches(rng, step):
        return recall_batch(rng, config["batch_size"], int(rng.integers(1, config["max_pairs"] + 1)),
                            int(rng.integers(0, config["max_distract"] + 1)))

    out = {"config": config, "chance": 1.0 / N_VALUES, "models": {}}
    for label, model in build_models(config).items():
        opt = WarmupCosine(model.parameters(), config["peak_lr"], config["steps"], config["steps"] // 20)
        t0 = time.perf_counter()
        history = train(model, batches, config["steps"], optimizer=opt, clip=1.0, seed=config["seed"],
                        progress=progress, log_every=max(1, config["steps"] // 10))
        grid = {str(P): {str(D): accuracy(model, P, D, config["eval_batch"], seed=1000 + 10 * P + D)
                         for D in config["eval_distract"]} for P in config["eval_pairs"]}
        out["models"][label] = {"params": int(model.num_parameters()),
                                "seconds": round(time.perf_counter() - t0, 1),
                                "final_loss": round(float(np.mean(history.losses[-50:])), 4),
                                "accuracy": grid}
    return out


def plot_recall(results: dict, fig=None, path=None, fast: bool = False):
    """One panel per model: accuracy against the number of pairs P, one line per number of distractor tokens."""
    fig = figure(fig, (11, 4))
    axes = fig.subplots(1, len(results["models"]), sharey=True, squeeze=False)[0]
    for ax, (label, res) in zip(axes, results["models"].items()):
        pairs = sorted(res["accuracy"], key=int)
        for D in sorted(next(iter(res["accuracy"].values())), key=int):
            ax.plot([int(P) for P in pairs], [res["accuracy"][P][D] for P in pairs], "o-", label=f"{D} distractor tokens")
        ax.axhline(results["chance"], color="gray", ls=":", lw=1, label=f"chance {results['chance']:.3f}")
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(P) for P in pairs], pairs)
        ax.set_xlabel("pairs to remember P")
        ax.set_title(f"{label} ({res['params']:,} parameters)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("values recalled correctly")
    axes[-1].legend(fontsize=8, loc="lower left")
    c = results["config"]
    note = (f"FAST MODE: {c['steps']} training steps, numbers NOT meaningful" if fast else
            f"{c['steps']} steps of {c['batch_size']} sequences, P in 1..{c['max_pairs']}, 0..{c['max_distract']} distractors")
    fig.suptitle(f"Associative recall after a distractor: a fixed-size state vs a KV cache, equal size ({note})",
                 fontsize=10)
    return finish(fig, path)


def summarize(results: dict) -> dict:
    """Per model: parameters, training seconds, final loss, and the accuracy grid."""
    return {label: {k: res[k] for k in ("params", "seconds", "final_loss", "accuracy")}
            for label, res in results["models"].items()}


def load_results(path=RESULTS_FILE) -> dict:
    """The saved full-mode results (what ``--retrain`` wrote)."""
    return json.loads(pathlib.Path(path).read_text())


def make_figures(outdir, fast: bool = False, retrain: bool = False) -> dict:
    """Writes recall.png to ``outdir``. Default: from the saved full run (RESULTS_FILE), no training;
    ``retrain``: reruns the full experiment (minutes) and rewrites RESULTS_FILE; ``fast``: a few seconds
    of training, labelled as not meaningful."""
    outdir = output_folder(outdir)
    if fast:
        results = run(FAST)
    elif retrain or not RESULTS_FILE.exists():
        results = run(FULL, progress=True)
        RESULTS_FILE.write_text(json.dumps(results, indent=1))
    else:
        results = load_results()
    plot_recall(results, path=outdir / "recall.png", fast=fast)
    return {"fast": fast, **summarize(results), "files": ["recall.png"]}


def main(argv=None):
    experiment_main(make_figures, "Associative recall after a distractor: RWKV-4 vs a GPT of equal size.",
                    fast_help="a few seconds of training (numbers not meaningful)", argv=argv,
                    retrain="rerun the full experiment (minutes) and rewrite tinyrwkv/data/recall.json")


if __name__ == "__main__":
    main()
