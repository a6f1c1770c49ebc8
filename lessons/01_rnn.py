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
# # 01 · The recurrent neural network: a hidden state, backprop through time, and its gradients
#
# > **Objectives.** After this lesson you can
# > 1. write the Elman RNN's step and its backward pass, and check them with finite differences;
# > 2. explain backpropagation through time as a product of Jacobians, and predict from the spectral
# >    radius of $W_{hh}$ whether gradients vanish or explode with distance (then measure it);
# > 3. clip gradients by their global norm and see what clipping does to a training run.
# >
# > **Prerequisites.** Lesson 00; the chain rule with vectors and matrices (Jacobians); softmax and
# > cross-entropy.
# >
# > **Time.** about 60 minutes: reading 20 (1,347 words, 140 lines of code),
# > running 1 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# A language model reads tokens one at a time and must remember what it has read. The simplest
# machine that does this is the **recurrent neural network** (Elman 1990): a fixed-size vector,
# the **hidden state**, updated once per token. Everything the network knows about the past is
# in that vector.
#
# This idea is where the whole course starts and, surprisingly, where it ends: RWKV (lesson 06)
# generates text as an RNN, carrying a fixed-size state from token to token. What went wrong with
# the plain RNN — and what every later model fixed — is the subject of this lesson:
#
# * the RNN's equation, run on real code from `tinyrwkv.models.rnn`;
# * **backpropagation through time** (BPTT): how the gradient flows backward along the sequence;
# * why that gradient **vanishes or explodes** with distance, measured against the spectral
#   radius of the recurrent weight matrix;
# * **gradient clipping**, the standard cure for explosions, in a real training run.

# %%
import os

# The matrices here are tiny: one BLAS thread is faster than several (and never spins on a busy
# machine). This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inspect

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments.gradient_flow import gradient_vs_distance
from tinyrwkv.models.rnn import RecurrentLayer, RNNLanguageModel, RNNLayer
from tinyrwkv.nn import clip_grad_norm, gradcheck
from tinyrwkv.training import train

FAST = os.environ.get("TINYRWKV_FAST") == "1"     # CI: small and quick; the numbers then mean less
TRAIN_STEPS = 120 if FAST else 400                 # Adam steps per run in the clipping experiment
SEED = 0
np.random.seed(SEED)
print(f"FAST={FAST}: {TRAIN_STEPS} training steps per run")

# %% [markdown]
# ## 1. The hidden state
#
# At every time step $t$ the RNN mixes the new input $x_t$ with its previous state $h_{t-1}$
# and squashes the result:
#
# $$ h_t = \tanh\left( W_{ih}\, x_t + b_{ih} + W_{hh}\, h_{t-1} + b_{hh} \right), \qquad
#    x_t \in \mathbb{R}^D,\; h_t \in \mathbb{R}^H . $$
#
# These are exactly `torch.nn.RNN`'s equations (with its two biases), so weights copy between
# torch and tinyrwkv. Code works on a batch of $B$ sequences at once, with rows as vectors, so
# the same line reads `h = tanh(x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh)` with `x` of shape
# $(B, D)$ and `h` of shape $(B, H)$. We count time from 0: inputs $x_0 \dots x_{T-1}$,
# states $h_0 \dots h_{T-1}$, and the initial state $h_{-1}$ (zeros unless given).
#
# Unrolled in time, the same cell — the same weights — is applied at every step:

# %%
draw('rnn_unrolled')

# %% [markdown]
# Let us check the shapes on a small layer:

# %%
B, T, D, H = 2, 7, 3, 5
layer = RNNLayer(input_size=D, hidden_size=H, rng=np.random.default_rng(SEED))
for name, p in layer.params.items():
    print(f"{name:5s} {str(p.shape):8s}")

x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)     # (B, T, D)
y, (h_last,), cache = layer.forward(x)
print("x", x.shape, "-> y", y.shape, "  final state h", h_last.shape)
assert y.shape == (B, T, H) and h_last.shape == (B, H)
assert np.array_equal(y[:, -1], h_last)                 # y_t is h_t: the last output is the final state

# Generation runs one step at a time with `cell`; it is the same arithmetic as `forward`.
state = layer.zero_state(B)                               # (h_{-1},) = zeros (B, H)
for t in range(T):
    state, _ = layer.cell(x[:, t], state)
print("step by step == forward:", np.allclose(state[0], h_last, atol=1e-6))
assert np.allclose(state[0], h_last, atol=1e-6)

# %% [markdown]
# ## 2. Backpropagation through time
#
# To train, we need the gradient of a loss $L = \sum_t \ell_t(h_t)$ with respect to the
# weights. Unrolled, the RNN is just a deep feed-forward network whose layers share weights, so
# backprop works as usual, walking the unrolled graph from $t = T-1$ back to $0$. Each state
# $h_t$ feeds two things — the output $\ell_t$ and the next step — so its gradient collects
# both:
#
# $$ \delta_t \;=\; \frac{\partial L}{\partial h_t}
#    \;=\; \frac{\partial \ell_t}{\partial h_t} \;+\;
#    \left(\frac{\partial h_{t+1}}{\partial h_t}\right)^{\!\top} \delta_{t+1},
#    \qquad
#    \frac{\partial h_{t+1}}{\partial h_t} = \mathrm{diag}\left(1 - h_{t+1}^2\right) W_{hh}. $$
#
# Inside one step, with $a_t$ the pre-activation and `dh` $= \delta_t$:
#
# | forward | backward |
# |---|---|
# | `a = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh` | `da = dh * (1 - h**2)`  (tanh' at the output) |
# | `h = tanh(a)` | `dW_ih += da.T @ x`,  `dW_hh += da.T @ h_prev`,  `db += da.sum(0)` |
# | | `dx = da @ W_ih`,  `dh_prev = da @ W_hh` |
#
# Weight gradients **add up** over the time steps, because the same weights act at every step.
# tinyrwkv's cell backward (`RNNLayer.step_backward`) is exactly the table; writing it is
# exercise 2. The time loop of `RecurrentLayer.backward` — note the line where $\partial\ell_t/\partial h_t$
# (`dy[:, t]`) joins the gradient arriving from step $t+1$:

# %%
source = inspect.getsource(RecurrentLayer.backward)
print(source[source.index("        for t in reversed"):source.index("        dx, dw, db")])

# %% [markdown]
# A hand-written backward pass is only as good as its check. `tinyrwkv.nn.gradcheck` compares it
# with central finite differences $\frac{L(\theta+\epsilon) - L(\theta-\epsilon)}{2\epsilon}$ in
# float64, for every parameter of a small layer run over a whole sequence:

# %%
rng = np.random.default_rng(2)
small = RNNLayer(3, 4, rng=rng, dtype=np.float64)
xs = rng.normal(size=(2, 6, 3))                          # (B, T, D)
weights_of_outputs = rng.normal(size=(2, 6, 4))          # L = sum_t <R_t, h_t>: a loss at every step


def sequence_loss():
    y, _, _ = small.forward(xs)
    return float(np.sum(weights_of_outputs * y))


_, _, cache = small.forward(xs)
small.zero_grad()
dx, _ = small.backward(weights_of_outputs, cache)        # dL/dy = R: BPTT fills small.grads
errors = gradcheck(sequence_loss, small.params, small.grads, max_checks=12)
for name, err in errors.items():
    print(f"{name:5s} relative error {err:.1e}")
assert max(errors.values()) < 1e-7

# %% [markdown]
# ## 3. Vanishing and exploding gradients
#
# How much does the last state $h_{T-1}$ still depend on the state $d$ steps earlier? Apply the
# chain rule $d$ times:
#
# $$ \frac{\partial h_{T-1}}{\partial h_{T-1-d}} \;=\; \prod_{s=T-d}^{T-1}
#    \mathrm{diag}\left(1 - h_s^2\right) W_{hh}
#    \qquad\Longrightarrow\qquad
#    \left\lVert \frac{\partial h_{T-1}}{\partial h_{T-1-d}} \right\rVert
#    \;\le\; \left\lVert W_{hh} \right\rVert_2^{\,d}, $$
#
# since $0 < 1 - h^2 \le 1$. The gradient that teaches the network about an input $d$ steps back
# is multiplied by this product: a **geometric** function of the distance (Bengio et al. 1994;
# Pascanu, Mikolov & Bengio 2013).
#
# * If the largest singular value of $W_{hh}$ is below 1, the product **vanishes** like
#   $\lVert W_{hh}\rVert^d$: the network cannot learn that something 30 steps back mattered.
# * Near $h = 0$ the tanh is linear ($1 - h^2 \approx 1$) and the product is simply $W_{hh}^d$,
#   which grows like $\rho^d$ where $\rho$ is the **spectral radius** (largest $|\text{eigenvalue}|$).
#   With $\rho > 1$ the gradient **explodes**.
#
# Let us measure it with `gradient_vs_distance` from `tinyrwkv.experiments.gradient_flow` (the
# module behind the course's gradient-flow figure). It backpropagates a random unit vector $u$
# from the final state with the layer's own `backward` and records, at each distance $d$, the
# size of the gradient reaching the input $x_{T-1-d}$:

# %%
print(inspect.getdoc(gradient_vs_distance))

# %% [markdown]
# We rescale a random $W_{hh}$ to chosen spectral radii and measure twice: with zero inputs and
# zero biases (the state stays at 0, where tanh is linear: the pure $W_{hh}^d$ regime), and with
# ordinary $\mathcal{N}(0, 1)$ inputs, where the tanh saturates. The last column of the table is
# the measured factor per step, $\bigl(g(d_2)/g(d_1)\bigr)^{1/(d_2-d_1)}$, far from the end.

# %%
H_GRAD, D_GRAD, B_GRAD, T_GRAD = 64, 16, 16, 80
RADII = [0.5, 0.9, 1.0, 1.2, 1.5, 3.0]


def spectral_radius(w):
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def rnn_with_radius(radius, zero_biases, seed=SEED):
    """A float64 RNNLayer (torch init) whose W_hh is rescaled to spectral radius ``radius``."""
    layer = RNNLayer(D_GRAD, H_GRAD, rng=np.random.default_rng(seed), dtype=np.float64)
    w = layer.params["w_hh"]
    w *= radius / spectral_radius(w)
    if zero_biases:
        layer.params["b_ih"][...] = 0
        layer.params["b_hh"][...] = 0
    return layer


default = RNNLayer(D_GRAD, H_GRAD, rng=np.random.default_rng(SEED))
print(f"torch's default init U(-1/sqrt(H), 1/sqrt(H)) gives W_hh a spectral radius of "
      f"{spectral_radius(default.params['w_hh']):.2f} (about 1/sqrt(3)): it starts in the vanishing regime.\n")

rng = np.random.default_rng(SEED)
x_random = rng.normal(size=(B_GRAD, T_GRAD, D_GRAD))                  # (B, T, D)
x_zero = np.zeros_like(x_random)
curves = {"zero": {}, "random": {}}
print(f"{'radius':>6s} {'inputs':>7s} {'g(1)':>9s} {'g(20)':>9s} {'g(60)':>9s}  factor/step")
for radius in RADII:
    for regime, x_in in (("zero", x_zero), ("random", x_random)):
        g = gradient_vs_distance(rnn_with_radius(radius, zero_biases=(regime == "zero")), x_in,
                                 np.random.default_rng(SEED))
        curves[regime][radius] = g
        factor = (g[60] / g[20]) ** (1 / 40)
        print(f"{radius:6.1f} {regime:>7s} {g[1]:9.2e} {g[20]:9.2e} {g[60]:9.2e}  {factor:.3f}")
assert all(g.shape == (T_GRAD,) for c in curves.values() for g in c.values())

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
colors = plt.cm.coolwarm(np.linspace(0, 1, len(RADII)))
titles = {"zero": "Zero inputs and biases: tanh stays linear",
          "random": "Random N(0, 1) inputs: tanh saturates"}
for ax, regime in zip(axes, ("zero", "random")):
    for color, radius in zip(colors, RADII):
        ax.semilogy(curves[regime][radius], color=color, label=f"spectral radius {radius}")
    ax.set_title(titles[regime])
    ax.set_xlabel("distance d (time steps back from the last state)")
    ax.grid(True, which="both", alpha=0.3)
axes[0].set_ylabel("gradient norm ||d(u . h_T-1) / d x_T-1-d||  (unitless)")
axes[0].set_ylim(1e-25, 1e25)
axes[1].legend(fontsize=8)
fig.suptitle(f"Elman RNN (H = {H_GRAD}): how the gradient reaching an input scales with its distance")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading the figure.** On the left every curve is a straight line on the log scale:
# geometric decay or growth, with a measured factor per step close to the spectral radius (the
# table's last column). Only $\rho = 1$ exactly stays level — a knife's edge no training run can
# stand on. On the right the tanh saturates: saturated units pass almost no gradient
# ($1 - h^2 \approx 0$), which pulls every curve down. Radii up to 1.2 now vanish too, 1.5 stays
# roughly level, and only the largest radius still explodes. Both failures are geometric in $d$. With $\rho \le 1$, an input
# 20 or 60 steps back gets a vanishingly small share of the training signal, so the RNN never
# learns to keep it — that is the problem lessons 02 and 03 fix.

# %% [markdown]
# ## 4. Exploding gradients in training, and gradient clipping
#
# Explosions are the easier problem to cure. When a gradient step would be huge, take a step
# in the *same direction* but of bounded size: compute the global norm over all parameters and
# scale every gradient by one factor (Pascanu et al. 2013),
#
# $$ \lVert g \rVert = \sqrt{\textstyle\sum_{p} \lVert g_p \rVert^2}, \qquad
#    g_p \leftarrow g_p \cdot \min\!\left(1, \frac{c}{\lVert g \rVert}\right). $$
#
# `tinyrwkv.nn.clip_grad_norm` does this in place and returns the norm *before* clipping, which
# `train(..., clip=c)` logs at every step as `history.grad_norms` (writing it is exercise 3):

# %%
grads_demo = {"a": np.array([3.0, 0.0]), "b": np.array([0.0, 4.0])}                 # global norm 5
norm_before = clip_grad_norm(grads_demo, 1.0)
print(f"norm before {norm_before:.1f}; after: a = {grads_demo['a']}, b = {grads_demo['b']} "
      f"(global norm {np.sqrt(sum((g ** 2).sum() for g in grads_demo.values())):.1f}, same direction)")
assert np.isclose(norm_before, 5.0) and np.allclose(grads_demo["a"], [0.6, 0.0])

# %% [markdown]
# **Experiment.** A character-level RNN language model on the course's corpus (short tales,
# 33 KB, shipped with tinyrwkv), windows of 64 characters. Three runs from the same
# initialisation and data order:
#
# 1. torch's default init ($\rho \approx 0.6$), clipping at 1;
# 2. $W_{hh}$ rescaled to $\rho = 2$, **no clipping**;
# 3. $\rho = 2$, clipping at 1.

# %%
corpus = load_corpus()
SEQ_LEN, BATCH = 64, 32
print(f"corpus: {len(corpus.text)} characters, vocabulary {corpus.vocab.size}")
print(f"baselines (nats/char): unigram {corpus.unigram_entropy():.3f}, bigram {corpus.bigram_cross_entropy():.3f}")


def char_rnn(radius=None):
    model = RNNLanguageModel(corpus.vocab.size, hidden_size=64, embed_dim=32, rng=np.random.default_rng(SEED))
    if radius is not None:
        w = model.rnn.layers[0].params["w_hh"]
        w *= radius / spectral_radius(w)
    return model


runs = {}
for label, radius, clip in (("default init, clip 1", None, 1.0),
                            ("radius 2, no clipping", 2.0, None),
                            ("radius 2, clip 1", 2.0, 1.0)):
    model = char_rnn(radius)
    history = train(model, corpus.batches(BATCH, SEQ_LEN), TRAIN_STEPS, lr=0.01, clip=clip,
                    seed=SEED, progress=False)
    norms = np.array(history.grad_norms)
    runs[label] = (history, corpus.evaluate(model))
    print(f"{label:22s} val loss {runs[label][1]:.3f} nats/char   grad norm: median {np.median(norms):.2f}, "
          f"max {norms.max():.1f}   ({history.seconds:.1f} s)")
assert all(len(h.grad_norms) == TRAIN_STEPS for h, _ in runs.values())

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
styles = {"default init, clip 1": "tab:gray", "radius 2, no clipping": "tab:red", "radius 2, clip 1": "tab:blue"}
for label, (history, val) in runs.items():
    ax0.semilogy(history.grad_norms, color=styles[label], lw=0.8, label=label)
    ax1.plot(history.smoothed(20), color=styles[label], label=f"{label} (val {val:.2f})")
ax0.axhline(1.0, color="k", ls=":", label="clip threshold c = 1")
ax0.set_title("Gradient norm before clipping")
ax0.set_xlabel("training step")
ax0.set_ylabel("global gradient norm (unitless)")
ax0.legend(fontsize=8)
ax1.axhline(corpus.bigram_cross_entropy(), color="k", ls="--", lw=0.8, label="bigram baseline")
ax1.set_title("Training loss (running mean of 20 steps)")
ax1.set_xlabel("training step")
ax1.set_ylabel("cross-entropy (nats/char)")
ax1.legend(fontsize=8)
fig.suptitle("Char-level RNN: exploding gradients from a large spectral radius, and clipping")
fig.tight_layout()
plt.show()

# %% [markdown]
# With $\rho = 2$ the first gradients are about a hundred times larger than those of the default
# init: the state is driven to where the Jacobian product is large (section 3). What a spike does
# depends on the optimiser. With plain SGD the step is proportional to the gradient, so a spike
# is a huge jump in parameter space. Adam divides each step by a running RMS of the gradient, so
# its steps stay small; instead the spike inflates that RMS, which forgets slowly
# ($\beta_2 = 0.999$, a memory of about a thousand steps), and every later step is too small:
# the unclipped run crawls. Clipped, the spike keeps its direction but not its size, and
# training goes on almost as from the default init. (In fast mode the runs are shorter, but the
# gap already shows.)
#
# Clipping cures explosions. It does nothing for *vanishing* gradients: a direction that is
# missing cannot be rescaled back. That needs a different architecture.

# %% [markdown]
# ## Summary
#
# * An RNN carries a **fixed-size hidden state** $h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})$,
#   the same weights at every step; cost per token does not grow with the context.
# * **BPTT** is ordinary backprop on the unrolled graph: each step's gradient is
#   `da = dh * (1 - h**2)`, then `dh_prev = da @ W_hh`; weight gradients add up over time.
# * The gradient between distant steps is a **product** of $d$ Jacobians
#   $\mathrm{diag}(1 - h^2) W_{hh}$, so it shrinks or grows **geometrically** with distance —
#   at the rate of the spectral radius in the linear regime, faster downward once tanh saturates.
# * **Clipping the global norm** bounds exploding steps without changing their direction.
#   Nothing simple fixes vanishing gradients in a plain RNN: that is the LSTM's job.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell: the check compares your answer with tinyrwkv's own code on
# fixed inputs and says what is wrong. Solutions are in `lessons/solutions/01_rnn.py` — try first!

# %% tags=["exercise"]
def rnn_cell(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """One Elman RNN step, torch's equation: h = tanh(x W_ih^T + b_ih + h_prev W_hh^T + b_hh).

    x (B, D), h_prev (B, H), w_ih (H, D), w_hh (H, H), b_ih (H,), b_hh (H,). Return h (B, H).
    """
    raise NotImplementedError


check.rnn_cell(rnn_cell)


# %% tags=["exercise"]
def rnn_cell_backward(dh, x, h_prev, h, w_ih, w_hh):
    """The backward pass of one step, given dh = dL/dh (B, H) and the forward's x, h_prev and output h.

    Return the tuple (dx (B, D), dh_prev (B, H), dw_ih (H, D), dw_hh (H, H), db (H,)), where db is
    the gradient of b_ih (which equals that of b_hh). Hint: start with da = dL/d(pre-activation).
    """
    raise NotImplementedError


check.rnn_cell_backward(rnn_cell_backward)


# %% tags=["exercise"]
def clip_by_global_norm(grads, max_norm):
    """Gradient clipping by global norm.

    grads: dict name -> array. Compute the global norm sqrt(sum over all arrays of sum(g**2)); if it
    exceeds max_norm, scale every array by max_norm / norm. Return (a new dict of the clipped
    arrays, the norm before clipping as a float). Leave the input arrays unchanged.
    """
    raise NotImplementedError


check.clip_by_global_norm(clip_by_global_norm)


# %% tags=["exercise"]
def jacobian_norms(w_hh, hs):
    """The BPTT product, measured: how strongly h_{T-1} depends on each earlier state.

    hs (T, H) holds the states h_0 .. h_{T-1} of one sequence (tanh outputs); w_hh (H, H).
    The Jacobian of one step is J_t = d h_t / d h_{t-1} = diag(1 - h_t**2) @ w_hh. Return a (T,)
    array whose entry d is the spectral norm np.linalg.norm(P, 2) of
    P = d h_{T-1} / d h_{T-1-d} = J_{T-1} @ J_{T-2} @ ... @ J_{T-d}   (entry 0: P = identity).
    """
    raise NotImplementedError


check.jacobian_norms(jacobian_norms)

# %% [markdown]
# **Going further:** plot your `jacobian_norms` for a trained char RNN (`model.rnn.layers[0]`)
# on a real sentence, and compare with the bound $\lVert W_{hh}\rVert_2^d$; then try
# `train(..., optimizer="sgd", lr=1.0)` with and without `clip`, where explosions hurt far more
# than with Adam.
#
# Next: [02 · The LSTM](02_lstm.ipynb) — a cell state that the gradient can travel along.
