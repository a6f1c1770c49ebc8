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
# # 12 · After RWKV-4: RWKV-5, -6 and -7
#
# > **Objectives.** After this lesson you can
# > 1. say what RWKV-5 (Eagle), RWKV-6 (Finch) and RWKV-7 (Goose) each changed in RWKV-4, and why;
# > 2. compute how many numbers each version carries from token to token, and compare with a KV cache;
# > 3. write one step of RWKV-5/6's matrix-state recurrence and of RWKV-7's delta rule;
# > 4. explain, with an experiment, what a delta-rule update can do that a decayed sum cannot.
# >
# > **Prerequisites.** Lessons 06 (WKV), 08 (kernels), 09 (state vs KV cache) and 10 (training).
# >
# > **Time.** about 60 minutes: reading 15 (1,375 words, 99 lines of code),
# > running 2 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# The lineage of this course ends at RWKV-4; RWKV did not. Three versions followed, each a small
# change to the one part of the model that is not a matrix product: **the state and how it is
# written**. Everything around it (token shift, the channel mix, LayerNorms, the head) barely moved.
#
# The code: the recurrences live in `tinyrwkv/kernels/wkv6_numpy.py` (RWKV-5 and -6 share one) and
# `tinyrwkv/kernels/wkv7_numpy.py` (with its backward), each with `@njit` and `numba.cuda`
# twins; `tinyrwkv/models/rwkv7_train.py` trains an RWKV-7; the experiments of this lesson are
# `tinyrwkv/experiments/after_rwkv4.py`.

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import time

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.exercises import check
from tinyrwkv.experiments import after_rwkv4 as ex
from tinyrwkv.kernels import get_wkv, wkv6_numpy, wkv7_numpy

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
print(f"FAST={FAST}")

# %% [markdown]
# ## 1. Four versions in one table
#
# | version | year | what changed in the time mix | why |
# |---|---|---|---|
# | RWKV-4 | 2023 | per channel: a decayed, bonus-weighted average $\frac{\sum e^{-(t-1-i)w + k_i} v_i + \dots}{\sum e^{-(t-1-i)w + k_i} + \dots}$ | an RNN that trains in parallel |
# | RWKV-5 (Eagle) | 2023 | a **matrix per head**: $S \leftarrow \mathrm{diag}(w)\,S + k v^\top$, read with $r$; a GroupNorm replaces the denominator | $N$ times more state: it remembers more |
# | RWKV-6 (Finch) | 2024 | the decay $w_t$ and the token-shift mixes **depend on the input** (small low-rank MLPs) | the model decides, token by token, what to forget |
# | RWKV-7 (Goose) | 2025 | the **delta rule**: $S \leftarrow S\,\mathrm{diag}(w) - (S\hat\kappa)(\hat\kappa \odot a)^\top + v k^\top$; a value residual | it can *replace* what a key stores, not only add to it |
#
# The same table lives in `ex.CHANGES`, one line per version:

# %%
for name, year, what, why in ex.CHANGES:
    print(f"{name:15s} {year}  {what}\n{'':21s}-> {why}")

# %% [markdown]
# ## 2. What each version carries: state size against context
#
# Lesson 09 counted RWKV-4's state: five vectors of $C$ per layer (two token shifts, $aa$, $bb$,
# $pp$), $5LC$ floats, whatever the context length. From RWKV-5 on, each layer keeps its two
# token-shift vectors and, per head, an $N \times N$ matrix; with $H = C/N$ heads that is
#
# $$L\,(2C + H N^2) = L\,(2C + C N)$$
#
# floats: about $N/5$ times RWKV-4's, 13 times for $N = 64$. Still constant in $T$. A Transformer's
# KV cache ($2LTC$) is as large after only $1 + N/2$ tokens (33 for $N = 64$), and keeps growing; the
# state does not. The numbers at the shapes of RWKV-4 169M and RWKV-7 168M ($L=12$, $C=768$, $N=64$):

# %%
L, C, N = 12, 768, 64
for name, floats in (("RWKV-4", ex.state_floats(4, L, C, N)), ("RWKV-5/6/7", ex.state_floats(7, L, C, N)),
                     ("GPT KV cache, T=1024", ex.state_floats("gpt", L, C, N, 1024)),
                     ("GPT KV cache, T=16384", ex.state_floats("gpt", L, C, N, 16384))):
    print(f"{name:22s} {floats:>12,} floats = {4 * floats / 2**20:8.2f} MiB in float32")
fig = ex.plot_state_per_version(L, C, N, fig=plt.figure())
plt.show()

# %% [markdown]
# The formula is what the models carry, not a guess: the training models report their own state
# size, counted from the shapes they keep (the tiny RWKV-7 shipped with the package: 4 layers of
# 64 channels in 4 heads of 16).

# %%
tiny7 = ex.tiny_rwkv7()
c7 = tiny7.config
print(tiny7)
assert tiny7.state_size() == ex.state_floats(7, c7.n_layer, c7.n_embd, c7.head_size)
state = tiny7.init_state(1)
print("the state:", {f: getattr(state, f).shape for f in state.FIELDS}, " (layers, batch, ...)")
assert state.size() == tiny7.state_size()

# %% [markdown]
# ## 3. RWKV-5: a matrix per head
#
# RWKV-4 kept, per channel, a numerator and a denominator. RWKV-5 cuts the $C$ channels into $H$
# heads of $N$ and keeps, per head, a matrix $S$ indexed $S[\text{key } i, \text{value } j]$, the
# sum of the outer products $k v^\top$ of the past, each row fading at its own rate $w_i \in (0,1)$:
#
# $$y_t[j] = \sum_i r_t[i]\,\big(S[i,j] + u_i\,k_t[i]\,v_t[j]\big), \qquad S[i,j] \leftarrow w_i\,S[i,j] + k_t[i]\,v_t[j].$$
#
# Reading with $r$ is linear attention: $r^\top S = \sum_{s<t} (r \cdot (w^{t-1-s} \odot k_s))\, v_s$ weighs
# each past value by how well its (decayed) key matches the receptance. There is no denominator
# and no running max: the values stay bounded because $w<1$ and a GroupNorm per head
# normalises $y$. RWKV-5 and -6 run the same recurrence (`wkv6_numpy.forward`); RWKV-5's $w$ is a
# constant `(H, N)`, RWKV-6's one per token `(B, T, H, N)`. One step for one head, by hand, against
# the kernel:

# %%
rng = np.random.default_rng(0)
Nh = 4
r, k, v, u = (rng.normal(size=Nh) for _ in range(4))
w = np.exp(-np.exp(rng.normal(size=Nh)))          # v5/v6 decay: exp(-exp(time_decay)), in (0, 1)
S = rng.normal(size=(Nh, Nh))
y_hand = r @ (S + u[:, None] * np.outer(k, v))
S_hand = w[:, None] * S + np.outer(k, v)
y_kernel, S_kernel = wkv6_numpy.step(r[None, None], k[None, None], v[None, None], w[None, None], u[None], S[None, None])
assert np.allclose(y_hand, y_kernel[0, 0]) and np.allclose(S_hand, S_kernel[0, 0])
print("y =", np.round(y_hand, 3))

# %% [markdown]
# ## 4. RWKV-6: decay that depends on the data
#
# In RWKV-4 and -5, channel $i$ forgets at the same rate whatever it reads. RWKV-6 computes the
# decay from the (token-shifted) input, $w_t = \exp(-\exp(w_0 + W_2 \tanh(W_1 x_t)))$, so a head can
# hold on to its memory through a phrase and clear it at a full stop. RWKV-7 keeps the idea with a
# gentler range, $w_t = \exp(-e^{-1/2}\,\sigma(\cdot)) \in (0.545, 1)$.
#
# Below: the decay factor per channel (rows) and token (columns) in layer 1 of the two tiny shipped
# models reading the same characters. RWKV-4's rows are constant (learned, then fixed); RWKV-7's
# change with every character: look at the spaces and the comma.

# %%
maps = ex.decay_maps("Once upon a time, the fox")
fig = ex.plot_decay_maps(maps, fig=plt.figure())
plt.show()
v4_spread = maps["v4"].std(axis=0).max()
v7_spread = maps["v7"].std(axis=0)
print(f"std over tokens: RWKV-4 {v4_spread:.0f} (constant), RWKV-7 mean {v7_spread.mean():.3f}, max {v7_spread.max():.3f}")
assert v4_spread < 1e-12 and v7_spread.max() > 0.01

# %% [markdown]
# ## 5. RWKV-7: the delta rule
#
# A decayed sum can only **add**. Write value $v_1$ under key $k$, later $v_2$ under the same key,
# and reading with $k$ returns (a decayed) $v_1 + v_2$: the old value never leaves except by decaying,
# and decaying forgets everything else too. RWKV-7 first asks the state what it returns for the key,
# and removes that before writing. With $S$ indexed $[\text{value } i, \text{key } j]$ (as in the
# RWKV-7 paper) and vectors $a$, $b$:
#
# $$sa = S a, \qquad S \leftarrow S\,\mathrm{diag}(w) + sa\, b^\top + v k^\top, \qquad y = S r.$$
#
# The model sets $a = -\hat\kappa$ and $b = \hat\kappa \odot \alpha$, with $\hat\kappa$ the key normalised
# to length 1 and $\alpha \in (0,1)$ the **in-context learning rate**. With $w = 1$, $\alpha = 1$:
# $S \leftarrow S(I - \hat\kappa\hat\kappa^\top) + v\hat\kappa^\top$, and then $S\hat\kappa = v$ exactly: the
# value under $\hat\kappa$ is *replaced*. This is one step of gradient descent on $\|S\hat\kappa - v\|^2$
# (the "delta rule" of Widrow and Hoff, 1960): the state is a small learner, trained as it reads.
#
# The three updates, one step of one head with real numbers:

# %%
fig = ex.plot_state_updates(fig=plt.figure())
plt.show()

# %% [markdown]
# Now the experiment: four orthogonal keys, each written again and again with a **new** random value,
# into one head's state, with the v5/v6 rule and with the v7 rule (both through the kernels'
# references), then read with each key. How far is what comes back from the last value written?

# %%
for writes in (4, 8, 16):
    errors = {rule: ex.write_and_read(rule, n_keys=4, n_writes=writes)["error"] for rule in ("sum", "delta")}
    print(f"{writes:2d} writes: decayed sum error {errors['sum']:.3f}, delta rule error {errors['delta']:.1e}")
assert ex.write_and_read("delta", 4, 16)["error"] < 1e-9 < ex.write_and_read("sum", 4, 16)["error"]
fig = ex.plot_delta_rule(fig=plt.figure())
plt.show()

# %% [markdown]
# A decay ($w = 0.7$, dashed) helps the sum forget the old values, but it forgets the new ones at
# the same rate. Only the delta rule can keep a fact and overwrite another.
#
# ## 6. Associative recall: a tiny RWKV-7 against a tiny RWKV-4 of the same size
#
# The task behind that claim, at model level: six key-value pairs, a `?`, then one of the keys;
# the answer is its value (`a 3 f 7 c 1 ... ? f` → `7`; lesson 06's `experiments/recall.py` asks
# the same with distractors, against a GPT). Keys and values are random in every sequence, so
# nothing can be memorised in the weights: the model must store the pairs in its state while
# reading, and look one up at the end. Both models have 2 layers of 32 channels and almost the
# same number of parameters (RWKV-7: 4 heads of 8).
#
# The full run (1,500 steps each, minutes of CPU) ships with the package; it is drawn first. Then,
# so that you see it train, a short run here: in fast mode a few seconds, **not meaningful**.

# %%
shipped = json.loads(ex.RECALL_RESULTS.read_text())
for name, r in shipped["models"].items():
    print(f"{name}: {r['params']:,} parameters, held-out accuracy {r['accuracy'][-1][1]:.1%} "
          f"after {r['accuracy'][-1][0]} steps ({r['seconds']:.0f} s)")
print(f"chance: {shipped['chance']:.1%}")
fig = ex.plot_recall(shipped, fig=plt.figure(), note="the shipped full run")
plt.show()

# %%
settings = ex.FAST_RECALL if FAST else {**ex.RECALL, "steps": 300, "eval_every": 50}
t0 = time.perf_counter()
live = ex.train_recall(settings)
print(f"{settings['steps']} steps each in {time.perf_counter() - t0:.0f} s")
fig = ex.plot_recall(live, fig=plt.figure(),
                     note="fast mode: numbers NOT meaningful" if FAST else f"{settings['steps']} steps, live")
plt.show()

# %% [markdown]
# ## 7. The tiny RWKV-7 on text
#
# `tinyrwkv/data/tiny_rwkv7` holds an RWKV-7 of the tiny RWKV-4's size (224,832 against 223,872
# parameters), trained by `scripts/train_tiny_rwkv7.py` with the tiny RWKV-4's recipe on the same
# characters. Its validation loss, against the tiny RWKV-4's:

# %%
curves7 = json.loads((ex.RECALL_RESULTS.parent / "tiny_rwkv7" / "training_curves.json").read_text())
print(f"tiny RWKV-7: best validation loss {curves7['shipped']['val']:.3f} nats/char at step {curves7['shipped']['best_step']}")
print(f"tiny RWKV-4: best validation loss {curves7['rwkv4_shipped_val']:.3f} nats/char")
train7 = curves7["models"]["RWKV-7"]["train"]
print(f"RWKV-7 training loss at the end: {np.mean(train7[-50:]):.2f} nats/char")

# %% [markdown]
# On 30,000 training characters the RWKV-7 learns faster (its training loss ends far lower) and
# overfits sooner: its best validation loss is a little *worse* than RWKV-4's. A more expressive
# state pays off when there is more to remember than the corpus can teach: on this corpus the
# recall task above shows it, the validation loss does not. (The real RWKV-7 168M, trained on the
# Pile, beats RWKV-4 169M clearly; `tinyrwkv.load` runs it once downloaded.)
#
# Parallel mode and RNN mode are one model here too: the logits of a whole sequence equal those
# of the same characters fed one at a time, and the model writes text.

# %%
from tinyrwkv.tokenizer import load_tokenizer

tok = load_tokenizer("tiny7")
ids = np.array([tok.encode("Once upon a time")])
parallel, _ = tiny7.forward(ids)
state = tiny7.init_state(1)
for t in range(ids.shape[1]):
    logits, state = tiny7.step(ids[:, t], state)
    assert np.allclose(logits, parallel[:, t], atol=1e-4)
print("Once upon a time" + tok.decode(tiny7.generate(ids[0], 80 if not FAST else 20)))

# %% [markdown]
# ## 8. The kernels for RWKV-7: NumPy against @njit
#
# As in lesson 08, the recurrence is the one loop over time that a matrix library cannot batch, so
# it gets compiled kernels: `wkv7_numba` (`@njit`, parallel over the (sequence, head) pairs, each
# head's $N \times N$ state in a private array, row by row: one dot product for $sa_i$, one pass that
# updates the row and accumulates $y_i$) and `wkv7_cuda` (one CUDA block per (sequence, head),
# thread $i$ owning row $i$ of $S$; v1 keeps $S$ in global memory, v2 keeps the row in registers and
# the step's vectors in shared memory, as BlinkDL's `rwkv7.cu`). All are tested against
# `wkv7_numpy`, and the backward against finite differences and torch. The CPU pair at the shapes
# of RWKV-7 168M (12 heads of 64) over a 512-token prompt (64 in fast mode, where the timings mean
# little):

# %%
numba7 = get_wkv("numba", version=7)
B, T, H, Nk = 1, (64 if FAST else 512), 12, 64
inputs = [rng.normal(size=(B, T, H, Nk)).astype(np.float32) for _ in range(6)]
inputs[1] = np.exp(-0.6065 / (1 + np.exp(-inputs[1])))                      # w in (0.545, 1)
kk = inputs[4] / np.linalg.norm(inputs[4], axis=-1, keepdims=True)
inputs[4], inputs[5] = -kk, kk * 0.5                                         # a = -kk, b = kk * iclr
numba7.forward(*inputs)                                                      # compile (cached on disk)
times = {}
for name, fn in (("numpy", wkv7_numpy.forward), ("numba", numba7.forward)):
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(*inputs)
        runs.append(time.perf_counter() - t0)
    times[name] = min(runs)
    print(f"wkv7 {name:6s} forward B={B} T={T} H={H} N={Nk}: {1e3 * times[name]:7.1f} ms (best of 3)")
print(f"@njit / NumPy: {times['numpy'] / times['numba']:.1f}x")
assert np.allclose(numba7.forward(*inputs)[0], wkv7_numpy.forward(*inputs)[0], rtol=1e-4, atol=1e-3)

# %% [markdown]
# ## Exercises
#
# Each exercise has a self-check. Handing in (or calling) tinyrwkv's own function fails: write it.
#
# **1.** The state of each version, in floats per sequence (any context length), for $L$ layers of
# width $C$ and heads of $N$ channels.

# %% tags=["exercise"]
def state_per_version(L, C, N):
    """Return {"rwkv4": ..., "rwkv5": ..., "rwkv6": ..., "rwkv7": ...}: floats carried per sequence."""
    raise NotImplementedError


check.state_per_version(state_per_version)

# %% [markdown]
# **2.** One RWKV-5/6 step for one head: r, k, v, w, u are `(N,)`, S is `(N, N)` indexed
# [key, value]. Return the output y `(N,)` and the new state, without changing S in place.

# %% tags=["exercise"]
def wkv6_head_step(r, k, v, w, u, S):
    """y[j] = sum_i r[i] (S[i, j] + u[i] k[i] v[j]);  S'[i, j] = w[i] S[i, j] + k[i] v[j]."""
    raise NotImplementedError


check.wkv6_head_step(wkv6_head_step)

# %% [markdown]
# **3.** One RWKV-7 step for one head: r, w, k, v, a, b are `(N,)`, S is `(N, N)` indexed
# [value, key]. Return y `(N,)` and the new state.

# %% tags=["exercise"]
def delta_rule_step(r, w, k, v, a, b, S):
    """sa = S a;  S' = S diag(w) + sa b^T + v k^T;  y = S' r."""
    raise NotImplementedError


check.delta_rule_step(delta_rule_step)

# %% [markdown]
# **4.** RWKV-7's decay factor from its pre-activation $z = w_0 + W_2 \tanh(W_1 x)$, elementwise.

# %% tags=["exercise"]
def rwkv7_decay(z):
    """w = exp(-e^{-1/2} sigmoid(z)), for an array z."""
    raise NotImplementedError


check.rwkv7_decay(rwkv7_decay)

# %% [markdown]
# **Going further:** (1) In `write_and_read`, give the delta rule a learning rate $\alpha < 1$
# (`b = k * alpha`): how many rewrites until the read is within 1 % of the last value? (2) Train
# the recall models with more pairs (`{**ex.RECALL, "n_pairs": 10}`): where does RWKV-4 stop
# and RWKV-7 keep going? (3) `python -m tinyrwkv.experiments.after_rwkv4 --retrain` reruns the
# shipped recall experiment and rewrites its figure.
