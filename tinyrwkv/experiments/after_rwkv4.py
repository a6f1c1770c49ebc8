"""After RWKV-4: what RWKV-5, -6 and -7 changed, each change measured (lesson 12).

    state_floats(version, L, C, N)   floats carried per sequence, any context length (and a GPT's KV cache)
    decay_maps(tokens)               the per-token decay of the tiny RWKV-7 next to the tiny RWKV-4's constant one
    write_and_read(rule, ...)        one head's state written with a decayed sum (v5/6) or the delta rule (v7),
                                     then read back: how much of the LAST value stored under a key comes back
    recall_batch / train_recall      associative recall, one marked question: pairs "key value" ..., '?', a
                                     key: say its value; a tiny RWKV-4 and a tiny RWKV-7 of the same size

Figures (``make_figures``):

    state_per_version.png   state floats vs context length: GPT's KV cache, RWKV-4, RWKV-5/6/7 (168M shapes)
    decay_v4_vs_v7.png      decay factor per channel and token: fixed in RWKV-4, data-dependent in RWKV-7
    state_updates.png       the three state updates drawn with real numbers (one head of 6 channels)
    delta_rule.png          recall of the last value written under a key, decayed sum vs delta rule
    associative_recall.png  accuracy of the two tiny models on the recall task during training

    python -m tinyrwkv.experiments.after_rwkv4 --out figures/ [--fast | --retrain]

The recall curves take minutes to train, so the full run's numbers ship in
``tinyrwkv/data/recall_results.json`` (written by ``--retrain``); ``--fast`` trains for a few
seconds instead and says that those numbers mean nothing.
"""
from __future__ import annotations

import json
import math
import pathlib
import time

import numpy as np

from ..kernels import wkv6_numpy, wkv7_numpy
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

RECALL_RESULTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "recall_results.json"
DECAY_SCALE = math.exp(-0.5)          # RWKV-7: w = exp(-e^{-1/2} sigmoid(.)), in (0.545, 1)

# What each version changed, and why (the lesson's table; names as in the RWKV papers).
CHANGES = [
    ("RWKV-4", "2023", "per-channel WKV: numerator and denominator vectors, a fixed decay per channel",
     "an RNN that trains in parallel like a Transformer"),
    ("RWKV-5 (Eagle)", "2023", "a matrix state per head (S += k v^T), read with r; no denominator; GroupNorm per head",
     "a state of C x N numbers instead of 3C remembers far more"),
    ("RWKV-6 (Finch)", "2024", "decay and token shift depend on the input (small low-rank MLPs)",
     "the model chooses, token by token, what to forget"),
    ("RWKV-7 (Goose)", "2025", "delta-rule update S <- S diag(w) - (S kk)(kk a)^T + v k^T, value residual",
     "it can overwrite what a key stores, not only add to it"),
]


# --------------------------------------------------------------------------- state size


def state_floats(version, L, C, N=64, T=0) -> int:
    """Floats carried per sequence by RWKV-``version`` (4, 5, 6, 7) with L layers of width C and heads
    of N channels; version "gpt": a Transformer's KV cache after T tokens (2 L T C).

    RWKV-4: 5 vectors per layer (two token shifts, aa, bb, pp). RWKV-5/6/7: two token shifts and one
    N x N matrix per head, C / N heads: L (2 C + C N). Neither depends on T."""
    if version == "gpt":
        return 2 * L * T * C
    if version == 4:
        return 5 * L * C
    if version in (5, 6, 7):
        return L * (2 * C + (C // N) * N * N)
    raise ValueError(f"state_floats: version must be 4, 5, 6, 7 or 'gpt', got {version!r}")


def plot_state_per_version(L=12, C=768, N=64, lengths=None, path=None, fig=None):
    """State floats per sequence against context length at RWKV-4 169M / RWKV-7 168M shapes."""
    lengths = np.asarray(lengths if lengths is not None else np.unique(np.logspace(0, 5, 60).astype(int)))
    fig = figure(fig, (7.5, 4.6))
    ax = fig.subplots()
    ax.loglog(lengths, [state_floats("gpt", L, C, N, t) for t in lengths], "k-", label="GPT: KV cache (2 L T C)")
    for version, style, label in ((4, "C0--", "RWKV-4: 5 L C"), (7, "C3-", "RWKV-5/6/7: L (2C + C N)")):
        ax.loglog(lengths, np.full(len(lengths), state_floats(version, L, C, N)), style, lw=2, label=label)
    cross = state_floats(7, L, C, N) / (2 * L * C)
    ax.axvline(cross, color="gray", ls=":", lw=1)
    ax.text(cross * 1.1, state_floats(4, L, C, N) * 1.5, f"KV cache = RWKV-7 state\nat T = {cross:.0f}", fontsize=8)
    ax.set_xlabel("context length T (tokens)")
    ax.set_ylabel("floats carried per sequence")
    ax.set_title(f"What each model carries from token to token (L={L}, C={C}, head size {N})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


# --------------------------------------------------------------------------- decay: fixed vs data-dependent


def decay_maps(text: str):
    """The decay factor per channel and token of the tiny shipped RWKV-4 and RWKV-7, layer 1, over ``text``.

    RWKV-4: e^w with w = -exp(time_decay), the same at every token. RWKV-7: w_t = exp(-e^{-1/2}
    sigmoid(w0 + w2 tanh(w1 x_w))), computed from the token-shifted input of layer 1 while the model
    reads ``text``. Returns {"v4": (T, C), "v7": (T, C), "chars": list of T characters}.
    """
    from ..loading import load
    from ..tokenizer import load_tokenizer

    ids = np.array([load_tokenizer("tiny").encode(text)])
    layer = 1
    time_decay = load("tiny", progress=False).params[f"blocks.{layer}.att.time_decay"].astype(np.float64)
    w4 = np.exp(-np.exp(time_decay))                                         # (C,) e^w, w = -exp(time_decay)
    w7 = tiny_rwkv7().decays(ids)[layer, 0].astype(np.float64)               # (T, C)
    return {"v4": np.tile(w4, (ids.shape[1], 1)), "v7": w7, "chars": list(text)}


def tiny_rwkv7(backend="numpy"):
    """The tiny shipped RWKV-7 as a trainable ``RWKV7LanguageModel`` (read by the checkpoint reader)."""
    from ..checkpoints import read_checkpoint
    from ..models.rwkv import RWKVConfig
    from ..models.rwkv7_train import RWKV7LanguageModel
    from ..tokenizer import SHIPPED_MODELS

    config, params = read_checkpoint(SHIPPED_MODELS["tiny7"], progress=False)
    return RWKV7LanguageModel(RWKVConfig.from_dict(config), params, backend=backend)


def plot_decay_maps(maps, path=None, fig=None):
    """Two heatmaps, channels down, tokens across: RWKV-4's decay (constant rows) and RWKV-7's (per token)."""
    fig = figure(fig, (12.0, 5.0))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in ((axes[0], "v4", "RWKV-4: e^w, fixed per channel"),
                           (axes[1], "v7", "RWKV-7: w_t, chosen per token from the input")):
        img = ax.imshow(maps[key].T, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(len(maps["chars"])), [repr(c)[1:-1] for c in maps["chars"]], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("token")
    axes[0].set_ylabel("channel (layer 1 of the tiny models)")
    fig.colorbar(img, ax=list(axes), label="decay factor per step (1 = keep everything)")
    fig.suptitle("How fast each channel forgets: fixed in RWKV-4, data-dependent since RWKV-6", fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# --------------------------------------------------------------------------- what the delta rule adds


def write_and_read(rule, n_keys=4, n_writes=12, N=16, seed=0, decay=1.0):
    """One head's state, written ``n_writes`` times with (key, value) pairs whose keys repeat (n_keys
    distinct unit keys, each written several times with a NEW value), then read with every key.

    rule "sum": v5/v6's S <- w S + k v^T (S[key, value]; read y = S^T k).
    rule "delta": v7's S <- S diag(w) - (S k)(k a)^T + v k^T (S[value, key]; read y = S k), a = 1.
    Both go through the kernels' NumPy references. Returns {"error": mean |read - last value written|
    over the keys, "reads": (n_keys, N), "last": (n_keys, N)}.
    """
    rng = np.random.default_rng(seed)
    keys = np.linalg.qr(rng.normal(size=(N, n_keys)))[0].T                 # orthonormal unit keys (n_keys, N)
    which = np.arange(n_writes) % n_keys
    values = rng.normal(size=(n_writes, N))
    k = keys[which][None, :, None, :]                                     # (1, T, 1, N)
    v = values[None, :, None, :]
    w = np.full_like(k, decay)
    if rule == "sum":
        _, S = wkv6_numpy.forward(k, k, v, w, np.zeros((1, N)))
        reads = np.einsum("ij,qi->qj", S[0, 0], keys)                     # y = k^T S
    elif rule == "delta":
        _, S = wkv7_numpy.forward(k, w, k, v, -k, k)
        reads = np.einsum("ij,qj->qi", S[0, 0], keys)                     # y = S k
    else:
        raise ValueError(f"write_and_read: rule must be 'sum' or 'delta', got {rule!r}")
    last = np.stack([values[np.nonzero(which == q)[0][-1]] for q in range(n_keys)])
    return {"error": float(np.mean(np.abs(reads - last))), "reads": reads, "last": last}


def plot_delta_rule(max_writes=24, n_keys=4, path=None, fig=None):
    """Read-back error of the last value written under each key, against the number of writes."""
    writes = np.arange(n_keys, max_writes + 1)
    fig = figure(fig, (7.0, 4.2))
    ax = fig.subplots()
    for rule, label, style in (("sum", "decayed sum (RWKV-5/6), w = 1", "C0o-"),
                               ("delta", "delta rule (RWKV-7), w = 1, a = 1", "C3s-")):
        ax.plot(writes, [write_and_read(rule, n_keys, n)["error"] for n in writes], style, ms=4, label=label)
    ax.plot(writes, [write_and_read("sum", n_keys, n, decay=0.7)["error"] for n in writes], "C0^--", ms=4,
            label="decayed sum, w = 0.7 (forgets old AND new)")
    ax.set_xlabel(f"writes into one head's state ({n_keys} keys, each rewritten with a new value)")
    ax.set_ylabel("mean |read(key) - last value written|")
    ax.set_title("Rewriting a key: a sum piles values up, the delta rule replaces them")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


# --------------------------------------------------------------------------- associative recall

RECALL = {"n_keys": 16, "n_values": 16, "n_pairs": 6, "batch": 64, "steps": 1500, "lr": 3e-3, "eval_every": 100,
          "eval_n": 512, "size": {"n_layer": 2, "n_embd": 32, "ffn_dim": 64}, "rwkv7": {"head_size": 8, "lora": 4}}
FAST_RECALL = {**RECALL, "steps": 10, "eval_every": 10, "batch": 16, "eval_n": 64}


def recall_vocab(n_keys, n_values):
    """Token ids: keys 0 .. n_keys-1, values n_keys .. n_keys+n_values-1, then the question mark '?'."""
    return n_keys + n_values + 1


def recall_batch(rng, batch, n_keys=16, n_values=16, n_pairs=6):
    """One marked question per sequence: ``k1 v1 k2 v2 ... kn vn ? kq`` -> the value that followed kq.

    The simplest form of ``experiments/recall.py``'s task (which has distractors and asks every key
    again, unmarked): here a '?' says where the question is, so the state's one job is unmistakable.
    Keys are distinct within a sequence, values random. Returns (inputs (B, 2n+2), targets (B, 2n+2)),
    every target -1 (ignored) except the last, the answer."""
    keys = np.argsort(rng.random((batch, n_keys)), axis=1)[:, :n_pairs]             # distinct keys
    values = n_keys + rng.integers(0, n_values, (batch, n_pairs))
    query = rng.integers(0, n_pairs, batch)
    seq = np.empty((batch, 2 * n_pairs + 2), np.int64)
    seq[:, 0:2 * n_pairs:2], seq[:, 1:2 * n_pairs:2] = keys, values
    seq[:, -2] = n_keys + n_values                                                    # '?'
    seq[:, -1] = keys[np.arange(batch), query]
    targets = np.full_like(seq, -1)
    targets[:, -1] = values[np.arange(batch), query]
    return seq, targets


def recall_models(settings=RECALL, seed=0):
    """A tiny RWKV-4 and a tiny RWKV-7 of (nearly) the same size for the recall task, RWKV-LM initialisations."""
    from ..models.rwkv import RWKVConfig
    from ..models.rwkv7_train import RWKV7LanguageModel, rwkv7_config
    from ..models.rwkv_train import RWKVLanguageModel

    V = recall_vocab(settings["n_keys"], settings["n_values"])
    size, r = settings["size"], settings["rwkv7"]
    rwkv4 = RWKVLanguageModel(RWKVConfig(vocab_size=V, **size), backend="numba", seed=seed)
    rwkv7 = RWKV7LanguageModel(rwkv7_config(vocab_size=V, head_size=r["head_size"], decay_lora=r["lora"],
                                            a_lora=r["lora"], v_lora=r["lora"], gate_lora=r["lora"], **size),
                               backend="numba", seed=seed)
    return {"RWKV-4": rwkv4, "RWKV-7": rwkv7}


def recall_accuracy(model, settings=RECALL, seed=12345):
    """Fraction of settings["eval_n"] fixed held-out questions answered right (argmax of the last logits)."""
    inputs, targets = recall_batch(np.random.default_rng(seed), settings["eval_n"], settings["n_keys"],
                                   settings["n_values"], settings["n_pairs"])
    logits, _ = model.forward(inputs)
    return float(np.mean(np.argmax(logits[:, -1], axis=-1) == targets[:, -1]))


def train_recall(settings=RECALL, seed=0, progress=False) -> dict:
    """Trains both tiny models on recall with the same batches; returns per model its parameter count,
    [(step, held-out accuracy)] and the seconds it took."""
    from ..training import train

    s = settings

    def batches(rng, step):
        return recall_batch(rng, s["batch"], s["n_keys"], s["n_values"], s["n_pairs"])

    out = {"settings": {k: v for k, v in s.items()}, "chance": 1.0 / s["n_values"], "models": {}}
    for name, model in recall_models(s, seed).items():
        t0 = time.perf_counter()
        evals = [(0, recall_accuracy(model, s))]
        history = train(model, batches, s["steps"], lr=s["lr"], seed=seed, progress=progress,
                        log_every=s["eval_every"], eval_fn=lambda m: recall_accuracy(m, s), eval_every=s["eval_every"])
        evals += [(int(step), float(acc)) for step, acc in history.evals]
        out["models"][name] = {"params": int(model.num_parameters()), "accuracy": evals,
                               "final_loss": float(np.mean(history.losses[-20:])),
                               "seconds": round(time.perf_counter() - t0, 1)}
    return out


# --------------------------------------------------------------------------- the state updates, drawn


def update_terms(N=6, seed=3):
    """Real numbers for the three updates of one head of N channels (one step, from a random state).

    Returns {"v4": [(label, array)...], "v6": [...], "v7": [...]}: the terms of each update in the
    order they are added, the last one the new state; the v5/6 and v7 states come from the kernels."""
    rng = np.random.default_rng(seed)
    k, v, r = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    w = np.exp(-np.exp(rng.normal(-1, 1, N)))
    S = rng.normal(size=(N, N)) * 0.7
    aa, bb = rng.normal(size=N), np.abs(rng.normal(size=N)) + 1
    e_w, e_k = np.exp(-0.5), np.exp(k - k.max())
    v4 = [("aa (num.)", aa[:, None]), ("x e^w", np.full((N, 1), e_w)), ("+ e^k v", (e_k * v)[:, None]),
          ("= aa'", (e_w * aa + e_k * v)[:, None])]
    kv = np.outer(k, v)
    one = lambda x: x.reshape(1, 1, 1, N)                                          # noqa: E731
    _, S6 = wkv6_numpy.forward(one(r), one(k), one(v), one(w), np.zeros((1, N)), S[None, None])
    v6 = [("S [key, value]", S), ("rows x w", w[:, None] * np.ones((1, N))), ("+ k v^T", kv), ("= S'", S6[0, 0])]
    kk = k / np.linalg.norm(k)
    iclr = 1 / (1 + np.exp(-rng.normal(size=N)))
    _, S7 = wkv7_numpy.forward(one(r), one(w), one(k), one(v), one(-kk), one(kk * iclr), S[None, None])
    v7 = [("S [value, key]", S), ("cols x w", np.ones((N, 1)) * w[None, :]),
          ("- (S kk)(kk a)^T", -np.outer(S @ kk, kk * iclr)), ("+ v k^T", np.outer(v, k)), ("= S'", S7[0, 0])]
    return {"v4": v4, "v6": v6, "v7": v7}


def plot_state_updates(path=None, fig=None):
    """Each version's state update as a row of small heatmaps: the state, what is multiplied, what is
    added, the new state (one step of one head; blue < 0 < red; decay factors in green, 0 .. 1)."""
    terms = update_terms()
    rows = [("RWKV-4: per channel, aa' = e^w aa + e^k v  (and bb' alike)", terms["v4"]),
            ("RWKV-5/6: S' = diag(w) S + k v^T   (a decayed sum of outer products)", terms["v6"]),
            ("RWKV-7: S' = S diag(w) - (S kk)(kk a)^T + v k^T   (the delta rule)", terms["v7"])]
    fig = figure(fig, (12.0, 7.5))
    grid = fig.add_gridspec(3, 5, hspace=0.7, wspace=0.35)
    lim = max(np.abs(a).max() for _, ts in rows for _, a in ts)
    for row, (title, ts) in enumerate(rows):
        for col, (label, a) in enumerate(ts):
            ax = fig.add_subplot(grid[row, col])
            factor = label.startswith(("x ", "rows x", "cols x"))        # a decay: 0 (forget) .. 1 (keep), in green
            ax.imshow(a, cmap="Greens" if factor else "RdBu_r", vmin=0 if factor else -lim, vmax=1 if factor else lim,
                      aspect="equal" if a.shape[1] > 1 else 0.4)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=9)
            if col == 0:
                ax.set_title(title, fontsize=10, loc="left")
    fig.suptitle("One step of the state update, per version (one head of 6 channels, real numbers)", fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_recall(results, path=None, fig=None, note=""):
    """Held-out recall accuracy against training steps for the two tiny models."""
    fig = figure(fig, (7.0, 4.2))
    ax = fig.subplots()
    for (name, r), style in zip(results["models"].items(), ("C0o-", "C3s-")):
        steps, acc = zip(*r["accuracy"])
        ax.plot(steps, acc, style, ms=4, label=f"{name} ({r['params']:,} parameters)")
    ax.axhline(results["chance"], color="gray", ls=":", lw=1, label="chance")
    s = results["settings"]
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Associative recall: {s['n_pairs']} key-value pairs, '?', then one of the keys"
                 + (f"\n{note}" if note else ""),
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


# --------------------------------------------------------------------------- figures


def make_figures(outdir, fast=False, retrain=False) -> dict:
    """Writes the five figures (see the module docstring); returns the numbers behind them."""
    outdir = output_folder(outdir)
    plot_state_per_version(path=outdir / "state_per_version.png")
    maps = decay_maps("Once upon a time, the fox")
    plot_decay_maps(maps, outdir / "decay_v4_vs_v7.png")
    plot_state_updates(outdir / "state_updates.png")
    plot_delta_rule(path=outdir / "delta_rule.png")
    if retrain:
        results = train_recall(RECALL)
        results["date"] = time.strftime("%Y-%m-%d")
        RECALL_RESULTS.write_text(json.dumps(results) + "\n")
        note = ""
    elif fast:
        results, note = train_recall(FAST_RECALL), "fast mode: a few seconds of training, numbers NOT meaningful"
    else:
        results, note = json.loads(RECALL_RESULTS.read_text()), "the shipped full run (recall_results.json)"
    plot_recall(results, outdir / "associative_recall.png", note=note)
    return {"state_floats_168M": {v: state_floats(v, 12, 768, 64) for v in (4, 7)},
            "decay_v7_std_over_tokens": float(maps["v7"].std(axis=0).mean()),
            "delta_rule_error_12_writes": {rule: write_and_read(rule, 4, 12)["error"] for rule in ("sum", "delta")},
            "recall_final_accuracy": {name: r["accuracy"][-1][1] for name, r in results["models"].items()},
            "recall_note": note,
            "files": ["state_per_version.png", "decay_v4_vs_v7.png", "state_updates.png", "delta_rule.png",
                      "associative_recall.png"]}


def main(argv=None):
    experiment_main(make_figures, "Lesson 12's experiments: state size, decay, the delta rule, associative recall.",
                    fast_help="train the recall models for seconds only (numbers not meaningful)", argv=argv,
                    retrain="rerun the full recall training and rewrite tinyrwkv/data/recall_results.json")


if __name__ == "__main__":
    main()
