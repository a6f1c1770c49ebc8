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
# # 07 · The real RWKV-4 169M
#
# > **Objectives.** After this lesson you can
# > 1. load a released RWKV-4 checkpoint and account for every one of its parameters
# >    ($13\,C^2$ per block, computed from the parameter table);
# > 2. read a layer's decay spectrum (half-lives from `time_decay`) and its token-shift mixes;
# > 3. explain what temperature and top-p do to the next-token distribution, and generate;
# > 4. run causal tracing and say in which layers' states a fact travels.
# >
# > **Prerequisites.** Lesson 06 (WKV, time-mix, channel-mix, the notation below); lesson 00's
# > sampling. The real model is optional: without it every cell runs on the tiny model and says so.
# >
# > **Time.** about 50 minutes: reading 20 (1,631 words, 132 lines of code),
# > running 1 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
#
# Lesson 06 built RWKV-4 from its equations. This lesson opens the model that BlinkDL trained with
# them: **RWKV-4 169M Pile**, 12 layers of width 768, a vocabulary of 50,277 GPT-NeoX tokens
# (these sizes are printed from the configuration in section 1). It was trained on the Pile; its
# model card gives **332 billion tokens** ("Trained on the Pile for 332B tokens",
# [BlinkDL/rwkv-4-pile-169m](https://huggingface.co/BlinkDL/rwkv-4-pile-169m), the original
# checkpoint that [RWKV/rwkv-4-169m-pile](https://huggingface.co/RWKV/rwkv-4-169m-pile) converts).
# It is the same code as lesson 06, with learned weights.
#
# **Notation** (as in lesson 06, one symbol per meaning):
#
# | symbol | meaning | checkpoint name |
# |---|---|---|
# | $L$, $C$, $F$, $V$ | layers, width, channel-mix hidden width ($F = 4C$), vocabulary | `n_layer`, `n_embd`, `ffn_dim`, `vocab_size` |
# | $w$ | time-mix decay per token, **always $< 0$** | $w = -e^{\texttt{time\_decay}}$ |
# | $u$ | bonus of the current token | `time_first` |
# | $h_{1/2}$ | half-life in tokens, $\ln 2 / (-w)$ | |
# | $\mu$ | token-shift mix of one projection | `att.time_mix_k/_v/_r`, `ffn.time_mix_k/_r` |
# | $\tau$, $p$ | sampling temperature, top-p mass | `temperature`, `top_p` |
#
# We will
#
# 1. load it and check its shapes;
# 2. read its **decay spectrum**: how far back each channel of each layer remembers;
# 3. read its **token-shift mixes** per layer;
# 4. let it generate;
# 5. trace where it keeps a fact: the **information-propagation heatmap** of the RWKV paper for
#    "The Eiffel Tower is located in the city of".
#
# **If the 169M model is not on this machine**, every cell below runs on the tiny RWKV shipped with
# the package (4 layers of width 64, one character per token, trained on short tales), and says so.
# The download is one command, once, with internet: `tinyrwkv download RWKV/rwkv-4-169m-pile`
# (about 680 MB of float32 weights, into the Hugging Face cache, where this notebook finds it offline).

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time

import matplotlib.pyplot as plt
import numpy as np

import tinyrwkv
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments import decay_spectrum as ds
from tinyrwkv.experiments import information_flow as flow
from tinyrwkv.loading import load_real_or_tiny
from tinyrwkv.bench import REAL_169M as REAL_169M_SIZES
from tinyrwkv.models.rwkv import RWKVConfig, count_parameters, param_shapes
from tinyrwkv.models.rwkv_train import init_rwkv4_params

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
SEED = 0
print(f"FAST={FAST}")

# %% [markdown]
# ## 1. Load it

# %%
draw('rwkv_block')

# %% [markdown]
# `load_real_or_tiny` asks `find_local_model` (no network: the `TINYRWKV_MODEL` environment
# variable, then the Hugging Face cache) and loads what it finds, or falls back to the tiny model.

# %%
model, tokenizer, IS_REAL = load_real_or_tiny()
LABEL = ds.model_label(model, IS_REAL)
cfg = model.config
print(model)
print(LABEL)

# %% [markdown]
# Where the parameters are. The embedding and the head are each $V \times C$. Every block has four
# $C \times C$ matrices in time-mix (key, value, receptance, output) and, in channel-mix, a $C \times C$
# receptance, an $F \times C$ key and a $C \times F$ value with $F = 4C$: $4 + 1 + 4 + 4 = 13$ matrices'
# worth of $C^2$, plus 11 vectors of size $C$ (two layer norms with a weight and a bias each, `time_decay`,
# `time_first` and five `time_mix`). The table below is computed from the model's own parameter table
# (`param_shapes`), at the 169M configuration whether or not its weights are on this machine; the
# parts must add up to `count_parameters`.

# %%
def parameter_table(config):
    """group -> number of floats, from param_shapes(config); the groups partition every parameter."""
    shapes = param_shapes(config)
    size = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    groups = {"embedding (emb)": ["emb.weight"], "head": ["head.weight"],
              "blocks: time-mix matrices": [n for n in shapes if ".att." in n and len(shapes[n]) == 2],
              "blocks: channel-mix matrices": [n for n in shapes if ".ffn." in n and len(shapes[n]) == 2],
              "blocks: vectors (decay, bonus, mixes, norms)": [n for n in shapes if n.startswith("blocks.")
                                                              and len(shapes[n]) == 1],
              "ln0 and ln_out": [n for n in shapes if n.startswith(("ln0.", "ln_out."))]}
    table = {group: sum(size[n] for n in names) for group, names in groups.items()}
    assert sorted(n for names in groups.values() for n in names) == sorted(shapes), "groups must partition"
    return table


def print_parameter_table(config, title):
    table, total = parameter_table(config), count_parameters(config)
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    print(f"{title}: L = {L}, C = {C}, F = {config.ffn_dim}, V = {V:,}")
    for group, n in table.items():
        print(f"  {group:46s} {n:>12,}  {100 * n / total:5.1f} %")
    print(f"  {'total (count_parameters)':46s} {total:>12,}")
    per_block_matrices = (table["blocks: time-mix matrices"] + table["blocks: channel-mix matrices"]) // L
    per_block_vectors = table["blocks: vectors (decay, bonus, mixes, norms)"] // L
    print(f"  per block: {per_block_matrices:,} matrix weights = {per_block_matrices / C**2:g} C^2, "
          f"plus {per_block_vectors:,} = {per_block_vectors // C} C in vectors")
    print(f"  all {L} blocks: {L * (per_block_matrices + per_block_vectors):,};  emb + head: {2 * V * C:,};  "
          f"ln0 + ln_out: {table['ln0 and ln_out']:,};  sum: {sum(table.values()):,}")
    assert sum(table.values()) == total                               # the parts add up to the total
    assert per_block_matrices == 13 * C * C                           # with F = 4C
    return table, total


SIZES_169M = RWKVConfig(**REAL_169M_SIZES)      # the configuration of RWKV/rwkv-4-169m-pile
table_169m, total_169m = print_parameter_table(SIZES_169M, "RWKV-4 169M (from its configuration)")
if IS_REAL:
    assert count_parameters(cfg) == total_169m
else:
    print()
    print_parameter_table(cfg, "the model loaded here (the tiny one)")
shapes = param_shapes(cfg)
total = count_parameters(cfg)
assert total == model.num_parameters() == sum(int(np.prod(s)) for s in shapes.values())
C, F_dim, L = cfg.n_embd, cfg.ffn_dim, cfg.n_layer
assert model.params["blocks.0.att.key.weight"].shape == (C, C)
assert model.params["blocks.0.ffn.key.weight"].shape == (F_dim, C)
assert model.params["blocks.0.att.time_decay"].shape == (C,)
print("block 0:", {name.split(".", 2)[2]: shapes[name] for name in shapes if name.startswith("blocks.0.")})

# %% [markdown]
# ## 2. The decay spectrum
#
# In time-mix, each channel keeps a running, decaying sum of the past (lesson 06):
# $a_t = e^{w} a_{t-1} + e^{k_t} v_t$ with $w = -e^{\text{time\_decay}} < 0$, one value per channel.
# After $h$ tokens, a contribution has been multiplied by $e^{w h}$, so it is **halved** after
#
# $$ h_{1/2} = \frac{\ln 2}{-w} = \frac{\ln 2}{e^{\text{time\_decay}}} \ \text{tokens.} $$
#
# The decay starts counting one token back: the previous token's weight is never decayed (its bias
# is $(t-1-i)\,w = 0$, lesson 06), the one before it is multiplied by $e^{w}$, and so on. Two
# stored values as examples (printed below): time_decay $= -5$ gives a half-life of about a hundred
# tokens; time_decay $= 2$ gives less than a tenth of a token, so such a channel reads the current
# token (with its bonus $u$) and the previous one, and next to nothing older. Sorting the $C$
# half-lives of a layer gives its **decay spectrum**:

# %%
for td in (-5.0, 2.0):
    print(f"time_decay = {td:+.0f}: w = {-np.exp(td):.4f} per token, half-life ln2 / e^time_decay = "
          f"{np.log(2) / np.exp(td):.3g} tokens")
spectrum = ds.decay_spectrum(model)
print(f"half-lives, (layers, channels) = {spectrum['half_life'].shape}; per layer, in tokens:")
print(f"{'layer':>5} {'10 %':>8} {'median':>8} {'90 %':>8} {'longest':>10} {'> 10 tokens':>12}")
for layer in range(L):
    q10, q50, q90 = spectrum["quantiles"][layer]
    print(f"{layer:5d} {q10:8.2f} {q50:8.2f} {q90:8.2f} {spectrum['max'][layer]:10.1f} "
          f"{100 * spectrum['over_10'][layer]:11.0f}%")
assert spectrum["half_life"].shape == (L, C)
ds.plot_decay_spectrum(spectrum, LABEL, fig=plt.figure())
plt.show()
if not IS_REAL:
    # The tiny model's decays: how far did training move them from RWKV-4's initialisation?
    init = init_rwkv4_params(cfg, seed=0)
    moved = np.stack([np.abs(model.params[f"blocks.{l}.att.time_decay"] - init[f"blocks.{l}.att.time_decay"])
                      for l in range(L)])                                          # (L, C)
    print(f"TINY MODEL: |time_decay - its initial value|: median {np.median(moved):.3f}, max {moved.max():.3f} "
          f"(the initial values span {init['blocks.0.att.time_decay'].min():.0f} .. "
          f"{init['blocks.0.att.time_decay'].max():.0f}): this spectrum is mostly the initialisation")

# %% [markdown]
# **Which model is this?** The title and the label say it. The tiny model's spectrum is mostly
# its initialisation (the printed line above measures how little training moved it), so read it as
# a picture of RWKV-4's *initial* spread of memories; with the 169M downloaded, the same cell shows
# what 332B tokens of training made of them, and `tinyrwkv figures` redraws `figures/decay_spectrum.png`
# and `figures/time_mix.png` from it.
#
# What to look for. Within every layer the half-lives span orders of magnitude: each layer has
# fast channels that describe the last token or two and slow channels that average over a long
# stretch of text. This is RWKV's substitute for attention heads with different reaches. Across
# layers, compare the medians: the RWKV-4 initialisation (lesson 10) starts deeper layers with
# slower decays, and the decay plots in the RWKV paper show the same trend in trained models:
# more long-memory channels in later layers. Check in the table above whether training kept it
# in the model you loaded.
#
# ## 3. Token shift: how much of the previous token each projection reads
#
# Before its projections, each block mixes the current input with the previous token's,
# $\mu \odot x_t + (1-\mu) \odot x_{t-1}$, with one learned $\mu$ per channel for each of time-mix's key,
# value and receptance and channel-mix's key and receptance. $\mu$ near 1 reads the current token;
# near 0, the previous one. The boxes show the spread over channels, layer by layer.

# %%
mixes = ds.time_mix_values(model)
for name, values in mixes.items():
    print(f"{ds.MIX_NAMES[name]:24s} median per layer: {np.round(np.median(values, axis=1), 2)}")
assert all(v.shape == (L, C) for v in mixes.values())
ds.plot_time_mix(mixes, LABEL, fig=plt.figure())
plt.show()

# %% [markdown]
# Token shift is a 2-tap convolution over time, and it costs one vector of state per sublayer. It
# lets a block see pairs of neighbouring tokens (bigrams) that no single token could give it. The
# RWKV-4 initialisation (lesson 10) starts the lower layers with more of the previous token (a
# ramp of $\mu$ over the channels) and the deeper layers with $\mu$ close to 1; the medians above
# show how much of that pattern training kept. Values beyond $[0, 1]$ are allowed (nothing clips
# them) and mean extrapolating: $x_t + (\mu - 1)(x_t - x_{t-1})$.
#
# ## 4. Generate
#
# The prompt runs in parallel mode, then each new token is one RNN-mode `step`. The rate printed
# is tokens per second after a warm-up call, including the prompt (a fair number for short
# generations, not a benchmark: `tinyrwkv bench` measures against peers).

# %%
if IS_REAL:
    prompts = ["The Eiffel Tower is located in the city of", "In a shocking finding, scientists discovered"]
    new_tokens = 12 if FAST else 40
else:
    prompts = ["The keeper named ", "Once upon a time "]
    new_tokens = 60 if FAST else 200
# Warm-up: the first call compiles the Numba kernels and allocates buffers. Timing it would
# measure the compiler, not the model, so it runs once untimed before the clock starts.
tinyrwkv.generate(model, tokenizer, prompts[0], max_new_tokens=2, temperature=0)
for prompt in prompts:
    t0 = time.perf_counter()
    greedy = tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=new_tokens, temperature=0)
    rate = new_tokens / (time.perf_counter() - t0)                 # after the warm-up: steady state
    sampled = tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=new_tokens, temperature=0.8,
                                top_p=0.9, seed=SEED)
    print(f"greedy  ({rate:,.0f} tokens/s): {prompt + greedy!r}")
    print(f"top-p 0.9, temperature 0.8:  {prompt + sampled!r}\n")

# %% [markdown]
# ## 5. Where does the model keep a fact? The information-propagation heatmap
#
# The RWKV paper (appendix, "model behaviour") asks how a fact travels through the network,
# with the **causal tracing** of Meng et al. (2022). Take "The Eiffel Tower is located in the city
# of", for which the model says " Paris".
#
# 1. **Clean run**: record, at every layer and token, the block's output and the layer's
#    recurrent state ($x$ for the two token shifts, and WKV's $aa, bb, pp$).
# 2. **Corrupted run**: add Gaussian noise (3 times the standard deviation of the embedding
#    matrix) to the embeddings of the subject tokens, "Eiffel Tower". Now $P(\text{" Paris"})$ drops.
# 3. **Restore one place**: rerun the corrupted input, but at one layer $l$ and token $i$ put back
#    the clean output *and* the clean state after token $i$; recompute everything downstream and
#    read $P(\text{" Paris"})$ at the last token. Average over several noise draws.
#
# One heatmap cell per (token, layer) = how much of the answer that single clean place brings back.
# In a Transformer, the last token can read any earlier token at any layer through attention. In
# RWKV, what the subject tokens computed can only reach the last token through some layer's state,
# carried forward token by token. So the map shows in which layers the fact is looked up, and
# where it then travels along the sequence.
#
# Two checks are built into the method: rows *before* the subject restore nothing (they were never
# corrupted), and restoring the last layer at the last token gives back the clean probability exactly.
#
# The tiny model has never heard of Paris. With it we trace something a character-level model must
# carry along the sequence: whether a quotation is open. After `He smiled. "The sea is yours
# again.` it expects the closing `"`, and the only evidence is the opening `"`, 24 characters
# earlier. That single character is the "subject" we corrupt.

# %%
prompt, subject, answer = flow.REAL_PROMPT if IS_REAL else flow.TINY_PROMPT
n_noise = (1 if IS_REAL else 4) if FAST else 10            # 169M: ~10 s per noise draw on 2 cores
t0 = time.perf_counter()
trace = flow.trace_prompt(model, tokenizer, prompt, subject, answer, n_noise=n_noise, seed=SEED)
R = trace["restored"]                                                # (T, L)
print(f"{len(trace['tokens'])} tokens x {L} layers, {n_noise} noise draws, {time.perf_counter() - t0:.1f} s")
print(f"P({answer!r}): clean {trace['clean']:.3f}, subject corrupted {trace['corrupted']:.3f}")
before = trace["subject_positions"][0]
assert R.shape == (len(trace["tokens"]), L)
assert np.allclose(R[:before], trace["corrupted"], rtol=1e-4)        # nothing to restore before the subject
assert np.isclose(R[-1, -1], trace["clean"], rtol=1e-4)              # last layer, last token = the clean run
print("summary:", flow.summarize(trace))
flow.plot_trace(trace, LABEL, fig=plt.figure())
plt.show()

# %% [markdown]
# Reading the map. The bottom-right cell (last token, last layer) is the clean probability by
# construction, and the rows before the subject sit at the corrupted probability. The rows in
# between tell the story. Restoring the **subject** row brings the answer back at whichever layer
# it is restored, because from there the clean information flows upwards and forwards by itself.
# For a token *between* the subject and the end, only a layer whose recurrent state carries the
# information to later tokens can bring it back. So the columns that light up along those rows
# show **which layers carry the fact through time**:

# %%
subject_end, last = trace["subject_positions"][-1], len(trace["tokens"]) - 1
between = R[subject_end + 1:last]                                    # (tokens between, L)
if len(between):
    carried = between.mean(axis=0)
    for layer in range(L):
        print(f"layer {layer:2d}: restoring its state at a token between subject and end gives "
              f"P = {carried[layer]:.3f} on average  {'#' * int(40 * carried[layer] / max(trace['clean'], 1e-9))}")
    print(f"-> the information travels mostly in layer {int(np.argmax(carried))}'s state "
          f"(its median half-life: {spectrum['quantiles'][int(np.argmax(carried)), 1]:.1f} tokens)")

# %% [markdown]
# In the tiny model, the open quotation travels along the sentence in the state of the last
# layer, which (section 2) is also the layer with the longest memories; the lower layers' states
# do not carry it, even though they saw the same quote. The RWKV paper's figure (for the 430M
# model and the Eiffel Tower) reads in the same way: the fact is looked up at the subject in the
# lower layers, carried along the sequence in the recurrent state of some layers, and read out at
# the last token. With the real 169M model, the map above is that experiment.
#
# ## Summary
#
# * The released RWKV-4 169M runs on the same code as lesson 06: `tinyrwkv.load` + `step`/`forward`.
# * Each time-mix channel forgets at its own rate, with half-life $\ln 2 / e^{\text{time\_decay}}$
#   tokens; every layer spans short and long memories (its decay spectrum).
# * Token shift reads a learned blend of the current and previous token, per channel and projection.
# * Causal tracing corrupts the subject and restores one (layer, token) at a time: in RWKV,
#   information reaches the last token only through the recurrent state.
#
# ## Exercises

# %% tags=["exercise"]
def half_life(time_decay):
    """time_decay (C,) as stored in the checkpoint -> (C,) half-lives in tokens.

    The decay is w = -exp(time_decay): a contribution is multiplied by e^w per token. Return the
    number of tokens h after which it is halved (e^{w h} = 1/2).
    """
    raise NotImplementedError


check.half_life(half_life)


# %% tags=["exercise"]
def decay_summary(time_decay):
    """time_decay (L, C) for L layers -> (L, 3) array: per layer, the shortest, the median and the
    longest half-life (in tokens) over its C channels."""
    raise NotImplementedError


check.decay_summary(decay_summary)


# %% tags=["exercise"]
def top_p_filter(logits, p):
    """Nucleus (top-p) filtering of logits (V,), 0 < p <= 1.

    Sort the tokens by probability (softmax of the logits), most likely first, and keep the
    smallest set of them whose total probability reaches p: a token is kept if the probability of
    the tokens ahead of it is still below p (so the most likely one always is). Return (V,): the
    original logits of the kept tokens, -inf for the others.
    """
    raise NotImplementedError


check.top_p_filter(top_p_filter)

# %% [markdown]
# **Going further:** (1) Set the slowest 10 % of channels in one layer to a fast decay
# (`model.params["blocks.5.att.time_decay"][...]`) and see how generation on a long prompt
# changes. (2) Trace a fact of your own: `flow.trace_prompt(model, tokenizer, prompt, subject, answer)`.
# (3) Restore only the block output, not the state (edit `causal_trace`): how much of the answer comes
# back now?
#
# Next: [08 · Kernels](08_kernels.ipynb): the WKV loop that all of this runs on, from NumPy to `@njit` to `numba.cuda`.
