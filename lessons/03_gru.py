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
# # 03 · The GRU: the LSTM's idea with two gates and no separate cell
#
# > **Objectives.** After this lesson you can
# > 1. write the GRU cell (reset, update, candidate) in torch's convention;
# > 2. read its update as an interpolation $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ and
# >    find its gradient highway;
# > 3. count the parameters of RNN, LSTM and GRU layers and compare the three on the same tasks.
# >
# > **Prerequisites.** Lessons 01 and 02.
# >
# > **Time.** about 45 minutes: reading 15 (929 words, 96 lines of code),
# > running 3 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
#
# The LSTM of lesson 02 fixed vanishing gradients with an additive cell path and three gates.
# The **Gated Recurrent Unit** (Cho et al. 2014) asks: how much of that machinery is needed?
# It keeps one state $h_t$ (no separate cell), merges the input and forget gates into a single
# **update gate**, and adds a **reset gate** that decides how much of the past the new
# candidate may read. In this lesson:
#
# * the GRU's equations, exactly as `torch.nn.GRU` defines them (which differ in one detail from
#   the paper), on real code from `tinyrwkv.models.gru`;
# * the update as an **interpolation** $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$, and the
#   gradient highway it opens;
# * parameters of the RNN, LSTM and GRU side by side;
# * the three models on the same two tasks: the copy task with a long delay, and the
#   character-level corpus.

# %%
import os

# The matrices here are tiny: one BLAS thread is faster than several (and never spins on a busy
# machine). This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inspect

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.data.copy_task import CopyTask
from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.models.gru import GRU, GRULanguageModel, GRULayer
from tinyrwkv.models.lstm import LSTM, LSTMLanguageModel
from tinyrwkv.models.rnn import RNN, RNNLanguageModel
from tinyrwkv.training import train

FAST = os.environ.get("TINYRWKV_FAST") == "1"     # CI: small and quick; the numbers then mean less
COPY_DELAY = 5 if FAST else 20                     # blanks between the symbols and the answer
COPY_STEPS = 400 if FAST else 1500                 # Adam steps per copy-task run
CHAR_STEPS = 100 if FAST else 600                  # Adam steps per char-LM run
SEED = 0
np.random.seed(SEED)
print(f"FAST={FAST}: copy task delay {COPY_DELAY}, {COPY_STEPS} steps; char LM {CHAR_STEPS} steps")

# %% [markdown]
# ## 1. The equations

# %%
draw('gru_cell')

# %% [markdown]
# One GRU step, exactly `torch.nn.GRU` (gate order **r, z, n** in $W_{ih}$, $W_{hh}$ and both biases):
#
# $$ \begin{aligned}
# r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) && \text{reset gate: how much of the past the candidate reads} \\
# z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) && \text{update gate: how much of the old state to keep} \\
# n_t &= \tanh\big(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big) && \text{candidate state} \\
# h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1} && \text{interpolate between new and old}
# \end{aligned} $$
#
# **One detail differs from the paper.** Cho et al. reset the state *before* the matrix
# product, $W_{hn}(r_t \odot h_{t-1})$; torch (following cuDNN) resets *after* it,
# $r_t \odot (W_{hn} h_{t-1} + b_{hn})$, and the reset gate scales the bias $b_{hn}$ too. The
# after-version lets all three recurrent products $W_{hr} h, W_{hz} h, W_{hn} h$ be one matrix
# product, computed before $r$ is known. Both work; they are not interchangeable, and to load
# torch weights you must use torch's. tinyrwkv does (`GRULayer.step` in `tinyrwkv/models/gru.py`,
# the answer to exercise 1: read it after you have tried).
#
# The one recurrent product $h_{t-1} W_{hh}^\top + b_{hh}$ has shape $(B, 3H)$ and is sliced into
# $[h_r \mid h_z \mid h_n]$; $h_n$ already contains $b_{hn}$, so $r \odot h_n$ is torch's
# $r \odot (W_{hn} h + b_{hn})$. Shapes:

# %%
B, T, D, H = 2, 6, 3, 4
layer = GRULayer(input_size=D, hidden_size=H, rng=np.random.default_rng(SEED))
for name, p in layer.params.items():
    print(f"{name:5s} {str(p.shape):8s}")
assert layer.params["w_ih"].shape == (3 * H, D) and layer.params["w_hh"].shape == (3 * H, H)

x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)     # (B, T, D)
y, (h_last,), cache = layer.forward(x)
print("x", x.shape, "-> y", y.shape, "  final state h", h_last.shape, "(one state, like the RNN)")
assert y.shape == (B, T, H) and h_last.shape == (B, H) and np.array_equal(y[:, -1], h_last)

# %% [markdown]
# ## 2. The update is an interpolation
#
# $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ is a per-unit weighted average of the candidate
# and the old state, with weights $1 - z$ and $z$ in $(0, 1)$. Three consequences:
#
# * every unit of $h_t$ lies **between** $n_t$ and $h_{t-1}$;
# * so if $|h_{t-1}| < 1$ then $|h_t| < 1$ (since $|n_t| < 1$): the state stays bounded with no
#   extra squashing — the GRU has no $\tanh(c)$ at its output;
# * with $z \approx 1$ a unit simply **copies** its state: memory, like the LSTM's cell with
#   $f \approx 1, i \approx 0$ — except that the GRU ties "keep" and "write" together
#   ($z$ and $1 - z$), where the LSTM has two independent gates.
#
# We check the first two on a real step, reading $z$ and $n$ from the step's cache
# `(h_prev, r, z, n, hn)`:

# %%
rng = np.random.default_rng(2)
h_prev = np.tanh(rng.normal(size=(B, H))).astype(np.float32)              # (B, H), inside (-1, 1)
x_t = rng.normal(size=(B, D)).astype(np.float32)
(h_new,), (_, (_, r, z, n, hn)) = layer.cell(x_t, (h_prev,))
low, high = np.minimum(n, h_prev), np.maximum(n, h_prev)
print("z =", np.round(z[0], 3))
print("h_new between n and h_prev everywhere:", bool(np.all((low - 1e-6 <= h_new) & (h_new <= high + 1e-6))))
assert np.all((low - 1e-6 <= h_new) & (h_new <= high + 1e-6)) and np.all(np.abs(h_new) < 1)
assert np.allclose(h_new, (1 - z) * n + z * h_prev, atol=1e-6)

# %% [markdown]
# **The gradient highway.** Differentiating the interpolation, $h_{t-1}$ reaches $h_t$ directly
# through $z_t \odot h_{t-1}$, so
#
# $$ \frac{\partial h_t}{\partial h_{t-1}} = \mathrm{diag}(z_t) + (\text{terms through } n_t, z_t, r_t). $$
#
# The first term is the LSTM's $\mathrm{diag}(f_t)$ again: elementwise, no weight matrix, no
# squashing derivative. In tinyrwkv's backward it is `dh_direct = dh * z`:

# %%
print(inspect.getsource(GRULayer.step_backward))

# %% [markdown]
# ## 3. Parameters: RNN, LSTM, GRU
#
# Each gate block costs the same, $H(D + H)$ weights and $2H$ biases (torch keeps two bias
# vectors), so at equal sizes the three layers have parameters in the ratio **1 : 4 : 3**:

# %%
D_CMP, H_CMP = 32, 64
stacks = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
counts = {name: cls(D_CMP, H_CMP, rng=np.random.default_rng(SEED)).num_parameters() for name, cls in stacks.items()}
print(f"one layer, input {D_CMP}, hidden {H_CMP}:")
for name, count in counts.items():
    print(f"  {name:4s} {count:6d} parameters  ({count / counts['RNN']:.0f} x RNN)")
assert counts["LSTM"] == 4 * counts["RNN"] and counts["GRU"] == 3 * counts["RNN"]

# %% [markdown]
# The state is smaller too: a GRU carries $H$ numbers per layer between tokens, an LSTM $2H$
# ($h$ and $c$). The cost per token is proportional to the parameters, so a GRU step costs
# about three quarters of an LSTM step at the same $H$.
#
# ## 4. Experiment: the same tasks, three models
#
# **The copy task with a long delay** (lesson 02's task; in full mode the delay is 20 blanks).
# Same hidden size 48, same data, same optimiser (Adam, lr 0.01, clipping at 1).

# %%
MODELS = {"RNN": RNNLanguageModel, "LSTM": LSTMLanguageModel, "GRU": GRULanguageModel}
COLORS = {"RNN": "tab:red", "LSTM": "tab:blue", "GRU": "tab:green"}
task = CopyTask(n_symbols=8, length=3, delay=COPY_DELAY)
copy_runs = {}
for name, model_class in MODELS.items():
    model = model_class(task.vocab_size, hidden_size=48, embed_dim=16, rng=np.random.default_rng(SEED))
    history = train(model, task.batches(32), COPY_STEPS, lr=0.01, seed=SEED, progress=False,
                    eval_fn=lambda m: task.accuracy(m, batch_size=128)["symbol"], eval_every=COPY_STEPS // 15)
    copy_runs[name] = history
    print(f"copy task, delay {COPY_DELAY}: {name:4s} {model.num_parameters():6d} parameters   final accuracy "
          f"{history.evals[-1][1]:.3f}   ({1000 * history.seconds / COPY_STEPS:.1f} ms/step)")

# %% [markdown]
# **The character corpus** (lesson 01's short tales): next-character prediction on windows of
# 64 characters, hidden size 64, validation loss measured every few steps on held-out text.

# %%
corpus = load_corpus()
unigram, bigram = corpus.unigram_entropy(), corpus.bigram_cross_entropy()
char_runs, char_models = {}, {}
for name, model_class in MODELS.items():
    model = model_class(corpus.vocab.size, hidden_size=64, embed_dim=32, rng=np.random.default_rng(SEED))
    history = train(model, corpus.batches(32, 64), CHAR_STEPS, lr=0.01, seed=SEED, progress=False,
                    eval_fn=corpus.evaluate, eval_every=max(CHAR_STEPS // 10, 1))
    char_runs[name], char_models[name] = history, model
    print(f"char LM: {name:4s} {model.num_parameters():6d} parameters   val loss {history.evals[-1][1]:.3f} nats/char"
          f" (best {min(v for _, v in history.evals):.3f})   ({1000 * history.seconds / CHAR_STEPS:.1f} ms/step)")
print(f"baselines: unigram {unigram:.3f}, bigram {bigram:.3f} nats/char")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
for name in MODELS:
    steps, accuracy = zip(*copy_runs[name].evals)
    ax0.plot(steps, accuracy, "o-", ms=3, color=COLORS[name], label=name)
    steps, val = zip(*char_runs[name].evals)
    ax1.plot(steps, val, "o-", ms=3, color=COLORS[name], label=name)
ax0.axhline(task.chance, color="k", ls=":", label="chance (1/8)")
ax0.set_title(f"Copy task, delay {COPY_DELAY}: recall accuracy")
ax0.set_xlabel("training step")
ax0.set_ylabel("fraction of symbols right")
ax0.set_ylim(0, 1.05)
ax1.axhline(bigram, color="k", ls="--", lw=0.8, label="bigram baseline")
ax1.set_title("Char LM on the short tales: validation loss")
ax1.set_xlabel("training step")
ax1.set_ylabel("cross-entropy (nats/char)")
for ax in (ax0, ax1):
    ax.grid(True, alpha=0.3)
    ax.legend()
fig.suptitle("RNN vs LSTM vs GRU on the same tasks (same hidden size, optimiser and data)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the runs show.** On the copy task the plain RNN again stays far from perfect at a
# long delay (about twice chance). Both gated models can learn it; here (in full mode, delay 20) the GRU gets there in a
# few hundred steps while the LSTM is slower. On the character corpus the three end close
# together: one character of context (the bigram) is beaten by all, and the remaining
# differences are small — the corpus is only 33 KB, and a gated model soon starts to memorise
# it (watch for a validation loss that turns upward). Per step, the RNN is the cheapest, the
# GRU costs about three quarters of the LSTM.
#
# This is one seed on two small tasks; careful comparisons (Chung et al. 2014; Jozefowicz et al.
# 2015) found neither gated design consistently better — the gating itself is what matters.
#
# A sample from each char model (temperature 0.7), for the taste of it:

# %%
prompt = "The old fox "
for name, model in char_models.items():
    ids = model.generate(corpus.vocab.encode(prompt), 80, temperature=0.7, rng=np.random.default_rng(SEED))
    text = prompt + corpus.vocab.decode(ids)
    print(f"{name:4s} | " + text.replace("\n", " / "))          # ' / ' marks a line break

# %% [markdown]
# ## Summary
#
# * The GRU has one state and two gates: $r$ (how much of the past the candidate reads) and
#   $z$ (how much of the old state to keep); torch's order is **r, z, n**, and torch applies $r$
#   *after* the recurrent matrix product, to $W_{hn} h + b_{hn}$.
# * $h_t = (1 - z) \odot n + z \odot h_{t-1}$ is an interpolation: the state stays bounded, a
#   unit with $z \approx 1$ copies itself, and the gradient gets the elementwise path $\mathrm{diag}(z)$.
# * At equal sizes RNN : LSTM : GRU parameters are 1 : 4 : 3; the GRU's state is half the LSTM's.
# * On the long-delay copy task both gated models beat the RNN by far; between GRU and LSTM the
#   differences depend on the task and the setup.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell: the check compares your answer with tinyrwkv's own code on
# fixed inputs and says what is wrong. Solutions are in `lessons/solutions/03_gru.py`.

# %% tags=["exercise"]
def gru_cell(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """One GRU step with torch's equations and gate order r, z, n.

    x (B, D), h_prev (B, H), w_ih (3H, D), w_hh (3H, H), b_ih (3H,), b_hh (3H,). Return h (B, H).
    Mind where torch puts the reset gate: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    Use 1 / (1 + np.exp(-a)) for the sigmoid.
    """
    raise NotImplementedError


check.gru_cell(gru_cell)


# %% tags=["exercise"]
def gru_hold_biases(hidden_size):
    """Biases that turn a GRU into a perfect memory: whatever the input, h stays at its initial value.

    Return (b_ih, b_hh), each of shape (3 * hidden_size,). The check puts them into a GRU with
    torch's random weights, runs 20 steps of N(0, 1) inputs, and wants h to move by less than 1e-3.
    Which gate must be pinned, in which block, and how close to 1 must it be?
    """
    raise NotImplementedError


check.gru_hold_biases(gru_hold_biases)


# %% tags=["exercise"]
def recurrent_num_params(kind, input_size, hidden_size, num_layers=1, bidirectional=False):
    """How many parameters torch.nn.RNN / LSTM / GRU(input_size, hidden_size, num_layers,
    bidirectional=bidirectional) has, for kind in {"rnn", "lstm", "gru"}. Return an int.

    In a bidirectional stack each layer has a forward and a reverse direction, and every layer
    above the first reads both directions' outputs.
    """
    raise NotImplementedError


check.recurrent_num_params(recurrent_num_params)

# %% [markdown]
# **Going further:** rerun the copy task with `SEED = 1` and `2`, and with an LSTM of
# `forget_bias=3.0`: does the GRU's lead survive? Give the three models the *same parameter
# budget* (raise the GRU's and the RNN's hidden size until `num_parameters()` matches the
# LSTM's) and compare again. Then write
# Cho et al.'s original candidate $\tanh(W_{in} x + W_{hn}(r \odot h))$ as a `GRULayer` subclass
# and compare its learning curve with torch's version.
#
# Next: [04 · GNMT-style seq2seq with attention](04_seq2seq.ipynb) — stacked LSTMs that translate.
