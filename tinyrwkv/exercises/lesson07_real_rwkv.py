"""Self-checks for lesson 07 (the real RWKV-4 169M).

    check.half_life(fn)        tokens until a channel's memory of a token is halved, from time_decay
    check.decay_summary(fn)    per layer: the shortest, median and longest half-life
    check.top_p_filter(fn)     nucleus (top-p) filtering of a logits vector

Each check compares the learner's function with tinyrwkv's own code
(``experiments.decay_spectrum.half_life``, ``generation.top_p_filter``) on fixed inputs, and names
typical mistakes.
"""
from __future__ import annotations

import numpy as np

from ..experiments.decay_spectrum import half_life as _half_life
from ..generation import top_p_filter as _top_p_filter
from ._checker import CheckFailed, expect_close, expect_shape, exercise


def _time_decays(L=4, C=9, seed=7):
    """(L, C) time_decay values like a trained model's: from -6 (slow) to 3 (fast)."""
    return np.random.default_rng(seed).uniform(-6.0, 3.0, size=(L, C))


# --------------------------------------------------------------------------- 1. half-life


@exercise("07", library=(
    "tinyrwkv.experiments.decay_spectrum:half_life",
    "tinyrwkv.experiments.decay_spectrum:decay_spectrum",
))
def half_life(fn):
    """fn(time_decay (C,)) -> (C,) half-lives in tokens: ln 2 / exp(time_decay)."""
    td = _time_decays()[0]
    got = np.asarray(fn(td.copy()))                  # its own dtype: an integer result gets its own hint
    expect_shape("half-life", got, td.shape)
    w = -np.exp(td)
    expect_close("half-life", got, _half_life(td), mistakes={
        "use the decay w = -exp(time_decay), not time_decay itself: h = ln 2 / exp(time_decay)": np.log(2) / np.abs(td),
        "1 / exp(time_decay) is the time to shrink by a factor e; halving takes ln 2 times that": 1.0 / -w,
        "a contribution shrinks by e^w per token, so e^{w h} = 1/2 gives h = ln 2 / (-w), not ln 2 * (-w)":
            np.log(2) * -w,
        "e^{w h} = 1/2 needs the NATURAL log: h = ln 2 / exp(time_decay), not log10(2) / exp(time_decay)":
            np.log10(2) / -w,
    })


# --------------------------------------------------------------------------- 2. per-layer summary


@exercise("07", library=(
    "tinyrwkv.experiments.decay_spectrum:half_life",
    "tinyrwkv.experiments.decay_spectrum:decay_spectrum",
    "tinyrwkv.experiments.decay_spectrum:summarize",
))
def decay_summary(fn):
    """fn(time_decay (L, C)) -> (L, 3): per layer the shortest, median and longest half-life (tokens)."""
    td = _time_decays()
    h = _half_life(td)
    want = np.stack([h.min(axis=1), np.median(h, axis=1), h.max(axis=1)], axis=1)
    got = np.asarray(fn(td.copy()), dtype=np.float64)
    if got.shape == (3, td.shape[0]):
        raise CheckFailed(f"shape {got.shape}: return one row per layer, (L, 3) = {want.shape}, not (3, L).")
    if got.shape == (td.shape[1], 3):
        raise CheckFailed(f"shape {got.shape}: summarise each layer over its channels (axis=1), giving (L, 3).")
    expect_shape("summary", got, want.shape)
    swapped = np.stack([h.max(axis=1), np.median(h, axis=1), h.min(axis=1)], axis=1)
    expect_close("summary", got, want, mistakes={
        "shortest and longest are swapped: the largest time_decay is the fastest channel (the shortest half-life)":
            swapped,
        "summarise the half-lives ln 2 / exp(time_decay), not the raw time_decay values":
            np.stack([td.min(axis=1), np.median(td, axis=1), td.max(axis=1)], axis=1),
        "the middle column is the median, not the mean":
            np.stack([h.min(axis=1), h.mean(axis=1), h.max(axis=1)], axis=1),
    })


# --------------------------------------------------------------------------- 3. top-p


@exercise("07", library=(
    "tinyrwkv.generation:top_p_filter",
))
def top_p_filter(fn):
    """fn(logits (V,), p) -> (V,): the logits of the smallest set of most likely tokens whose
    probability reaches p (the token that crosses p included), -inf everywhere else."""
    logits = np.log(np.array([0.05, 0.4, 0.1, 0.25, 0.2]))          # probabilities 0.4, 0.25, 0.2, 0.1, 0.05
    for p in (0.5, 0.7, 0.9, 0.3):                               # no p on a boundary of the sums
        want = _top_p_filter(logits, p)
        got = np.asarray(fn(logits.copy(), p), dtype=np.float64)
        expect_shape(f"filtered logits (p={p})", got, logits.shape)
        kept_want, kept_got = np.isfinite(want), np.isfinite(got)
        if np.all(kept_got == kept_want):
            if not np.allclose(got[kept_got], logits[kept_got]):
                raise CheckFailed(f"p={p}: you keep the right tokens but change their values; return the original "
                                  f"logits for kept tokens and -inf for the others.")
            continue
        probs = np.exp(logits) / np.exp(logits).sum()
        order = np.argsort(-probs)
        if kept_got.sum() == kept_want.sum() - 1 and set(np.flatnonzero(kept_got)) <= set(np.flatnonzero(kept_want)):
            raise CheckFailed(f"p={p}: keep the token that makes the total reach p too; you stop one token early "
                              f"(kept {np.flatnonzero(kept_got).tolist()}, "
                              f"expected {np.flatnonzero(kept_want).tolist()}).")
        n_kept = int(kept_got.sum())
        if 0 < n_kept < len(logits) and set(np.flatnonzero(kept_got)) == set(order[::-1][:n_kept]):
            raise CheckFailed(f"p={p}: you kept the LEAST likely tokens: sort by probability, largest first.")
        raise CheckFailed(f"p={p}: you kept tokens {np.flatnonzero(kept_got).tolist()}, expected "
                          f"{np.flatnonzero(kept_want).tolist()} (probabilities {np.round(probs, 2).tolist()}).")
