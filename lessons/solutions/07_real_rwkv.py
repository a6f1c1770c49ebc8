"""Solutions to lesson 07's exercises (the real RWKV-4 169M).

Each function has the name of its check: ``check.half_life(half_life)`` passes.
"""
import numpy as np


def half_life(time_decay):
    """A contribution shrinks by e^w per token, w = -exp(time_decay); e^{w h} = 1/2 at h = ln 2 / exp(time_decay)."""
    return np.log(2.0) / np.exp(np.asarray(time_decay, dtype=np.float64))


def decay_summary(time_decay):
    """(L, C) time_decay -> (L, 3): per layer the shortest, median and longest half-life in tokens."""
    h = half_life(time_decay)                                    # (L, C)
    return np.stack([h.min(axis=1), np.median(h, axis=1), h.max(axis=1)], axis=1)


def top_p_filter(logits, p):
    """Keep the most likely tokens until their total probability reaches p (the crossing token too)."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)                                   # most likely first
    mass_before = np.cumsum(probs[order]) - probs[order]         # probability of the tokens ahead of each
    keep = order[mass_before < p]                                # the first token always stays
    out = np.full_like(logits, -np.inf)
    out[keep] = logits[keep]
    return out
