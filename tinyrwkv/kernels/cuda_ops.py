"""Every other op of the RWKV-4 hot path as a ``numba.cuda`` kernel, written to be read.

``wkv_cuda.py`` holds the recurrence. This file holds everything around it: the matrix products,
the layer norms, the token-shift mixes, the gates and the embedding gather. With these kernels the
whole model runs on the device (``tinyrwkv.runners.cuda_rwkv4``). Numbered versions in the style
of llm.c show what each change buys, and every version is tested against NumPy on the CUDA
simulator (``tests/test_cuda_ops.py``):

    matvec_v1     y = W x for decoding, naive: one thread per output row. Neighbouring threads
                  read neighbouring ROWS, K floats apart: every load is its own memory transaction
    matvec_v2     one warp (32 threads) per row: the lanes read 32 neighbouring floats of the row
                  (one coalesced transaction), and the 32 partial sums meet by warp shuffles
                  (``cuda.shfl_down_sync``), with no shared memory and no __syncthreads
    matvec_v3     v2 for a batch: one warp per row for up to ``MATVEC_BATCH`` sequences at once,
                  so each weight is read once per group of sequences, not once per sequence
    matmul_v1     Y = X W^T for the prompt, naive: one thread per output element
    matmul_v2     16 x 16 tiles staged in shared memory: each weight loaded from global memory
                  is used 16 times (once per row of the tile) instead of once
    layernorm_v1  one thread per row: three passes over the row (mean, variance, output)
    layernorm_v2  one block of ``LN_THREADS`` threads per row, sums by a shared-memory tree

plus the element-wise kernels, one thread per element: ``embedding_gather``, ``shift_mix3`` and
``shift_mix2`` (token shift fused with the mu-mixes; for one token also the new shift state),
``save_last`` (the shift state after a prompt),
``sigmoid_mul`` (the time-mix gate), ``squared_relu``, ``gate_add`` (channel-mix's gate fused with
the residual add) and ``take_last``.

Memory. A matrix W is (out, in) row-major (torch's layout), so W[n, k] sits at n*K + k. Decoding
one token reads every weight once and does 2 flops with it: the matrix-vector products are limited
by memory bandwidth, not arithmetic. What counts is reading W in full 128-byte transactions
(coalescing), and reading it once (v3 for a batch). The prompt (T tokens) turns them into matrix
products, where each weight is used T times: there the question becomes how often a weight is
fetched from global memory (v2: once per 16-row tile).

Weights may be float32 or float16 ("fp16 storage"): the kernels convert each weight to float32 as
it is loaded, ``float32(W[n, k])``, and accumulate in float32. The activations are always float32.
Numba compiles a kernel once per argument types, so the same source serves both.

Float32 everywhere. A Python float literal is float64 in Numba, and so is ``int * float32``: the
constants below are ``float32(...)``, the scalars passed in are ``np.float32``, and
``tests/test_cuda_ops.py`` compiles every kernel for the real CUDA target to check.

Warp shuffles and the simulator. Numba's CUDA simulator has no ``shfl_down_sync``. When the
simulator is on, this module puts a stand-in in its place that does the same exchange through
the simulator's block barrier (every thread of the block must call it the same number of
times, which our kernels do: no thread returns before a reduction). On a GPU the real
instruction is used. Python's max()/min() do not compile for CUDA in Numba 0.66-0.68 (see
wkv_cuda.py): the kernels avoid them.

Importing this module does not initialise the CUDA driver; the first launch does.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from numba import cuda, float32

from . import cuda_simulator_on

WARP = 32
FULL_MASK = 0xFFFFFFFF           # every lane of the warp takes part in the shuffle
ELEMENTWISE_THREADS = 256        # element-wise kernels: any multiple of 32; 256 is a common sweet spot
MATVEC_WARPS = 4                 # warps per block for matvec v2/v3: 128 threads
MATVEC_BATCH = 4                 # sequences per warp in matvec v3 (registers per thread grow with it)
MATVEC_V1_THREADS = 128
TILE = 16                        # matmul v2 tile: 16 x 16 threads, 256 per block
TILE_PAD = TILE + 1              # one spare column so threads of a warp hit different shared-memory banks
LN_THREADS = 128                 # layernorm v2: threads per row (a power of two for the tree)

MATVEC_VERSIONS = (1, 2, 3)
MATMUL_VERSIONS = (1, 2)
LAYERNORM_VERSIONS = (1, 2)


# --------------------------------------------------------------------------- warp shuffle


def _simulated_shfl_down_sync(mask, value, delta):
    """The simulator's stand-in for ``cuda.shfl_down_sync``: lane i gets lane i+delta's value
    (its own when i+delta is past the warp). Exchanged through the block barrier; plain Python."""
    me = threading.current_thread()                   # a simulator BlockThread
    manager = me._manager
    bx, by, _ = manager._block_dim
    tid = me.threadIdx.x + bx * (me.threadIdx.y + by * me.threadIdx.z)
    board = manager.__dict__.setdefault("_shuffle_board", {})
    board[tid] = value
    me.syncthreads()
    lane = tid % WARP
    out = board.get(tid + delta, value) if lane + delta < WARP else value
    me.syncthreads()
    return out


shfl_down_sync = _simulated_shfl_down_sync if cuda_simulator_on() else cuda.shfl_down_sync


@cuda.jit(device=True)
def warp_sum(value):
    """The sum of ``value`` over the 32 lanes of a warp, in lane 0 (other lanes hold partial sums).

    Five shuffles: lane i adds lane i+16's value, then i+8's, ... i+1's: a tree in registers.
    """
    value += shfl_down_sync(FULL_MASK, value, 16)
    value += shfl_down_sync(FULL_MASK, value, 8)
    value += shfl_down_sync(FULL_MASK, value, 4)
    value += shfl_down_sync(FULL_MASK, value, 2)
    value += shfl_down_sync(FULL_MASK, value, 1)
    return value


@cuda.jit(device=True)
def sigmoid(x):
    """1 / (1 + e^-x) without overflow: e^x / (1 + e^x) for negative x, as nn.functional.sigmoid."""
    if x >= float32(0.0):
        return float32(1.0) / (float32(1.0) + math.exp(-x))
    e = math.exp(x)
    return e / (float32(1.0) + e)


# --------------------------------------------------------------------------- matrix-vector (decoding)


@cuda.jit
def matvec_v1(W, x, y, accumulate):
    """y[b] (+)= W x[b], one thread per (b, n). W: (N, K); x: (B, K); y: (B, N); accumulate: 0 or 1.

    Thread i owns output (b, n) = (i // N, i % N) and walks along row n of W. At each step the
    32 threads of a warp read W[n..n+31, k]: 32 addresses K floats apart, 32 transactions.
    """
    B, K = x.shape
    N = W.shape[0]
    i = cuda.grid(1)
    if i >= B * N:
        return
    b = i // N
    n = i % N
    acc = float32(0.0)
    for k in range(K):
        acc += float32(W[n, k]) * x[b, k]
    if accumulate:
        y[b, n] += acc
    else:
        y[b, n] = acc


@cuda.jit
def matvec_v2(W, x, y, accumulate):
    """y[b] (+)= W x[b], one warp per (b, n). Same arguments as v1.

    Lane j of the warp reads W[n, j], W[n, j+32], ...: at each step the warp reads 32 neighbouring
    floats (128 bytes, one transaction; 64 bytes for float16). The 32 partial sums are added by
    ``warp_sum``. Threads are never returned early: every lane must reach the shuffles.
    """
    B, K = x.shape
    N = W.shape[0]
    row = cuda.grid(1) // WARP                     # one warp per (b, n)
    lane = cuda.threadIdx.x % WARP
    active = row < B * N
    b = row // N if active else 0
    n = row % N if active else 0
    acc = float32(0.0)
    if active:
        for k in range(lane, K, WARP):
            acc += float32(W[n, k]) * x[b, k]
    acc = warp_sum(acc)
    if active and lane == 0:
        if accumulate:
            y[b, n] += acc
        else:
            y[b, n] = acc


@cuda.jit
def matvec_v3(W, x, y, accumulate):
    """y[b] (+)= W x[b] for every b, one warp per row n. Same arguments as v1.

    The warp reads each weight W[n, k] once and uses it for ``MATVEC_BATCH`` sequences (partial sums
    in a small per-thread array, i.e. registers), so B sequences cost ceil(B / MATVEC_BATCH) reads of
    W instead of B. For B = 1 it is v2 (the unused partial sums are never reduced).
    """
    B, K = x.shape
    N = W.shape[0]
    n = cuda.grid(1) // WARP
    lane = cuda.threadIdx.x % WARP
    active = n < N
    acc = cuda.local.array(MATVEC_BATCH, float32)
    for b0 in range(0, B, MATVEC_BATCH):
        for j in range(MATVEC_BATCH):
            acc[j] = float32(0.0)
        if active:
            for k in range(lane, K, WARP):
                w = float32(W[n, k])
                for j in range(MATVEC_BATCH):
                    if b0 + j < B:
                        acc[j] += w * x[b0 + j, k]
        for j in range(MATVEC_BATCH):
            if b0 + j < B:            # the same for every lane of the warp, so all skip together
                total = warp_sum(acc[j])
                if active and lane == 0:
                    if accumulate:
                        y[b0 + j, n] += total
                    else:
                        y[b0 + j, n] = total


# --------------------------------------------------------------------------- matrix-matrix (the prompt)


@cuda.jit
def matmul_v1(X, W, Y, accumulate):
    """Y (+)= X W^T, one thread per output (m, n). X: (M, K); W: (N, K); Y: (M, N).

    Neighbouring threads take neighbouring n (so their Y stores coalesce); each reads a whole row
    of X and of W from global memory: 2 K loads per 2 K flops.
    """
    M, K = X.shape
    N = W.shape[0]
    i = cuda.grid(1)
    if i >= M * N:
        return
    m = i // N
    n = i % N
    acc = float32(0.0)
    for k in range(K):
        acc += X[m, k] * float32(W[n, k])
    if accumulate:
        Y[m, n] += acc
    else:
        Y[m, n] = acc


@cuda.jit
def matmul_v2(X, W, Y, accumulate):
    """Y (+)= X W^T with 16 x 16 tiles in shared memory. Same arguments as v1; block (16, 16).

    Block (bx, by) computes Y[by*16 : by*16+16, bx*16 : bx*16+16]. For each slice of 16 columns of
    K, its 256 threads load a 16 x 16 tile of X and one of W (each thread one float of each, read
    along k: coalesced), wait for each other, and every thread then does 16 multiply-adds from
    shared memory. Each loaded value is used 16 times: global traffic falls 16-fold against v1.
    """
    M, K = X.shape
    N = W.shape[0]
    xs = cuda.shared.array((TILE, TILE_PAD), float32)
    ws = cuda.shared.array((TILE, TILE_PAD), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    m = cuda.blockIdx.y * TILE + ty                  # the output row of this thread
    n = cuda.blockIdx.x * TILE + tx                  # its output column
    n_load = cuda.blockIdx.x * TILE + ty             # the row of W this thread loads into the tile
    acc = float32(0.0)
    for k0 in range(0, K, TILE):
        k = k0 + tx
        xs[ty, tx] = X[m, k] if m < M and k < K else float32(0.0)
        ws[ty, tx] = float32(W[n_load, k]) if n_load < N and k < K else float32(0.0)
        cuda.syncthreads()                           # the tiles are complete
        for kk in range(TILE):
            acc += xs[ty, kk] * ws[tx, kk]
        cuda.syncthreads()                           # everyone is done before the next tiles overwrite
    if m < M and n < N:
        if accumulate:
            Y[m, n] += acc
        else:
            Y[m, n] = acc


# --------------------------------------------------------------------------- layer norm


@cuda.jit
def layernorm_v1(x, weight, bias, eps, y):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per row, one thread per row.

    x, y: (M, C) float32; weight, bias: (C,); eps: a float32. Three passes over the row, each one
    strided by C across the threads of a warp (uncoalesced, like matvec v1).
    """
    M, C = x.shape
    m = cuda.grid(1)
    if m >= M:
        return
    inv_c = float32(1.0) / float32(C)
    s = float32(0.0)
    for c in range(C):
        s += x[m, c]
    mean = s * inv_c
    s = float32(0.0)
    for c in range(C):
        d = x[m, c] - mean
        s += d * d
    rstd = float32(1.0) / math.sqrt(s * inv_c + eps)
    for c in range(C):
        y[m, c] = (x[m, c] - mean) * rstd * weight[c] + bias[c]


@cuda.jit(device=True)
def block_sum(buf, value):
    """The sum of ``value`` over the LN_THREADS threads of a block, returned to every thread.

    buf: a (LN_THREADS,) shared array. A tree: half the threads add the other half's values, then
    a quarter, ...: log2(LN_THREADS) steps, a barrier after each.
    """
    t = cuda.threadIdx.x
    buf[t] = value
    cuda.syncthreads()
    stride = LN_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    total = buf[0]
    cuda.syncthreads()                               # everyone has read buf[0] before it is reused
    return total


@cuda.jit
def layernorm_v2(x, weight, bias, eps, y):
    """Layer norm with one block of LN_THREADS threads per row. Same arguments as v1.

    Thread t handles columns t, t + LN_THREADS, ...: neighbouring threads read neighbouring floats
    (coalesced). The two sums (mean, then the variance around it, as NumPy computes them) meet in
    ``block_sum``.
    """
    M, C = x.shape
    m = cuda.blockIdx.x
    t = cuda.threadIdx.x
    buf = cuda.shared.array(LN_THREADS, float32)
    inv_c = float32(1.0) / float32(C)
    s = float32(0.0)
    for c in range(t, C, LN_THREADS):
        s += x[m, c]
    mean = block_sum(buf, s) * inv_c
    s = float32(0.0)
    for c in range(t, C, LN_THREADS):
        d = x[m, c] - mean
        s += d * d
    rstd = float32(1.0) / math.sqrt(block_sum(buf, s) * inv_c + eps)
    for c in range(t, C, LN_THREADS):
        y[m, c] = (x[m, c] - mean) * rstd * weight[c] + bias[c]


# --------------------------------------------------------------------------- element-wise


@cuda.jit
def embedding_gather(emb, tokens, x):
    """x[m] = emb[tokens[m]] as float32. emb: (V, C); tokens: (M,) int64; x: (M, C). One thread per element."""
    M, C = x.shape
    i = cuda.grid(1)
    if i < M * C:
        m = i // C
        c = i % C
        x[m, c] = float32(emb[tokens[m], c])


@cuda.jit
def shift_mix3(x, prev, mu_k, mu_v, mu_r, xk, xv, xr):
    """Time-mix's token shift and three mixes in one pass: with xx = x[b, t-1] (prev[b] at t = 0),
    xk = xx + mu_k (x - xx), and the same for v and r.

    x, xk, xv, xr: (B, T, C); prev: (B, C); mu_*: (C,). One thread per (b, t, c): x is read once
    instead of three times, and no (B, T, C) shifted copy is ever written.
    When T = 1 (decoding) the thread that reads prev[b, c] is the only one that touches it, so it
    also writes the new shift state, prev[b, c] = x[b, 0, c], and no ``save_last`` launch is needed.
    """
    B, T, C = x.shape
    i = cuda.grid(1)
    if i < B * T * C:
        c = i % C
        t = (i // C) % T
        b = i // (C * T)
        xx = prev[b, c] if t == 0 else x[b, t - 1, c]
        dx = x[b, t, c] - xx
        xk[b, t, c] = dx * mu_k[c] + xx
        xv[b, t, c] = dx * mu_v[c] + xx
        xr[b, t, c] = dx * mu_r[c] + xx
        if T == 1:
            prev[b, c] = x[b, 0, c]


@cuda.jit
def shift_mix2(x, prev, mu_k, mu_r, xk, xr):
    """Channel-mix's token shift and two mixes. As shift_mix3 without v (prev updated when T = 1)."""
    B, T, C = x.shape
    i = cuda.grid(1)
    if i < B * T * C:
        c = i % C
        t = (i // C) % T
        b = i // (C * T)
        xx = prev[b, c] if t == 0 else x[b, t - 1, c]
        dx = x[b, t, c] - xx
        xk[b, t, c] = dx * mu_k[c] + xx
        xr[b, t, c] = dx * mu_r[c] + xx
        if T == 1:
            prev[b, c] = x[b, 0, c]


@cuda.jit
def save_last(x, prev):
    """prev[b] = x[b, T-1]: the token-shift state for the next call. x: (B, T, C); prev: (B, C).

    A kernel of its own, launched after the mix when T > 1: inside the mix, the threads of t = 0
    still read the old prev while the threads of t = T-1 would be writing the new one.
    """
    B, T, C = x.shape
    i = cuda.grid(1)
    if i < B * C:
        prev[i // C, i % C] = x[i // C, T - 1, i % C]


@cuda.jit
def take_last(x, out):
    """out[b] = x[b, T-1]: the positions whose logits are wanted. x: (B, T, C); out: (B, C)."""
    B, T, C = x.shape
    i = cuda.grid(1)
    if i < B * C:
        out[i // C, i % C] = x[i // C, T - 1, i % C]


@cuda.jit
def sigmoid_mul(r, y):
    """y *= sigmoid(r), in place: time-mix's receptance gate. r, y: (M, C)."""
    M, C = y.shape
    i = cuda.grid(1)
    if i < M * C:
        y[i // C, i % C] *= sigmoid(r[i // C, i % C])


@cuda.jit
def squared_relu(k):
    """k = relu(k)^2, in place: channel-mix's activation. k: (M, F)."""
    M, F = k.shape
    i = cuda.grid(1)
    if i < M * F:
        v = k[i // F, i % F]
        k[i // F, i % F] = v * v if v > float32(0.0) else float32(0.0)


@cuda.jit
def gate_add(x, r, kv):
    """x += sigmoid(r) * kv: channel-mix's gate fused with the residual add. x, r, kv: (M, C)."""
    M, C = x.shape
    i = cuda.grid(1)
    if i < M * C:
        m = i // C
        c = i % C
        x[m, c] += sigmoid(r[m, c]) * kv[m, c]


@cuda.jit
def copy_kernel(src, dst):
    """dst = src, one float per thread: the peer for measuring the device's copy bandwidth. (n,) each."""
    i = cuda.grid(1)
    if i < src.shape[0]:
        dst[i] = src[i]


# --------------------------------------------------------------------------- launching


def blocks_for(n, threads):
    """ceil(n / threads): the blocks that give each of n items a thread."""
    return (n + threads - 1) // threads


def block_size(n, largest):
    """Threads per block for n items: ``largest``, or fewer (a multiple of 32) when n is small, so
    that a tiny launch does not start idle threads (on the simulator each one is a Python thread)."""
    return min(largest, blocks_for(max(n, 1), WARP) * WARP)


def elementwise(kernel, n, *args):
    """Launches an element-wise ``kernel`` with one thread per item (n items) in blocks of up to 256."""
    threads = block_size(n, ELEMENTWISE_THREADS)
    kernel[blocks_for(n, threads), threads](*args)


def matvec(W, x, y, accumulate=False, version=2):
    """y (+)= x W^T for decoding, on device arrays. W: (N, K) float32/float16; x: (B, K); y: (B, N).

    Launches: v1 one thread per (b, n) in blocks of 128; v2 one warp per (b, n), 4 warps per block;
    v3 one warp per n, 4 warps per block. (128 threads per block leaves the scheduler room to
    put many blocks on each multiprocessor.)
    """
    B, N = x.shape[0], W.shape[0]
    acc = 1 if accumulate else 0
    if version == 1:
        threads = block_size(B * N, MATVEC_V1_THREADS)
        matvec_v1[blocks_for(B * N, threads), threads](W, x, y, acc)
    elif version == 2:
        matvec_v2[blocks_for(B * N, MATVEC_WARPS), MATVEC_WARPS * WARP](W, x, y, acc)
    elif version == 3:
        matvec_v3[blocks_for(N, MATVEC_WARPS), MATVEC_WARPS * WARP](W, x, y, acc)
    else:
        raise ValueError(f"matvec: version must be one of {MATVEC_VERSIONS}, got {version!r}")


def matmul(X, W, Y, accumulate=False, version=2):
    """Y (+)= X W^T for the prompt, on device arrays. X: (M, K) float32; W: (N, K); Y: (M, N).

    Launches: v1 one thread per output in blocks of 128; v2 a (16, 16) block per 16 x 16 tile of Y.
    """
    M, N = X.shape[0], W.shape[0]
    acc = 1 if accumulate else 0
    if version == 1:
        threads = block_size(M * N, MATVEC_V1_THREADS)
        matmul_v1[blocks_for(M * N, threads), threads](X, W, Y, acc)
    elif version == 2:
        matmul_v2[(blocks_for(N, TILE), blocks_for(M, TILE)), (TILE, TILE)](X, W, Y, acc)
    else:
        raise ValueError(f"matmul: version must be one of {MATMUL_VERSIONS}, got {version!r}")


def layernorm(x, weight, bias, eps, y, version=2):
    """y = LayerNorm(x) row by row, on device arrays. x, y: (M, C); eps: a float (passed as float32).

    Launches: v1 one thread per row in blocks of 128; v2 one block of LN_THREADS per row.
    """
    M = x.shape[0]
    eps = np.float32(eps)
    if version == 1:
        threads = block_size(M, MATVEC_V1_THREADS)
        layernorm_v1[blocks_for(M, threads), threads](x, weight, bias, eps, y)
    elif version == 2:
        layernorm_v2[M, LN_THREADS](x, weight, bias, eps, y)
    else:
        raise ValueError(f"layernorm: version must be one of {LAYERNORM_VERSIONS}, got {version!r}")


# --------------------------------------------------------------------------- NumPy references


def matvec_reference(W, x):
    """x W^T in float32 from float32 copies of W: what every matvec and matmul version computes."""
    return np.asarray(x, np.float32) @ np.asarray(W, np.float32).T


def layernorm_reference(x, weight, bias, eps):
    """The NumPy layer norm (tinyrwkv.nn.functional.layer_norm's forward)."""
    from ..nn.functional import layer_norm
    return layer_norm(np.asarray(x, np.float32), weight, bias, eps)[0]
