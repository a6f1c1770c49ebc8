"""WKV-7 on an NVIDIA GPU with ``numba.cuda``, written to be read (the math and the backward's
derivation are in ``wkv7_numpy``).

The plan is the one of BlinkDL's ``rwkv7.cu``: **one block per (sequence b, head h), N threads,
thread i owning row i of the head's state** (value channel i: S[i, :], N numbers). Row i's update
only needs its own sa[i], so once the step's r, w, k, a, b sit in shared memory every thread runs

    sa    = sum_j S[i, j] a[j]
    S[i, j] <- S[i, j] w[j] + sa b[j] + v[i] k[j]          for every j: its own row
    y[i]  = sum_j S[i, j] r[j]

Numbered versions, each tested against ``wkv7_numpy`` on the CUDA simulator:

    wkv7_forward_v1   naive: the state stays in global memory, every thread reads the step's
                      r, w, k, a, b from global memory itself
    wkv7_forward_v2   the row lives in a per-thread local array, the step's vectors are staged once
                      per block in shared memory (BlinkDL's kernel)
    wkv7_backward_v1  a forward sweep that stores the state entering each step (global scratch), then
                      the reverse sweep with dS = dL/dS in shared memory: the backward needs sums
                      over rows (gv, dsa) AND over columns (gr, gw, gk, ga, gb), so the block
                      alternates: thread x works on row x, sync, thread x works on column x, sync.
                      dS is padded to N x (N + 1): without the pad, the N threads reading "row x,
                      column j" hit addresses N apart, all in one shared-memory bank, one at a time

A decoding step is the forward with T = 1 (one launch for all B sequences).

Float32: constants in the dtype of the data, no Python max()/min() (see ``wkv_cuda``);
``tests/test_wkv_cuda.py`` compiles these kernels for a real GPU. Local and shared arrays have a
fixed size, ``MAX_HEAD_SIZE`` = 64 (the head size of the released RWKV-7 models).

Importing this module does not touch the GPU. Host wrappers (NumPy in, NumPy out):

    y, S = forward(r, w, k, v, a, b, state=None, version=2)
    y, S = step(r, w, k, v, a, b, state=None)
    gr, gw, gk, gv, ga, gb = backward(r, w, k, v, a, b, gy, state=None)
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .wkv7_numpy import check_inputs, starting_state
from . import wkv7_numpy

FORWARD_VERSIONS = (1, 2)
DEFAULT_VERSION = 2
MAX_HEAD_SIZE = 64                                  # size of the per-thread and shared arrays
PADDED_SQUARE = (MAX_HEAD_SIZE, MAX_HEAD_SIZE + 1)   # dS in shared memory, padded against bank conflicts


@cuda.jit
def wkv7_forward_v1(r, w, k, v, a, b, S, y):
    """Naive: block = (b, h), thread i = value channel i; S read and written in global memory.

    The six inputs and y: (B, T, H, N); S: (B, H, N, N) [b, h, value i, key j], in and out.
    """
    B, T, H, N = r.shape
    bi = cuda.blockIdx.x // H
    h = cuda.blockIdx.x % H
    i = cuda.threadIdx.x
    for t in range(T):
        sa = r.dtype.type(0.0)
        for j in range(N):
            sa += S[bi, h, i, j] * a[bi, t, h, j]
        vi = v[bi, t, h, i]
        acc = r.dtype.type(0.0)
        for j in range(N):
            S[bi, h, i, j] = S[bi, h, i, j] * w[bi, t, h, j] + sa * b[bi, t, h, j] + vi * k[bi, t, h, j]
            acc += S[bi, h, i, j] * r[bi, t, h, j]
        y[bi, t, h, i] = acc


@cuda.jit
def wkv7_forward_v2(r, w, k, v, a, b, S, y):
    """Row in local memory, the step's r, w, k, a, b in shared memory. Arguments as v1."""
    B, T, H, N = r.shape
    bi = cuda.blockIdx.x // H
    h = cuda.blockIdx.x % H
    i = cuda.threadIdx.x
    rs = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    ws = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    ks = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    as_ = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    bs = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    s = cuda.local.array(MAX_HEAD_SIZE, r.dtype)          # s[j] = S[b, h, i, j]: this thread's row
    for j in range(N):
        s[j] = S[bi, h, i, j]
    for t in range(T):
        cuda.syncthreads()                                # everyone is done with the previous step
        rs[i] = r[bi, t, h, i]                            # thread i loads channel i for the block
        ws[i] = w[bi, t, h, i]
        ks[i] = k[bi, t, h, i]
        as_[i] = a[bi, t, h, i]
        bs[i] = b[bi, t, h, i]
        cuda.syncthreads()
        sa = r.dtype.type(0.0)
        for j in range(N):
            sa += s[j] * as_[j]
        vi = v[bi, t, h, i]
        acc = r.dtype.type(0.0)
        for j in range(N):
            s[j] = s[j] * ws[j] + sa * bs[j] + vi * ks[j]
            acc += s[j] * rs[j]
        y[bi, t, h, i] = acc
    for j in range(N):
        S[bi, h, i, j] = s[j]


@cuda.jit
def wkv7_backward_v1(r, w, k, v, a, b, gy, saved, gr, gw, gk, gv, ga, gb):
    """Gradients of sum(y * gy); block = (b, h), N threads (see the module docstring).

    Inputs, gy and the six gradients: (B, T, H, N). saved: (B, H, T + 1, N, N) scratch whose
    [:, :, 0] holds the starting state; the forward sweep fills saved[:, :, t] = state entering step t.
    """
    B, T, H, N = r.shape
    bi = cuda.blockIdx.x // H
    h = cuda.blockIdx.x % H
    x = cuda.threadIdx.x
    zero = r.dtype.type(0.0)
    # Forward sweep: thread x = row x, from saved[t] to saved[t + 1].
    for t in range(T):
        sa = zero
        for j in range(N):
            sa += saved[bi, h, t, x, j] * a[bi, t, h, j]
        vx = v[bi, t, h, x]
        for j in range(N):
            saved[bi, h, t + 1, x, j] = (saved[bi, h, t, x, j] * w[bi, t, h, j] + sa * b[bi, t, h, j]
                                         + vx * k[bi, t, h, j])
    dS = cuda.shared.array(PADDED_SQUARE, r.dtype)        # dL/dS, [row i, column j]
    vecs = cuda.shared.array((9, MAX_HEAD_SIZE), r.dtype)  # the step's r, w, k, v, a, b, gy; sa; dsa
    for j in range(N):
        dS[x, j] = zero                                   # nothing after the last step
    for t in range(T - 1, -1, -1):
        cuda.syncthreads()
        vecs[0, x] = r[bi, t, h, x]
        vecs[1, x] = w[bi, t, h, x]
        vecs[2, x] = k[bi, t, h, x]
        vecs[3, x] = v[bi, t, h, x]
        vecs[4, x] = a[bi, t, h, x]
        vecs[5, x] = b[bi, t, h, x]
        vecs[6, x] = gy[bi, t, h, x]
        cuda.syncthreads()
        # Row phase, i = x: dS' += gy r^T; sa, gv, dsa are sums along the row.
        sa = zero
        gvi = zero
        dsa = zero
        for j in range(N):
            dS[x, j] += vecs[6, x] * vecs[0, j]
            sa += saved[bi, h, t, x, j] * vecs[4, j]
            gvi += dS[x, j] * vecs[2, j]
            dsa += dS[x, j] * vecs[5, j]
        gv[bi, t, h, x] = gvi
        vecs[7, x] = sa
        vecs[8, x] = dsa
        cuda.syncthreads()
        # Column phase, j = x: gr, gw, gk, gb, ga are sums down the column; then dS flows to t-1.
        g_r = zero
        g_w = zero
        g_k = zero
        g_b = zero
        g_a = zero
        for i in range(N):
            s_old = saved[bi, h, t, i, x]
            g_r += saved[bi, h, t + 1, i, x] * vecs[6, i]
            g_w += dS[i, x] * s_old
            g_k += dS[i, x] * vecs[3, i]
            g_b += dS[i, x] * vecs[7, i]
            g_a += vecs[8, i] * s_old
            dS[i, x] = dS[i, x] * vecs[1, x] + vecs[8, i] * vecs[4, x]
        gr[bi, t, h, x] = g_r
        gw[bi, t, h, x] = g_w
        gk[bi, t, h, x] = g_k
        gb[bi, t, h, x] = g_b
        ga[bi, t, h, x] = g_a


def forward_on_device(r, w, k, v, a, b, S, y, version=DEFAULT_VERSION):
    """Launches forward ``version`` on device arrays; S (B, H, N, N) updated in place, y (B, T, H, N) written."""
    B, T, H, N = r.shape
    kernel = {1: wkv7_forward_v1, 2: wkv7_forward_v2}.get(version)
    if kernel is None:
        raise ValueError(f"wkv7.forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")
    kernel[B * H, N](r, w, k, v, a, b, S, y)


def step_on_device(r, w, k, v, a, b, S, y, version=DEFAULT_VERSION):
    """One decoding step on device arrays: the six inputs and y (B, H, N); S updated in place."""
    B, H, N = r.shape
    forward_on_device(*(x.reshape(B, 1, H, N) for x in (r, w, k, v, a, b)), S, y.reshape(B, 1, H, N), version)


def backward_on_device(r, w, k, v, a, b, gy, saved, gr, gw, gk, gv, ga, gb):
    """Launches the backward on device arrays; ``saved`` (B, H, T + 1, N, N) with the start state in [:, :, 0]."""
    B, T, H, N = r.shape
    wkv7_backward_v1[B * H, N](r, w, k, v, a, b, gy, saved, gr, gw, gk, gv, ga, gb)


def _check_head_size(N, fn):
    if N > MAX_HEAD_SIZE:
        raise ValueError(f"{fn}: the cuda kernels take heads of at most {MAX_HEAD_SIZE} channels "
                         f"(MAX_HEAD_SIZE), got N = {N}; use the numba backend")


def _to_device(x, dtype):
    return cuda.to_device(np.ascontiguousarray(x, dtype))


def forward(r, w, k, v, a, b, state=None, version=DEFAULT_VERSION):
    """WKV-7 forward on the GPU: NumPy in, NumPy out. Returns y (B, T, H, N) and S (B, H, N, N);
    the input state is not modified. ``version`` picks the kernel (1, 2)."""
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, fn="wkv7.forward")
    if version not in FORWARD_VERSIONS:
        raise ValueError(f"wkv7.forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")
    _check_head_size(N, "wkv7.forward")
    if r.size == 0:
        return wkv7_numpy.forward(r, w, k, v, a, b, state)
    dt = r.dtype
    S = cuda.to_device(starting_state(state, B, H, N, dt))
    y = cuda.device_array((B, T, H, N), dt)
    forward_on_device(*(_to_device(x, dt) for x in (r, w, k, v, a, b)), S, y, version)
    return y.copy_to_host(), S.copy_to_host()


def step(r, w, k, v, a, b, state=None, version=DEFAULT_VERSION):
    """One decoding step for B sequences on the GPU: the six inputs (B, H, N) -> y (B, H, N), S (B, H, N, N)."""
    check_inputs(r, w, k, v, a, b, state, fn="wkv7.step", step=True)
    y, S = forward(*(x[:, None] for x in (r, w, k, v, a, b)), state=state, version=version)
    return y[:, 0], S


def backward(r, w, k, v, a, b, gy, state=None):
    """Gradients of L = sum(y * gy), y = forward(r, w, k, v, a, b, state)[0], on the GPU; each (B, T, H, N).

    Returns gr, gw, gk, gv, ga, gb; ``state`` (None = empty) is held constant. Uses (T + 1) N^2
    numbers of scratch per (b, h).
    """
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, gy=gy, fn="wkv7.backward")
    _check_head_size(N, "wkv7.backward")
    if r.size == 0:
        return wkv7_numpy.backward(r, w, k, v, a, b, gy, state)
    dt = r.dtype
    saved = np.zeros((B, H, T + 1, N, N), dt)
    saved[:, :, 0] = starting_state(state, B, H, N, dt)
    grads = [cuda.device_array((B, T, H, N), dt) for _ in range(6)]
    backward_on_device(*(_to_device(x, dt) for x in (r, w, k, v, a, b, gy)), cuda.to_device(saved), *grads)
    return tuple(g.copy_to_host() for g in grads)
