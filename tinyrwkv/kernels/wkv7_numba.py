"""WKV-7 on the CPU with Numba's @njit: the recurrence of ``wkv7_numpy`` (and its backward), compiled.

Heads and sequences are independent, so ``prange`` hands (b, h) pairs to different cores; each pair
walks over time with its N x N state in a private array (16 KB at N = 64 in float32: it stays in
the L1 cache), accumulating in the dtype of the inputs. Same signatures as every WKV-7 backend:

    y, S = forward(r, w, k, v, a, b, state=None)       the six inputs: (B, T, H, N); S (B, H, N, N)
    y, S = step(r, w, k, v, a, b, state=None)          one step: the six inputs (B, H, N)
    gr, gw, gk, gv, ga, gb = backward(r, w, k, v, a, b, gy, state=None)

The math and the derivation of the backward are in ``wkv7_numpy``; the loops here are the same lines
per scalar. Row i of S (one value channel) only needs its own sa[i], so a step is one pass over
the rows: sa[i], then the row's update, then its share of every y.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .wkv7_numpy import check_inputs, starting_state

# FASTMATH (reassociation) lets LLVM vectorise the two dot products of every row (sa and y): measured
# at B=1, T=512, H=12, N=64, 143 ms -> 24 ms.




@njit(cache=True, fastmath=FASTMATH)
def _run_head(r, w, k, v, a, b, S, y, bi, h):
    """Walks sequence bi, head h over time: y[bi, :, h] written, S[bi, h] updated in place.

    The six inputs and y: (B, T, H, N); S: (B, H, N, N) [b, h, value i, key j].
    """
    T, N = r.shape[1], r.shape[3]
    s = S[bi, h].copy()                           # (N, N), private to this (b, h)
    zero = s.dtype.type(0)
    for t in range(T):
        rt, wt, kt, at, bt = r[bi, t, h], w[bi, t, h], k[bi, t, h], a[bi, t, h], b[bi, t, h]   # (N,) views
        for i in range(N):                        # row i: one value channel
            row = s[i]
            sa = zero
            for j in range(N):
                sa += row[j] * at[j]              # what the state returns for the key a
            vi = v[bi, t, h, i]
            yi = zero
            for j in range(N):
                row[j] = row[j] * wt[j] + sa * bt[j] + vi * kt[j]
                yi += row[j] * rt[j]
            y[bi, t, h, i] = yi
    S[bi, h] = s


@njit(parallel=True, cache=True)
def _forward_kernel(r, w, k, v, a, b, S, y):
    B, H = r.shape[0], r.shape[2]
    for bh in prange(B * H):                      # one (sequence, head) pair per iteration
        _run_head(r, w, k, v, a, b, S, y, bh // H, bh % H)


# Not parallel: a decoding step is B * H * 3N^2 flops, less work than waking the thread pool on a
# busy machine (see wkv_numba's step kernel).
@njit(cache=True)
def _step_kernel(r, w, k, v, a, b, S, y):
    B, H = r.shape[0], r.shape[2]
    for bh in range(B * H):
        _run_head(r, w, k, v, a, b, S, y, bh // H, bh % H)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _backward_kernel(r, w, k, v, a, b, gy, S0, gr, gw, gk, gv, ga, gb):
    """The transposed recurrence of wkv7_numpy.backward, one (b, h) pair per iteration.

    Inputs, gy and the six gradients: (B, T, H, N); S0: (B, H, N, N), the (constant) starting state.
    """
    B, T, H, N = r.shape
    for bh in prange(B * H):
        bi = bh // H
        h = bh % H
        zero = r.dtype.type(0)
        # Forward sweep: saved[t] = the state entering step t, saved[T] = the final state.
        saved = np.empty((T + 1, N, N), r.dtype)
        saved[0] = S0[bi, h]
        for t in range(T):
            for i in range(N):
                sa = zero
                for j in range(N):
                    sa += saved[t, i, j] * a[bi, t, h, j]
                for j in range(N):
                    saved[t + 1, i, j] = (saved[t, i, j] * w[bi, t, h, j] + sa * b[bi, t, h, j]
                                          + v[bi, t, h, i] * k[bi, t, h, j])
        # Reverse sweep: dS = dL/d(state leaving step t), zero after the last step.
        dS = np.zeros((N, N), r.dtype)
        col = np.empty((5, N), r.dtype)           # column sums over i: gr, gw, gk, gb, ga
        for t in range(T - 1, -1, -1):
            col[:] = zero
            for i in range(N):
                gyi = gy[bi, t, h, i]
                vi = v[bi, t, h, i]
                sa = zero
                gvi = zero
                dsa = zero
                for j in range(N):                # dS' += gy r^T; the row sums sa, gv, dsa
                    dS[i, j] += gyi * r[bi, t, h, j]
                    col[0, j] += saved[t + 1, i, j] * gyi
                    sa += saved[t, i, j] * a[bi, t, h, j]
                    gvi += dS[i, j] * k[bi, t, h, j]
                    dsa += dS[i, j] * b[bi, t, h, j]
                gv[bi, t, h, i] = gvi
                for j in range(N):                # the column sums; dS flows on to step t-1
                    col[1, j] += dS[i, j] * saved[t, i, j]
                    col[2, j] += dS[i, j] * vi
                    col[3, j] += dS[i, j] * sa
                    col[4, j] += dsa * saved[t, i, j]
                    dS[i, j] = dS[i, j] * w[bi, t, h, j] + dsa * a[bi, t, h, j]
            for j in range(N):
                gr[bi, t, h, j] = col[0, j]
                gw[bi, t, h, j] = col[1, j]
                gk[bi, t, h, j] = col[2, j]
                gb[bi, t, h, j] = col[3, j]
                ga[bi, t, h, j] = col[4, j]


def _as(x, dtype):
    return np.ascontiguousarray(x, dtype)


def forward(r, w, k, v, a, b, state=None):
    """WKV-7 forward, compiled: y (B, T, H, N) and the state S (B, H, N, N); the input state is not modified."""
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, fn="wkv7.forward")
    dt = r.dtype
    S = starting_state(state, B, H, N, dt)
    y = np.empty((B, T, H, N), dt)
    _forward_kernel(*(_as(x, dt) for x in (r, w, k, v, a, b)), S, y)
    return y, S


def step(r, w, k, v, a, b, state=None):
    """One decoding step: the six inputs (B, H, N) -> y (B, H, N) and the new S (B, H, N, N).

    The forward's loop with T = 1, run on one thread. The input state is not modified.
    """
    B, H, N = check_inputs(r, w, k, v, a, b, state, fn="wkv7.step", step=True)
    dt = r.dtype
    S = starting_state(state, B, H, N, dt)
    y = np.empty((B, 1, H, N), dt)
    _step_kernel(*(_as(x[:, None], dt) for x in (r, w, k, v, a, b)), S, y)
    return y[:, 0], S


def backward(r, w, k, v, a, b, gy, state=None):
    """Gradients of L = sum(y * gy), y = forward(r, w, k, v, a, b, state)[0]; each (B, T, H, N).

    Returns gr, gw, gk, gv, ga, gb. ``state`` (None = empty) is held constant. Stores the state
    entering every step: T x N x N numbers per (b, h) while it runs.
    """
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, gy=gy, fn="wkv7.backward")
    dt = r.dtype
    grads = tuple(np.empty((B, T, H, N), dt) for _ in range(6))
    _backward_kernel(*(_as(x, dt) for x in (r, w, k, v, a, b, gy)), starting_state(state, B, H, N, dt), *grads)
    return grads
