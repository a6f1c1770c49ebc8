"""Solutions to lesson 00's exercises (a tour of tinyrwkv).

Each function has the name of its check: ``check.char_encode(char_encode)`` passes.
"""
import numpy as np


def char_encode(text, chars):
    """One id per character: its index in ``chars``. ValueError names a character not in ``chars``."""
    index = {c: i for i, c in enumerate(chars)}           # a dict: O(1) per character, not chars.index
    ids = []
    for c in text:
        if c not in index:
            raise ValueError(f"character {c!r} is not in the vocabulary")
        ids.append(index[c])
    return ids


def softmax_with_temperature(logits, temperature):
    """softmax(logits / temperature), shifted by the max so that np.exp never sees a large number."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max())                                # the largest term is e^0 = 1: no overflow
    return e / e.sum()


def greedy_generate(step, state, prompt_ids, n_new):
    """Feeds the prompt through ``step``, then n_new times: argmax, record, feed back."""
    for token in prompt_ids:
        logits, state = step(token, state)                # keep the new state: it remembers the token
    out = []
    for _ in range(n_new):
        out.append(int(np.argmax(logits)))
        logits, state = step(out[-1], state)
    return out
