"""WKV on the CPU with Numba's @njit: the same stable recurrence as ``wkv_numpy.wkv_forward``,
compiled to machine code. One independent loop over time per (batch, channel) pair, which is
why ``prange`` can hand pairs to different cores. Same signature as every backend:

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None)      k, v: (B, T, C); w, u: (C,)
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .wkv_numpy import check_wkv_inputs, initial_state


@njit(parallel=True, fastmath=False, cache=True)
def _wkv_forward_kernel(w, u, k, v, aa, bb, pp, y):
    B, T, C = k.shape
    for bc in prange(B * C):              # one (batch, channel) pair per iteration
        b = bc // C
        c = bc % C
        a, d, p = aa[b, c], bb[b, c], pp[b, c]    # the state lives in registers for the whole loop
        wc, uc = w[c], u[c]
        for t in range(T):
            kt = k[b, t, c]
            vt = v[b, t, c]
            ww = uc + kt                          # output: past mixed with the boosted current token
            q = max(p, ww)
            e1 = np.exp(p - q)
            e2 = np.exp(ww - q)
            y[b, t, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
            ww = p + wc                           # state: decay the past, add the current token
            q = max(ww, kt)
            e1 = np.exp(ww - q)
            e2 = np.exp(kt - q)
            a = e1 * a + e2 * vt
            d = e1 * d + e2
            p = q
        aa[b, c], bb[b, c], pp[b, c] = a, d, p


def wkv_forward(w, u, k, v, state=None):
    """Stable WKV forward, compiled. Inputs are made contiguous; the state is not modified in place."""
    B, T, C = check_wkv_inputs(w, u, k, v, state)
    dt = k.dtype
    aa, bb, pp = initial_state(B, C, dt) if state is None else (np.array(s, dtype=dt) for s in state)
    y = np.empty((B, T, C), dt)
    _wkv_forward_kernel(np.ascontiguousarray(w, dt), np.ascontiguousarray(u, dt),
                        np.ascontiguousarray(k), np.ascontiguousarray(v, dt), aa, bb, pp, y)
    return y, (aa, bb, pp)
