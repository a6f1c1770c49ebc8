"""WKV-5/6 on the CPU with Numba's @njit: the recurrence of ``wkv6_numpy``, compiled.

Heads and sequences are independent, so ``prange`` hands (b, h) pairs to different cores; each
pair walks over time with its N x N state in a small private array (N = 64: 16 KB in float32,
which stays in the L1 cache), accumulating in the dtype of the inputs. Same signatures as every
WKV-5/6 backend:

    y, S = forward(r, k, v, w, u, state=None)   r, k, v: (B, T, H, N); w: (B, T, H, N) or (H, N); u: (H, N)
    y, S = step(r, k, v, w, u, state=None)      one step: r, k, v: (B, H, N); w: (B, H, N) or (H, N)

The math lives in ``wkv6_numpy``. The kernel reads w[wb, wt, h, i] with wb = wt = 0 when the decay
is constant (v5: w is viewed as (1, 1, H, N)), so one compiled loop serves RWKV-5 and RWKV-6.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .wkv6_numpy import check_inputs, starting_state




@njit(cache=True, fastmath=FASTMATH)
def _run_head(r, k, v, w, u, S, y, b, h):
    """Walks sequence b, head h over time: y[b, :, h] written, S[b, h] updated in place.

    r, k, v, y: (B, T, H, N); w: (B, T, H, N), or (1, 1, H, N) for a decay constant in time;
    u: (H, N); S: (B, H, N, N) [b, h, key i, value j].
    """
    T, N = r.shape[1], r.shape[3]
    s = S[b, h].copy()                        # (N, N): private to this (b, h), stays in cache
    kv = np.empty(N, r.dtype)                 # row i of k v^T
    acc = np.empty(N, r.dtype)                # y_t, accumulated over the key index i
    wb = b if w.shape[0] > 1 else 0           # v5 passes w as (1, 1, H, N): the same decay every step
    for t in range(T):
        wt = t if w.shape[1] > 1 else 0
        acc[:] = 0
        for i in range(N):
            ri, ki, ui, wi = r[b, t, h, i], k[b, t, h, i], u[h, i], w[wb, wt, h, i]
            for j in range(N):
                kv[j] = ki * v[b, t, h, j]
                acc[j] += ri * (s[i, j] + ui * kv[j])     # read row i before it is decayed ...
                s[i, j] = wi * s[i, j] + kv[j]            # ... and written
        for j in range(N):
            y[b, t, h, j] = acc[j]
    S[b, h] = s


@njit(parallel=True, cache=True)
def _forward_kernel(r, k, v, w, u, S, y):
    B, H = r.shape[0], r.shape[2]
    for bh in prange(B * H):                  # one (sequence, head) pair per iteration
        _run_head(r, k, v, w, u, S, y, bh // H, bh % H)


# Not parallel: one step is B * H * N * N multiply-adds (49k for 12 heads of 64), less work than
# waking the thread pool on a busy machine (see wkv_numba's step kernel).
@njit(cache=True)
def _step_kernel(r, k, v, w, u, S, y):
    B, H = r.shape[0], r.shape[2]
    for bh in range(B * H):
        _run_head(r, k, v, w, u, S, y, bh // H, bh % H)


def _decay_4d(w, dt):
    """w as the kernel reads it: (B, T, H, N) unchanged, or a constant (H, N) as (1, 1, H, N)."""
    w = np.ascontiguousarray(w, dt)
    return w if w.ndim == 4 else w.reshape((1, 1) + w.shape)


def forward(r, k, v, w, u, state=None):
    """WKV-5/6 forward, compiled: y (B, T, H, N) and the state S (B, H, N, N); the input state is not modified."""
    B, T, H, N = check_inputs(r, k, v, w, u, state, fn="wkv6.forward")
    dt = r.dtype
    S = starting_state(state, B, H, N, dt)
    y = np.empty((B, T, H, N), dt)
    _forward_kernel(*(np.ascontiguousarray(x, dt) for x in (r, k, v)), _decay_4d(w, dt),
                    np.ascontiguousarray(u, dt), S, y)
    return y, S


def step(r, k, v, w, u, state=None):
    """One decoding step for B sequences: r, k, v (B, H, N) -> y (B, H, N) and the new S (B, H, N, N).

    The forward's loop with T = 1, run on one thread. The input state is not modified.
    """
    B, H, N = check_inputs(r, k, v, w, u, state, fn="wkv6.step", step=True)
    dt = r.dtype
    S = starting_state(state, B, H, N, dt)
    y = np.empty((B, 1, H, N), dt)
    w = np.asarray(w)[:, None] if np.ndim(w) == 3 else w               # (B, 1, H, N) or (H, N)
    _step_kernel(*(np.ascontiguousarray(x[:, None], dt) for x in (r, k, v)), _decay_4d(w, dt),
                 np.ascontiguousarray(u, dt), S, y)
    return y[:, 0], S
