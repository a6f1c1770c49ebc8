"""WKV in plain NumPy: the reference every other backend is tested against.

RWKV-4's time-mix replaces attention with a weighted average of past values, where the weight
of token i seen from step t decays geometrically with distance and is boosted for the current
token. For one channel (all channels are independent):

    wkv_t = ( sum_{i<t} e^{(t-1-i) w + k_i} v_i  +  e^{u + k_t} v_t )
            / ( sum_{i<t} e^{(t-1-i) w + k_i}      +  e^{u + k_t}     )

with w = -exp(time_decay) < 0 (a decay) and u = time_first (a bonus for the current token).

Two forms live here:

* ``wkv_closed_form``: the formula above, literally, O(T^2). For teaching. It overflows as soon
  as k grows past ~88 in float32, which is exactly why the stable form exists.
* ``wkv_forward``: the recurrence, O(T), carrying a numerator ``aa``, a denominator ``bb`` and
  a running max exponent ``pp`` so that every exp() sees a non-positive argument. This is the
  state RWKV carries in RNN mode.

Signature shared by every backend (numpy, numba, cuda):

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None)
        w, u: (C,)            w = -exp(time_decay), u = time_first
        k, v: (B, T, C)
        state: None or (aa, bb, pp), each (B, C); None means "no past" (aa=bb=0, pp=-1e38)
        y: (B, T, C), and the state after the last step
"""
from __future__ import annotations

import numpy as np

# The running max starts at "minus infinity" but finite, so (pp - max) stays a number.
NEG_INF = -1e38


def initial_state(B, C, dtype=np.float32):
    """The empty WKV state: numerator 0, denominator 0, max exponent -1e38. Each (B, C)."""
    return (np.zeros((B, C), dtype), np.zeros((B, C), dtype), np.full((B, C), NEG_INF, dtype))


def check_wkv_inputs(w, u, k, v, state=None):
    """Validates shapes for every backend; the message names the argument and both shapes."""
    if k.ndim != 3 or v.shape != k.shape:
        raise ValueError(f"wkv: k and v must both be (B, T, C), got k {k.shape} and v {v.shape}")
    B, T, C = k.shape
    for name, a in (("w", w), ("u", u)):
        if a.shape != (C,):
            raise ValueError(f"wkv: {name} must be (C,) = ({C},), got {a.shape}")
    if state is not None:
        for name, a in zip(("aa", "bb", "pp"), state):
            if a.shape != (B, C):
                raise ValueError(f"wkv: state {name} must be (B, C) = ({B}, {C}), got {a.shape}")
    return B, T, C


def wkv_closed_form(w, u, k, v):
    """The WKV formula written out as a sum over the past, O(T^2), no tricks.

    w, u: (C,); k, v: (B, T, C) -> (B, T, C). Overflows for large k: use it to learn, not to run.
    """
    B, T, C = check_wkv_inputs(w, u, k, v)
    y = np.empty_like(v)
    for t in range(T):
        # weight of each past token i < t: e^{(t-1-i) w + k_i}        # (B, t, C)
        dist = (t - 1 - np.arange(t, dtype=v.dtype))[None, :, None]
        past = np.exp(dist * w + k[:, :t])
        now = np.exp(u + k[:, t])                                      # (B, C)
        num = (past * v[:, :t]).sum(axis=1) + now * v[:, t]
        den = past.sum(axis=1) + now
        y[:, t] = num / den
    return y


def wkv_step(w, u, k, v, aa, bb, pp):
    """One time step of the stable recurrence for all (B, C) at once.

    k, v, aa, bb, pp: (B, C) (or (C,)). Returns (y, aa', bb', pp').
    """
    # Output: mix the past (aa/bb, scaled by e^pp) with the current token boosted by u.
    ww = u + k
    p = np.maximum(pp, ww)
    e1 = np.exp(pp - p)
    e2 = np.exp(ww - p)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    # State: decay the past by e^w, then add the current token without the bonus.
    ww = pp + w
    p = np.maximum(ww, k)
    e1 = np.exp(ww - p)
    e2 = np.exp(k - p)
    return y, e1 * aa + e2 * v, e1 * bb + e2, p


def wkv_forward(w, u, k, v, state=None):
    """The numerically stable WKV recurrence, O(T). See the module docstring for shapes."""
    B, T, C = check_wkv_inputs(w, u, k, v, state)
    aa, bb, pp = initial_state(B, C, k.dtype) if state is None else (s.copy() for s in state)
    y = np.empty_like(v)
    for t in range(T):
        y[:, t], aa, bb, pp = wkv_step(w, u, k[:, t], v[:, t], aa, bb, pp)
    return y, (aa, bb, pp)
