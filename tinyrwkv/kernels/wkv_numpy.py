"""WKV in plain NumPy: the reference every other backend is tested against.

RWKV-4's time-mix replaces attention with a weighted average of past values, where the weight
of token i seen from step t decays geometrically with distance and is boosted for the current
token. For one channel (all channels are independent):

    wkv_t = ( sum_{i<t} e^{(t-1-i) w + k_i} v_i  +  e^{u + k_t} v_t )
            / ( sum_{i<t} e^{(t-1-i) w + k_i}      +  e^{u + k_t}     )

with w = -exp(time_decay) < 0 (a decay) and u = time_first (a bonus for the current token).

Forms that live here:

* ``wkv_closed_form``: the formula above, literally, O(T^2). For teaching. It overflows as soon
  as k grows past ~88 in float32, which is exactly why the stable form exists.
* ``wkv_forward``: the recurrence, O(T), carrying a numerator ``aa``, a denominator ``bb`` and
  a running max exponent ``pp`` so that every exp() sees a non-positive argument. This is the
  state RWKV carries in RNN mode. ``stable_step`` is one step of it.
* ``wkv_step``: one step for a batch of B sequences (RNN-mode decoding).
* ``wkv_backward``: the gradients, by running the recurrence backwards (derivation below).

Signatures shared by every backend (numpy, numba, cuda):

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None)
        w, u: (C,)            w = -exp(time_decay), u = time_first
        k, v: (B, T, C)
        state: None or (aa, bb, pp), each (B, C); None means "no past" (aa=bb=0, pp=-1e38)
        y: (B, T, C), and the state after the last step
    gw, gu, gk, gv = wkv_backward(w, u, k, v, gy)
        gradients of L = sum(y * gy) for y = wkv_forward(w, u, k, v)[0] (empty initial state);
        gw, gu: (C,)  gk, gv: (B, T, C).  gw is dL/dw, NOT dL/dtime_decay: the caller chains
        w = -exp(time_decay) itself, dL/dtime_decay = gw * w.
    y, (aa, bb, pp) = wkv_step(w, u, k, v, state)
        one RNN step for B sequences: k, v: (B, C) -> y: (B, C); state as above (None = empty)

The stable state
----------------
After step t the true numerator and denominator are

    a_t = sum_{i<=t} e^{(t-i) w + k_i} v_i = e^w a_{t-1} + e^{k_t} v_t
    b_t = sum_{i<=t} e^{(t-i) w + k_i}     = e^w b_{t-1} + e^{k_t}

and y_t = (a_{t-1} + e^{u+k_t} v_t) / (b_{t-1} + e^{u+k_t}). They overflow, so we store
aa_t = a_t e^{-pp_t}, bb_t = b_t e^{-pp_t} with pp_t the largest exponent seen (decayed).

Backward: the same recurrence, transposed
-----------------------------------------
Let ga_t = dL/d(aa_t) and gb_t = dL/d(bb_t), holding pp_t fixed (pp_t only chooses the units;
y does not depend on that choice). Then ga_t = (dL/da_t) e^{pp_t}, which stays bounded (it is at
most sum |gy| because bb_t >= 1). With the factors one forward step already computes,

    output step:  q = max(pp, u+k),  e1 = e^{pp-q},  e2 = e^{u+k-q},  den = e1 bb + e2
    state  step:  p = max(pp+w, k),  f1 = e^{pp+w-p}, f2 = e^{k-p}      (aa' = f1 aa + f2 v ...)

the chain rule through step t (going from t = T-1 down to 0, ga = gb = 0 after the end) is

    g      = gy_t / den                       how much y_t's numerator matters
    gu    += g e2 (v_t - y_t)                 the bonus u enters only through the output
    gk_t   = g e2 (v_t - y_t) + f2 (ga v_t + gb)
    gv_t   = g e2             + f2 ga
    gw    += f1 (ga aa_{t-1} + gb bb_{t-1})   the decay multiplies the previous state
    ga, gb = f1 ga + g e1,  f1 gb - g e1 y_t  (ga_{t-1}, gb_{t-1})

Every exponent is still <= 0, so the backward is as overflow-proof as the forward. It needs the
state entering each step, so a forward sweep stores it first (T x B x C numbers each).
"""
from __future__ import annotations

import numpy as np

# The running max starts at "minus infinity" but finite, so (pp - max) stays a number.
NEG_INF = -1e38


def initial_state(B, C, dtype=np.float32):
    """The empty WKV state: numerator 0, denominator 0, max exponent -1e38. Each (B, C)."""
    return (np.zeros((B, C), dtype), np.zeros((B, C), dtype), np.full((B, C), NEG_INF, dtype))


def starting_state(state, B, C, dtype):
    """The state a backend starts from, as fresh C-contiguous (B, C) arrays of ``dtype`` that it may
    update in place: the empty state when ``state`` is None, else a copy (the caller's is never modified)."""
    if state is None:
        return initial_state(B, C, dtype)
    return tuple(np.array(s, dtype=dtype, order="C") for s in state)


def _check_state(state, B, C, fn):
    if state is None:
        return
    if len(state) != 3:
        raise ValueError(f"{fn}: state must be a tuple (aa, bb, pp), got {len(state)} items")
    for name, a in zip(("aa", "bb", "pp"), state):
        if np.shape(a) != (B, C):
            raise ValueError(f"{fn}: state {name} must be (B, C) = ({B}, {C}), got {np.shape(a)}")


def _check_wu(w, u, C, fn):
    for name, a in (("w", w), ("u", u)):
        if np.shape(a) != (C,):
            raise ValueError(f"{fn}: {name} must be (C,) = ({C},), got {np.shape(a)}")


def check_wkv_inputs(w, u, k, v, state=None, gy=None, fn="wkv"):
    """Validates shapes for every backend; the message names the function, the argument and both shapes.

    k, v (and gy when given): (B, T, C); w, u: (C,); state: None or three (B, C). Returns (B, T, C).
    """
    if np.ndim(k) != 3 or np.shape(v) != np.shape(k):
        raise ValueError(f"{fn}: k and v must both be (B, T, C), got k {np.shape(k)} and v {np.shape(v)}")
    B, T, C = k.shape
    _check_wu(w, u, C, fn)
    _check_state(state, B, C, fn)
    if gy is not None and np.shape(gy) != (B, T, C):
        raise ValueError(f"{fn}: gy must be (B, T, C) = ({B}, {T}, {C}) like k, got {np.shape(gy)}")
    return B, T, C


def check_wkv_step_inputs(w, u, k, v, state=None, fn="wkv_step"):
    """Shapes for one decoding step: k, v: (B, C); w, u: (C,); state: None or three (B, C). Returns (B, C)."""
    if np.ndim(k) != 2 or np.shape(v) != np.shape(k):
        raise ValueError(f"{fn}: k and v must both be (B, C) for one step, got k {np.shape(k)} and v {np.shape(v)}")
    B, C = k.shape
    _check_wu(w, u, C, fn)
    _check_state(state, B, C, fn)
    return B, C


def wkv_closed_form(w, u, k, v):
    """The WKV formula written out as a sum over the past, O(T^2), no tricks.

    w, u: (C,); k, v: (B, T, C) -> (B, T, C). Overflows for large k: use it to learn, not to run.
    """
    B, T, C = check_wkv_inputs(w, u, k, v, fn="wkv_closed_form")
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


def stable_step(w, u, k, v, aa, bb, pp):
    """One time step of the stable recurrence for all (B, C) at once.

    k, v, aa, bb, pp: (B, C) (or (C,)); w, u: (C,). Returns (y, aa', bb', pp'), each like k.
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
    B, T, C = check_wkv_inputs(w, u, k, v, state, fn="wkv_forward")
    aa, bb, pp = starting_state(state, B, C, k.dtype)
    y = np.empty_like(v)
    for t in range(T):
        y[:, t], aa, bb, pp = stable_step(w, u, k[:, t], v[:, t], aa, bb, pp)
    return y, (aa, bb, pp)


def wkv_step(w, u, k, v, state=None):
    """One RNN-mode step for B sequences: k, v: (B, C) -> y (B, C) and the new state (each (B, C)).

    ``state`` None means the empty state. Equal to ``wkv_forward`` with T = 1; the input state is
    not modified.
    """
    B, C = check_wkv_step_inputs(w, u, k, v, state)
    aa, bb, pp = initial_state(B, C, k.dtype) if state is None else state
    y, aa, bb, pp = stable_step(w, u, k, v, aa, bb, pp)
    return y, (aa, bb, pp)


def wkv_backward(w, u, k, v, gy):
    """Gradients of L = sum(y * gy), y = wkv_forward(w, u, k, v)[0] from the empty state.

    w, u: (C,); k, v, gy: (B, T, C). Returns gw (C,), gu (C,), gk (B, T, C), gv (B, T, C).
    gw is dL/dw for w itself; the caller chains w = -exp(time_decay): dL/dtime_decay = gw * w.
    The derivation is in the module docstring. Use float64 for gradient checks.
    """
    B, T, C = check_wkv_inputs(w, u, k, v, gy=gy, fn="wkv_backward")
    # Forward sweep: remember the state entering every step.               # each (T, B, C)
    saved_aa, saved_bb, saved_pp = (np.empty((T, B, C), k.dtype) for _ in range(3))
    aa, bb, pp = initial_state(B, C, k.dtype)
    for t in range(T):
        saved_aa[t], saved_bb[t], saved_pp[t] = aa, bb, pp
        _, aa, bb, pp = stable_step(w, u, k[:, t], v[:, t], aa, bb, pp)

    # Reverse sweep: the transposed recurrence, from the last step to the first.
    gk, gv = np.empty_like(k), np.empty_like(v)
    gw, gu = np.zeros((B, C), k.dtype), np.zeros((B, C), k.dtype)   # per sequence, summed at the end
    ga, gb = np.zeros((B, C), k.dtype), np.zeros((B, C), k.dtype)   # dL/daa_t, dL/dbb_t: nothing after T-1
    for t in reversed(range(T)):
        aa, bb, pp = saved_aa[t], saved_bb[t], saved_pp[t]            # the state entering step t
        kt, vt = k[:, t], v[:, t]                                      # (B, C)
        # The output step again: y_t = (e1 aa + e2 v) / den.
        q = np.maximum(pp, u + kt)
        e1 = np.exp(pp - q)
        e2 = np.exp(u + kt - q)
        den = e1 * bb + e2
        y = (e1 * aa + e2 * vt) / den
        # The state step again: aa_t = f1 aa + f2 v, bb_t = f1 bb + f2.
        p = np.maximum(pp + w, kt)
        f1 = np.exp(pp + w - p)
        f2 = np.exp(kt - p)
        # Chain rule through both.
        g = gy[:, t] / den
        gu += g * e2 * (vt - y)
        gw += f1 * (ga * aa + gb * bb)
        gk[:, t] = g * e2 * (vt - y) + f2 * (ga * vt + gb)
        gv[:, t] = g * e2 + f2 * ga
        ga, gb = f1 * ga + g * e1, f1 * gb - g * e1 * y
    return gw.sum(axis=0), gu.sum(axis=0), gk, gv
