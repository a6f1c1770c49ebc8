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
# # 06 · From attention to AFT to RWKV
#
# > **Objectives.** After this lesson you can
# > 1. derive RWKV-4's WKV operator from softmax attention through AFT, and say which checkpoint
# >    tensor is which symbol (`time_decay` → $w$, `time_first` → $u$, `time_mix_*` → $\mu$);
# > 2. show that WKV's closed form equals a recurrence over a state $(a, b)$, and why that
# >    recurrence carries a running max $pp$ that starts at $-10^{38}$;
# > 3. derive the WKV backward pass by running the recurrence backwards in time;
# > 4. assemble token shift, time-mix and channel-mix into a block whose parallel mode equals its
# >    serial mode, and name one thing a fixed-size state cannot do (measured in section 8).
# >
# > **Prerequisites.** Lesson 05 (softmax attention, the KV cache); lesson 01's backpropagation
# > through time for section 7; NumPy broadcasting.
# >
# > **Time.** about 75 minutes: reading 35 (3,145 words, 212 lines of code),
# > running 1 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# Lesson 05 ended with the Transformer's bill: every token looks at every earlier token, so a
# sequence costs $O(T^2)$, and generating needs a KV cache that grows with $T$. RNNs (lessons
# 01–03) had the opposite trade: a fixed-size state and $O(1)$ per token, but training had to walk
# through time one step after another.
#
# RWKV keeps both good halves. It trains in parallel like a Transformer and runs like an RNN, and
# the two modes compute *exactly* the same numbers. This lesson takes the path from softmax
# attention to RWKV-4 one step at a time:
#
# 1. softmax attention, written as a weighted average;
# 2. **AFT** (the Attention Free Transformer): drop the query–key dot product, add position biases;
# 3. **WKV**, RWKV's choice of bias: a per-channel decay $w$ and a bonus $u$. Its closed form equals a
#    recurrence, and we look at the attention matrix it hides;
# 4. why the recurrence carries a **running max** (watch it overflow without one);
# 5. **token shift**, **time-mix** and **channel-mix**: the two halves of an RWKV block;
# 6. a small RWKV whose **parallel mode equals its serial mode**, with a state whose size does not grow;
# 7. the **backward** of WKV, derived step by step;
# 8. what a fixed-size state **cannot** do: recalling an early token, RWKV-4 against a GPT of equal size.
#
# **Notation** (one symbol, one meaning, for the whole lesson; shapes for one sequence):
#
# | symbol | meaning | in the checkpoint / the code |
# |---|---|---|
# | $t$, $i$ | the current position and an earlier one, $i \le t$ | |
# | $T$, $C$, $D$ | sequence length, channels (model width), head size of softmax attention | |
# | $x_t$ | the input of a sublayer at position $t$, $(C,)$ | |
# | $q_t, k_t, v_t$ | query, key, value: $(D,)$ in softmax attention, $(C,)$ in AFT and RWKV | `att.key.weight` $= W_k$, `att.value.weight` $= W_v$ |
# | $r_t$ | receptance: the gate $\sigma(r_t)$ on the WKV output (AFT's $\sigma(q_t)$) | `att.receptance.weight` $= W_r$ |
# | $W_o$ | the output projection of time-mix | `att.output.weight` |
# | $\beta_{t,i}$ | AFT's learned pairwise position bias: a full $T \times T$ table | (AFT only) |
# | $w$ | RWKV's per-channel decay per step, **always $w < 0$** | $w = -e^{\texttt{time\_decay}}$ |
# | $u$ | RWKV's per-channel bonus for the current token | `time_first` |
# | $\mu_k, \mu_v, \mu_r$ | token-shift mixes, one per channel and projection | `time_mix_k`, `time_mix_v`, `time_mix_r` |
# | $a_t$, $b_t$ | WKV's numerator and denominator over tokens $\le t$ | |
# | $aa_t$, $bb_t$, $pp_t$ | what is stored: $a_t e^{-pp_t}$, $b_t e^{-pp_t}$ and the exponent $pp_t$ | `RWKVState.aa`, `.bb`, `.pp` |
# | $m$, $m'$ | the larger exponent in the output step and in the state step | `q`, `p` in `wkv_numpy.py` |
# | $g_t$, $\alpha_t$, $\beta_t$, $Z_t$ | backward: $\partial L/\partial y_t$, $\partial L/\partial a_t$, $\partial L/\partial b_t$; the output's denominator | `gy`, `ga`, `gb` (scaled) |

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments.rwkv_wkv_maps import (BONUS_U, CHANNELS, aft_weights, compute_maps, plot_maps,
                                                rwkv_position_bias, wkv_attention_matrix)
from tinyrwkv.knobs import explore
from tinyrwkv.kernels import get_wkv, wkv_numpy
from tinyrwkv.models.rwkv import RWKV, RWKVConfig, RWKVState, channel_mix, init_params, time_mix, token_shift
from tinyrwkv.nn.attention import causal_mask, scaled_dot_product_attention

FAST = os.environ.get("TINYRWKV_FAST") == "1"         # CI: small and quick
T_MAP = 16 if FAST else 32                             # tokens in the attention-map figure
T_MODEL = 24 if FAST else 200                          # tokens fed to the small RWKV
SEED = 0
rng = np.random.default_rng(SEED)
print(f"FAST={FAST}: maps over {T_MAP} tokens, the small RWKV reads {T_MODEL} tokens")

# %% [markdown]
# ## 1. Softmax attention is a weighted average
#
# For one query $t$, causal attention averages the values $v_i$ of the tokens $i \le t$ with weights
# that come from a softmax over scores:
#
# $$ y_t = \frac{\sum_{i \le t} e^{\,q_t \cdot k_i / \sqrt{D}}\; v_i}{\sum_{i \le t} e^{\,q_t \cdot k_i / \sqrt{D}}} . $$
#
# Every pair $(t, i)$ gets its own score $q_t \cdot k_i$: that is the $T \times T$ matrix, and the
# reason the cost is quadratic. Nothing in the formula can be carried from $t$ to $t+1$, because the
# query changes and every old score must be recomputed against it.

# %%
T, D = 6, 8
q, k, v = rng.normal(size=(3, T, D))                               # (T, D) each, one head, no batch
y, weights = scaled_dot_product_attention(q, k, v, causal_mask(T))
by_hand = np.exp(q @ k.T / np.sqrt(D)) * causal_mask(T)           # (T, T) unnormalised weights
by_hand = (by_hand / by_hand.sum(axis=1, keepdims=True)) @ v      # the weighted average above
print("y", y.shape, " weights", weights.shape, " max |y - by hand| =", np.abs(y - by_hand).max())
assert y.shape == (T, D) and weights.shape == (T, T) and np.allclose(y, by_hand)

# %% [markdown]
# ## 2. AFT: attention without the dot product
#
# The Attention Free Transformer (Zhai et al., 2021) keeps the weighted average but changes where
# the weights come from. Each **channel** $c$ is averaged on its own, and the score of token $i$ seen
# from $t$ is the key plus a learned **position bias** $\beta_{t,i}$:
#
# $$ y_t = \sigma(q_t) \odot \frac{\sum_{i \le t} e^{\,k_i + \beta_{t,i}} \odot v_i}{\sum_{i \le t} e^{\,k_i + \beta_{t,i}}} . $$
#
# There is no $q_t \cdot k_i$ any more: the query only gates the result through a sigmoid. Still,
# $\beta_{t,i}$ is a full $T \times T$ table, so AFT-full remains quadratic. Per channel, it is a softmax
# over $\beta_{t,i} + k_i$ (`aft_weights` below, with $-\infty$ for future tokens).
#
# RWKV makes one decisive choice: the bias depends only on the **distance**, linearly, at a
# per-channel rate $w < 0$, and the current token gets a separate bonus $u$:
#
# $$ \beta_{t,i} = (t-1-i)\, w \quad (i < t), \qquad \beta_{t,t} = u . $$
#
# Note the $t-1-i$: the previous token ($i = t-1$) gets bias $0$, it is **not decayed at all**; the
# one before it gets $w$, then $2w$, and so on. The checkpoint does not store $w$ itself: it stores
# `time_decay`, and the model computes $w = -e^{\texttt{time\_decay}}$, which is negative for any
# stored value. `time_first` is $u$ as stored. A linear bias means that moving from $t$ to $t+1$
# multiplies every old weight by the same factor $e^{w}$. Because of that, the sums can be
# *carried* from one step to the next instead of being recomputed.

# %%
print(inspect.getsource(rwkv_position_bias))
time_decay = np.log(0.5)                                           # as a checkpoint stores it
w_demo = -np.exp(time_decay)                                       # the decay the model uses: -0.5 < 0
bias = rwkv_position_bias(w=w_demo, u=0.3, T=5)
print("RWKV's position bias for T = 5 (w = -0.5, u = 0.3):\n", np.round(bias, 2) + 0.0)   # + 0.0: no "-0."
k1 = rng.normal(size=5)                                            # one channel's keys
A = aft_weights(k1, bias)                                          # (T, T)
print("AFT weights with that bias (rows sum to 1):\n", np.round(A, 3))
assert A.shape == (5, 5) and np.allclose(A.sum(axis=1), 1) and np.all(np.triu(A, 1) == 0)

# %% [markdown]
# ## 3. WKV: the closed form and the recurrence

# %%
draw('wkv_state')

# %% [markdown]
# With RWKV's bias, one channel of the weighted average is the **WKV** operator (the name comes from
# $w$, $k$ and $v$):
#
# $$ \mathrm{wkv}_t = \frac{\sum_{i<t} e^{(t-1-i)w + k_i}\, v_i \;+\; e^{u + k_t}\, v_t}
#                          {\sum_{i<t} e^{(t-1-i)w + k_i} \;+\; e^{u + k_t}} . $$
#
# Call the past parts $a_{t-1}$ (numerator) and $b_{t-1}$ (denominator). They obey a recurrence:
#
# $$ a_t = e^{w} a_{t-1} + e^{k_t} v_t, \qquad b_t = e^{w} b_{t-1} + e^{k_t}, \qquad
#    \mathrm{wkv}_t = \frac{a_{t-1} + e^{u+k_t} v_t}{b_{t-1} + e^{u+k_t}} . $$
#
# Each step costs $O(C)$ and needs only $(a, b)$ per channel. That is an RNN! The closed form is
# $O(T^2)$ and exists for teaching. The recurrence is what runs. `tinyrwkv/kernels/wkv_numpy.py`
# has both; here they meet on random inputs, shapes `(B, T, C)`.

# %%
B, T, C = 2, 12, 5
w = -np.exp(rng.normal(size=C))                                    # (C,) decays, w < 0
u = rng.normal(size=C)                                             # (C,) bonuses
k, v = rng.normal(size=(2, B, T, C))                               # (B, T, C) each
y_closed = wkv_numpy.wkv_closed_form(w, u, k, v)                   # O(T^2): the sums written out
y_recur, (aa, bb, pp) = wkv_numpy.wkv_forward(w, u, k, v)          # O(T): the recurrence
print("closed form", y_closed.shape, " recurrence", y_recur.shape, " state", aa.shape, bb.shape, pp.shape)
print("max |closed form - recurrence| =", np.abs(y_closed - y_recur).max())
assert y_recur.shape == (B, T, C) and aa.shape == (B, C)
assert np.allclose(y_closed, y_recur, atol=1e-12)

# The implied attention matrix reproduces the same numbers: wkv = A @ v, channel by channel.
for c in range(C):
    A = wkv_attention_matrix(w[c], u[c], k[0, :, c])              # (T, T)
    assert np.allclose(A @ v[0, :, c], y_recur[0, :, c], atol=1e-12)
print("for every channel, wkv = A @ v with A = softmax over (position bias + key)")

# %% [markdown]
# ### What does WKV attend to?
#
# No one builds the $T \times T$ matrix when running RWKV, but we can build it to *look* at it.
# Below (from `tinyrwkv.experiments.rwkv_wkv_maps`, which also makes `figures/wkv_attention_maps.png`):
# a causal softmax attention map with random $q, k$, next to WKV's implied weights for three
# channels with slow, medium and fast decay, all reading the same random keys.

# %%
maps = compute_maps(T_MAP, seed=SEED)
k_last = maps["k"]                                                # (T,) the keys all three channels read
print(f"keys of the last three tokens: k[T-3] = {k_last[-3]:.2f}, k[T-2] = {k_last[-2]:.2f} (previous), "
      f"k[T-1] = {k_last[-1]:.2f} (current); bonus u = {BONUS_U}")
for label, A in maps["wkv"].items():
    row = A[-1]                                                   # what the last token looks at, (T,)
    print(f"{label:15s} (w = {CHANNELS[label]:5.2f}): current {row[-1]:.2f}, previous {row[-2]:.2f}, "
          f"older {row[:-2].sum():.2f};  mean distance {row[::-1] @ np.arange(T_MAP):5.2f} tokens;  "
          f"max |A v - wkv_forward| = {maps['max_abs_diff'][label]:.1e}")
plot_maps(maps, fig=plt.figure())                                 # draw with pyplot: shown inline
plt.show()

# What decides the fast channel's split between the current and the previous token: their scores.
fast = maps["wkv"]["fast channel"][-1]
score_now, score_prev = BONUS_U + k_last[-1], 0.0 + k_last[-2]    # bias u vs bias (t-1-i) w = 0 for i = t-1
print(f"fast channel: score of the current token u + k = {score_now:.2f}, of the previous one 0 * w + k = "
      f"{score_prev:.2f};  current / previous weight = e^(score difference) = {np.exp(score_now - score_prev):.2f}"
      f" = {fast[-1] / fast[-2]:.2f} measured")
assert np.isclose(fast[-1] / fast[-2], np.exp(score_now - score_prev))

# %% [markdown]
# Read the picture:
#
# * softmax attention can put its weight anywhere: the query decides, token by token;
# * a WKV channel always looks back the same way. Beyond the previous token its weights fall by a
#   factor $e^{w}$ per step (straight lines on the log plot), with the keys $k_i$ nudging individual
#   tokens up or down. A **slow** channel ($w \approx 0$) averages over a long window: its "older"
#   share above is most of its weight;
# * a **fast** channel ($w = -3$: each step back multiplies a weight by $e^{-3} \approx 0.05$) puts
#   almost all its weight on **two** tokens, the current and the previous one (their shares above
#   add up to nearly 1). How it splits them is *not* "mostly the current token": with the $(t-1-i)$
#   convention the previous token's bias is $0$, never decayed, while the current token's is $u$. So
#   the split is $e^{u + k_t}$ against $e^{k_{t-1}}$, which the last printed line checks. With a
#   small bonus and a large previous key, the previous token can take most of the weight (run with
#   `TINYRWKV_FAST=1` and with it unset: the two sizes draw different keys and split differently);
# * RWKV-4 has $C$ channels per layer (768 in the 169M model), each with its own decay. So the
#   model gets a whole spectrum of memory lengths, learned, instead of query-dependent lookups.
#   Lesson 07 shows the spectrum of the real model.
#
# ### Turn the knobs: $w$ and $u$
#
# Set every key to 0, so that only the position bias speaks, and look at the weights one token
# gives to the tokens 0, 1, 2, ... steps back, for a few decays $w$ and bonuses $u$. In a live
# notebook (with `ipywidgets`) these are sliders; in a script or CI, a grid of settings. Look for:
# the bar at distance 1 never shrinks relative to the others when $w$ changes (its bias is 0); $u$
# moves weight between the current token and all the rest; $w$ decides how fast the tail dies.

# %%
def draw_weights(ax, w, u, n_back=12):
    """The weights wkv gives to the tokens 0..n_back-1 steps back (all keys 0), for decay w and bonus u."""
    row = wkv_attention_matrix(w, u, np.zeros(n_back))[-1, ::-1]   # (n_back,): distance 0 first
    ax.bar(np.arange(n_back), row, color=["tab:red"] + ["tab:blue"] * (n_back - 1))
    ax.set_xticks(np.arange(0, n_back, 2))
    ax.set_xlabel("distance back (0 = current token)")
    ax.set_ylabel("weight")
    ax.set_ylim(0, 1)


knob_view = explore(draw_weights, {"w": [-3.0, -1.0, -0.5, -0.2, -0.05], "u": [-1.0, 0.0, 1.0, 2.0]},
                    static={"w": [-3.0, -0.5, -0.05], "u": [-1.0, 1.0]},
                    title="WKV weights over distance (keys 0)")
row = wkv_attention_matrix(-3.0, 0.0, np.zeros(12))[-1, ::-1]
print(f"w = -3, u = 0, keys 0: current {row[0]:.3f}, previous {row[1]:.3f} (equal: both biases are 0), "
      f"two back {row[2]:.3f} (= previous x e^w = {row[1] * np.exp(-3.0):.3f})")
assert np.isclose(row[0], row[1]) and np.isclose(row[2], row[1] * np.exp(-3.0))

# %% [markdown]
# ## 4. Why the running max: overflow
#
# The recurrence above multiplies by $e^{k_t}$. In float32, $e^{x}$ overflows past $x \approx 88.7$.
# Keys are not that large in a trained model, but the sums grow over long contexts, and nothing
# *bounds* $k$. The fix is a property of WKV: adding the same constant to every exponent changes
# nothing, since it cancels between numerator and denominator. So we store
#
# $$ aa_t = a_t\, e^{-pp_t}, \qquad bb_t = b_t\, e^{-pp_t}, \qquad pp_t = \text{the largest exponent so far (decayed)}, $$
#
# and every `exp()` gets a non-positive argument. Shifting all keys by $+100$ shows the problem and the fix:

# %%
k32, v32 = k.astype(np.float32), v.astype(np.float32)
w32, u32 = w.astype(np.float32), u.astype(np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    y_naive = wkv_numpy.wkv_closed_form(w32, u32, k32 + 100, v32)  # e^100 = inf in float32
y_shifted, _ = wkv_numpy.wkv_forward(w32, u32, k32 + 100, v32)
y_plain, _ = wkv_numpy.wkv_forward(w32, u32, k32, v32)
print("closed form with k + 100:     finite?", np.isfinite(y_naive).all(), "(e^100 overflows float32: inf / inf = NaN)")
print("stable recurrence with k + 100: finite?", np.isfinite(y_shifted).all(),
      f", and equal to k + 0: max diff {np.abs(y_shifted - y_plain).max():.1e}")
assert not np.isfinite(y_naive).all() and np.allclose(y_shifted, y_plain, atol=1e-5)

# %% [markdown]
# One step of the stable recurrence. The output and the state update each compare two exponents
# and keep the larger one as the unit, so the other one's `exp()` sees a number $\le 0$:
#
# $$ \text{output: } m = \max(pp, u + k_t), \qquad
#    y_t = \frac{e^{pp - m}\, aa + e^{u + k_t - m}\, v_t}{e^{pp - m}\, bb + e^{u + k_t - m}} ; $$
#
# $$ \text{state: } m' = \max(pp + w, k_t), \qquad aa' = e^{pp + w - m'}\, aa + e^{k_t - m'}\, v_t, \qquad
#    bb' = e^{pp + w - m'}\, bb + e^{k_t - m'}, \qquad pp' = m' . $$
#
# ($m$ and $m'$ are the two maxima; the code and the docstring of `wkv_numpy.py` call them `q` and `p`,
# but in this lesson $q$ is the query.)
#
# Writing this step in code is the exercise `wkv_stable_step` at the end of the lesson (the
# library's version, `stable_step` in `tinyrwkv/kernels/wkv_numpy.py`, is for after you have tried).
# The state $(aa, bb, pp)$ is three numbers per channel. It is exactly what RWKV carries in RNN mode.
#
# ### The empty state: why $pp$ starts at $-10^{38}$ and not at $-\infty$
#
# Before the first token there is no past: $a = b = 0$. In stored form $aa = bb = 0$, and $pp$ should
# be "the largest exponent of nothing", $-\infty$, so that the first $\max$ picks the first token's
# own exponent and $e^{pp - m} = 0$ removes the (empty) past. Any $pp$ works as a unit for
# $aa = bb = 0$, so what matters is only that $pp - \max(\dots)$ **stays a number**. With a true
# `-inf`, one expression with two infinities ($-\infty - (-\infty)$) gives NaN, and a NaN spreads
# to every later token. With $-10^{38}$ (finite; float32 reaches $\pm 3.4 \cdot 10^{38}$), $e^{-10^{38} - q}$
# underflows to exactly $0$, and $-10^{38} - (-10^{38}) = 0$ is harmless.
#
# A padded position shows the difference. A token that should contribute nothing (a pad) has
# weight $e^{k} = 0$, i.e. $k = -\infty$. Starting from the empty state, it meets $pp$ in
# $\max(pp + w, k)$:

# %%
w1, u1 = np.array([-0.5]), np.array([0.3])                        # one channel
k_pad = np.array([[[-np.inf], [0.2], [1.0]]])                      # (B=1, T=3, C=1): a pad, then two tokens
v_pad = np.array([[[5.0], [1.0], [2.0]]])
y_unpadded, _ = wkv_numpy.wkv_forward(w1, u1, k_pad[:, 1:], v_pad[:, 1:])
for pp0 in (-np.inf, wkv_numpy.NEG_INF):
    empty = (np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), pp0))
    with np.errstate(invalid="ignore"):
        y_pad, _ = wkv_numpy.wkv_forward(w1, u1, k_pad, v_pad, empty)
    print(f"pp starts at {pp0:8.0e}: outputs after the pad {y_pad[0, 1:, 0]}, without the pad {y_unpadded[0, :, 0]}")
print("wkv_numpy.initial_state(1, 1) =", [s.ravel()[0] for s in wkv_numpy.initial_state(1, 1)])
with np.errstate(invalid="ignore"):
    y_inf, _ = wkv_numpy.wkv_forward(w1, u1, k_pad, v_pad, (np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), -np.inf)))
y_fin, _ = wkv_numpy.wkv_forward(w1, u1, k_pad, v_pad)            # state=None: the empty state, pp = -1e38
assert np.isnan(y_inf[0, 1:]).all() and np.array_equal(y_fin[0, 1:], y_unpadded[0])

# %% [markdown]
# With $-\infty$ the pad poisons everything after it. With $-10^{38}$ the pad is exactly
# equivalent to no token at all: the empty state behaves like any number of zero-weight tokens in
# front of the sequence, for the WKV sums. (The pad's own output is $0/0$, but nothing reads it.)
# BlinkDL's CUDA kernel starts from the same value (`#define MIN_VALUE (-1e38)` in `cuda/operators.cu`
# of the `rwkv` pip package, 0.8.32); so do tinyrwkv's three backends (`NEG_INF` in `wkv_numpy.py`).
#
# ## 5. Token shift, time-mix and channel-mix

# %%
draw('token_shift')

# %% [markdown]
# WKV averages over the past, but a model also wants to compare a token with its **neighbour** (is
# this "New" followed by "York"?). RWKV gets that cheaply with **token shift**. Every projection
# sees a per-channel blend of the current input and the previous one,
#
# $$ \mathrm{mix}_\mu(x_t, x_{t-1}) = \mu \odot x_t + (1 - \mu) \odot x_{t-1}, \qquad \mu \in [0, 1]^C \text{ learned}, $$
#
# like a 2-tap convolution over time. In parallel mode, shifting is just a concatenation. In RNN
# mode, the previous $x$ is one more vector in the state.

# %%
x = rng.normal(size=(2, 4, 3)).astype(np.float32)                  # (B, T, C)
x_prev = np.zeros((2, 3), np.float32)                             # no past: zeros
shifted = token_shift(x, x_prev)                                   # (B, T, C): x_{t-1}
print("x[0]:\n", np.round(x[0], 2), "\ntoken_shift(x)[0]:\n", np.round(shifted[0], 2))
assert shifted.shape == x.shape and np.array_equal(shifted[:, 1:], x[:, :-1])
mu = np.array([1.0, 0.5, 0.0], np.float32)                        # channel 0: now; 1: half-half; 2: previous
mixed = mu * x + (1 - mu) * shifted                                 # (B, T, C)
print("mix with mu = (1, 0.5, 0):\n", np.round(mixed[0], 2))

# %%
draw('rwkv_block')

# %% [markdown]
# An RWKV-4 block is two residual sublayers, each with its own token shift:
#
# **Time-mix** (mixes across time; it replaces attention):
#
# $$ k_t = W_k\, \mathrm{mix}_{\mu_k}, \quad v_t = W_v\, \mathrm{mix}_{\mu_v}, \quad r_t = W_r\, \mathrm{mix}_{\mu_r}, \qquad
#    o_t = W_o\, \big(\sigma(r_t) \odot \mathrm{wkv}_t(w, u, k, v)\big) . $$
#
# The **receptance** $r$ plays AFT's $\sigma(q)$: a gate on what the channel lets through. In the
# checkpoint: $W_k, W_v, W_r, W_o$ = `att.key.weight`, `att.value.weight`, `att.receptance.weight`,
# `att.output.weight`; $\mu_k, \mu_v, \mu_r$ = `att.time_mix_k`, `att.time_mix_v`, `att.time_mix_r`;
# $w, u$ from `att.time_decay`, `att.time_first`.
#
# **Channel-mix** (mixes across channels; it is the MLP). Its tensors are different ones, so they
# get primes:
#
# $$ k'_t = W'_k\, \mathrm{mix}_{\mu'_k}, \quad r'_t = W'_r\, \mathrm{mix}_{\mu'_r}, \qquad
#    o'_t = \sigma(r'_t) \odot W'_v\, \mathrm{relu}(k'_t)^2 , $$
#
# with a squared ReLU and a hidden width $F = 4C$: $W'_k$ is $F \times C$ (`ffn.key.weight`), $W'_v$
# is $C \times F$ (`ffn.value.weight`), $W'_r$ is $C \times C$ (`ffn.receptance.weight`), and
# $\mu'_k, \mu'_r$ = `ffn.time_mix_k`, `ffn.time_mix_r`. Here is time-mix, from `tinyrwkv/models/rwkv.py`:

# %%
print(inspect.getsource(time_mix))

# %%
config = RWKVConfig(n_layer=2, n_embd=16, vocab_size=40, ffn_dim=64)
params = init_params(config, seed=SEED)
att = {name[len("blocks.0.att."):]: p for name, p in params.items() if name.startswith("blocks.0.att.")}
ffn = {name[len("blocks.0.ffn."):]: p for name, p in params.items() if name.startswith("blocks.0.ffn.")}
print("time-mix parameters:", {n: p.shape for n, p in att.items()})
print("channel-mix parameters:", {n: p.shape for n, p in ffn.items()})

B, T, C = 1, 7, config.n_embd
x = rng.normal(size=(B, T, C)).astype(np.float32)
no_past = (np.zeros((B, C), np.float32),) * 2 + (np.full((B, C), -1e38, np.float32),)
out, last_x, wkv_state = time_mix(x, np.zeros((B, C), np.float32), no_past, att, get_wkv("numpy"))
out_ffn, _ = channel_mix(x, np.zeros((B, C), np.float32), ffn)
print("time_mix:", x.shape, "->", out.shape, "; carries x_prev", last_x.shape, "and (aa, bb, pp)",
      [s.shape for s in wkv_state])
print("channel_mix:", x.shape, "->", out_ffn.shape, "through a hidden width of", ffn["key.weight"].shape[0])
assert out.shape == out_ffn.shape == (B, T, C) and np.array_equal(last_x, x[:, -1])

# %% [markdown]
# ## 6. Parallel mode equals serial mode

# %%
draw('parallel_vs_serial')

# %% [markdown]
# The whole model is `emb → ln0 → [x += TimeMix(LN(x)); x += ChannelMix(LN(x))] × L → LN → head`.
# `RWKV.forward(tokens)` runs all $T$ tokens at once. Every projection is a $(T, C) \times (C, C)$
# matrix product, and only the WKV sweep runs over time. `RWKV.step(token, state)` runs one token
# from the state. They must agree token for token.

# %%
model = RWKV.random(config, seed=SEED, backend="numpy")
print(model)
tokens = rng.integers(0, config.vocab_size, size=T_MODEL)
model.forward(tokens[:2]), model.step(int(tokens[0]), None)      # warm-up, untimed: first-call allocations

t0 = time.perf_counter()
logits_parallel, state_parallel = model.forward(tokens)            # (T, V) in one call
t_parallel = time.perf_counter() - t0

t0 = time.perf_counter()
state, logits_serial, sizes = None, [], []
for token in tokens:                                               # one token at a time, O(1) each
    logits, state = model.step(int(token), state)
    logits_serial.append(logits)
    sizes.append(sum(getattr(state, f).size for f in RWKVState.FIELDS))
logits_serial = np.stack(logits_serial)                           # (T, V)
t_serial = time.perf_counter() - t0

diff = np.abs(logits_parallel - logits_serial).max()
print(f"parallel {logits_parallel.shape} in {1e3 * t_parallel:.0f} ms; serial {logits_serial.shape} "
      f"in {1e3 * t_serial:.0f} ms;  max |difference| = {diff:.1e}")
assert logits_parallel.shape == logits_serial.shape == (T_MODEL, config.vocab_size)
assert diff < 1e-4
assert all(np.allclose(getattr(state, f), getattr(state_parallel, f), atol=1e-5) for f in RWKVState.FIELDS)

# %% [markdown]
# The two final states agree too, so a prompt can run in parallel mode and generation can continue
# in RNN mode from the state it returns. That is how `tinyrwkv.generate` works. And the state never grows:

# %%
L, C = config.n_layer, config.n_embd
print(f"floats in the state after 1, 10, {T_MODEL} tokens:", sizes[0], sizes[9], sizes[-1],
      f"= 5 x L x C = 5 x {L} x {C} = {5 * L * C}")
assert set(sizes) == {5 * L * C} == {model.state_size()}
print("the five arrays, each (L, B, C):", {f: getattr(state, f).shape for f in RWKVState.FIELDS})
print(f"at RWKV-4 169M sizes (L = 12, C = 768): {5 * 12 * 768:,} floats = {5 * 12 * 768 * 4 / 1024:.0f} KiB, "
      f"for any context length")

# Continue a prompt: parallel over the first half, then serial for the rest.
half = T_MODEL // 2
_, state_half = model.forward(tokens[:half])
tail = []
for token in tokens[half:]:
    logits, state_half = model.step(int(token), state_half)
    tail.append(logits)
print("prompt in parallel, then steps: max |difference| =", np.abs(np.stack(tail) - logits_parallel[half:]).max())
assert np.allclose(np.stack(tail), logits_parallel[half:], atol=1e-4)

# %% [markdown]
# ## 7. The backward pass, derived
#
# Training needs the gradients of a loss through WKV. Take one channel (all channels are
# independent) and the true, unscaled sums. Forward, from $a_{-1} = b_{-1} = 0$:
#
# $$ a_t = e^{w} a_{t-1} + e^{k_t} v_t, \qquad b_t = e^{w} b_{t-1} + e^{k_t}, \qquad
#    y_t = \frac{a_{t-1} + e^{u+k_t} v_t}{Z_t}, \quad Z_t = b_{t-1} + e^{u+k_t} . $$
#
# Let $g_t = \partial L / \partial y_t$ (what the layer above sends down, `gy`). **Step 1: the
# output's local derivatives.** $y_t = N_t / Z_t$ with $N_t = a_{t-1} + e^{u+k_t} v_t$, so
#
# $$ \frac{\partial y_t}{\partial a_{t-1}} = \frac{1}{Z_t}, \qquad
#    \frac{\partial y_t}{\partial b_{t-1}} = -\frac{y_t}{Z_t}, \qquad
#    \frac{\partial y_t}{\partial v_t} = \frac{e^{u+k_t}}{Z_t}, \qquad
#    \frac{\partial y_t}{\partial k_t} = \frac{\partial y_t}{\partial u} = \frac{e^{u+k_t}\,(v_t - y_t)}{Z_t} . $$
#
# (For the last one: $\partial N_t / \partial k_t = e^{u+k_t} v_t$, $\partial Z_t / \partial k_t = e^{u+k_t}$,
# and $(N' Z - N Z')/Z^2 = e^{u+k_t}(v_t - y_t)/Z_t$.)
#
# **Step 2: the state's gradients run backwards in time.** $a_t$ is read in two places: by the
# output $y_{t+1}$ and by the next state $a_{t+1} = e^{w} a_t + \dots$. Call
# $\alpha_t = \partial L / \partial a_t$ and $\beta_t = \partial L / \partial b_t$ (everything that
# depends on them, later). The chain rule sums both paths:
#
# $$ \alpha_t = \frac{g_{t+1}}{Z_{t+1}} + e^{w}\, \alpha_{t+1}, \qquad
#    \beta_t = -\frac{g_{t+1}\, y_{t+1}}{Z_{t+1}} + e^{w}\, \beta_{t+1}, \qquad
#    \alpha_{T-1} = \beta_{T-1} = 0 . $$
#
# This is the forward recurrence **transposed**: the same decay $e^{w}$, run from $t = T-1$ down to 0.
#
# **Step 3: the inputs.** $k_t$ and $v_t$ enter the output $y_t$ and the state $(a_t, b_t)$;
# $u$ enters only outputs; $w$ enters every state step ($\partial a_t / \partial w = e^{w} a_{t-1}$):
#
# $$ \frac{\partial L}{\partial v_t} = g_t \frac{e^{u+k_t}}{Z_t} + \alpha_t\, e^{k_t}, \qquad
#    \frac{\partial L}{\partial k_t} = g_t \frac{e^{u+k_t}(v_t - y_t)}{Z_t} + e^{k_t}\,(\alpha_t v_t + \beta_t), $$
#
# $$ \frac{\partial L}{\partial u} = \sum_t g_t \frac{e^{u+k_t}(v_t - y_t)}{Z_t}, \qquad
#    \frac{\partial L}{\partial w} = \sum_t e^{w} \left(\alpha_t\, a_{t-1} + \beta_t\, b_{t-1}\right), \qquad
#    \frac{\partial L}{\partial\, \texttt{time\_decay}} = \frac{\partial L}{\partial w}\, w . $$
#
# (The last one because $w = -e^{\texttt{time\_decay}}$ has derivative $-e^{\texttt{time\_decay}} = w$.)
#
# **Step 4: make it stable.** $a_t$ and $\alpha_t$ can overflow or underflow, like in section 4. The
# code works with the stored $aa_t = a_t e^{-pp_t}$ and with $\alpha_t e^{pp_t}$ (which is bounded),
# and reuses the output's and the state step's factors ($e^{pp-m}$, $e^{u+k-m}$, $e^{pp+w-m'}$,
# $e^{k-m'}$): the formulas above multiplied through by those units. The docstring of
# `tinyrwkv/kernels/wkv_numpy.py` writes that version line by line, with the same names
# (`ga` $= \alpha_t e^{pp_t}$, `gb` $= \beta_t e^{pp_t}$). It needs the state *entering* each step,
# so a forward sweep saves it first: $3 \times T \times C$ numbers per sequence.
#
# The check that matters: the library's `wkv_backward` against finite differences of the forward,
# in float64 (lesson 08 repeats it for every backend):

# %%
from tinyrwkv.nn.gradcheck import numerical_gradient, relative_error

B, T, C = 1, 7, 3
w, u = -np.exp(rng.normal(size=C)), rng.normal(size=C)             # (C,) float64
k, v, gy = rng.normal(size=(3, B, T, C))                           # (B, T, C) each; gy = dL/dy
inputs = {"w": w, "u": u, "k": k, "v": v}
grads = dict(zip(inputs, wkv_numpy.wkv_backward(w, u, k, v, gy)))
loss = lambda: float(np.sum(wkv_numpy.wkv_forward(w, u, k, v)[0] * gy))   # noqa: E731  L = sum(y * gy)
for name, array in inputs.items():
    error = relative_error(grads[name], numerical_gradient(loss, array))
    print(f"dL/d{name}: shape {grads[name].shape}, relative error against finite differences {error:.1e}")
    assert error < 1e-6

# %% [markdown]
# ## 8. What a fixed-size state cannot do
#
# Section 6 counted RWKV's state: $5 L C$ numbers, after 10 tokens or after 10 000. Everything the
# model will ever use from what it has read must fit in there, and WKV keeps, per channel, a
# decayed *weighted average* of values: facts written into the same channels blur into each other,
# and old ones fade at the channel's rate. A GPT's KV cache keeps every key and value exactly, at
# a cost that grows with the context (lesson 09). The RWKV paper lists this trade-off among its
# limitations (our paraphrase): funnelling everything through one fixed-size state can limit tasks
# that need fine details recalled over very long contexts, and because the model reads once and
# cannot look back, how a prompt is written and ordered matters more than for a Transformer (a
# question placed *before* the document it is about can steer what the state keeps)
# ([Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era", section "Limitations"](https://arxiv.org/abs/2305.13048)).
#
# **The measurement** (`tinyrwkv.experiments.recall`, which also draws `figures/recall.png`):
# **associative recall**. A sequence gives $P$ key→value pairs, then $G$ distractor tokens (the gap), then
# the keys again in a new order; the model must answer each key with its value. A tiny RWKV-4 and
# a GPT with the same number of parameters train on the same batches ($P$ from 1 to 8, $G$ from 0
# to 48) and are then scored at a grid of $(P, G)$. The full run takes several CPU minutes, so the
# lesson reads its saved numbers (`tinyrwkv/data/recall.json`); set `RERUN_RECALL = True` to train
# both models here instead (or `python -m tinyrwkv.experiments.recall --retrain`).

# %%
from tinyrwkv.experiments import recall

RERUN_RECALL = False                      # True: retrain both models in this notebook (several CPU minutes)
if RERUN_RECALL:
    recall_results = recall.run(recall.FULL)
elif recall.RESULTS_FILE.exists():
    recall_results = recall.load_results()                         # the saved full run
else:                                                              # no saved run: seconds of training
    recall_results = recall.run(recall.FAST)
    print("NO SAVED RUN: a fast run instead, its numbers are NOT meaningful")
rc = recall_results["config"]
print(f"{rc['steps']} training steps of {rc['batch_size']} sequences; n_layer = {rc['n_layer']}, width {rc['width']}; "
      f"chance = 1/{recall.N_VALUES} = {recall_results['chance']:.3f}")
for label, res in recall_results["models"].items():
    print(f"\n{label} ({res['params']:,} parameters, final training loss {res['final_loss']:.3f} nats): "
          "fraction of values recalled")
    print("   P \\ G " + "".join(f"{G:>8s}" for G in res["accuracy"][str(rc["eval_pairs"][0])]))
    for P, row in res["accuracy"].items():
        print(f"{P:>8s} " + "".join(f"{acc:8.2f}" for acc in row.values()))
P_max, G_max = max(rc["eval_pairs"]), max(rc["eval_distract"])
t_max = 4 * P_max + G_max
print(f"\nfloats carried at the last query of the longest sequence (t = {t_max}): RWKV-4 "
      f"{5 * rc['n_layer'] * rc['width']:,} (5 L C, fixed), GPT {2 * rc['n_layer'] * t_max * rc['width']:,} (2 L t C)")
recall.plot_recall(recall_results, fig=plt.figure())
plt.show()

# Two summaries the reading below uses: the effect of the number of pairs, and of the distance.
G_mid = sorted(rc["eval_distract"])[-2]
for label, res in recall_results["models"].items():
    by_pairs = {P: np.mean(list(row.values())) for P, row in res["accuracy"].items()}
    farther = np.mean([row[str(G_max)] - row[str(G_mid)] for row in res["accuracy"].values()])
    print(f"{label:7s} mean over G, by P: " + ", ".join(f"P={P}: {a:.2f}" for P, a in by_pairs.items())
          + f";  G = {G_max} minus G = {G_mid}, mean over P: {farther:+.3f}")

# %% [markdown]
# How to read it: chance is $1/16$ (a value guessed at random). Along each line the gap $G$ is
# fixed and the number of pairs $P$ to hold at once grows; from line to line the
# same pairs must survive a longer distractor. A KV cache keeps every pair verbatim, so the GPT's
# difficulty is only to *learn* to look them up; RWKV must also *store* them in $5 L C$ numbers.
#
# What the saved run says (the numbers printed above; rerun to check them):
#
# * **One early fact survives any distractor we tried, in both models**: with $P = 1$ both answer
#   every query, at every $G$. A fixed-size state has no trouble carrying one token across 48 others.
# * **The number of pairs is what hurts, and it hurts both.** Accuracy falls as $P$ grows, for the
#   GPT as much as for RWKV-4, while the distance barely matters (the last column of the summary).
#   At this size and budget (0.11 M parameters, 3000 steps) neither model has learned a reliable
#   lookup, so what limits them is *learning* associative recall, not *storing* it. The experiment
#   does **not** show RWKV-4's state limit at this scale, and a lesson should not pretend it does.
#   ($G = 0$ is the hardest column for both models; our guess, not tested: it is the rarest length
#   in training, one batch in 49.)
# * Where the limit does show: with models that have learned the lookup, attention solves
#   associative recall at any number of pairs its cache holds, while a fixed-state model needs a
#   state that grows with the number of pairs. That is the finding of Arora et al., "Zoology:
#   Measuring and Improving Recall in Efficient Language Models" ([arXiv:2312.04927](https://arxiv.org/abs/2312.04927)),
#   on larger models trained much longer; it is what RWKV-5 and later enlarge the state for
#   (a matrix per head instead of a vector per channel). To push this experiment towards it, raise
#   `steps`, `width` and `max_pairs` in `recall.FULL` and rerun (minutes to hours on a CPU).

# %% [markdown]
# ## Summary
#
# * Softmax attention is a weighted average whose weights come from $q_t \cdot k_i$: a $T \times T$
#   table of scores that cannot be carried forward.
# * **AFT** replaces the dot product with *key + position bias*, per channel, with the query as a sigmoid gate.
# * **RWKV** picks the bias $(t-1-i)\,w$ (a per-channel decay, $w = -e^{\texttt{time\_decay}} < 0$)
#   plus a bonus $u$ (`time_first`) for the current token; the previous token is never decayed.
#   Its **WKV** is then a recurrence over $(a, b)$: $O(T)$ to train, $O(1)$ per generated token.
# * WKV's implied attention matrix decays geometrically with distance, at a different speed in every channel.
# * $e^{k}$ overflows, so the recurrence stores $(aa, bb, pp)$ with a **running max** $pp$. Every
#   `exp()` sees an argument $\le 0$. The empty state starts $pp$ at $-10^{38}$, finite, so that
#   $pp - \max(\dots)$ stays a number.
# * The **backward** runs the same recurrence transposed, from the last token to the first.
# * **Token shift** blends $x_t$ with $x_{t-1}$ per channel. **Time-mix** = shift → $k, v, r$ → WKV →
#   $\sigma(r)$ gate → output. **Channel-mix** = shift → squared-ReLU MLP → $\sigma(r)$ gate.
# * **Parallel mode = serial mode**, to float precision, with a state of $5 L C$ floats whatever the context.
# * That fixed state is also RWKV's limit in principle. Measured at tiny scale (section 8), one early
#   token survives any distractor in RWKV-4 and in a GPT of equal size alike, and recalling several
#   pairs fails in both: at this size, learning the lookup limits them before the state does.
#
# ## Exercises

# %% tags=["exercise"]
def wkv_one_channel(w, u, k, v):
    """The WKV closed form for ONE channel.

    w < 0 (the decay), u (the bonus): floats; k, v: (T,). Return wkv (T,) with
    wkv_t = (sum_{i<t} e^{(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (sum_{i<t} e^{(t-1-i) w + k_i} + e^{u + k_t}).
    """
    raise NotImplementedError


check.wkv_one_channel(wkv_one_channel)


# %% tags=["exercise"]
def wkv_stable_step(w, u, k, v, aa, bb, pp):
    """One step of the stable WKV recurrence; every argument is a (C,) array.

    (aa, bb, pp) is the state before this token: the true numerator and denominator are aa e^pp, bb e^pp.
    Output: y = (a + e^{u+k} v) / (b + e^{u+k}), computed with q = max(pp, u + k) so no exp() sees a
    positive number. State: decay the past by e^w and add e^k v (no bonus), in units of e^p with
    p = max(pp + w, k). Return (y, aa', bb', p). Careful: k and pp are about 95 in the check.
    """
    raise NotImplementedError


check.wkv_stable_step(wkv_stable_step)


# %% tags=["exercise"]
def rwkv_token_shift(x, x_prev):
    """x (B, T, C), x_prev (B, C): the x of the token before x[:, 0].

    Return (B, T, C) whose position t holds x[:, t-1], and position 0 holds x_prev.
    """
    raise NotImplementedError


check.rwkv_token_shift(rwkv_token_shift)


# %% tags=["exercise"]
def rwkv_channel_mix(x, x_prev, mu_k, mu_r, W_k, W_r, W_v):
    """RWKV-4 channel-mix for one sequence.

    x (T, C), x_prev (C,) the x before x[0]; mu_k, mu_r (C,); W_k (F, C), W_r (C, C), W_v (C, F).
    With xx = x shifted one step (x_prev first), xk = mu_k x + (1 - mu_k) xx and xr likewise:
    return sigmoid(xr W_r^T) * (relu(xk W_k^T)^2 W_v^T), shape (T, C).
    """
    raise NotImplementedError


check.rwkv_channel_mix(rwkv_channel_mix)

# %% [markdown]
# **Going further:** (1) Write AFT-*simple* ($w_{t,i} = 0$): what does every position attend to
# then? (2) Give one channel $w = 0$ and $u = 0$: show that WKV becomes a running softmax-weighted
# mean of all values so far. (3) Read `wkv_backward` in `tinyrwkv/kernels/wkv_numpy.py`: training
# runs the same recurrence backwards.
#
# Next: [07 · The real RWKV-4 169M](07_real_rwkv.ipynb). Load the released weights and look at the decays it learned.
