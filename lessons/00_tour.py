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
# # 00 · A tour of tinyrwkv
#
# > **Objectives.** After this lesson you can
# > 1. check that your install runs, and say which WKV backends (NumPy, `@njit`, `numba.cuda`) you have;
# > 2. run a language model in parallel mode and in RNN mode and show that both give the same logits;
# > 3. explain what temperature and top-p do to a next-token distribution, and generate text.
# >
# > **Prerequisites.** Python and NumPy arrays. No machine learning yet: the course builds it.
# >
# > **Time.** about 45 minutes: reading 15 (1,278 words, 125 lines of code),
# > running 1 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
# >
# > *How the times in these boxes are estimated* (every lesson): reading the text at 150 words a
# > minute and the code at 15 lines a minute, plus the lesson's run time in full mode, measured once
# > on a 2-core machine shared with other jobs (so an upper bound), plus 10 minutes per exercise.
# > `python scripts/lesson_times.py` recomputes them (`--measure NN` re-times a lesson). Your own
# > pace will differ; the ratios between lessons are the useful part.
#
# **tinyrwkv** rebuilds, from scratch and in plain NumPy (plus a few Numba kernels), the line of
# sequence models that ends in **RWKV-4**:
#
# $$ \text{RNN} \to \text{LSTM} \to \text{GRU} \to \text{seq2seq + attention} \to \text{Transformer} \to \text{RWKV} $$
#
# RWKV ("Receptance Weighted Key Value", Peng et al. 2023) trains in parallel like a Transformer
# and generates like an RNN, carrying a small state of fixed size instead of a cache that grows with
# every token. By the end of the course you will have read every line that runs the real
# **RWKV-4 169M** model, and trained a small RWKV yourself.
#
# This tour checks your install, shows which compute backends you have, gives a map of the course,
# and lets a tiny RWKV that ships inside the package write its first sentences.
#
# How the lessons work:
#
# * every lesson is a notebook that imports the real code from `tinyrwkv/`: what you read is what runs;
# * the environment variable `TINYRWKV_FAST=1` shrinks every experiment (the test suite uses it);
# * exercises end each lesson: fill in a function, then call `check.<name>(your_function)`.
#   It prints PASS, or one line saying what is wrong. Solutions are in `lessons/solutions/`.

# %%
import os

# Small matrices: one BLAS thread is faster than several and does not spin on a busy machine.
# This must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.metadata
import importlib.util
import platform
import time

import matplotlib.pyplot as plt
import numpy as np

import tinyrwkv
from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.generation import top_p_filter
from tinyrwkv.kernels import available_backends
from tinyrwkv.knobs import explore
from tinyrwkv.loading import REAL_169M, download_command, find_local_model
from tinyrwkv.nn import functional as F

FAST = os.environ.get("TINYRWKV_FAST") == "1"        # CI: small and quick
NEW_TOKENS = 80 if FAST else 300                      # characters the tiny model writes
SEED = 0
print(f"FAST={FAST}")

# %% [markdown]
# ## 1. Install check
#
# tinyrwkv needs NumPy, Numba (for the compiled kernels) and `tokenizers` (the tokenizer of the
# real model). torch and transformers are *not* needed to run anything; the tests use them as an
# independent reference, to prove that our numbers equal theirs.

# %%
def version(package):
    """The installed version of ``package``, or None (without importing it: torch takes seconds)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


print(f"python          {platform.python_version()}")
print(f"tinyrwkv        {tinyrwkv.__version__}")
for package, role in [("numpy", "required: every array"), ("numba", "required: @njit and numba.cuda kernels"),
                      ("tokenizers", "required: the GPT-NeoX-20B tokenizer of the real model"),
                      ("matplotlib", "the lessons' figures"), ("huggingface_hub", "downloading the real model"),
                      ("torch", "optional: reference for the tests"),
                      ("transformers", "optional: reference for the tests")]:
    print(f"{package:16s}{version(package) or 'not installed':14s} {role}")
for required in ("numpy", "numba", "tokenizers"):
    assert version(required), f"{required} is missing: pip install -e . installs it"

# %% [markdown]
# ## 2. Which backends compute the WKV recurrence?
#
# The heart of RWKV is the **WKV** recurrence (lesson 06). tinyrwkv has it three times, with one
# signature: a NumPy reference (a Python loop over time, slow and easy to read), an `@njit` kernel
# compiled by Numba for the CPU, and `numba.cuda` kernels for NVIDIA GPUs (lesson 08). Without a GPU,
# Numba's *CUDA simulator* runs the GPU kernels in Python, so you can still read and step through
# them. `"auto"` picks the fastest one present.

# %%
backends = available_backends()
for name, what in backends.items():
    print(f"{name:6s} {what}")
assert "numpy" in backends and "numba" in backends

# %% [markdown]
# ## 3. The map of the course

# %%
draw('course_map')

# %% [markdown]
# | lesson | what you build and see |
# |---|---|
# | [01 · RNN](01_rnn.ipynb) | the hidden state, backprop through time, vanishing and exploding gradients |
# | [02 · LSTM](02_lstm.ipynb) | gates and the additive cell path that lets gradients travel far |
# | [03 · GRU](03_gru.ipynb) | the LSTM with two gates |
# | [04 · seq2seq + attention](04_seq2seq.ipynb) | GNMT-style encoder-decoder; attention removes the bottleneck |
# | [05 · Transformer](05_transformer.ipynb) | attention only, the KV cache, and its $O(T^2)$ cost measured |
# | [06 · From attention to RWKV](06_attention_to_rwkv.ipynb) | AFT, WKV, token shift, time-mix and channel-mix |
# | [07 · The real RWKV-4 169M](07_real_rwkv.ipynb) | its decay spectrum, generation, where it keeps a fact |
# | [08 · Kernels](08_kernels.ipynb) | NumPy, `@njit`, `numba.cuda`; the max trick against overflow |
# | [09 · Cost and memory](09_cost_and_memory.ipynb) | every model's time and state against the sequence length |
# | [10 · Training](10_training.ipynb) | a tiny RWKV against a GPT and an LSTM of the same size |
# | [11 · Side by side](11_side_by_side.ipynb) | one text through RWKV, a GPT and an LSTM, step by step |
#
# ## 4. A tiny RWKV that ships with the package
#
# `tinyrwkv.load("tiny")` reads a 4-layer RWKV-4 of width 64 trained on `small_tales`, a file of
# short stories shipped with the package, one **character** per token (the cell prints the sizes).
# It loads through the same code as the real 169M model; only the sizes differ.

# %%
model = tinyrwkv.load("tiny", progress=False)
tokenizer = tinyrwkv.load_tokenizer("tiny")
print(model)
print(model.config)
corpus = load_corpus()
print(f"{model.num_parameters():,} parameters; trained on {len(corpus.train_ids):,} characters of {corpus.name} "
      f"({len(corpus.val_ids):,} more held out)")
print(f"vocabulary: {tokenizer.vocab_size} characters: {tokenizer.decode(list(range(tokenizer.vocab_size)))!r}")

# %% [markdown]
# The model reads token ids and returns **logits**, one score per vocabulary entry, for the next
# token. It can run in two ways that give the same numbers:
#
# * `model.forward(tokens)`: all tokens at once (parallel mode, how it trains): logits `(T, V)`;
# * `model.step(token, state)`: one token at a time (RNN mode, how it generates): logits `(V,)` and a
#   new **state**, five `(n_layer, batch, n_embd)` arrays whose size never grows.

# %%
prompt = "The fox "
ids = np.array(tokenizer.encode(prompt))
logits_parallel, state_parallel = model.forward(ids)                 # (T, V)
state = None
for token in ids:                                                    # the same tokens, one by one
    logits_serial, state = model.step(int(token), state)             # (V,)
V, L, C = model.config.vocab_size, model.config.n_layer, model.config.n_embd
print("tokens", ids.shape, "-> parallel logits", logits_parallel.shape, ", serial logits", logits_serial.shape)
print("state arrays:", {f: getattr(state, f).shape for f in state.FIELDS}, f"= {model.state_size():,} floats")
print("max |parallel - serial| at the last token:", np.abs(logits_parallel[-1] - logits_serial).max())
assert logits_parallel.shape == (len(ids), V) and logits_serial.shape == (V,)
assert state.aa.shape == (L, 1, C) and model.state_size() == 5 * L * C
assert np.allclose(logits_parallel[-1], logits_serial, atol=1e-4)

# %% [markdown]
# ## 5. What does it expect next?
#
# A softmax turns the logits into probabilities. The **temperature** $\tau$ divides the logits
# first: $p_i = e^{z_i/\tau} / \sum_j e^{z_j/\tau}$. Low $\tau$ sharpens the distribution (at
# $\tau \to 0$ only the most likely token is left: greedy decoding); high $\tau$ flattens it.
# Here are the model's top guesses after two prompts, at three temperatures.
#
# **Top-p** (nucleus) sampling then keeps only the most likely tokens, as many as it takes for
# their probabilities to add up to the chosen mass `top_p`, and samples among them: the long tail
# of unlikely characters is cut off.

# %%
def top_next(model, tokenizer, prompt, k=8):
    """The k most likely next characters after ``prompt`` and the logits (V,)."""
    logits, _ = model.forward(np.array(tokenizer.encode(prompt)), full_output=False)   # (V,)
    order = np.argsort(-logits)[:k]
    return [tokenizer.decode([int(i)]) for i in order], order, logits


fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, text in zip(axes, ["Once upon a ti", "The keeper climbed the "]):
    chars, order, logits = top_next(model, tokenizer, text)
    for j, tau in enumerate((0.5, 1.0, 2.0)):
        probs = F.softmax(logits.astype(np.float64) / tau)
        ax.bar(np.arange(len(order)) + 0.27 * (j - 1), probs[order], width=0.27, label=f"temperature {tau}")
    ax.set_xticks(np.arange(len(order)), [repr(c)[1:-1] for c in chars])
    ax.set_xlabel("next character (the 8 most likely at temperature 1)")
    ax.set_ylabel("probability")
    ax.set_title(f"after {text!r}")
    ax.legend(fontsize=8)
fig.suptitle("The tiny RWKV's next-character distribution")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Turn the knobs: temperature and top-p
#
# Both knobs act on the same distribution, one after the other, exactly as `tinyrwkv.generate` does
# it (`generation.next_token`: divide the logits by $\tau$, then the top-p filter). The bars are the
# probabilities the sampler draws from; grey bars are tokens that top-p removed. In a live notebook
# with `ipywidgets` these are sliders; elsewhere a grid of settings. Watch how a high temperature
# lets more tokens into the nucleus, and how a small $p$ with a low $\tau$ leaves only one: greedy.

# %%
knob_logits = top_next(model, tokenizer, "Once upon a ti", k=1)[2].astype(np.float64)     # (V,)
shown = np.argsort(-knob_logits)[:12]                             # the 12 most likely at temperature 1


def draw_sampler(ax, temperature, top_p):
    """The distribution next_token samples from after 'Once upon a ti', at one temperature and top-p."""
    filtered = top_p_filter(knob_logits / temperature, top_p)
    probs = F.softmax(filtered)                                   # exp(-inf) = 0 for the removed tokens
    kept = np.isfinite(filtered[shown])
    ax.bar(np.arange(len(shown)), np.where(kept, probs[shown], 0), color="tab:blue")
    ax.bar(np.arange(len(shown)), np.where(kept, 0, F.softmax(knob_logits / temperature)[shown]), color="lightgray")
    ax.set_xticks(np.arange(len(shown)), [repr(tokenizer.decode([int(i)]))[1:-1] for i in shown], fontsize=7)
    ax.set_ylim(0, 1)
    ax.text(0.98, 0.95, f"{int(np.isfinite(filtered).sum())} tokens kept", transform=ax.transAxes, ha="right",
            va="top", fontsize=8)


knob_view = explore(draw_sampler, {"temperature": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0], "top_p": [0.5, 0.7, 0.9, 0.95, 1.0]},
                    static={"temperature": [0.5, 1.0, 2.0], "top_p": [0.5, 0.9, 1.0]},
                    title="the tiny RWKV's next character after 'Once upon a ti'")
for tau in (0.5, 2.0):
    n_kept = int(np.isfinite(top_p_filter(knob_logits / tau, 0.9)).sum())
    print(f"temperature {tau}: top-p 0.9 keeps {n_kept} of {len(knob_logits)} characters")

# %% [markdown]
# ## 6. Generation
#
# `tinyrwkv.generate` runs the prompt in parallel mode, then samples one token at a time in RNN
# mode: greedy with `temperature=0`, or sampled, with top-k / top-p filters and repetition
# penalties (the same sampler as for the real model). A `seed` makes a sample reproducible.

# %%
tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=2, temperature=0)   # warm-up: compiles, untimed
t0 = time.perf_counter()
greedy = tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=NEW_TOKENS, temperature=0)
seconds = time.perf_counter() - t0
print(f"greedy ({NEW_TOKENS / seconds:,.0f} characters/s after a warm-up call):\n{prompt}{greedy}\n")
sampled = tinyrwkv.generate(model, tokenizer, prompt, max_new_tokens=NEW_TOKENS, temperature=0.8, top_p=0.9, seed=SEED)
print(f"sampled (temperature 0.8, top-p 0.9, seed {SEED}):\n{prompt}{sampled}")
assert len(greedy) == NEW_TOKENS and sampled == tinyrwkv.generate(
    model, tokenizer, prompt, max_new_tokens=NEW_TOKENS, temperature=0.8, top_p=0.9, seed=SEED)

# %% [markdown]
# Greedy decoding tends to fall into a loop: always taking the single most likely character walks
# into the same well-worn phrase again and again. Sampling escapes the loops, at the price
# of some made-up words. The model has seen only the 30 thousand training characters counted in
# section 4, so it is a good speller
# and a poor storyteller. Scale is what the real model adds.
#
# ## 7. The real RWKV-4 169M, if you have downloaded it
#
# The released `RWKV/rwkv-4-169m-pile` (12 layers of width 768, lesson 07 counts its parameters)
# was trained on the Pile, for 332 billion tokens according to BlinkDL's model card
# ([BlinkDL/rwkv-4-pile-169m](https://huggingface.co/BlinkDL/rwkv-4-pile-169m)). Its float32
# weights take about 680 MB in float32 (169,342,464 parameters, lesson 07, x 4 bytes). tinyrwkv never
# downloads it behind your back.
# `find_local_model` looks for it **without the network**: in the environment variable
# `TINYRWKV_MODEL` (a folder or checkpoint file) and in the Hugging Face cache. If it is there, we
# greedily continue "Hello my name is", for which transformers' own test expects
# " Jasmine and I am a newbie to the".

# %%
real_path = find_local_model(REAL_169M)
if real_path is None:
    print(f"{REAL_169M} is not downloaded. To get it (once, with internet):\n\n    {download_command()}\n")
    print("Until then the lessons that want it (07, 11) use the tiny model above.")
else:
    real = tinyrwkv.load(real_path, progress=False)
    real_tokenizer = tinyrwkv.load_tokenizer(os.environ.get("TINYRWKV_TOKENIZER") or
                                             (real_path if real_path.is_dir() else real_path.parent))
    print(real)
    tinyrwkv.generate(real, real_tokenizer, "Hello", max_new_tokens=1, temperature=0)   # warm-up, untimed
    t0 = time.perf_counter()
    text = tinyrwkv.generate(real, real_tokenizer, "Hello my name is", max_new_tokens=10, temperature=0)
    print(f"'Hello my name is{text}'  ({10 / (time.perf_counter() - t0):.1f} tokens/s including the prompt, "
          f"after a warm-up call)")

# %% [markdown]
# ## Summary
#
# * tinyrwkv is NumPy + Numba; torch and transformers serve only as references in the tests.
# * The WKV recurrence has three backends (NumPy, `@njit`, `numba.cuda`) behind one switch.
# * An RWKV model maps token ids to next-token logits, in parallel mode (`forward`) or RNN mode
#   (`step`), with the same result; the RNN-mode state has a fixed size, $5 \cdot L \cdot C$ floats.
# * `generate` = the prompt in parallel, then one `step` per new token with a sampler.
# * The real 169M model loads with the same call once downloaded (`tinyrwkv download RWKV/rwkv-4-169m-pile`).
#
# ## Exercises
#
# Each exercise cell defines a function for you to complete and then checks it.

# %% tags=["exercise"]
def char_encode(text, chars):
    """The tiny model's tokenizer: one id per character.

    chars: a list of the vocabulary's characters; the id of a character is its index in ``chars``.
    Return the list of ids of ``text``. Raise ValueError for a character that is not in ``chars``.
    """
    raise NotImplementedError


check.char_encode(char_encode)


# %% tags=["exercise"]
def softmax_with_temperature(logits, temperature):
    """Next-token probabilities from logits (V,) at temperature > 0: softmax(logits / temperature).

    Return (V,) probabilities summing to 1. It must not overflow for logits in the thousands
    (subtract the largest scaled logit before exponentiating: the result is the same).
    """
    raise NotImplementedError


check.softmax_with_temperature(softmax_with_temperature)


# %% tags=["exercise"]
def greedy_generate(step, state, prompt_ids, n_new):
    """Greedy decoding with an RNN-mode step function.

    step(token: int, state) -> (logits (V,), new state); ``state`` is the initial state. Feed every
    prompt id through ``step``, then n_new times: pick argmax of the latest logits, record it, and
    feed it back in. Return the list of the n_new generated ids.
    """
    raise NotImplementedError


check.greedy_generate(greedy_generate)

# %% [markdown]
# **Going further:** (1) Generate with `temperature=1.5` and with `top_k=3`: which one invents more
# words? (2) Time `model.forward` on 1000 characters against 1000 calls of `model.step`: which mode
# would you use to read a long prompt? (3) In a terminal: `tinyrwkv generate --model tiny "The fox "
# --temperature 0.8 --seed 1`, and `tinyrwkv compare` (lesson 11's demo).
#
# Next: [01 · RNN](01_rnn.ipynb), where the story starts: a hidden state carried from token to token.
