# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Cost and memory against sequence length
#
# > **Objectives.** After this lesson you can
# > 1. say what each model of the course carries from token to token, and count it from the model's own state;
# > 2. compute FLOPs per token for a GPT with a KV cache and for RWKV, and where attention overtakes the projections;
# > 3. measure time and memory per token against the context length, and read the trends;
# > 4. size a KV cache against RWKV's state at real model sizes.
# >
# > **Prerequisites.** Lessons 05 (KV cache) and 06 (RWKV's state).
# >
# > **Time.** about 45 minutes: reading 10 (972 words, 86 lines of code),
# > running 1 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
#
# Every model in this course reads a sequence one way or another. The practical questions are:
# **what does it carry** from one token to the next, and **what does the next token cost**, as the
# context grows to thousands of tokens? This lesson measures it for the whole lineage:
#
# | model | carried between tokens | cost of token $t$ (generating) | reading a $T$-token prompt |
# |---|---|---|---|
# | RNN / LSTM | $h$ (and $c$): $L \cdot C$ ($2 L C$) | $O(1)$ | $T$ sequential steps |
# | GPT, KV cache | every key and value: $2 L\, t\, C$ | $O(t)$ | parallel, $O(T^2)$ attention |
# | GPT, no cache | the token ids | $O(t^2)$: the whole prefix again | parallel, $O(T^2)$ |
# | RWKV, serial mode | $5 L C$ | $O(1)$ | $T$ sequential steps |
# | RWKV, parallel mode | the same $5 L C$ | (use serial mode) | parallel, $O(T)$ |
#
# We count the state from the models' own objects, compute FLOPs from the layer shapes, and
# time everything on the CPU at the same width and depth.

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.knobs import explore
from tinyrwkv.experiments.cost_and_memory import (LAYERS, VOCAB, WIDTH, gpt_flops_per_token, kv_cache_bytes,
                                                   measure_generation, measure_prompt, plot_cost, plot_state,
                                                   rwkv_flops_per_token, rwkv_state_floats, small_models,
                                                   state_floats)
from tinyrwkv.models.lstm import LSTMLanguageModel
from tinyrwkv.models.rwkv import RWKVConfig, RWKVState, param_shapes

FAST = os.environ.get("TINYRWKV_FAST") == "1"
GEN_LENGTHS = [8, 16, 32, 64] if FAST else [16, 32, 64, 128, 256, 512]
NO_CACHE_MAX_T = 64 if FAST else 128          # the cache-less GPT costs O(T^3) in all: stop it early
PROMPT_LENGTHS = [8, 16, 32, 64] if FAST else [16, 64, 256, 1024]
REPEATS = 1 if FAST else 3
SEED = 0
print(f"FAST={FAST}: generation up to T={GEN_LENGTHS[-1]}, prompts up to T={PROMPT_LENGTHS[-1]}; "
      f"models of width {WIDTH}, {LAYERS} layers, vocabulary {VOCAB}")

# %% [markdown]
# ## 1. What each model carries

# %%
draw('state_vs_kv_cache')

# %% [markdown]
# `small_models()` builds an RNN, a GPT and an RWKV of the same width $C$ and depth $L$ (the sizes
# of lesson 05's measurements). We add an LSTM. `state_floats(model, T)` feeds $T$ tokens through
# `model.step` and counts the floats in the state it returns: the real object, not a formula.

# %%
models = small_models(seed=SEED)
models["lstm"] = LSTMLanguageModel(VOCAB, hidden_size=WIDTH, num_layers=LAYERS, rng=np.random.default_rng(SEED))
print(f"{'T':>5} " + " ".join(f"{name:>8}" for name in models))
for T in (1, 16, 64):
    counts = {name: state_floats(model, T) for name, model in models.items()}
    print(f"{T:5d} " + " ".join(f"{counts[name]:8d}" for name in models))
    assert counts["rwkv"] == 5 * LAYERS * WIDTH and counts["gpt"] == 2 * LAYERS * T * WIDTH
    assert counts["rnn"] == LAYERS * WIDTH and counts["lstm"] == 2 * LAYERS * WIDTH
    assert all(counts[name] == model.state_size(T) for name, model in models.items())

# %% [markdown]
# What is inside, after 16 tokens: the GPT's cache holds a `(B, heads, T, C/heads)` key and value
# array per layer, and grows one row per token. RWKV's `RWKVState` holds five `(L, B, C)` arrays:
# the previous $x$ of time-mix and of channel-mix (for token shift), and WKV's $aa, bb, pp$.

# %%
gpt_state = models["gpt"].init_state(1)
rwkv_state = models["rwkv"].init_state(1)
for token in range(16):
    _, gpt_state = models["gpt"].step(np.array([token]), gpt_state)
    _, rwkv_state = models["rwkv"].step(np.array([token]), rwkv_state)
print("GPT KV cache, per layer:", [(keys.shape, values.shape) for keys, values in gpt_state["kv"]])
print("RWKV state:", {field: getattr(rwkv_state, field).shape for field in RWKVState.FIELDS})
assert gpt_state["kv"][0][0].shape[2] == 16 and rwkv_state.aa.shape == (LAYERS, 1, WIDTH)

# %% [markdown]
# ## 2. At real sizes
#
# RWKV-4 169M and GPT-2 small have the same shape: $L = 12$ layers of width $C = 768$. In float32:

# %%
L, C = 12, 768
print(f"RWKV-4 169M state: {rwkv_state_floats(L, C):,} floats = {4 * rwkv_state_floats(L, C) / 2**10:.0f} KiB, "
      f"at any context length")
for T in (1024, 8192, 100_000):
    print(f"GPT-2-small KV cache at T = {T:>7,}: {kv_cache_bytes(L, C, T) / 2**20:8,.0f} MiB per sequence, "
          f"{kv_cache_bytes(L, C, T, batch=32, bytes_per_float=2) / 2**30:6.1f} GiB for a batch of 32 in float16")

# %% [markdown]
# ## 3. FLOPs per token
#
# One generated token passes through every matrix once, which is about 2 FLOPs per weight (one
# multiply, one add). The GPT with a cache also attends to all $t$ cached keys and values:
#
# $$ \text{GPT + cache: } 2L\,(12 C^2 + 2 t C), \qquad \text{RWKV: } 2L \cdot 13\, C^2 . $$
#
# RWKV has slightly more weights per layer (channel-mix has a receptance matrix), but its cost
# per token does not grow. The matrix weights of the real RWKV config give the same number:

# %%
config = RWKVConfig(n_layer=L, n_embd=C, vocab_size=50277, ffn_dim=4 * C)
block_matrix_weights = sum(int(np.prod(shape)) for name, shape in param_shapes(config).items()
                           if name.startswith("blocks.") and len(shape) == 2)
print(f"RWKV-4 169M: {block_matrix_weights:,} matrix weights in its blocks -> 2 x that = "
      f"{2 * block_matrix_weights:,} = rwkv_flops_per_token = {rwkv_flops_per_token(L, C):,}")
assert 2 * block_matrix_weights == rwkv_flops_per_token(L, C)
for T in (128, 1024, 8192, 65536):
    ratio = gpt_flops_per_token(L, C, T) / rwkv_flops_per_token(L, C)
    print(f"token {T:>6,}: GPT + cache {gpt_flops_per_token(L, C, T) / 1e6:7.0f} MFLOP, "
          f"RWKV {rwkv_flops_per_token(L, C) / 1e6:5.0f} MFLOP  (GPT / RWKV = {ratio:.2f})")

# %% [markdown]
# Attention's share overtakes the projections when $2tC > 12C^2$, i.e. past $t = 6C$ (4608 tokens
# at $C = 768$). Below that, a KV cache makes generation cost about the same as RWKV's. The memory
# (section 2) is where the difference shows first.
#
# ## 4. Measured: time per token
#
# The experiment (`tinyrwkv.experiments.cost_and_memory`, which also draws
# `figures/cost_vs_length.png`) times two workloads:
#
# * **generating** $T$ tokens one at a time with `step` (RNN, GPT with its cache, RWKV in serial
#   mode), and the GPT without a cache, which reruns `forward` on the whole prefix for each token;
# * **reading a prompt** of $T$ tokens in one `forward` call (parallel mode), where the time per
#   token is the call time divided by $T$. It also records the peak memory of that call.
#
# Timings are wall clock at small sizes on a CPU. Python overhead is a large part of them, and a
# busy machine adds noise. Read the *trends*. The memory counts are exact.

# %%
generation = measure_generation(GEN_LENGTHS, repeats=REPEATS, seed=SEED, no_cache_max_T=NO_CACHE_MAX_T)
prompt = measure_prompt(PROMPT_LENGTHS, repeats=REPEATS, seed=SEED)
for name in ("rnn", "gpt_kv_cache", "gpt_no_cache", "rwkv_serial"):
    series = generation[name]
    print(f"generating, {name:13s}: " + ", ".join(f"T={T}: {ms:.3f}" for T, ms in zip(series["lengths"],
                                                                                 series["ms_per_token"])) + " ms/token")
for name in ("gpt_parallel", "rwkv_parallel", "rnn_parallel"):
    series = prompt[name]
    print(f"prompt, {name:14s}: " + ", ".join(f"T={T}: {mib:.2f}" for T, mib in zip(series["lengths"],
                                                                               series["peak_mib"])) + " MiB peak")
plot_cost(generation, prompt, fig=plt.figure())
plt.show()

# %% [markdown]
# ### Turn the knob: context length
#
# Pick a context length $t$ and read, for each model, what generating the next token costs there
# (measured above, ms per token) and what it carries (floats, from the models' own `state_size`).
# In a live notebook with `ipywidgets` the length is a slider; elsewhere a row of lengths. Move it
# right: the KV cache's bar grows in proportion, RWKV's and the RNN's do not move.

# %%
GEN_SERIES = {"rnn": "RNN", "gpt_kv_cache": "GPT + cache", "gpt_no_cache": "GPT, no cache", "rwkv_serial": "RWKV"}


def draw_context(ax, t):
    """Measured ms/token (bars) and floats carried (dots, right axis) of each model at context length t."""
    names = list(GEN_SERIES)
    ms = [dict(zip(generation[n]["lengths"], generation[n]["ms_per_token"])).get(t, np.nan) for n in names]
    floats = [dict(zip(generation[n]["lengths"], generation[n]["carried_floats"])).get(t, np.nan) for n in names]
    ax.bar(np.arange(len(names)), ms, color="tab:blue")
    ax.set_ylabel("ms per token (measured)", color="tab:blue")
    ax.set_ylim(0, 1.1 * max(max(generation[n]["ms_per_token"]) for n in names))
    ax.set_xticks(np.arange(len(names)), [GEN_SERIES[n] for n in names], fontsize=7, rotation=20)
    right = ax.twinx()
    right.plot(np.arange(len(names)), floats, "o", color="tab:red")
    right.set_ylabel("floats carried", color="tab:red")
    right.set_ylim(0, 1.1 * max(max(generation[n]["carried_floats"]) for n in names))


knob_view = explore(draw_context, {"t": GEN_LENGTHS}, static={"t": [GEN_LENGTHS[0], GEN_LENGTHS[len(GEN_LENGTHS) // 2], GEN_LENGTHS[-1]]},
                    title="cost of the next token at context length t", sharey=False, panel_size=(4.6, 3.4))

# %% [markdown]
# Read the three panels:
#
# * **generating**: the cache-less GPT climbs steeply, since each token reruns a forward over the
#   prefix. The GPT with a cache and RWKV in serial mode stay almost flat at these sizes: the cache's
#   $O(t)$ attention only catches up with the $12C^2$ projections near $t = 6C$ (section 3; 384 tokens
#   at this width), and Python's per-call overhead dominates both anyway. The plain RNN is the
#   cheapest of all, because it has the least to compute;
# * **reading a prompt**: one parallel call turns $T$ matrix-vector products into one
#   matrix-matrix product, so RWKV's parallel mode reads a prompt far faster per token than its
#   serial mode generates. This is why `tinyrwkv.generate` runs the prompt in parallel mode and
#   continues in serial mode from the state it returns;
# * **peak memory of that call**: GPT materialises $T \times T$ attention weights per head and layer
#   ($O(T^2)$), while RWKV keeps only $(T, C)$ activations ($O(T)$). The gap widens with $T$.
#
# ## 5. State size against $T$
#
# The floats carried between tokens, counted from the objects above (left), and at real sizes
# from the formulas (right; the same plot as `figures/state_size_vs_length.png`):

# %%
plot_state(generation, fig=plt.figure())
plt.show()

# %% [markdown]
# ## Summary
#
# * An RNN carries $L C$ floats ($2 L C$ for the LSTM), RWKV-4 carries $5 L C$: constant in $T$.
#   That is 180 KiB at 169M sizes.
# * A GPT's KV cache carries $2 L T C$ floats, linear in $T$: 72 MiB per sequence at $T = 1024$ for
#   GPT-2 small, and gigabytes for long contexts and batches.
# * Per generated token: GPT + cache costs $2L(12C^2 + 2tC)$ FLOPs, growing with $t$. RWKV costs
#   $2L \cdot 13C^2$, forever. The GPT without a cache reruns the prefix, $O(t^2)$ per token.
# * Reading a prompt in parallel, RWKV's memory grows like $O(T)$ and GPT's like $O(T^2)$. RWKV's
#   parallel and serial modes hand each other the same state.
#
# ## Exercises

# %% tags=["exercise"]
def state_floats(L, C, T):
    """Floats carried between tokens, per sequence, after T tokens, for L layers of width C.

    Return a dict with keys "rnn" (Elman), "lstm", "gpt_kv_cache" and "rwkv" (RWKV-4).
    """
    raise NotImplementedError


check.state_floats(state_floats)


# %% tags=["exercise"]
def flops_per_token(L, C, T):
    """FLOPs of the matrix products for ONE generated token; 2 FLOPs per multiply-add.

    Return {"gpt_kv_cache": ..., "rwkv": ...}. The GPT (FFN width 4C) attends to a cache of T tokens
    (the new one included): count its q, k, v, o projections, its FFN, the T scores and the weighted
    sum of T values. RWKV-4: time-mix's k, v, r, o and channel-mix's key (4C x C), value (C x 4C) and
    receptance (C x C). Leave out embeddings, the head, layer norms, softmax and WKV's O(C) work.
    """
    raise NotImplementedError


check.flops_per_token(flops_per_token)


# %% tags=["exercise"]
def kv_cache_bytes(L, C, T, batch, bytes_per_float):
    """Bytes of the KV cache of `batch` sequences of T tokens each, for L layers of width C."""
    raise NotImplementedError


check.kv_cache_bytes(kv_cache_bytes)

# %% [markdown]
# **Going further:** (1) Add a sliding-window GPT (keep only the last $W$ keys) to
# `measure_generation`: what does it carry, and what does it forget? (2) Run
# `python -m tinyrwkv.experiments.cost_and_memory --out /tmp/figs` for the full-size figures, and with
# `small_rwkv(backend="numba")`: how much of RWKV's serial time is the WKV kernel?
#
# Next: [10 · Training](10_training.ipynb). A tiny RWKV against a tiny GPT and an LSTM.
