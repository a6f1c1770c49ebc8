"""Solutions to lesson 08's exercises (WKV kernels).

Each function has the name of its check: ``check.wkv_thread(wkv_thread)`` passes.
"""
import numpy as np


def wkv_thread(b, c, w, u, k, v, y):
    """One CUDA thread's work: the stable WKV loop over time for the pair (b, c), writing y[b, :, c]."""
    aa, bb, pp = 0.0, 0.0, -1e38                   # the empty state, in this thread's "registers"
    for t in range(k.shape[1]):
        kt, vt = k[b, t, c], v[b, t, c]
        q = max(pp, u[c] + kt)                     # output: the past and the boosted current token
        e1, e2 = np.exp(pp - q), np.exp(u[c] + kt - q)
        y[b, t, c] = (e1 * aa + e2 * vt) / (e1 * bb + e2)
        q = max(pp + w[c], kt)                     # state: decay the past, add the current token
        e1, e2 = np.exp(pp + w[c] - q), np.exp(kt - q)
        aa, bb, pp = e1 * aa + e2 * vt, e1 * bb + e2, q


def max_trick_add(m1, p1, m2, p2):
    """(m, p) with m e^p = m1 e^p1 + m2 e^p2: both terms in units of the larger exponent."""
    p = np.maximum(p1, p2)
    return m1 * np.exp(p1 - p) + m2 * np.exp(p2 - p), p     # both exponents <= 0


def launch_grid(B, C, threads_per_block):
    """Enough blocks of threads_per_block threads for B * C threads: ceil(B * C / threads_per_block)."""
    n_threads = B * C                                        # one thread per (batch, channel) pair
    return (n_threads + threads_per_block - 1) // threads_per_block, threads_per_block
