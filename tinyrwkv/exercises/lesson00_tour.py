"""Self-checks for lesson 00 (a tour of tinyrwkv).

    check.char_encode(fn)                the tiny model's tokenizer: one id per character
    check.softmax_with_temperature(fn)   next-token probabilities at a temperature, without overflow
    check.greedy_generate(fn)            greedy decoding with an RNN-mode step function

Each check compares the learner's function with tinyrwkv's own code (``CharVocab.encode``,
``nn.functional.softmax``, ``RWKV.step`` + argmax) on fixed inputs, and names typical mistakes.
"""
from __future__ import annotations

import numpy as np

from ..data.corpus import load_corpus
from ..models.rwkv import RWKV, RWKVConfig
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, expect_true, exercise

# --------------------------------------------------------------------------- 1. characters -> ids


@exercise("00", library=(
    "tinyrwkv.data.corpus:CharVocab.encode",
    "tinyrwkv.tokenizer:CharTokenizer.encode",
))
def char_encode(fn):
    """fn(text, chars) -> list of ids, id = index of the character in ``chars``; ValueError if unknown."""
    chars = list(load_corpus().vocab.chars)
    text = 'The fox sat by the well.\n"Yes," said Tobias.'
    for vocab in (chars, chars[7:] + chars[:7]):                   # the real order, then a rotated one
        want = [vocab.index(c) for c in text]
        got = fn(text, list(vocab))
        if isinstance(got, np.ndarray):
            got = got.tolist()
        expect_true(isinstance(got, (list, tuple)), f"return a list of ints, got {type(got).__name__}.")
        got = [int(i) for i in got]
        if len(got) != len(want):
            raise CheckFailed(f"{len(text)} characters should give {len(text)} ids, you returned {len(got)}.")
        if got == [i + 1 for i in want]:
            raise CheckFailed("every id is one too large: ids start at 0 (the index in chars).")
        if got == [ord(c) for c in text]:
            raise CheckFailed("these are Unicode code points (ord); the id is the character's index in chars.")
        if got != want:
            bad = next(j for j in range(len(want)) if got[j] != want[j])
            raise CheckFailed(f"the id of {text[bad]!r} (character {bad}) should be {want[bad]}, you have {got[bad]}"
                              + (" (take the index in the chars you are given, not in a sorted copy)."
                                 if vocab is not chars else "."))
    try:
        fn("a@b", chars)
    except ValueError:
        return
    except Exception as e:
        raise CheckFailed(f"'@' is not in the vocabulary: raise ValueError, not {type(e).__name__}.")
    raise CheckFailed("'@' is not in the vocabulary: raise ValueError instead of returning ids.")


# --------------------------------------------------------------------------- 2. temperature


@exercise("00", library=(
    "tinyrwkv.nn.functional:softmax",
    "tinyrwkv.nn.functional:log_softmax",
))
def softmax_with_temperature(fn):
    """fn(logits (V,), temperature) -> probabilities (V,) = softmax(logits / temperature)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=12) * 3
    for tau in (1.0, 0.5, 2.0):
        want = F.softmax(logits / tau)
        got = np.asarray(fn(logits.copy(), tau), dtype=np.float64)
        expect_close(f"probabilities at temperature {tau}", got, want, mistakes={
            "divide the logits by the temperature, do not multiply": F.softmax(logits * tau),
            "the temperature is missing: softmax(logits / temperature)": F.softmax(logits),
            "these do not sum to 1: divide by the sum of the exponentials": np.exp(logits / tau - np.max(logits / tau)),
        })
    big = logits + 1000.0                                         # e^1000 overflows even in float64
    with np.errstate(over="ignore", invalid="ignore"):
        got = np.asarray(fn(big.copy(), 0.5), dtype=np.float64)
    if not np.all(np.isfinite(got)):
        raise CheckFailed("with logits near 1000 you get NaN or inf: e^1000 overflows. Subtract the largest "
                          "scaled logit before np.exp (the softmax does not change).")
    expect_close("probabilities for logits near 1000", got, F.softmax(big / 0.5))


# --------------------------------------------------------------------------- 3. greedy decoding


def _small_model():
    config = RWKVConfig(n_layer=2, n_embd=16, vocab_size=23, ffn_dim=32)
    return RWKV.random(config, seed=5, scale=0.6, backend="numpy")


def _greedy_reference(model, prompt_ids, n_new, keep_state=True):
    state = model.init_state(1)
    for t in prompt_ids:
        logits, new = model.step(int(t), state)
        state = new if keep_state else state
    out = []
    for _ in range(n_new):
        out.append(int(np.argmax(logits)))
        logits, new = model.step(out[-1], state)
        state = new if keep_state else state
    return out


@exercise("00", library=(
    "tinyrwkv.generation:generate",
    "tinyrwkv.models.base:LanguageModel.generate",
    "tinyrwkv.compare:greedy_continuation",
    "tinyrwkv.exercises.lesson00_tour:_greedy_reference",
))
def greedy_generate(fn):
    """fn(step, state, prompt_ids, n_new) -> n_new ids: feed the prompt, then argmax and feed back."""
    model = _small_model()
    prompt, n_new = [3, 14, 7, 7, 1], 12
    want = _greedy_reference(model, prompt, n_new)
    calls = []

    def step(token, state):
        calls.append(int(token))
        return model.step(int(token), state)

    got = fn(step, model.init_state(1), list(prompt), n_new)
    got = [int(i) for i in np.asarray(got).reshape(-1)]
    if got[:len(prompt)] == prompt and len(got) == len(prompt) + n_new:
        raise CheckFailed("return only the n_new generated ids, not the prompt in front of them.")
    if len(got) != n_new:
        raise CheckFailed(f"return exactly n_new = {n_new} ids, you returned {len(got)}.")
    if calls[:len(prompt)] != prompt:
        raise CheckFailed(f"feed the prompt ids through step first, in order: step saw {calls[:len(prompt)]} "
                          f"instead of {prompt}.")
    if got == _greedy_reference(model, prompt, n_new, keep_state=False):
        raise CheckFailed("step returns a NEW state: keep it (logits, state = step(token, state)), or the "
                          "model forgets every token it has read.")
    if got != want:
        bad = next(j for j in range(n_new) if got[j] != want[j])
        raise CheckFailed(f"generated id {bad} should be {want[bad]} (the argmax of the latest logits), you have "
                          f"{got[bad]}. Feed each chosen id back through step before choosing the next.")
