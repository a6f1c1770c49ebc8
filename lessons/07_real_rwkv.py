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
# Lesson 06 built RWKV-4 from its equations. This lesson opens the model that BlinkDL trained with
# them: **RWKV-4 169M Pile**, 12 layers of width 768, a vocabulary of 50,277 GPT-NeoX tokens,
# trained on the 300 billion tokens of the Pile. It is the same code as lesson 06, with learned
# weights. We will
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
# (about 650 MB, into the Hugging Face cache, where this notebook finds it offline).

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
from tinyrwkv.exercises import check
from tinyrwkv.experiments import decay_spectrum as ds
from tinyrwkv.experiments import information_flow as flow
from tinyrwkv.loading import load_real_or_tiny
from tinyrwkv.models.rwkv import count_parameters, param_shapes

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
SEED = 0
print(f"FAST={FAST}")

# %% [markdown]
# ## 1. Load it
#
# `load_real_or_tiny` asks `find_local_model` (no network: the `TINYRWKV_MODEL` environment
# variable, then the Hugging Face cache) and loads what it finds, or falls back to the tiny model.

# %%
model, tokenizer, IS_REAL = load_real_or_tiny()
LABEL = ds.model_label(model, IS_REAL)
cfg = model.config
print(model)
print(LABEL)

# %% [markdown]
# Where the parameters are. The embedding and the head are each $V \times C$; every block has
# four $C \times C$ matrices in time-mix (key, value, receptance, output), and in channel-mix a
# $C \times C$ receptance and two $C \times F$ matrices with $F = 4C$, plus a few vectors of size $C$.
# That is $12\,C^2 + O(C)$ per block; at $C = 768$ and 12 blocks, 85 M, and the two $V \times C$ tables
# 77 M more.

# %%
shapes = param_shapes(cfg)
groups = {"embedding (emb)": ["emb.weight"], "head": ["head.weight"],
          "blocks: time-mix": [n for n in shapes if ".att." in n],
          "blocks: channel-mix": [n for n in shapes if ".ffn." in n],
          "layer norms": [n for n in shapes if ".ln" in n or n.startswith("ln")]}
total = count_parameters(cfg)
for group, names in groups.items():
    n = sum(int(np.prod(shapes[name])) for name in names)
    print(f"{group:22s} {n:>12,}  {100 * n / total:5.1f} %")
print(f"{'total':22s} {total:>12,}")
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
# A channel with time_decay $= -5$ keeps half of a token for about 100 tokens. One with time_decay
# $= 2$ forgets it within a fraction of a token: it sees only the current token (with its bonus
# $u$) and a trace of the previous one. Sorting the $C$ half-lives of a layer gives its
# **decay spectrum**:

# %%
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

# %% [markdown]
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
# The prompt runs in parallel mode, then each new token is one RNN-mode `step`.

# %%
if IS_REAL:
    prompts = ["The Eiffel Tower is located in the city of", "In a shocking finding, scientists discovered"]
    new_tokens = 12 if FAST else 40
else:
    prompts = ["The keeper named ", "Once upon a time "]
    new_tokens = 60 if FAST else 200
for prompt in prompts:
    t0 = time.perf_counter()
    greedy = tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=new_tokens, temperature=0)
    rate = new_tokens / (time.perf_counter() - t0)
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
