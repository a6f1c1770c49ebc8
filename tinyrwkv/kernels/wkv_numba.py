"""WKV on the CPU with Numba's @njit: the same stable recurrence as ``wkv_numpy``, compiled to
machine code. One independent loop over time per (batch, channel) pair, which is why ``prange``
can hand pairs to different cores. Same signatures as every backend:

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None)      k, v: (B, T, C); w, u: (C,)
    gw, gu, gk, gv = wkv_backward(w, u, k, v, gy)               gw = dL/dw (chain time_decay yourself)
    y, (aa, bb, pp) = wkv_step(w, u, k, v, state)               k, v: (B, C): one decoding step

The math (and the derivation of the backward) is in ``wkv_numpy``; the loops here are the same
lines written per scalar instead of per (B, C) array. ``cache=True`` keeps the compiled code on
disk, so only the first run pays the compile time (a few seconds per dtype).
"""
from __future__ import annotations

import contextlib
import os

import numba
import numpy as np
from numba import njit, prange

from . import FASTMATH
from .exp_numba import exp_nonpositive
from .wkv_numpy import NEG_INF, check_wkv_inputs, check_wkv_step_inputs, starting_state


@njit(inline="always", cache=True)
def _exp_pair(x1, x2, one):
    """(e^(x1 - q), e^(x2 - q)) with q = max(x1, x2), the stable pair of every WKV step.

    One of the two is e^0 = 1, so only the other exponential is computed (half the np.exp
    calls of the plain form ``np.exp(x1 - q), np.exp(x2 - q)`` in wkv_numpy; same values).
    ``one`` is 1 in the kernel's dtype (a bare 1 would turn float32 math into float64).
    Written as two selects on one shared exponential rather than an if/else with two returns:
    which side is larger flips unpredictably from token to token, and a mispredicted branch
    costs about what the saved exp does (measured at C=768, T=512: if/else 6.2 ms, selects 4.0 ms,
    plain form 5.9 ms).
    """
    e = np.exp(-abs(x1 - x2))                      # e^(min - max), the one that is not 1
    return (one if x1 >= x2 else e), (e if x1 >= x2 else one)


@njit(parallel=True, fastmath=False, cache=True)
def _wkv_forward_kernel(w, u, k, v, aa, bb, pp, y):
    B, T, C = k.shape
    one = k.dtype.type(1)
    for bc in prange(B * C):              # one (batch, channel) pair per iteration
        b = bc // C
        c = bc % C
        a, d, p = aa[b, c], bb[b, c], pp[b, c]    # the state lives in registers for the whole loop
        wc, uc = w[c], u[c]
        for t in range(T):
            kt = k[b, t, c]
            vt = v[b, t, c]
            ww = uc + kt                          # output: past mixed with the boosted current token
            e1, e2 = _exp_pair(p, ww, one)
            y[b, t, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
            ww = p + wc                           # state: decay the past, add the current token
            e1, e2 = _exp_pair(ww, kt, one)
            a = e1 * a + e2 * vt
            d = e1 * d + e2
            p = max(ww, kt)
        aa[b, c], bb[b, c], pp[b, c] = a, d, p


@njit(parallel=True, fastmath=False, cache=True)
def _wkv_backward_kernel(w, u, k, v, gy, gw, gu, gk, gv):
    B, T, C = k.shape
    one = k.dtype.type(1)
    for bc in prange(B * C):
        b = bc // C
        c = bc % C
        wc, uc = w[c], u[c]
        # Forward sweep: remember the state entering each step (contiguous, private to this pair).
        saved_a = np.empty(T, k.dtype)
        saved_d = np.empty(T, k.dtype)
        saved_p = np.empty(T, k.dtype)
        a, d, p = k.dtype.type(0), k.dtype.type(0), k.dtype.type(NEG_INF)
        for t in range(T):
            saved_a[t], saved_d[t], saved_p[t] = a, d, p
            kt = k[b, t, c]
            f1, f2 = _exp_pair(p + wc, kt, one)
            a = f1 * a + f2 * v[b, t, c]
            d = f1 * d + f2
            p = max(p + wc, kt)
        # Reverse sweep: the transposed recurrence (wkv_numpy.wkv_backward, per scalar).
        ga, gd = k.dtype.type(0), k.dtype.type(0)     # dL/daa_t, dL/dbb_t
        gw_bc, gu_bc = k.dtype.type(0), k.dtype.type(0)
        for t in range(T - 1, -1, -1):
            a, d, p = saved_a[t], saved_d[t], saved_p[t]
            kt, vt = k[b, t, c], v[b, t, c]
            e1, e2 = _exp_pair(p, uc + kt, one)   # the output step again
            den = e1 * d + e2
            yt = (e1 * a + e2 * vt) / den
            f1, f2 = _exp_pair(p + wc, kt, one)   # the state step again
            g = gy[b, t, c] / den
            gu_bc += g * e2 * (vt - yt)
            gw_bc += f1 * (ga * a + gd * d)
            gk[b, t, c] = g * e2 * (vt - yt) + f2 * (ga * vt + gd)
            gv[b, t, c] = g * e2 + f2 * ga
            ga, gd = f1 * ga + g * e1, f1 * gd - g * e1 * yt
        gw[b, c] = gw_bc
        gu[b, c] = gu_bc


# Not parallel: one step is only B*C scalar updates (768 for 169M), less work than waking the
# thread pool (measured ~25 us serial vs several ms with prange on a busy 2-core machine).
@njit(cache=True)
def _wkv_step_kernel(w, u, k, v, aa, bb, pp, y):
    B, C = k.shape
    one = k.dtype.type(1)
    for bc in range(B * C):
        b = bc // C
        c = bc % C
        a, d, p = aa[b, c], bb[b, c], pp[b, c]
        kt, vt = k[b, c], v[b, c]
        ww = u[c] + kt
        e1, e2 = _exp_pair(p, ww, one)
        y[b, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
        ww = p + w[c]
        e1, e2 = _exp_pair(ww, kt, one)
        aa[b, c] = e1 * a + e2 * vt
        bb[b, c] = e1 * d + e2
        pp[b, c] = max(ww, kt)


@njit(inline="always", cache=True)
def _exp_pair_f32(x1, x2):
    """``_exp_pair`` for float32 with the vectorisable exponential (``exp_numba``)."""
    one = np.float32(1.0)
    e = exp_nonpositive(-abs(x1 - x2))
    return (one if x1 >= x2 else e), (e if x1 >= x2 else one)


# channels per job of the float32 forward: a few vectors' worth, so a job's state stays in registers/L1
CHANNEL_BLOCK = 64


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _wkv_forward_f32(w, u, k, v, aa, bb, pp, y):
    """``_wkv_forward_kernel`` for float32, its loops turned inside out: time outside, a block of
    ``CHANNEL_BLOCK`` neighbouring channels inside. Each time step then reads k[b, t, c0:c1] and
    v[b, t, c0:c1] contiguously, and the channel loop vectorises, its one exponential per pair in
    arithmetic (``exp_numba.exp_nonpositive``, relative error < 3e-7) instead of a libm call.
    Same recurrence, its pairs from ``_exp_pair_f32``; parallel over (batch, channel block).
    Measured at B=1, T=512, C=768: 4.17 -> 0.75 ms on one thread, 2.02 -> 0.38 ms on two; against a
    float64 reference the outputs differ by at most 5.9e-6, as the scalar float32 kernel's do."""
    B, T, C = k.shape
    blocks = (C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    for job in prange(B * blocks):
        b = job // blocks
        c0 = (job % blocks) * CHANNEL_BLOCK
        n = min(C, c0 + CHANNEL_BLOCK) - c0
        a, d, p = aa[b, c0:c0 + n].copy(), bb[b, c0:c0 + n].copy(), pp[b, c0:c0 + n].copy()
        wc, uc = w[c0:c0 + n], u[c0:c0 + n]
        for t in range(T):
            kt, vt, yt = k[b, t, c0:c0 + n], v[b, t, c0:c0 + n], y[b, t, c0:c0 + n]
            for j in range(n):                        # vectorised over channels
                ww = uc[j] + kt[j]                    # output: past mixed with the boosted current token
                e1, e2 = _exp_pair_f32(p[j], ww)
                yt[j] = (e1 * a[j] + e2 * vt[j]) / (e1 * d[j] + e2)
                ww = p[j] + wc[j]                     # state: decay the past, add the current token
                e1, e2 = _exp_pair_f32(ww, kt[j])
                a[j] = e1 * a[j] + e2 * vt[j]
                d[j] = e1 * d[j] + e2
                p[j] = max(ww, kt[j])
        aa[b, c0:c0 + n], bb[b, c0:c0 + n], pp[b, c0:c0 + n] = a, d, p


def _as(x, dtype):
    return np.ascontiguousarray(x, dtype)


def wkv_forward(w, u, k, v, state=None):
    """Stable WKV forward, compiled. k, v: (B, T, C) -> y (B, T, C) and the state; the input state is not modified."""
    B, T, C = check_wkv_inputs(w, u, k, v, state, fn="wkv_forward")
    dt = k.dtype
    aa, bb, pp = starting_state(state, B, C, dt)
    y = np.empty((B, T, C), dt)
    kernel = _wkv_forward_f32 if dt == np.float32 else _wkv_forward_kernel      # float64: libm's exp
    kernel(_as(w, dt), _as(u, dt), _as(k, dt), _as(v, dt), aa, bb, pp, y)
    return y, (aa, bb, pp)


def wkv_backward(w, u, k, v, gy):
    """Gradients of sum(y * gy) w.r.t. w (C,), u (C,), k, v (B, T, C), from the empty state.

    gw is dL/dw; chain the parametrisation yourself: dL/dtime_decay = gw * w.
    """
    B, T, C = check_wkv_inputs(w, u, k, v, gy=gy, fn="wkv_backward")
    dt = k.dtype
    gk, gv = np.empty((B, T, C), dt), np.empty((B, T, C), dt)
    gw_bc, gu_bc = np.empty((B, C), dt), np.empty((B, C), dt)      # per sequence, summed below
    _wkv_backward_kernel(_as(w, dt), _as(u, dt), _as(k, dt), _as(v, dt), _as(gy, dt),
                         gw_bc, gu_bc, gk, gv)
    return gw_bc.sum(axis=0), gu_bc.sum(axis=0), gk, gv


def wkv_step(w, u, k, v, state=None):
    """One RNN step for B sequences: k, v (B, C) -> y (B, C) and the new state; the input state is not modified."""
    B, C = check_wkv_step_inputs(w, u, k, v, state)
    dt = k.dtype
    aa, bb, pp = starting_state(state, B, C, dt)
    y = np.empty((B, C), dt)
    _wkv_step_kernel(_as(w, dt), _as(u, dt), _as(k, dt), _as(v, dt), aa, bb, pp, y)
    return y, (aa, bb, pp)


# --------------------------------------------------------------------------- threads (used by the models' parallel mode)


def default_wkv_threads():
    """Numba threads for a WKV recurrence inside a model's parallel forward: 1 on machines with <= 2 cores.

    Why: in the forward every WKV call sits between multi-threaded BLAS products, and BLAS worker
    threads keep spinning for a while after a product returns. On 2 cores a parallel WKV then
    fights them for the cores (measured at 169M, T=512: 9 ms per WKV call with 2 threads, 6.5 ms
    with 1, and the whole prompt 15% faster with 1). With more cores the parallel kernel wins.
    """
    return 1 if (os.cpu_count() or 1) <= 2 else None


@contextlib.contextmanager
def numba_threads(n):
    """Runs the block with at most ``n`` Numba threads (None: leave as is). Numba's setting is
    per Python thread, so other threads and later calls are unaffected."""
    if n is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
