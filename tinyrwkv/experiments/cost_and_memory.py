"""Cost and memory against sequence length: RNN, GPT with and without a KV cache, and RWKV in both modes.

Two ways to spend compute on a sequence of T tokens (batch 1, untrained weights: the cost does not
depend on the values; every model is NumPy on the CPU at the same width and depth):

1. Generating, one token at a time (``attention_cost``'s harness, with RWKV in serial mode added):
     RNN             fixed state: every token costs the same
     GPT + KV cache  token t attends to t cached keys: O(t) per token, the cache grows with t
     GPT, no cache   re-runs the whole prefix for every token: O(t^2) per token (run only up to
                     T = 256 in full mode: O(T^3) in all)
     RWKV, serial    ``RWKV.step``: a fixed state of 5 L C floats, every token costs the same
2. Reading a T-token prompt in one call (parallel mode), time divided by T:
     GPT             one forward with a T x T causal attention per head: O(T) per token
     RWKV, parallel  ``RWKV.forward``: the projections are matrix products over all T tokens, the
                     WKV sum one O(T) sweep: a constant cost per token
     RNN             one forward, still a loop over T inside
   and the peak memory of that call: GPT holds T x T attention weights per head (O(T^2)), RWKV
   only (T, C) activations (O(T)).

State carried between tokens (floats; bytes are 4x in float32):
     RNN  L * H (LSTM: 2 L H)      GPT + KV cache  2 * L * T * C      GPT, no cache  the T token ids
     RWKV 5 * L * C (att_x, aa, bb, pp, ffn_x per layer), in both modes: parallel mode hands the
     same state to serial mode.

Figures: ``cost_vs_length.png`` (time per token in both scenarios; peak memory of a prompt) and
``state_size_vs_length.png`` (floats carried at this experiment's sizes, and MiB at RWKV-4 169M /
GPT-2-small sizes from the formulas).

    python -m tinyrwkv.experiments.cost_and_memory --out figures/ [--fast]
"""
from __future__ import annotations

import numpy as np

from ..models.rwkv import RWKV, RWKVConfig
from ..models.transformer import GPT
from .attention_cost import LAYERS, VOCAB, WIDTH, _generate_with_step, _generate_without_cache, per_token_cost
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

LABELS = {
    "rnn": "RNN (fixed state)",
    "gpt_kv_cache": "GPT with KV cache",
    "gpt_no_cache": "GPT without cache",
    "rwkv_serial": "RWKV, serial mode (step)",
    "gpt_parallel": "GPT, one forward over T",
    "rwkv_parallel": "RWKV, parallel mode (forward)",
    "rnn_parallel": "RNN, one forward over T",
}


def small_rwkv(seed: int = 0, backend: str = "numpy") -> RWKV:
    """An RWKV of the same width, depth and vocabulary as attention_cost's RNN and GPT.

    backend 'numpy' keeps the comparison NumPy against NumPy; 'numba' compiles the WKV loop.
    """
    config = RWKVConfig(n_layer=LAYERS, n_embd=WIDTH, vocab_size=VOCAB, ffn_dim=4 * WIDTH)
    return RWKV.random(config, seed=seed, backend=backend)


def state_floats(model, T: int) -> int:
    """Floats carried between tokens after T tokens, counted from the model's state object itself.

    RWKV: the five (L, 1, C) arrays of RWKVState; GPT: the cached keys and values; RNN: the
    per-layer hidden (and cell) states. Equal to ``model.state_size(T)`` (a test checks it).
    """
    state = _generate_with_step(model, np.zeros(T, dtype=np.int64)) if T else model.init_state(1)
    if isinstance(model, RWKV):
        return int(sum(getattr(state, f).size for f in state.FIELDS))
    if isinstance(model, GPT):
        return int(sum(k.size + v.size for k, v in state["kv"]))
    return int(sum(a.size for layer in state for a in layer))


def small_models(seed: int = 0, rwkv_backend: str = "numpy") -> dict:
    """name -> model: the RNN and GPT of ``attention_cost`` (same sizes) and ``small_rwkv``."""
    from ..models.rnn import RNNLanguageModel

    rng = np.random.default_rng(seed)
    return {"rnn": RNNLanguageModel(VOCAB, hidden_size=WIDTH, num_layers=LAYERS, rng=rng),
            "gpt": GPT(VOCAB, dim=WIDTH, n_heads=4, n_layers=LAYERS, rng=rng),
            "rwkv": small_rwkv(seed, rwkv_backend)}


def measure_generation(lengths, repeats=3, seed=0, rwkv_backend="numpy", no_cache_max_T=None) -> dict:
    """Generating T tokens one at a time: per token ms, peak MiB and carried floats for each model.

    Uses ``attention_cost``'s harness (``_generate_with_step``: ``model.step`` per token;
    ``_generate_without_cache``: a full forward over the prefix per token). The cache-less GPT costs
    O(T^3) in all, so ``no_cache_max_T`` caps the lengths it is run at (None: all).
    """
    models = small_models(seed, rwkv_backend)
    runners = {  # name -> (run, floats carried after T tokens, longest T to run)
        "rnn": (lambda ids: _generate_with_step(models["rnn"], ids), models["rnn"].state_size, None),
        "gpt_kv_cache": (lambda ids: _generate_with_step(models["gpt"], ids), models["gpt"].state_size, None),
        "gpt_no_cache": (lambda ids: _generate_without_cache(models["gpt"], ids), lambda T: T, no_cache_max_T),
        "rwkv_serial": (lambda ids: _generate_with_step(models["rwkv"], ids), models["rwkv"].state_size, None),
    }
    rng = np.random.default_rng(seed)
    out = {"lengths": list(lengths), "rwkv_backend": rwkv_backend, "width": WIDTH, "layers": LAYERS}
    for name, (run, carried, max_T) in runners.items():
        Ts = [T for T in lengths if max_T is None or T <= max_T]
        out[name] = {"lengths": Ts, **per_token_cost(run, Ts, repeats, rng),
                     "carried_floats": [int(carried(T)) for T in Ts]}
    return out


def measure_prompt(lengths, repeats=3, seed=0, rwkv_backend="numpy") -> dict:
    """Reading T tokens in ONE call (parallel mode): per token ms and peak MiB for GPT, RWKV and the RNN."""
    models = small_models(seed, rwkv_backend)
    runners = {
        "gpt_parallel": lambda ids: models["gpt"].forward(ids[None]),
        "rwkv_parallel": lambda ids: models["rwkv"].forward(ids, full_output=False),   # what a prompt needs
        "rnn_parallel": lambda ids: models["rnn"].forward(ids[None]),
    }
    rng = np.random.default_rng(seed)
    out = {"lengths": list(lengths), "rwkv_backend": rwkv_backend}
    for name, run in runners.items():
        out[name] = {"lengths": list(lengths), **per_token_cost(run, lengths, repeats, rng)}
    return out


# --------------------------------------------------------------------------- formulas at real sizes


def rnn_state_floats(n_layers: int, hidden: int, per_layer: int = 1) -> int:
    """An RNN's state: per_layer vectors of size hidden (1 for Elman/GRU, 2 for LSTM's h and c) per layer."""
    return n_layers * per_layer * hidden


def kv_cache_floats(n_layers: int, dim: int, T: int) -> int:
    """A GPT's KV cache after T tokens: a key and a value of size dim, per token, per layer."""
    return 2 * n_layers * dim * T


def rwkv_state_floats(n_layers: int, dim: int) -> int:
    """RWKV-4's state: att_x, aa, bb, pp, ffn_x, each of size dim, per layer: 5 L C, whatever T."""
    return 5 * n_layers * dim


def kv_cache_bytes(n_layers: int, dim: int, T: int, batch: int = 1, bytes_per_float: int = 4) -> int:
    """Bytes of a KV cache: ``kv_cache_floats`` for each of ``batch`` sequences, at ``bytes_per_float`` each."""
    return kv_cache_floats(n_layers, dim, T) * batch * bytes_per_float


# FLOPs per generated token, counting 2 FLOPs per multiply-add and only the matrix products (the
# embedding lookup, layer norms, softmax, exp and the output head are left out: the head costs the
# same for every model, the rest is O(C) per layer).


def gpt_flops_per_token(n_layers: int, dim: int, T: int) -> int:
    """One token through a GPT block stack with a KV cache of T keys (the new token included).

    Per layer: q, k, v, o projections 4 C^2, the FFN (C -> 4C -> C) 8 C^2, and attention: T scores
    q . k_i (T C) plus the weighted sum of T values (T C) multiply-adds. Total 2 L (12 C^2 + 2 T C).
    """
    return 2 * n_layers * (12 * dim * dim + 2 * T * dim)


def rwkv_flops_per_token(n_layers: int, dim: int) -> int:
    """One token through RWKV-4's blocks in serial mode, whatever the context length.

    Per layer: time-mix k, v, r, o 4 C^2; channel-mix key (4C x C), value (C x 4C) and receptance
    (C x C) 9 C^2. Total 2 L 13 C^2; WKV itself is a few operations per channel (O(C)).
    """
    return 2 * n_layers * 13 * dim * dim


# --------------------------------------------------------------------------- figures


def _log_axes(ax, title, ylabel, xlabel="sequence length T (tokens)"):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_cost(generation: dict, prompt: dict, path=None, fig=None):
    """Time per token against T: generating token by token, and reading a prompt in one call; and the
    peak memory of that call (GPT's T x T attention matrices against RWKV's running sums)."""
    fig = figure(fig, (18, 4.8))
    left, middle, right = fig.subplots(1, 3)
    for name in ("rnn", "gpt_kv_cache", "gpt_no_cache", "rwkv_serial"):
        if name in generation:
            left.plot(generation[name]["lengths"], generation[name]["ms_per_token"], "o-", label=LABELS[name])
    _log_axes(left, "Generating T tokens one at a time", "time per token (ms, best of a few runs)")
    for name in ("gpt_parallel", "rwkv_parallel", "rnn_parallel"):
        middle.plot(prompt[name]["lengths"], prompt[name]["ms_per_token"], "o-", label=LABELS[name])
        right.plot(prompt[name]["lengths"], prompt[name]["peak_mib"], "o-", label=LABELS[name])
    _log_axes(middle, "Reading a T-token prompt in one call", "time per token (ms) = call time / T")
    _log_axes(right, "Peak memory while reading the prompt", "peak NumPy allocation (MiB, tracemalloc)")
    fig.suptitle(f"Cost against sequence length (batch 1, width {WIDTH}, {LAYERS} layers, NumPy on the CPU; "
                 f"RWKV's WKV backend: {generation.get('rwkv_backend', '?')}; times are wall clock, noisy on a "
                 f"busy machine)")
    return finish(fig, path)


# Real sizes for the right-hand panel: RWKV-4 169M and GPT-2 small share L = 12, C = 768.
REAL_LAYERS, REAL_DIM = 12, 768


def plot_state(generation: dict, path=None, long_lengths=None, fig=None):
    """Floats carried against T at the experiment's sizes (left) and MiB at 12 x 768 (right)."""
    long_lengths = long_lengths or [2 ** p for p in range(6, 18)]
    fig = figure(fig, (13, 4.6))
    left, right = fig.subplots(1, 2)
    for name in ("rnn", "gpt_kv_cache", "gpt_no_cache", "rwkv_serial"):
        if name in generation:
            label = LABELS[name] + (" = parallel mode's" if name == "rwkv_serial" else "")
            left.plot(generation[name]["lengths"], generation[name]["carried_floats"], "o-", label=label)
    _log_axes(left, f"State carried between tokens (width {WIDTH}, {LAYERS} layers)",
              "floats carried (state / KV cache / token ids)")
    mib = lambda floats: 4 * np.asarray(floats, dtype=np.float64) / 2**20     # noqa: E731  float32
    L, C = REAL_LAYERS, REAL_DIM
    right.plot(long_lengths, mib([kv_cache_floats(L, C, t) for t in long_lengths]), "-",
               label="GPT-2 small KV cache, 2 L T C")
    right.plot(long_lengths, mib([rwkv_state_floats(L, C)] * len(long_lengths)), "-",
               label="RWKV-4 169M state, 5 L C")
    right.plot(long_lengths, mib([rnn_state_floats(L, C, 2)] * len(long_lengths)), "--",
               label="LSTM state, 2 L C (same L, C)")
    _log_axes(right, f"At real sizes: L = {L}, C = {C}, float32 (from the formulas)", "memory per sequence (MiB)")
    fig.suptitle("State size against sequence length: a KV cache grows with T, an RNN's or RWKV's state does not")
    return finish(fig, path)


def make_figures(outdir, fast=False) -> dict:
    """Writes cost_vs_length.png and state_size_vs_length.png to ``outdir``; returns the numbers."""
    outdir = output_folder(outdir)
    lengths = [8, 16, 32, 64] if fast else [16, 32, 64, 128, 256, 512, 1024]
    repeats = 2 if fast else 3
    generation = measure_generation(lengths, repeats=repeats, no_cache_max_T=None if fast else 256)
    prompt = measure_prompt(lengths if fast else lengths + [2048], repeats=repeats)
    plot_cost(generation, prompt, outdir / "cost_vs_length.png")
    plot_state(generation, outdir / "state_size_vs_length.png")
    L, C = REAL_LAYERS, REAL_DIM
    return {"generation": generation, "prompt": prompt,
            "real_sizes_mib": {"rwkv_169m_state": 4 * rwkv_state_floats(L, C) / 2**20,
                               "gpt2_small_kv_cache_T1024": 4 * kv_cache_floats(L, C, 1024) / 2**20},
            "files": ["cost_vs_length.png", "state_size_vs_length.png"]}


def main(argv=None):
    experiment_main(make_figures, "Time per token and state size against T: RNN, GPT +/- KV cache, "
                                  "RWKV in parallel and serial mode.",
                    fast_help="short sequences, one repeat", argv=argv)


if __name__ == "__main__":
    main()
