"""Fused elementwise kernels for RWKV-4's blocks: each one pass over the activations, not several.

In NumPy a layer norm followed by the token-shift mixes is ~15 passes over (B, T, C) arrays (mean,
centre, variance, scale, shift, concatenate, difference, and two passes per mix), and each sigmoid
gate 6 more. At a 512-token prompt on 169M shapes these passes were ~30% of the time (see
``tinyrwkv.experiments.roofline.prompt_profile``). Here each is one compiled loop per row:

    ln_shift_mix(x, x_prev, weight, bias, eps, mus, out, h)    layer norm + M token-shift mixes
    sigmoid_gate(r, y)                                          y *= sigmoid(r), in place
    squared_relu_(k)                                            k = relu(k)^2, in place

The readable path (``tinyrwkv.nn.functional`` + ``models.rwkv.time_mix`` / ``channel_mix``) stays the
reference; ``tests/test_fused.py`` holds the fused model equal to it (rtol 1e-5). Every kernel has a
parallel version (over rows, for prompts) and a one-thread twin (``*_serial``, for decoding's few rows,
where waking the thread pool costs more than the work).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH, one_thread_twin
from .exp_numba import exp_nonpositive

# rows (B x T) from which the parallel versions are used
PARALLEL_MIN_ROWS = 32


def _ln_shift_mix(x, x_prev, weight, bias, eps, mus, out, h):
    """x: (B, T, C) the block's input; x_prev: (B, C) the layer norm output of the token before
    x[:, 0]; weight, bias: (C,); mus: a tuple of M mixing weights, each (C,). Writes
        h[b, t]        = LN(x[b, t])                                        (B, T, C)
        out[m, b, t]   = h[b, t-1] + mus[m] (h[b, t] - h[b, t-1])          (M, B, T, C)
    with h[b, -1] = x_prev[b]. Mean and variance accumulate in float64 (biased variance, as torch);
    FASTMATH lets the parallel version vectorise those sums (reassociated: ~1e-16 relative)."""
    B, T, C = x.shape
    M = len(mus)
    for row in prange(B * T):                       # phase 1: the layer norm of every row
        b, t = row // T, row % T
        s = 0.0
        for c in range(C):
            s += x[b, t, c]
        mean = s / C
        v = 0.0
        for c in range(C):
            d = x[b, t, c] - mean
            v += d * d
        rstd = 1.0 / np.sqrt(v / C + eps)
        for c in range(C):
            h[b, t, c] = np.float32((x[b, t, c] - mean) * rstd) * weight[c] + bias[c]
    for row in prange(B * T):                       # phase 2: the mixes, reading rows t-1 and t
        b, t = row // T, row % T
        for m in range(M):
            for c in range(C):
                prev = x_prev[b, c] if t == 0 else h[b, t - 1, c]
                out[m, b, t, c] = prev + mus[m][c] * (h[b, t, c] - prev)


def _sigmoid_gate(r, y):
    """y *= sigmoid(r) elementwise, in place; r, y: (R, C). With e = e^-|a| (never overflows),
    sigmoid(a) = 1 / (1 + e) for a >= 0 and e / (1 + e) below: one exponential per element, in
    arithmetic the loop vectorises (``exp_numba``; np.exp here measured ~4x slower at 512 x 768)."""
    for i in prange(r.shape[0]):
        for c in range(r.shape[1]):
            a = r[i, c]
            e = exp_nonpositive(-abs(a))
            y[i, c] *= (np.float32(1.0) if a >= 0 else e) / (np.float32(1.0) + e)


def _squared_relu(k):
    """k = max(k, 0)^2 elementwise, in place; k: (R, F)."""
    for i in prange(k.shape[0]):
        for c in range(k.shape[1]):
            a = max(k[i, c], np.float32(0.0))
            k[i, c] = a * a


ln_shift_mix_parallel = njit(parallel=True, fastmath=FASTMATH, cache=True)(_ln_shift_mix)
ln_shift_mix_serial = one_thread_twin(ln_shift_mix_parallel)
sigmoid_gate_parallel = njit(parallel=True, fastmath=FASTMATH, cache=True)(_sigmoid_gate)
sigmoid_gate_serial = one_thread_twin(sigmoid_gate_parallel)
squared_relu_parallel = njit(parallel=True, fastmath=FASTMATH, cache=True)(_squared_relu)
squared_relu_serial = one_thread_twin(squared_relu_parallel)


def ln_shift_mix(x, x_prev, weight, bias, eps, mus):
    """LN(x) and its M token-shift mixes in one pass: returns (mixed (M, B, T, C), h_last (B, C))
    where h_last = LN(x)[:, -1], the next call's x_prev. x: (B, T, C); mus: M mixing weights (C,)
    (a sequence: passed as a tuple, not stacked into a new array on every decoding step)."""
    B, T, C = x.shape
    out = np.empty((len(mus), B, T, C), np.float32)
    h = np.empty((B, T, C), np.float32)
    kernel = ln_shift_mix_parallel if B * T >= PARALLEL_MIN_ROWS else ln_shift_mix_serial
    kernel(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(x_prev, dtype=np.float32),
           weight, bias, np.float64(eps), tuple(np.ascontiguousarray(m, dtype=np.float32) for m in mus), out, h)
    return out, h[:, -1].copy()


def sigmoid_gate(r, y):
    """y *= sigmoid(r), in place (r, y: (..., C), C-contiguous float32). Returns y."""
    r2, y2 = r.reshape(-1, r.shape[-1]), y.reshape(-1, y.shape[-1])
    (sigmoid_gate_parallel if len(r2) >= PARALLEL_MIN_ROWS else sigmoid_gate_serial)(r2, y2)
    return y


def squared_relu_(k):
    """k = relu(k)^2, in place (k: (..., F), C-contiguous float32). Returns k."""
    k2 = k.reshape(-1, k.shape[-1])
    (squared_relu_parallel if len(k2) >= PARALLEL_MIN_ROWS else squared_relu_serial)(k2)
    return k
