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
# 6. a small RWKV whose **parallel mode equals its serial mode**, with a state whose size does not grow.

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

from tinyrwkv.exercises import check
from tinyrwkv.experiments.rwkv_wkv_maps import (aft_weights, compute_maps, plot_maps, rwkv_position_bias,
                                                wkv_attention_matrix)
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
# from $t$ is the key plus a learned **position bias** $w_{t,i}$:
#
# $$ y_t = \sigma(q_t) \odot \frac{\sum_{i \le t} e^{\,k_i + w_{t,i}} \odot v_i}{\sum_{i \le t} e^{\,k_i + w_{t,i}}} . $$
#
# There is no $q_t \cdot k_i$ any more: the query only gates the result through a sigmoid. Still,
# $w_{t,i}$ is a full $T \times T$ table, so AFT-full remains quadratic. Per channel, it is a softmax
# over $b_{t,i} + k_i$ (`aft_weights` below, with $-\infty$ for future tokens).
#
# RWKV makes one decisive choice: the bias depends only on the **distance**, linearly, with a
# per-channel rate, and the current token gets a separate bonus $u$:
#
# $$ w_{t,i} = -(t-1-i)\, w' \quad (i < t), \qquad w_{t,t} = u . $$
#
# RWKV writes $w = -w' < 0$, so the bias is $(t-1-i)\,w$. A linear bias means that moving from $t$ to
# $t+1$ multiplies every old weight by the same factor $e^{w}$. Because of that, the sums can be
# *carried* from one step to the next instead of being recomputed.

# %%
print(inspect.getsource(rwkv_position_bias))
bias = rwkv_position_bias(w=-0.5, u=0.3, T=5)
print("RWKV's position bias for T = 5 (w = -0.5, u = 0.3):\n", np.round(bias, 2) + 0.0)   # + 0.0: no "-0."
k1 = rng.normal(size=5)                                            # one channel's keys
A = aft_weights(k1, bias)                                          # (T, T)
print("AFT weights with that bias (rows sum to 1):\n", np.round(A, 3))
assert A.shape == (5, 5) and np.allclose(A.sum(axis=1), 1) and np.all(np.triu(A, 1) == 0)

# %% [markdown]
# ## 3. WKV: the closed form and the recurrence
#
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
for label, A in maps["wkv"].items():
    print(f"{label:15s} weight on the current token {A[-1, -1]:.2f}, mean distance looked back "
          f"{A[-1, ::-1] @ np.arange(T_MAP):5.2f} tokens,  max |A v - wkv_forward| = {maps['max_abs_diff'][label]:.1e}")
plot_maps(maps, fig=plt.figure())                                 # draw with pyplot: shown inline
plt.show()

# %% [markdown]
# Read the picture:
#
# * softmax attention can put its weight anywhere: the query decides, token by token;
# * a WKV channel always looks back the same way. Its weights fall by a factor $e^{w}$ per step
#   (straight lines on the log plot), with the keys $k_i$ nudging individual tokens up or down. A
#   **slow** channel ($w \approx 0$) averages over a long window. A **fast** one sees mostly the
#   current token (boosted by $u$) and the one before;
# * RWKV-4 has $C$ channels per layer (768 in the 169M model), each with its own decay. So the
#   model gets a whole spectrum of memory lengths, learned, instead of query-dependent lookups.
#   Lesson 07 shows the spectrum of the real model.
#
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
# One step of the stable recurrence (`stable_step`). The output and the state update each compare
# two exponents and keep the larger as the unit:

# %%
print(inspect.getsource(wkv_numpy.stable_step))

# %% [markdown]
# The state $(aa, bb, pp)$ is three numbers per channel. It is exactly what RWKV carries in RNN mode.
#
# ## 5. Token shift, time-mix and channel-mix
#
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

# %% [markdown]
# An RWKV-4 block is two residual sublayers, each with its own token shift:
#
# **Time-mix** (mixes across time; it replaces attention):
#
# $$ k_t = W_k\, \mathrm{mix}_{\mu_k}, \quad v_t = W_v\, \mathrm{mix}_{\mu_v}, \quad r_t = W_r\, \mathrm{mix}_{\mu_r}, \qquad
#    o_t = W_o\, \big(\sigma(r_t) \odot \mathrm{wkv}_t(w, u, k, v)\big) . $$
#
# The **receptance** $r$ plays AFT's $\sigma(q)$: a gate on what the channel lets through.
#
# **Channel-mix** (mixes across channels; it is the MLP):
#
# $$ k_t = W_k\, \mathrm{mix}_{\mu_k}, \quad r_t = W_r\, \mathrm{mix}_{\mu_r}, \qquad
#    o_t = \sigma(r_t) \odot W_v\, \mathrm{relu}(k_t)^2 , $$
#
# with a squared ReLU and a hidden width $F = 4C$. Here are both, from `tinyrwkv/models/rwkv.py`:

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
#
# The whole model is `emb → ln0 → [x += TimeMix(LN(x)); x += ChannelMix(LN(x))] × L → LN → head`.
# `RWKV.forward(tokens)` runs all $T$ tokens at once. Every projection is a $(T, C) \times (C, C)$
# matrix product, and only the WKV sweep runs over time. `RWKV.step(token, state)` runs one token
# from the state. They must agree token for token.

# %%
model = RWKV.random(config, seed=SEED, backend="numpy")
print(model)
tokens = rng.integers(0, config.vocab_size, size=T_MODEL)

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
# ## Summary
#
# * Softmax attention is a weighted average whose weights come from $q_t \cdot k_i$: a $T \times T$
#   table of scores that cannot be carried forward.
# * **AFT** replaces the dot product with *key + position bias*, per channel, with the query as a sigmoid gate.
# * **RWKV** picks the bias $(t-1-i)\,w$ (a per-channel decay) plus a bonus $u$ for the current
#   token. Its **WKV** is then a recurrence over $(a, b)$: $O(T)$ to train, $O(1)$ per generated token.
# * WKV's implied attention matrix decays geometrically with distance, at a different speed in every channel.
# * $e^{k}$ overflows, so the recurrence stores $(aa, bb, pp)$ with a **running max** $pp$. Every
#   `exp()` sees an argument $\le 0$.
# * **Token shift** blends $x_t$ with $x_{t-1}$ per channel. **Time-mix** = shift → $k, v, r$ → WKV →
#   $\sigma(r)$ gate → output. **Channel-mix** = shift → squared-ReLU MLP → $\sigma(r)$ gate.
# * **Parallel mode = serial mode**, to float precision, with a state of $5 L C$ floats whatever the context.
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
