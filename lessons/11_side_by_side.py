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
# # 11 · Side by side: RWKV, a Transformer and an LSTM on the same text
#
# > **Objectives.** After this lesson you can
# > 1. run three models of equal size over the same tokens and compare state, time per token and loss;
# > 2. tell which differences come from the architecture and which from training;
# > 3. scale the state and cache sizes up to the real 169M and GPT-2 small.
# >
# > **Prerequisites.** Lessons 09 and 10.
# >
# > **Time.** about 50 minutes: reading 10 (1,014 words, 57 lines of code),
# > running 2 (full mode, measured), exercises 40 (4 x 10). How these are estimated: lesson 00.
#
# The whole course in one experiment. Three language models of the same size read **the same
# token ids**, one token at a time, the way they would while generating:
#
# | model | what it carries from token to token | cost of the next token |
# |---|---|---|
# | **GPT with a KV cache** (lesson 05) | the key and value of every earlier token, every layer: $2 L\,t\,C$ floats | grows with $t$: it attends to all $t$ cached keys |
# | **LSTM** (lesson 02) | $h$ and $c$ per layer: $2 L H$ floats | constant |
# | **RWKV-4** (lessons 06–07) | $x$ for two token shifts and WKV's $aa, bb, pp$ per layer: $5 L C$ floats | constant |
# | **RWKV-7** (lesson 12) | two token shifts and an $N \times N$ matrix per head: $L(2C + CN)$ floats | constant |
#
# The RWKV-7 column is the tiny RWKV-7 shipped with the package (the same size and recipe as the tiny
# RWKV-4; lesson 12 says what changed), or the real RWKV-7 168M beside the real RWKV-4 169M once
# downloaded (`tinyrwkv download rwkv7-pile-168m`).
#
# For every token we record the floats in each model's state (counted from the state object
# itself), the time of that one step, and the loss on the next token. Then each model continues
# the same prompt. The measuring code is `tinyrwkv/compare.py`, and the same demo runs in a
# terminal:
#
# ```
# tinyrwkv compare "The fox " --length 1024 --figure compare.png
# tinyrwkv compare --model RWKV/rwkv-4-169m-pile      # the real model, once downloaded
# ```

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inspect

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv import compare as cmp
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
LENGTH = 160 if FAST else 1536                        # tokens every model reads
TRAIN_STEPS = 25 if FAST else 400                     # training of the GPT and LSTM peers
NEW_TOKENS = 40 if FAST else 160                      # characters each model writes after the prompt
PROMPT = "The fox "
SEED = 0
print(f"FAST={FAST}: {LENGTH} tokens, peers trained {TRAIN_STEPS} steps")

# %% [markdown]
# ## 1. Three models of the same size

# %%
draw('side_by_side')

# %% [markdown]
# The RWKV is the tiny model shipped with the package (4 layers of width 64, trained by
# `scripts/train_tiny_rwkv.py` on the `small_tales` characters). Its peers come from lesson 10's comparison: a pre-norm GPT of
# the same width and depth whose feed-forward width is chosen to match the parameter count, and a
# 2-layer LSTM whose hidden size does the same. We train them here, briefly, on the same
# characters, so their text will be worse than RWKV's: the loss column below says by how much, and
# lesson 10 compares the three trained equally. Everything about **state** and **time** does not
# depend on training.

# %%
result = cmp.compare("tiny", prompt=PROMPT, length=LENGTH, new_tokens=NEW_TOKENS, train_steps=TRAIN_STEPS, seed=SEED)
for name, stepper in result.steppers.items():
    print(f"{name:15s} {stepper.num_parameters():>9,} parameters   {type(stepper.model).__name__:18s} {stepper.note}")
counts = [s.num_parameters() for s in result.steppers.values()]
assert max(counts) - min(counts) < 0.01 * max(counts)          # matched to within 1 %

# %% [markdown]
# Each model sits behind the same small interface, `Stepper`: `reset()`, then `step(token)`
# returns the logits for the next token and keeps the model's state in `stepper.state`. Here is
# what that state *is* after three tokens:

# %%
for name, stepper in result.steppers.items():
    stepper.reset()
    for token in (5, 6, 7):
        logits = stepper.step(token)
    state = stepper.state
    if name.startswith("RWKV"):
        shapes = {f: getattr(state, f).shape for f in state.FIELDS}
    elif name.startswith("GPT"):
        shapes = {"position": state["position"], "kv": [(k.shape, v.shape) for k, v in state["kv"]][:1] + ["..."]}
    else:
        shapes = [tuple(a.shape for a in layer) for layer in state]
    print(f"{name:15s} logits {logits.shape}, {cmp.count_floats(state):>6,} floats: {shapes}")
    assert logits.shape == (61,)

# %% [markdown]
# The GPT's keys and values are `(batch, heads, t, C/heads)` per layer: the `t` axis grows by one
# row per token. RWKV's five arrays are `(layers, batch, C)`, whatever has been read.
# `cmp.count_floats` (used above) walks any of these objects (dicts, lists, tuples, dataclasses) and
# adds up the sizes of the arrays it finds; writing such a walker is exercise 1, so its source
# waits in `tinyrwkv/compare.py` until you have tried.
#
# ## 2. The measurement
#
# `compare` fed all three models the prompt followed by held-out text (the validation part of the
# corpus, which none of them trained on), one `step` per token, timing each step:

# %%
print(inspect.getsource(cmp.stream))

# %%
print(result.table())

# %%
result.plot(fig=plt.figure())
plt.show()

# %% [markdown]
# ## 3. What the numbers say
#
# **State.** RWKV carries the same $5 L C$ floats after 1 token and after thousands. The LSTM
# carries even fewer ($2 L H$). The GPT's cache grows by $2 L C$ floats *per token*, and it
# overtakes RWKV's whole state within the first few tokens. These are exact counts, so we can assert them:

# %%
rwkv_run, gpt_run = result.runs["RWKV-4"], result.runs["GPT + KV cache"]
rwkv_model, gpt_model = result.steppers["RWKV-4"].model, result.steppers["GPT + KV cache"].model
t = np.arange(1, LENGTH + 1)
assert np.all(rwkv_run["floats"] == 5 * rwkv_model.config.n_layer * rwkv_model.config.n_embd)
assert np.all(gpt_run["floats"] == 2 * gpt_model.n_layers * t * gpt_model.dim)
first_larger = int(t[np.argmax(gpt_run["floats"] > rwkv_run["floats"])])
print(f"the KV cache holds more floats than RWKV's state from token {first_larger} on; "
      f"after {LENGTH} tokens it is {gpt_run['floats'][-1] / rwkv_run['floats'][-1]:.0f}x larger")

# %% [markdown]
# **Time.** The GPT's step time rises with the context: every new token computes scores against
# all cached keys, and our NumPy cache also copies itself to append a row. RWKV's and the LSTM's
# stay flat. At these tiny widths, fixed costs (Python, small matrix products) dominate, so the
# slope is gentle. The cost per step of attention is $O(t\,C)$ against $O(C^2)$ for the
# projections, so it takes over once $t$ is several times $C$ (lesson 09 measures this across sizes).
# Compare the first and last quarters:

# %%
quarter = LENGTH // 4
for name, run in result.runs.items():
    early, late = np.median(run["ms"][:quarter]), np.median(run["ms"][-quarter:])
    print(f"{name:15s} median ms/token: first quarter {early:.3f}, last quarter {late:.3f} ({late / early:.2f}x)")

# %% [markdown]
# **Quality.** The loss column (mean next-token loss on held-out text, in nats per character)
# mostly separates the models by training, not by architecture: the shipped RWKV trained far longer
# than the peers' `TRAIN_STEPS`, and lesson 10 compares the three with the same budget. One thing
# *is* architecture: compare the GPT's loss on this long sequence with the validation loss in its
# note, measured on 64-character windows. The peers trained on windows of 64 characters, so the
# GPT has never seen a position beyond 63, and its sinusoidal positions do not carry it much
# further. RWKV and the LSTM have no positions, only a state, and keep their loss on long text.
# And the greedy continuations:

# %%
for name, text in result.outputs.items():
    print(f"{name:15s} {PROMPT + text!r}")

# %% [markdown]
# ## 4. At the scale of the real model
#
# RWKV-4 169M and GPT-2 small are both 12 layers of width 768. In float32, RWKV-4 169M carries
# $5 \cdot 12 \cdot 768 = 46{,}080$ floats (180 KiB) at any context length. GPT-2 small's KV cache is
# $2 \cdot 12 \cdot 768 = 18{,}432$ floats (72 KiB) *per token*: 72 MiB at 1024 tokens, for every
# sequence in a batch. With the real model downloaded, `cmp.compare(find_local_model())` (or
# `tinyrwkv compare --model RWKV/rwkv-4-169m-pile`) runs this notebook's measurement at that size,
# with untrained peers of the same shape for the timing.

# %%
L_real, C_real = 12, 768
for T in (1, 1024, 8192):
    print(f"after {T:>5,} tokens: RWKV-4 169M state {5 * L_real * C_real * 4 / 2**10:6.0f} KiB, "
          f"GPT-2-small KV cache {2 * L_real * C_real * T * 4 / 2**20:8.2f} MiB")

# %% [markdown]
# ## Summary
#
# * Fed the same tokens one at a time, the GPT's state (its KV cache) grows by $2LC$ floats per
#   token; RWKV's stays at $5LC$ and the LSTM's at $2LH$, for any context.
# * The GPT's time per token grows with the context; RWKV's and the LSTM's do not.
# * RWKV gets this from its recurrent form and, unlike the LSTM, still trains in parallel over the
#   sequence (lesson 06): the reason it can be trained at the scale of a Transformer.
# * `tinyrwkv.compare` (and `tinyrwkv compare`) measures all of it from the models' own `step`.
#
# ## Exercises

# %% tags=["exercise"]
def count_state_floats(state):
    """The number of floats a model carries between tokens, counted from its state object.

    The state may be a NumPy array; a dict (the GPT's {"position": int, "kv": [(keys, values), ...]}:
    count the arrays only, the position is a counter); a list or tuple (the LSTM's [(h, c), ...]);
    or an RWKVState (its arrays are named in state.FIELDS). Return an int.
    """
    raise NotImplementedError


check.count_state_floats(count_state_floats)


# %% tags=["exercise"]
def kv_crossover_length(gpt_layers, gpt_dim, rwkv_layers, rwkv_dim):
    """The smallest context length t >= 1 at which a GPT's KV cache (a key and a value of size
    gpt_dim per token and layer) holds MORE floats than RWKV-4's state (5 vectors of size rwkv_dim
    per layer). Return an int."""
    raise NotImplementedError


check.kv_crossover_length(kv_crossover_length)


# %% tags=["exercise"]
def teacher_forced_loss(logits, ids):
    """The loss column of the table, for one model.

    logits (T, V): the model's output after each of the T tokens ids (T,). Position t predicts the
    next token ids[t+1]. Return the mean over t = 0 .. T-2 of -log softmax(logits[t])[ids[t+1]] (nats).
    """
    raise NotImplementedError


check.teacher_forced_loss(teacher_forced_loss)

# %% [markdown]
# **Predict, then measure.** Before you run anything: how many bytes does each model carry from one
# token to the next after reading T tokens, in float32 (4 bytes a number)? Write your answer as a
# formula in `kind`, `n_layer`, `dim` and `T`, and work out on paper what it gives for the real
# RWKV-4 169M (12 layers, width 768) and for a GPT of the same shape after 1000 tokens. Only then run
# the check: it runs small real models of each kind token by token and adds up the bytes of the
# arrays in their states, and tells you which part of your prediction was off.

# %% tags=["exercise"]
def predict_state_bytes(kind, n_layer, dim, T):
    """Your prediction: bytes of the state that model ``kind`` ("rwkv", "gpt" or "lstm"; n_layer layers
    of width dim) carries after reading T tokens, in float32. Return an int."""
    raise NotImplementedError


check.predict_state_bytes(predict_state_bytes)

# %% [markdown]
# **Going further:** (1) Rerun with `LENGTH = 4096`: where does the GPT's time per token overtake
# RWKV's on your machine? (2) Plot each model's loss per position (`result.runs[name]["loss"]`,
# smoothed): where does the GPT's loss start to rise? (3) Batch: `RWKV.step` accepts B tokens at once; how does the time per
# sequence change with B = 1, 8, 64?
#
# This is the end of the path. Back to the start: [00 · A tour of tinyrwkv](00_tour.ipynb).
