"""The roofline numbers of RWKV on this machine: what decoding and a prompt must move and compute,
and how fast this machine moves and computes. Library code (``tinyrwkv bench``) and the figure
script ``tinyrwkv.experiments.roofline`` (lesson 13) both read them from here.

Per token, a model with P weights in its matrices (every matrix but the embedding, from which a
token reads one row) does 2 P flops (a multiply and an add per weight), and reads

    decode (one token per call)   every weight once: b P bytes, b = bytes per weight (4 fp32, 2 bf16,
                                  1 int8 + its scales), for 2 P flops: 2 / b flops per byte
    prompt (T tokens per call)    every weight once for T tokens: b P / T bytes per token, 2 T / b
                                  flops per byte

so decoding's fastest possible speed is bandwidth / (b P), the *decode bound*, and a long prompt's
is GEMM FLOP/s / 2 P (a prompt that keeps only its last logits runs the head once, not per token:
``prompt_flops`` counts that).
"""
from __future__ import annotations

import functools
import time

import numpy as np

from .nn.compact import compact, is_compactable, pack_matrices


# --------------------------------------------------------------------------- the machine


@functools.cache
def _read_kernels():
    """Two ways to read a float32 array as fast as this machine can, both on all Numba threads:
    a plain parallel sum (the hardware prefetcher alone), and the same sum over rows of 4096 floats
    asking for the bytes 32 KiB ahead (``kernels.matmul_numba.prefetch_ahead``, as decoding does)."""
    from numba import njit, prange

    from .kernels import FASTMATH
    from .kernels.matmul_numba import prefetch_ahead

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def parallel_sum(a):
        s = np.float32(0.0)
        for i in prange(a.size):
            s += a[i]
        return s

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def prefetching_sum(a):
        K = 4096
        s = np.float32(0.0)
        for row in prange(a.size // K):
            prefetch_ahead(a, row * K, K, 4)
            r = np.float32(0.0)
            for k in range(row * K, row * K + K):
                r += a[k]
            s += r
        return s
    return parallel_sum, prefetching_sum


def measure_bandwidth(megabytes: float = 512, repeats: int = 3) -> dict:
    """Read bandwidth of this machine for a working set of ``megabytes``: GB/s of the faster of a
    plain and a prefetching parallel sum over a float32 array that big, read again and again (as
    decoding reads its weights), best of ``repeats``; and of numpy's copy of it (counting the bytes
    read and written). 512 MB is far bigger than any cache; a model's own size (a format's bytes per
    token) says what reading *that* many bytes costs here, caches included.
    Returns {"bandwidth_gbs", "plain_sum_gbs", "prefetch_sum_gbs", "numpy_copy_gbs", "megabytes"}."""
    n = max(4096, int(megabytes * 2**20) // 4 // 4096 * 4096)         # whole rows of 4096 floats
    a = np.ones(n, np.float32)
    b = np.empty_like(a)
    kernels = _read_kernels()
    for read in kernels:
        read(a[:8192])                               # compile outside the timing
    best = {read: float("inf") for read in kernels}
    best_copy = float("inf")
    loops = max(1, (256 << 20) // a.nbytes)          # a small array is read many times per timing, so the
    for _ in range(repeats):                         # call's own cost does not pass for slow memory
        for read in kernels:                         # alternated, so both see the same machine
            t0 = time.perf_counter()
            for _ in range(loops):
                read(a)
            best[read] = min(best[read], (time.perf_counter() - t0) / loops)
        t0 = time.perf_counter()
        np.copyto(b, a)
        best_copy = min(best_copy, time.perf_counter() - t0)
    plain, prefetching = (a.nbytes / best[k] / 1e9 for k in kernels)
    return {"bandwidth_gbs": max(plain, prefetching), "plain_sum_gbs": plain, "prefetch_sum_gbs": prefetching,
            "numpy_copy_gbs": 2 * a.nbytes / best_copy / 1e9, "megabytes": a.nbytes / 2**20}


def measure_gemm(rows: int = 512, n_embd: int = 768, repeats: int = 3) -> float:
    """GFLOP/s of float32 BLAS at a prompt's shape: (rows, C) @ (C, 4C), best of ``repeats``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, n_embd), dtype=np.float32)
    w = rng.standard_normal((4 * n_embd, n_embd), dtype=np.float32)
    x @ w.T
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x @ w.T
        best = min(best, time.perf_counter() - t0)
    return 2.0 * rows * n_embd * 4 * n_embd / best / 1e9


# --------------------------------------------------------------------------- the model's bytes and flops


def decode_bytes(params) -> int:
    """Bytes one decoding step reads: every parameter (matrices in their stored format), but of the
    embedding only one row."""
    total = 0
    for name, value in params.items():
        if name == "emb.weight":
            total += value.nbytes // value.shape[0]
        else:
            total += value.nbytes
    return int(total)


def weights_per_token(n_layer: int, n_embd: int, ffn_dim: int, vocab_size: int) -> int:
    """RWKV-4 matrix weights one token multiplies: per layer time-mix key, value, receptance, output
    (4 C^2) and channel-mix key (F x C), value (C x F), receptance (C^2); then the head (V x C).
    (The embedding is a lookup: one row, no product.)"""
    C, F_ = n_embd, ffn_dim
    return n_layer * (5 * C * C + 2 * C * F_) + vocab_size * C


def bytes_per_token(n_layer: int, n_embd: int, ffn_dim: int, vocab_size: int, bytes_per_weight: float) -> float:
    """Bytes of weight matrices one decoding step reads: every matrix weight once, plus the one
    embedding row of the token, at ``bytes_per_weight`` each (vectors and scales left out)."""
    return (weights_per_token(n_layer, n_embd, ffn_dim, vocab_size) + n_embd) * bytes_per_weight


def predicted_tokens_per_second(bandwidth_gbs: float, nbytes: float) -> float:
    """The decode bound: a token cannot be faster than reading its ``nbytes`` at ``bandwidth_gbs`` (1e9 B/s)."""
    return bandwidth_gbs * 1e9 / nbytes


def arithmetic_intensity(bytes_per_weight: float, tokens_per_call: int) -> float:
    """Flops per byte of weights read when one read of the weights serves ``tokens_per_call`` tokens:
    2 flops (multiply, add) per weight and token, b bytes per weight: 2 T / b."""
    return 2.0 * tokens_per_call / bytes_per_weight


def matrix_weights(params) -> int:
    """P: weights in the matrix products of a token (every 2-d matrix but the embedding)."""
    return int(sum(v.size for k, v in params.items() if np.ndim(v) == 2 and k != "emb.weight"))


def prompt_flops(params, tokens: int) -> int:
    """Flops of a ``tokens``-token prompt that asks for the last position's logits only (as generation
    and ``bench`` do): every layer's matrices for every token, the head (V x C, a third of RWKV-4
    169M's matrix weights) once: 2 (P - P_head) T + 2 P_head. (Counting the head for every token
    would overstate a prompt's GFLOP/s by ~40% at 169M.)"""
    head = int(params["head.weight"].size)
    return 2 * (matrix_weights(params) - head) * int(tokens) + 2 * head


def compact_params(params, fmt: str):
    """``params`` with every 2-d ``*.weight`` stored in ``fmt`` (vectors stay float32), the matrices
    packed together as ``tinyrwkv.load`` lays them out (``nn.compact.MatrixArena``); ``params`` itself
    is not changed."""
    return pack_matrices({k: compact(v, fmt) if is_compactable(k, np.shape(v)) else v for k, v in params.items()})


def bytes_per_weight(params) -> float:
    """Stored bytes per matrix weight (4, 2, or 1 + the scales' share)."""
    mats = [v for k, v in params.items() if np.ndim(v) == 2 and k != "emb.weight"]
    return sum(v.nbytes for v in mats) / sum(v.size for v in mats)
