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
# # 10 · Training: a tiny RWKV against a GPT and an LSTM
#
# > **Objectives.** After this lesson you can
# > 1. explain what RWKV-4's initialisation does (identity blocks, a spread of decays) and why;
# > 2. take one training step by hand: loss, backward through every layer, clipping, Adam;
# > 3. train a tiny RWKV-4, a GPT and an LSTM of equal size on the same data and compare their curves and samples.
# >
# > **Prerequisites.** Lessons 01 (BPTT), 05 (GPT) and 06 (WKV and its backward).
# >
# > **Time.** about 65 minutes: reading 15 (1,124 words, 143 lines of code),
# > running 9 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# RWKV's claim is that it **trains like a Transformer** (in parallel over the whole sequence) and
# **runs like an RNN**. Lessons 06–09 covered the running. Here we train: a tiny RWKV-4, a GPT and
# an LSTM with **the same number of parameters**, on the same characters, with the same batches
# and the same optimiser, and compare their loss curves and their samples.
#
# On the way we look at what makes RWKV trainable: its **initialisation**, which starts every
# block as the identity and spreads the decays over a range of memory lengths before any data is seen.
#
# Everything is `tinyrwkv` code: `models/rwkv_train.py` (RWKV-4's backward pass and its
# initialisation), `models/transformer.py` (GPT), `models/lstm.py`, `training.py` (one training
# loop for all) and `recipes.py` (the shared recipe, which also trained the tiny
# model that ships with the package).

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import io
import json

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import tinyrwkv
from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv import recipes
from tinyrwkv.experiments import training_curves as tc
from tinyrwkv.models.rwkv import RWKVConfig
from tinyrwkv.models.rwkv_train import RWKVLanguageModel, init_rwkv4_params
from tinyrwkv.nn import Adam, clip_grad_norm
from tinyrwkv.nn import functional as F

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
if FAST:   # tiny models, a few steps: the curves barely start
    RWKV_SIZE = {"n_layer": 2, "n_embd": 32, "ffn_dim": 128}
    RECIPE = {"steps": 40, "eval_every": 20, "batch_size": 8, "seq_len": 64}
else:      # the shipped model's size; 500 steps of 16 x 64 characters (a few CPU minutes in all)
    RWKV_SIZE = dict(recipes.RWKV_SIZE)
    RECIPE = {"steps": 500, "eval_every": 50, "batch_size": 16, "seq_len": 64}
SEED = 0
print(f"FAST={FAST}: RWKV {RWKV_SIZE}, recipe {RECIPE}")

# %% [markdown]
# ## 1. The data and the bar to beat
#
# `small_tales` is a file of short stories (its size is printed below), one token per character.
# The last 10 % is held out for validation. Two baselines tell us what "learning" means here:
#
# * the **unigram** loss: the entropy of the character frequencies, the best a model can do
#   without looking at the context;
# * the **bigram** loss: the best with one character of context.
#
# A uniform guess over the $V$ characters costs $\ln V$ nats per character (printed below).

# %%
corpus = load_corpus()
V = corpus.vocab.size
print(f"{corpus.name}: {len(corpus.train_ids):,} training and {len(corpus.val_ids):,} validation characters, V = {V}")
print(f"uniform {np.log(V):.2f}, unigram {corpus.unigram_entropy():.2f}, "
      f"bigram {corpus.bigram_cross_entropy():.2f} nats/char")
inputs, targets = corpus.sample_batch(np.random.default_rng(SEED), RECIPE["batch_size"], RECIPE["seq_len"])
print("a batch:", inputs.shape, targets.shape, " first window:", repr(corpus.vocab.decode(inputs[0])[:60]))
assert inputs.shape == targets.shape == (RECIPE["batch_size"], RECIPE["seq_len"])
assert np.array_equal(inputs[:, 1:], targets[:, :-1])            # targets = inputs shifted by one

# %% [markdown]
# ## 2. Three models of one size
#
# `build_models` makes the RWKV-4 first and takes its parameter count as the target: the GPT gets
# the same width and depth (pre-norm, 4 heads, sinusoidal positions) with its feed-forward width
# chosen to land on the target, and the 2-layer LSTM gets the hidden size that does.

# %%
models = recipes.build_models(V, seed=SEED, rwkv_size=RWKV_SIZE)
for label, model in models.items():
    logits, _ = model.forward(inputs)
    print(f"{label:7s} {type(model).__name__:18s} {model.num_parameters():>8,} parameters   logits {logits.shape}")
    assert logits.shape == (*inputs.shape, V)
counts = [m.num_parameters() for m in models.values()]
assert max(counts) - min(counts) < 0.02 * max(counts)

# %% [markdown]
# ## 3. What RWKV-4's initialisation does
#
# A Transformer is usually started with small random matrices. RWKV-4 (BlinkDL's RWKV-LM, the
# paper's appendix) starts from a carefully shaped point, `init_rwkv4_params`. For layer $l$ of $L$
# and channel $i$ of $C$:
#
# * **decays**: $\text{time\_decay}_i = -5 + 8\,\big(\tfrac{i}{C-1}\big)^{0.7 + 1.3\, l/(L-1)}$. Every
#   layer spans slow channels ($w = -e^{-5}$, a half-life of about 100 tokens) to fast ones
#   ($w = -e^{3}$); the curve bends further down in deeper layers, so they start with longer memories;
# * **bonus**: $\text{time\_first} = \ln 0.3$ plus a zigzag of $\pm 0.5$ over the channels;
# * **token shift**: $\mu_i = (i/C)^{1 - l/L}$: in the first layer a ramp from "previous token" to
#   "current token" over the channels; in deeper layers close to 1 (mostly the current token);
# * **matrices**: the output projections of both sublayers (`att.output`, `ffn.value`) and the
#   key and receptance matrices start at **zero**; the embedding is tiny ($\pm 10^{-4}$, ln0 rescales it).

# %%
config = RWKVConfig(vocab_size=V, **RWKV_SIZE)
init = init_rwkv4_params(config, seed=SEED)
L, C = config.n_layer, config.n_embd
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for layer in range(L):
    color = plt.cm.viridis(layer / max(L - 1, 1))
    axes[0].plot(init[f"blocks.{layer}.att.time_decay"], color=color, label=f"layer {layer}")
    axes[2].plot(init[f"blocks.{layer}.att.time_mix_k"], color=color, label=f"layer {layer}")
axes[1].plot(init["blocks.0.att.time_first"], "o-", ms=3, color="tab:orange")
axes[0].set(title="time_decay at init (w = -exp of it)", xlabel="channel i",
            ylabel="time_decay (log of the decay rate)")
axes[1].set(title="time_first u at init (every layer)", xlabel="channel i", ylabel="u (bonus of the current token)")
axes[2].set(title="time_mix_k at init", xlabel="channel i", ylabel="mu (1 = current token, 0 = previous)")
for ax in axes:
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
axes[2].legend(fontsize=8)
fig.suptitle(f"RWKV-4's initialisation ({L} layers x {C} channels)")
fig.tight_layout()
plt.show()

# %% [markdown]
# With the two output projections at zero, every block adds nothing to the residual stream: the
# untrained network is exactly `head(ln_out(ln0(emb[ids])))`. Let us check that, and look at which
# parameters receive a gradient on the first step.

# %%
rwkv = models["RWKV-4"]
p = rwkv.params
eps = rwkv.config.layer_norm_epsilon
x = F.layer_norm(p["emb.weight"][inputs], p["ln0.weight"], p["ln0.bias"], eps)[0]
skip_every_block = F.linear(F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], eps)[0], p["head.weight"])
logits, _ = rwkv.forward(inputs)
print("max |model - embedding straight to the head| =", np.abs(logits - skip_every_block).max())
assert np.allclose(logits, skip_every_block, atol=1e-5)


def gradient_norms(model, batch):
    """Loss on ``batch`` and the gradient norm of each kind of parameter (summed over layers)."""
    model.zero_grad()
    loss, cache = model.loss(batch)
    model.loss_backward(cache)
    kinds = {}
    for name, g in model.gradients().items():
        kind = ".".join(name.split(".")[2:]) if name.startswith("blocks.") else name
        kinds[kind] = np.sqrt(kinds.get(kind, 0.0) ** 2 + float(np.sum(g.astype(np.float64) ** 2)))
    return loss, kinds


probe = RWKVLanguageModel(config, seed=SEED)                        # a fresh copy to poke at
loss0, before = gradient_norms(probe, (inputs, targets))
Adam(probe.parameters(), lr=1e-3).step(probe.gradients())         # one Adam step
loss1, after = gradient_norms(probe, (inputs, targets))
print(f"loss at init {loss0:.3f} (uniform guess: ln {V} = {np.log(V):.3f}); after one step {loss1:.3f}")
print(f"{'parameter kind':28s} {'|grad| at init':>15s} {'after 1 step':>13s}")
for kind in before:
    if kind.startswith(("att.", "ffn.")):
        print(f"{kind:28s} {before[kind]:15.2e} {after[kind]:13.2e}")
assert before["att.key.weight"] == 0 and before["att.output.weight"] > 0 and after["att.key.weight"] > 0

# %% [markdown]
# At the very first step only the output projections (and the embedding and head) get a
# gradient: everything inside a block sits behind a zero matrix. One step later the output
# matrices are no longer zero, and the gradient reaches the matrices and decays inside the blocks;
# the token-shift mixes of the key and receptance (`time_mix_k`, `time_mix_r`) follow one step
# after that, once the key and receptance matrices have moved away from zero. The blocks grow
# away from the identity gradually, while the gradient flows straight through the residual stream
# to every layer, however deep: the same reason pre-norm Transformers are started close to the
# identity.
#
# ## 4. One training step, by hand

# %%
draw('training_step')

# %% [markdown]
# `tinyrwkv.training.train` runs the same loop for every model of the course:
# zero the gradients, forward + loss, backward, clip the global gradient norm, Adam update. Here is
# one step of it, written out, on a copy of the RWKV:

# %%
model = RWKVLanguageModel(config, seed=SEED)
opt = Adam(model.parameters(), lr=2e-3)
model.zero_grad()                                                   # gradients add up: start at zero
loss, cache = model.loss((inputs, targets))                         # forward, mean cross-entropy in nats
model.loss_backward(cache)                                          # backward: fills model.grads
norm = clip_grad_norm(model.gradients(), 1.0)                       # rescale if the norm exceeds 1
opt.step(model.gradients())                                         # update the parameters in place
new_loss, _ = model.loss((inputs, targets))
print(f"loss {loss:.4f} -> {new_loss:.4f} after one step (gradient norm before clipping {norm:.2f})")
assert new_loss < loss

# %% [markdown]
# ## 5. The race
#
# `train_with_curve` trains each model with the shared recipe (`recipes.RECIPE`; what `tc.run_comparison`
# and the shipped model's script use): Adam with a linear warm-up over the first 5 % of steps and a
# cosine decay to 10 % of the peak learning rate, gradient clipping at 1.0, the same random windows
# for every model (same seed), and the validation loss every `eval_every` steps. Each model has its
# own peak learning rate, picked by a short sweep (`PEAK_LR`).

# %%
recipe = {**recipes.RECIPE, **RECIPE}                               # the shared recipe, our step budget
print("peak learning rates:", recipes.PEAK_LR)
curves = {}
for label, model in models.items():                                 # the models of section 2, trained in place
    curves[label] = recipes.train_with_curve(
        model, corpus, steps=recipe["steps"], peak_lr=recipes.PEAK_LR[label], batch_size=recipe["batch_size"],
        seq_len=recipe["seq_len"], eval_every=recipe["eval_every"], clip=recipe["clip"], seed=recipe["seed"],
        warmup_fraction=recipe["warmup_fraction"], final_lr_fraction=recipe["final_lr_fraction"], progress=False)
# the same layout as tc.run_comparison's result, which the figure and the summary read
results = {"recipe": recipe, "models": curves,
           "corpus": {"name": corpus.name, "train_chars": len(corpus.train_ids), "val_chars": len(corpus.val_ids),
                      "unigram": corpus.unigram_entropy(), "bigram": corpus.bigram_cross_entropy()}}
summary = tc.summarize(results)
print(json.dumps({k: v for k, v in summary.items() if k not in ("baselines",)}, indent=1))


def show_curves(results, note):
    """tinyrwkv's own figure (training_curves.plot_curves), drawn in memory and shown inline."""
    buffer = io.BytesIO()
    tc.plot_curves(results, buffer, note)
    display(Image(data=buffer.getvalue()))


show_curves(results, f"this notebook: {RECIPE['steps']} steps (FAST={FAST})")

# %% [markdown]
# The run above is short. The shipped tiny RWKV came from the full recipe (`recipes.RECIPE`: batches of
# 16 windows of 128 characters), and `scripts/train_tiny_rwkv.py` saved all three curves of that run
# beside the checkpoint (it ships the RWKV of the evaluation with the lowest validation loss). They
# take CPU minutes to recompute (`python -m tinyrwkv.experiments.training_curves --retrain`):

# %%
if tc.CURVES_FILE.is_file():
    long_run = json.loads(tc.CURVES_FILE.read_text())
    show_curves(long_run, f"precomputed by scripts/train_tiny_rwkv.py ({long_run.get('date', '')})")
    for label, numbers in tc.summarize(long_run).items():
        if label in long_run["models"]:
            print(f"{label:7s} best validation loss {numbers['best_val']:.3f} nats/char at step "
                  f"{numbers['best_val_step']}, {numbers['seconds']:.0f} s of training")
    bests = [n["best_val"] for label, n in tc.summarize(long_run).items() if label in long_run["models"]]
    print(f"spread of the best validation losses in the long run: {max(bests) - min(bests):.2f} nats/char")
else:
    print(f"{tc.CURVES_FILE} is not here: run scripts/train_tiny_rwkv.py to make it")

# %% [markdown]
# How to read the curves:
#
# * all three quickly get below the unigram line (they learn which characters are common) and
#   then the bigram line (they use the context);
# * with the same budget the three end up close: the spread of their best validation losses is
#   printed above for the long run (a tenth of a nat or so; compare it with the gap between the
#   unigram and bigram lines). At this size (0.2 M parameters, the 30 thousand training characters
#   counted in section 1) the data is the limit, and the validation loss turns back up once a model
#   starts to memorise the training text (see the long run);
# * the point of RWKV is not to beat the Transformer at this size but to **match** it while
#   running as an RNN: constant memory and time per generated token (lessons 09 and 11).
#
# ## 6. What they write
#
# Each trained model continues the same prompt with the same sampling (temperature 0.8, same seed),
# one `step` at a time. And, for comparison, the shipped RWKV, trained with the full recipe
# (`recipes.RECIPE`: more steps on longer windows than this notebook's run).

# %%
prompt = "The fox "
prompt_ids = corpus.vocab.encode(prompt)
n_new = 80 if FAST else 240
for label, model in models.items():
    new = model.generate(prompt_ids, n_new, temperature=0.8, rng=np.random.default_rng(SEED))
    print(f"--- {label} (trained here) ---\n{prompt}{corpus.vocab.decode(new)}\n")
shipped = tinyrwkv.load("tiny", progress=False)
text = tinyrwkv.generate(shipped, tinyrwkv.load_tokenizer("tiny"), prompt, max_new_tokens=n_new, temperature=0.8,
                         seed=SEED)
print(f"--- the shipped RWKV-4 ({recipes.RECIPE['steps']} steps of {recipes.RECIPE['batch_size']} x {recipes.RECIPE['seq_len']} "
      f"characters) ---\n{prompt}{text}")

# %% [markdown]
# ## Summary
#
# * RWKV-4 trains in parallel mode with a hand-written backward pass (`models/rwkv_train.py`); the
#   trained weights run unchanged in RNN mode.
# * Its initialisation spreads decays and token-shift mixes over channels and layers, and zeroes the
#   output projections so every block starts as the identity on the residual stream.
# * Matched in parameters, data, batches and optimiser, a tiny RWKV, GPT and LSTM learn this corpus
#   to similar losses; RWKV's advantage is what it costs to run (lessons 09 and 11).
#
# ## Exercises

# %% tags=["exercise"]
def rwkv4_time_decay_init(layer, n_layer, C):
    """RWKV-4's initial time_decay for one layer: (C,) array.

    time_decay[i] = -5 + 8 * (i / (C - 1)) ** (0.7 + 1.3 * layer / (n_layer - 1)), for i = 0 .. C-1.
    """
    raise NotImplementedError


check.rwkv4_time_decay_init(rwkv4_time_decay_init)


# %% tags=["exercise"]
def gpt_num_params(vocab_size, dim, n_layers, ffn_dim):
    """The number of parameters of tinyrwkv's GPT (pre-norm, sinusoidal positions, untied head).

    Token embedding (V x C); per layer: attention with q, k, v projections (3C x C and 3C biases) and
    an output projection (C x C and C), a feed-forward net (F x C and F, then C x F and C), two
    LayerNorms (weight and bias each); a final LayerNorm; the head (V x C and V). Return an int.
    """
    raise NotImplementedError


check.gpt_num_params(gpt_num_params)


# %% tags=["exercise"]
def adam_update(p, g, m, v, t, lr, beta1, beta2, eps):
    """Adam's step number t (t = 1 for the first step) for one parameter array.

    m and v are the moments before this step. Update them with the gradient g, correct their bias
    (divide by 1 - beta^t), and return (new p, new m, new v), with
    p_new = p - lr * m_hat / (sqrt(v_hat) + eps).
    """
    raise NotImplementedError


check.adam_update(adam_update)

# %% [markdown]
# **The WKV backward, one step.** Derive it yourself before you look at `wkv_backward`. One forward
# step of the stable recurrence (all arrays (C,), each channel on its own) is
#
# $$ q = \max(p, u + k),\quad e_1 = e^{p - q},\quad e_2 = e^{u + k - q},\quad
#    y = \frac{e_1 a + e_2 v}{e_1 b + e_2}, $$
# $$ p' = \max(p + w, k),\quad f_1 = e^{p + w - p'},\quad f_2 = e^{k - p'},\quad
#    a' = f_1 a + f_2 v,\quad b' = f_1 b + f_2 , $$
#
# with $(a, b, p)$ = `(aa, bb, pp)` the state coming in. Given the gradients arriving from above,
# `gy` $= \partial L/\partial y$, `ga` $= \partial L/\partial a'$ and `gb` $= \partial L/\partial b'$
# (with the new units $p'$ held fixed: $p'$ only chooses the units, $y$ does not depend on it), return
# $\partial L/\partial w$, $\partial L/\partial u$, $\partial L/\partial k$, $\partial L/\partial v$ and the
# gradients that flow on to the previous step, $\partial L/\partial a$ and $\partial L/\partial b$.
# The check compares each with finite differences and says which one is wrong. Hint: write
# $g = $ `gy` $/ (e_1 b + e_2)$ first; every other exponent you need is already one of $e_1, e_2, f_1, f_2$.

# %% tags=["exercise"]
def wkv_backward_step(w, u, k, v, aa, bb, pp, gy, ga, gb):
    """Gradients of one stable WKV step: (gw, gu, gk, gv, ga_prev, gb_prev), each (C,).

    L = sum(gy * y + ga * aa_new + gb * bb_new), where (y, aa_new, bb_new) is the forward step above.
    """
    raise NotImplementedError


check.wkv_backward_step(wkv_backward_step)

# %% [markdown]
# **Going further:** (1) Use your `gpt_num_params` to find the `ffn_dim` that matches a 2-layer
# RWKV of width 32 (that is what `matched_gpt` does). (2) Start an RWKV with `init_params` from
# `models/rwkv.py` (small random matrices, no zero outputs) instead of `init_rwkv4_params`, train
# both for 100 steps, and compare the curves. (3) Train with `backend="numpy"` and with `"numba"`:
# the losses agree; how do the times compare?
#
# Next: [11 · Side by side](11_side_by_side.ipynb): the three models on one text, step by step:
# state size, time per token and output.
