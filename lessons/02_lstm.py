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
# # 02 · The LSTM: a cell state the gradient can travel along
#
# > **Objectives.** After this lesson you can
# > 1. write the LSTM cell with torch's gate order $(i, f, g, o)$ and load torch weights into it;
# > 2. explain why the additive cell path ($\partial c_t / \partial c_{t-1} = \mathrm{diag}(f_t)$)
# >    keeps gradients alive, and why the forget gate's bias starts at 1;
# > 3. show on the copy task that an LSTM remembers across a delay where an RNN does not, and read
# >    its gates while it does.
# >
# > **Prerequisites.** Lesson 01 (BPTT, vanishing gradients).
# >
# > **Time.** about 50 minutes: reading 15 (1,215 words, 133 lines of code),
# > running 1 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
#
# Lesson 01 ended with a diagnosis. An RNN's gradient between two steps $d$ apart is a product
# of $d$ Jacobians $\mathrm{diag}(1 - h^2)\, W_{hh}$, so it shrinks (or grows) geometrically with
# $d$; clipping tames growth but cannot bring back a signal that has shrunk to $10^{-10}$.
#
# The **Long Short-Term Memory** (Hochreiter & Schmidhuber 1997, with the forget gate of Gers,
# Schmidhuber & Cummins 2000) adds a second state, the **cell** $c_t$, which is updated by
# *adding* to it rather than by squashing a matrix product of it. Multiplicative **gates** —
# numbers between 0 and 1 computed from the input and the previous output — decide what to
# write into the cell, what to keep, and what to show. In this lesson:
#
# * the LSTM's equations in torch's exact form and gate order, on real code from
#   `tinyrwkv.models.lstm`;
# * why the additive cell path keeps gradients alive, and why the forget gate's bias matters;
# * the **copy task**: recall symbols after a delay — an RNN fails as the delay grows, an LSTM
#   learns it;
# * inside a trained LSTM: its gates, opening and closing on cue.

# %%
import os

# The matrices here are tiny: one BLAS thread is faster than several (and never spins on a busy
# machine). This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.data.copy_task import CopyTask
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments.gradient_flow import gradient_vs_distance
from tinyrwkv.models.lstm import LSTMLanguageModel, LSTMLayer
from tinyrwkv.models.rnn import RNNLanguageModel, RNNLayer
from tinyrwkv.training import train

FAST = os.environ.get("TINYRWKV_FAST") == "1"     # CI: small and quick; the numbers then mean less
STEPS = 400 if FAST else 1500                      # Adam steps per copy-task run
DELAYS = [0, 5] if FAST else [0, 5, 10, 20]        # copy-task delays to compare
MAIN_DELAY = 5 if FAST else 10                     # the delay whose learning curves we plot
SEED = 0
np.random.seed(SEED)
print(f"FAST={FAST}: {STEPS} steps per run, delays {DELAYS}")

# %% [markdown]
# ## 1. The equations

# %%
draw('lstm_cell')

# %% [markdown]
# One LSTM step reads $x_t$ and the previous state $(h_{t-1}, c_{t-1})$. Four blocks of
# pre-activations come out of one matrix product, in **torch's order i, f, g, o** (rows
# $[0{:}H]$, $[H{:}2H]$, $[2H{:}3H]$, $[3H{:}4H]$ of $W_{ih}$, $W_{hh}$ and both biases):
#
# $$ \begin{aligned}
# i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) && \text{input gate: how much of the candidate to write} \\
# f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) && \text{forget gate: how much of the old cell to keep} \\
# g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) && \text{candidate values} \\
# o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) && \text{output gate: how much of the cell to show} \\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t && \text{the cell: keep some, add some} \\
# h_t &= o_t \odot \tanh(c_t) && \text{the output (and the next step's input to the gates)}
# \end{aligned} $$
#
# $\sigma$ is the logistic sigmoid, so every gate lies in $(0, 1)$ and acts as a soft switch,
# elementwise ($\odot$). Because these are `torch.nn.LSTM`'s exact equations and layout, torch
# weights load directly (`LSTM.load_torch_state_dict`; the tests match torch to $10^{-12}$).
#
# The sequence machinery is lesson 01's `RecurrentLayer`, unchanged; the LSTM only writes its cell
# (`LSTMLayer.step` in `tinyrwkv/models/lstm.py`: the answer to exercise 1, so read it after you
# have tried).
#
# Shapes: each weight holds the four gates stacked, so $W_{ih}$ is $(4H, D)$. Slicing the rows
# gives each gate's own matrix:

# %%
B, T, D, H = 2, 6, 3, 4
layer = LSTMLayer(input_size=D, hidden_size=H, rng=np.random.default_rng(SEED))
for name, p in layer.params.items():
    print(f"{name:5s} {str(p.shape):8s}")
w_ih = layer.params["w_ih"]
gate_weights = {gate: w_ih[k * H:(k + 1) * H] for k, gate in enumerate("ifgo")}    # each (H, D)
print({gate: w.shape for gate, w in gate_weights.items()})
assert w_ih.shape == (4 * H, D) and all(w.shape == (H, D) for w in gate_weights.values())

x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)     # (B, T, D)
y, (h_last, c_last), cache = layer.forward(x)
print("x", x.shape, "-> y", y.shape, "  final state: h", h_last.shape, " c", c_last.shape)
assert y.shape == (B, T, H) and h_last.shape == c_last.shape == (B, H)
assert np.array_equal(y[:, -1], h_last)

state = layer.zero_state(B)                              # (h, c), both zeros (B, H)
for t in range(T):                                       # one token at a time, as in generation
    state, _ = layer.cell(x[:, t], state)
assert np.allclose(state[0], h_last, atol=1e-6) and np.allclose(state[1], c_last, atol=1e-6)

# Four gates: four times the RNN's parameters for the same sizes.
rnn_layer = RNNLayer(D, H, rng=np.random.default_rng(SEED))
print(f"parameters: RNN layer {rnn_layer.num_parameters()}, LSTM layer {layer.num_parameters()}")
assert layer.num_parameters() == 4 * rnn_layer.num_parameters() == 4 * (H * D + H * H + 2 * H)

# %% [markdown]
# ## 2. Why the additive cell keeps gradients alive
#
# Follow the gradient backward along the cell. The update $c_t = f_t \odot c_{t-1} + i_t \odot g_t$
# gives, one step back,
#
# $$ \frac{\partial c_t}{\partial c_{t-1}} = \mathrm{diag}(f_t)
#    \qquad\Longrightarrow\qquad
#    \frac{\partial c_{T-1}}{\partial c_{T-1-d}}\Big|_{\text{cell path}} = \mathrm{diag}\Big(\prod_{s=T-d}^{T-1} f_s\Big). $$
#
# Compare with the RNN's $\mathrm{diag}(1 - h^2)\, W_{hh}$ per step: along the cell there is
# **no weight matrix and no squashing derivative**, only the forget gate, elementwise. When the
# network sets $f \approx 1$ (and $i \approx 0$: write nothing new), the cell holds its value
# and its gradient passes back unchanged for as many steps as needed — Hochreiter and
# Schmidhuber's "constant error carousel". The forget gate is *learned*: the network decides,
# per unit and per step, how long to remember.
#
# There are other paths too (through $h_{t-1}$ into the gates), but the gradient only needs one
# path that does not shrink. In tinyrwkv's backward (`LSTMLayer.step_backward`), the cell's
# highway is one multiplication by $f$; exercise 2 asks you for the whole of $\partial L/\partial c_{t-1}$.
#
# **The forget gate's bias.** With torch's default init every pre-activation is near 0, so
# $f \approx \sigma(0) = 0.5$ at the start: the cell *halves* every step, and the gradient along
# it falls like $0.5^d$ — as fast as an RNN's. Adding 1 to the forget gate's bias (Gers et al.
# 2000; Jozefowicz et al. 2015) starts at $f \approx \sigma(1) \approx 0.73$. tinyrwkv's
# `LSTMLayer` does this by default (`forget_bias=1.0`); it changes only the starting point.
#
# **Experiment 1.** The gradient reaching an input $d$ steps back from the last state, at
# initialisation, on random inputs (`gradient_vs_distance` from lesson 01): an RNN against LSTMs
# with forget bias 0 (torch's init), 1 (tinyrwkv's default) and 3 ($f \approx 0.95$).

# %%
H_GRAD, D_GRAD, B_GRAD, T_GRAD = 64, 16, 16, 100
x_random = np.random.default_rng(SEED).normal(size=(B_GRAD, T_GRAD, D_GRAD))    # (B, T, D)
layers = {"RNN (tanh)": RNNLayer(D_GRAD, H_GRAD, rng=np.random.default_rng(SEED), dtype=np.float64)}
for bias in (0.0, 1.0, 3.0):
    layers[f"LSTM, forget bias {bias:g}"] = LSTMLayer(D_GRAD, H_GRAD, rng=np.random.default_rng(SEED),
                                                      dtype=np.float64, forget_bias=bias)
grad_curves = {label: gradient_vs_distance(lyr, x_random, np.random.default_rng(SEED)) for label, lyr in layers.items()}
print(f"{'':24s} {'g(1)':>9s} {'g(20)':>9s} {'g(50)':>9s} {'g(1)/g(50)':>11s}")
for label, g in grad_curves.items():
    print(f"{label:24s} {g[1]:9.2e} {g[20]:9.2e} {g[50]:9.2e} {g[1] / g[50]:11.2e}")

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
colors = {"RNN (tanh)": "tab:red", "LSTM, forget bias 0": "tab:cyan", "LSTM, forget bias 1": "tab:blue",
          "LSTM, forget bias 3": "navy"}
for label, g in grad_curves.items():
    ax.semilogy(g, color=colors[label], label=label)
ax.set_title(f"At initialisation (H = {H_GRAD}, random N(0, 1) inputs)")
ax.set_xlabel("distance d (time steps back from the last state)")
ax.set_ylabel("gradient norm ||d(u . h_T-1) / d x_T-1-d||  (unitless)")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# With forget bias 0 the LSTM's gradient decays nearly as fast as the RNN's (both lose many
# orders of magnitude over 50 steps): at initialisation its forget gates are about 0.5, and the
# "highway" halves the signal at every step. The bias
# shifts the whole curve: the larger $f$, the slower the decay. This is only the starting point;
# training moves $f$ where the task needs it. The copy task shows whether it does.

# %% [markdown]
# ## 3. The copy task: remember across a delay
#
# `tinyrwkv.data.CopyTask` shows the model $k$ symbols, then `delay` blanks, then a "go" marker;
# the model must then say the $k$ symbols back. Only the answer positions are scored (targets
# `-1` elsewhere), and a model without memory can only guess: chance is $1/8$ per symbol.

# %%
task = CopyTask(n_symbols=8, length=3, delay=4)
inputs, targets = task.sample(np.random.default_rng(3), batch_size=1)
names = {0: "_", 1: ">"}                                  # 0 = blank, 1 = go; symbols print as letters
show = lambda ids: " ".join(names.get(int(i), chr(ord("a") + int(i) - 2)) if i >= 0 else "." for i in ids)  # noqa: E731
print("inputs :", show(inputs[0]))
print("targets:", show(targets[0]))
print(f"seq_len = 2k + delay = {task.seq_len}, vocabulary {task.vocab_size}, chance {task.chance:.3f}")
assert inputs.shape == targets.shape == (1, task.seq_len)

# %% [markdown]
# **Experiment 2.** Train an RNN and an LSTM of the same hidden size (48) on the copy task with
# several delays, same data, same optimiser (Adam, lr 0.01, clipping at 1), and measure recall
# accuracy on fresh sequences as training goes.

# %%
MODELS = {"RNN": RNNLanguageModel, "LSTM": LSTMLanguageModel}
EVAL_EVERY = STEPS // 15


def copy_run(model_class, delay):
    task = CopyTask(n_symbols=8, length=3, delay=delay)
    model = model_class(task.vocab_size, hidden_size=48, embed_dim=16, rng=np.random.default_rng(SEED))
    history = train(model, task.batches(32), STEPS, lr=0.01, seed=SEED, progress=False,
                    eval_fn=lambda m: task.accuracy(m, batch_size=128)["symbol"], eval_every=EVAL_EVERY)
    return model, history


results = {}
for delay in DELAYS:
    for label, model_class in MODELS.items():
        model, history = copy_run(model_class, delay)
        results[label, delay] = (model, history)
        print(f"delay {delay:2d}  {label:4s}  final accuracy {history.evals[-1][1]:.3f}   ({history.seconds:.1f} s)")
n_params = {label: results[label, DELAYS[0]][0].num_parameters() for label in MODELS}
print("parameters:", n_params)

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
colors = {"RNN": "tab:red", "LSTM": "tab:blue"}
for label in MODELS:
    steps, accuracy = zip(*results[label, MAIN_DELAY][1].evals)
    ax0.plot(steps, accuracy, "o-", ms=3, color=colors[label], label=f"{label} ({n_params[label]} parameters)")
    finals = [results[label, d][1].evals[-1][1] for d in DELAYS]
    ax1.plot(DELAYS, finals, "o-", color=colors[label], label=label)
for ax in (ax0, ax1):
    ax.axhline(1 / 8, color="k", ls=":", label="chance (1/8)")
    ax.set_ylabel("recall accuracy (fraction of symbols right)")
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend()
ax0.set_title(f"Learning curves, delay {MAIN_DELAY}")
ax0.set_xlabel("training step")
ax1.set_title(f"Accuracy after {STEPS} steps")
ax1.set_xlabel("delay (blank steps between the symbols and the answer)")
fig.suptitle("Copy task (3 of 8 symbols): RNN vs LSTM, hidden size 48")
fig.tight_layout()
plt.show()

# %% [markdown]
# With no delay both models learn the task: it needs only a few steps of memory. As the delay
# grows, the RNN stays far below perfect (at a delay of 10 or more, about twice chance), while
# the LSTM reaches perfect recall; the longest
# delays take it more steps (in full mode, watch the delay-20 point still climbing at the end).
# The RNN has the capacity — the task is a few symbols in a 48-number state — but not the
# gradient: the signal connecting the answer to the symbols fades before it can teach it what
# to keep.

# %% [markdown]
# ## 4. Inside the trained LSTM: gates on cue
#
# The step's cache holds the gate values (`(h_prev, c_prev, i, f, g, o, tanh_c)`, see `step`
# above), so we can watch them on one copy-task sequence. Units are sorted by their mean forget
# gate during the delay.

# %%
lstm, _ = results["LSTM", MAIN_DELAY]
task = CopyTask(n_symbols=8, length=3, delay=MAIN_DELAY)
inputs, _ = task.sample(np.random.default_rng(5), batch_size=1)
_, cache = lstm.forward(inputs)
_, _, step_caches = cache["rnn"][0]                      # the first (only) layer's per-step caches
gate = {name: np.stack([c[k] for c in step_caches], axis=1)[0] for k, name in ((2, "input gate i"), (3, "forget gate f"))}
delay_steps = slice(task.length, task.length + task.delay)
order = np.argsort(-gate["forget gate f"][delay_steps].mean(axis=0))   # most "remembering" units first
for name, values in gate.items():
    assert values.shape == (task.seq_len, 48)           # (T, H)
    print(f"{name}: mean during the delay {values[delay_steps].mean():.2f}")
holding = gate["forget gate f"][delay_steps].min(axis=0) > 0.9         # (H,) f > 0.9 at every blank
print(f"units whose forget gate stays above 0.9 through the whole delay: {holding.sum()} of 48; "
      f"their mean input gate during the delay: {gate['input gate i'][delay_steps][:, holding].mean():.2f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, (name, values) in zip(axes, gate.items()):
    im = ax.imshow(values[:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.axvline(task.length - 0.5, color="w", lw=1)
    ax.axvline(task.length + task.delay - 0.5, color="w", lw=1)
    ax.set_title(f"{name} (symbols | delay | go + answer)")
    ax.set_xlabel("time step t")
    ax.set_xticks(range(task.seq_len))
    ax.set_xticklabels(show(inputs[0]).split(), fontsize=7)
axes[0].set_ylabel("hidden unit (sorted by mean f during the delay)")
fig.colorbar(im, ax=axes, label="gate value (0 = closed, 1 = open)")
fig.suptitle("The trained LSTM's gates on one copy-task sequence")
plt.show()

# %% [markdown]
# During the delay most units hold their forget gate open ($f \approx 1$): their cells keep what
# the symbols wrote. Many of them also turn their input gate down, so the blanks, which carry
# no information, write little over it. A few units (bottom rows) do the opposite and are
# rewritten at every step, scratch space. At the go marker the pattern changes again: time to
# read out. Nobody told the network to do this; the gradient, travelling along $\prod f$,
# taught it. (In fast mode the model trains less, and the picture differs in its details.)

# %% [markdown]
# ## Summary
#
# * The LSTM carries two states: the output $h_t$ and the **cell** $c_t = f \odot c_{t-1} + i \odot g$.
#   Gates $i, f, o \in (0, 1)$ decide what to write, keep and show; torch stacks the blocks as
#   **i, f, g, o**, so $W_{ih}$ is $(4H, D)$ and a layer has 4 times an RNN's parameters.
# * Along the cell, one step back multiplies the gradient by $f$ alone — no matrix, no squashing —
#   so with $f \approx 1$ the gradient survives long delays: the **additive path** is the fix.
# * The forget gate's initial bias sets how fast memory fades at the start: bias 0 makes an LSTM
#   forget nearly as fast as an RNN; bias 1 (tinyrwkv's default) keeps it much longer.
# * On the copy task an RNN's accuracy drops as the delay grows; the LSTM learns it, with gates that
#   hold the cell shut and open on cue.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell: the check compares your answer with tinyrwkv's own code on
# fixed inputs and says what is wrong. Solutions are in `lessons/solutions/02_lstm.py`.

# %% tags=["exercise"]
def lstm_cell(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step with torch's equations and gate order i, f, g, o.

    x (B, D), h_prev (B, H), c_prev (B, H), w_ih (4H, D), w_hh (4H, H), b_ih (4H,), b_hh (4H,).
    Return (h, c), each (B, H). Use 1 / (1 + np.exp(-z)) for the sigmoid.
    """
    raise NotImplementedError


check.lstm_cell(lstm_cell)


# %% tags=["exercise"]
def lstm_dc_prev(dh, dc, f, o, c):
    """The gradient dL/dc_{t-1}, one step back along the cell.

    dh, dc (B, H): the gradients arriving at this step's outputs h_t and c_t (from the loss and the
    next step); f, o (B, H): this step's forget and output gates; c (B, H): this step's new cell c_t.
    Remember that c_t reaches the loss two ways: directly, and through h_t = o * tanh(c_t).
    """
    raise NotImplementedError


check.lstm_dc_prev(lstm_dc_prev)


# %% tags=["exercise"]
def lstm_num_params(input_size, hidden_size, num_layers=1):
    """How many parameters torch.nn.LSTM(input_size, hidden_size, num_layers) has (bias=True).

    Return an int. Layers above the first read the output of the layer below.
    """
    raise NotImplementedError


check.lstm_num_params(lstm_num_params)

# %% [markdown]
# **Going further:** train the LSTM at delay 20 with `forget_bias=0.0`, `1.0` and `3.0` and compare
# how many steps each needs; then plot $\prod_s f_s$ over the delay for the units that hold their
# cell, and compare with what the gradient-flow figure (`python -m tinyrwkv.figures`) shows after
# training.
#
# Next: [03 · The GRU](03_gru.ipynb) — the LSTM's idea with two gates and no separate cell.
