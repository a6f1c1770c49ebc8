"""What attention costs, and what it looks at.

1. Cost against sequence length, generating T tokens one at a time (batch 1, untrained weights:
   the cost does not depend on the values):
     RNN             carries a fixed state: every token costs the same, memory is flat;
     GPT + KV cache  keeps every past key and value: token t costs O(t) attention, the cache grows
                     as 2 * n_layers * t * dim floats;
     GPT, no cache   recomputes the whole prefix for every new token: token t costs a full O(t^2)
                     forward, O(T^3) attention work in all (and O(T^2) for the projections).
   Time per token is the wall time of generating T tokens divided by T (best of a few runs).
   Memory is counted two ways: the floats carried from one token to the next (the state / cache;
   for the cache-less GPT, the T token ids it must keep), and the peak bytes NumPy allocated
   during generation, measured with tracemalloc (that includes the T x T attention matrices).
2. Attention heatmaps after brief training on the dates task: the GNMT's additive attention and the
   Transformer's cross-attention (last decoder layer, averaged over heads), for one sentence in
   each source format. A good model walks the source diagonally for "dd/mm/yyyy", jumps to the year
   first for the others, and reads the month name when writing the month digits.

    python -m tinyrwkv.experiments.attention_cost --out figures/ [--fast]
"""
from __future__ import annotations

import time
import tracemalloc

import numpy as np

from ..data.translation import BOS, EOS, DateTask
from ..models.decoding import greedy_decode
from ..models.seq2seq import GNMT
from ..models.transformer import GPT, Transformer
from ._cli import experiment_main
from ._plotting import finish, output_folder

VOCAB = 64          # a char-level vocabulary's size; the cost barely depends on it
WIDTH = 64          # model width (RNN hidden size, GPT dim) for the cost comparison
LAYERS = 2


# --------------------------------------------------------------------------- 1. cost


def _generate_with_step(model, ids):
    """Feeds ids (T,) through ``model.step`` one at a time (RNN, GPT with KV cache)."""
    state = model.init_state(1)
    for t in ids:
        _, state = model.step(np.array([t]), state)
    return state


def _generate_without_cache(model, ids):
    """For every t, a full forward over ids[:t+1] and only the last position's logits are used."""
    for t in range(len(ids)):
        model.forward(ids[None, :t + 1])


def _best_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def per_token_cost(run, lengths, repeats, rng) -> dict:
    """Runs ``run(ids)`` on random ids (T,) for each T in ``lengths``, after a short warm-up:
    {"ms_per_token": best wall time of ``repeats`` runs / T, "peak_mib": tracemalloc's peak of one run}."""
    ms, peak = [], []
    for T in lengths:
        ids = rng.integers(0, VOCAB, size=T)
        run(ids[:4])                                         # warm-up (first-call allocations)
        ms.append(1000 * _best_time(lambda: run(ids), repeats) / T)
        peak.append(_peak_bytes(lambda: run(ids)) / 2**20)
    return {"ms_per_token": ms, "peak_mib": peak}


def measure_cost(lengths, repeats=3, seed=0) -> dict:
    """Time per generated token (ms) and memory (carried floats, peak MiB) for each T in ``lengths``."""
    rng = np.random.default_rng(seed)
    gpt = GPT(VOCAB, dim=WIDTH, n_heads=4, n_layers=LAYERS, rng=rng)
    runners = {
        "gpt_kv_cache": (lambda ids: _generate_with_step(gpt, ids), gpt.state_size),
        "gpt_no_cache": (lambda ids: _generate_without_cache(gpt, ids), lambda T: T),   # keeps the T ids only
    }
    notes = []
    try:                       # the RNN is another file of the lineage; the figure still works without it
        from ..models.rnn import RNNLanguageModel
        rnn = RNNLanguageModel(VOCAB, hidden_size=WIDTH, num_layers=LAYERS, rng=rng)
        runners = {"rnn": (lambda ids: _generate_with_step(rnn, ids), rnn.state_size), **runners}
    except ImportError as e:
        notes.append(f"RNN skipped: tinyrwkv.models.rnn is not available ({e})")

    out = {"lengths": list(lengths), "notes": notes, "width": WIDTH, "layers": LAYERS}
    for name, (run, carried) in runners.items():
        cost = per_token_cost(run, lengths, repeats, rng)
        out[name] = {"ms_per_token": cost["ms_per_token"], "carried_floats": [int(carried(T)) for T in lengths],
                     "peak_mib": cost["peak_mib"]}
    return out


def plot_cost(cost, path):
    from matplotlib.figure import Figure

    labels = {"rnn": "RNN (fixed state)", "gpt_kv_cache": "GPT with KV cache", "gpt_no_cache": "GPT without cache"}
    T = cost["lengths"]
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    for name, label in labels.items():
        if name not in cost:
            continue
        axes[0].plot(T, cost[name]["ms_per_token"], "o-", label=label)
        axes[1].plot(T, cost[name]["carried_floats"], "o-", label=label)
        axes[2].plot(T, cost[name]["peak_mib"], "o-", label=label)
    titles = ("Time per generated token", "State carried between tokens", "Peak memory while generating")
    ylabels = ("time per token (ms)", "floats carried (RNN state / KV cache / token ids)",
               "peak NumPy allocation (MiB, tracemalloc)")
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (tokens generated)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Generating T tokens, batch 1, width {cost['width']}, {cost['layers']} layers (NumPy, CPU)")
    finish(fig, path, dpi=120)


# --------------------------------------------------------------------------- 2. heatmaps


def train_translators(steps, seed=0, progress=False, n_eval: int = 500) -> dict:
    """Trains a GNMT and an encoder-decoder Transformer on the dates task for ``steps`` steps; returns the
    models and their exact-match on ``n_eval`` held-out pairs."""
    from ..training import train

    task = DateTask()
    gnmt = GNMT(len(task.src_vocab), len(task.tgt_vocab), embed_dim=32, hidden_size=64,
                rng=np.random.default_rng(seed))
    transformer = Transformer(len(task.src_vocab), len(task.tgt_vocab), dim=48, n_heads=4, ffn_dim=96,
                              rng=np.random.default_rng(seed))
    held_out = task.pairs(n_eval, seed=99)
    out = {"task": task, "held_out": held_out}
    for name, model, lr in (("gnmt", gnmt, 3e-3), ("transformer", transformer, 2e-3)):
        history = train(model, task.batches(32), steps, lr=lr, seed=seed, progress=progress)
        result = task.evaluate(lambda src: greedy_decode(model, src, BOS, EOS, task.max_tgt_len)[0], held_out)
        out[name] = {"model": model, "exact_match": result["exact_match"], "char_accuracy": result["char_accuracy"],
                     "final_loss": float(np.mean(history.losses[-20:])), "train_seconds": history.seconds}
    return out


def plot_heatmaps(trained, path, sources, steps=None):
    from matplotlib.figure import Figure

    task = trained["task"]
    fig = Figure(figsize=(4.2 * len(sources), 7.5))
    axes = fig.subplots(2, len(sources), squeeze=False)
    for row, (name, title) in enumerate((("gnmt", "GNMT additive attention"),
                                         ("transformer", "Transformer cross-attention (last layer, mean of heads)"))):
        model = trained[name]["model"]
        for col, source in enumerate(sources):
            src = task.encode_sources([source])
            ids, _, attention = greedy_decode(model, src, BOS, EOS, task.max_tgt_len)   # (1, L, S)
            out_chars = [task.tgt_vocab.itos[i] for i in ids[0]]
            out_chars = ["EOS" if c == "</s>" else c for c in out_chars]
            ax = axes[row, col]
            im = ax.imshow(attention[0, :len(out_chars)], cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(source)), list(source))
            ax.set_yticks(range(len(out_chars)), out_chars)
            ax.set_xlabel("source character")
            ax.set_ylabel("generated character")
            ax.set_title(f"{title}\n'{source}' -> '{task.tgt_vocab.decode(ids[0])}'", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, label="attention weight")
    if steps is not None:
        fig.suptitle(f"Dates task, after {steps} training steps (exact match on held-out pairs: GNMT "
                     f"{trained['gnmt']['exact_match']:.0%}, Transformer {trained['transformer']['exact_match']:.0%})")
    finish(fig, path, dpi=120)


# --------------------------------------------------------------------------- entry points


def make_figures(outdir, fast=False) -> dict:
    """Writes attention_cost.png and attention_heatmaps.png to ``outdir``; returns the numbers behind them."""
    outdir = output_folder(outdir)
    lengths = [8, 16, 32, 64] if fast else [16, 32, 64, 128, 256, 512]
    cost = measure_cost(lengths, repeats=2 if fast else 3)
    plot_cost(cost, outdir / "attention_cost.png")

    # Fast mode (CI, quick looks): the translators train 100 steps instead of 400 and are scored on
    # 100 held-out pairs, not 500 (was 200 and 500: the largest share of `figures --fast`). After 100
    # steps the Transformer already gets ~58% of dates exactly (93% of characters), the GNMT ~70% of
    # characters: the maps show where attention is heading, not yet the converged ones.
    steps = 100 if fast else 400
    trained = train_translators(steps, n_eval=100 if fast else 500)
    sources = ["3 March 2021", "March 3, 2021", "03/03/2021"]
    plot_heatmaps(trained, outdir / "attention_heatmaps.png", sources, steps)

    translation = {name: {k: v for k, v in trained[name].items() if k != "model"} for name in ("gnmt", "transformer")}
    return {"cost": cost, "translation": {"steps": steps, "held_out_pairs": len(trained["held_out"]), **translation},
            "files": ["attention_cost.png", "attention_heatmaps.png"]}


def main(argv=None):
    experiment_main(make_figures, "Cost vs sequence length (RNN, GPT with/without KV cache) "
                                  "and attention heatmaps (GNMT, Transformer).",
                    fast_help="small sizes and short training", argv=argv)


if __name__ == "__main__":
    main()
