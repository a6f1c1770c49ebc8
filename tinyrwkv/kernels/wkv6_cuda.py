"""WKV-5/6 on an NVIDIA GPU with ``numba.cuda``, written to be read (the math is in ``wkv6_numpy``).

The plan is the one of BlinkDL's ``rwkv6.cu``: **one block per (sequence b, head h), N threads,
thread j owning column j of the head's state** (value channel j: S[:, j], N numbers). At every step
each thread needs all N keys, receptances and decays of the step, so the block loads them once
into shared memory, then every thread does

    y[j]     = sum_i r[i] (S[i, j] + u[i] k[i] v[j])        its own output channel
    S[i, j] <- w[i] S[i, j] + k[i] v[j]                     its own column, no other thread's

Numbered versions, each tested against ``wkv6_numpy`` on the CUDA simulator:

    wkv6_forward_v1   naive: the state stays in global memory and every thread reads r, k, w, u
                      from global memory itself (N times the same numbers per block)
    wkv6_forward_v2   the column lives in a per-thread local array (registers / L1), the step's
                      r, k, w are staged once per block in shared memory (BlinkDL's kernel)

A decoding step is the forward with T = 1 (``step_on_device`` reshapes to T = 1: one launch for
all B sequences). The decay is read as w[wb, wt, h, i] with wb = wt = 0 when w is v5's constant
(H, N) viewed as (1, 1, H, N), so the same kernels serve RWKV-5 and RWKV-6.

Float32 and the max()/min() caveat: as in ``wkv_cuda``, constants are written in the dtype of the
data (``r.dtype.type(0.0)``), and Python's max()/min() are avoided (they do not lower for the real
CUDA target in Numba 0.66-0.68). ``tests/test_wkv_cuda.py`` compiles these kernels for a real GPU.
Local and shared arrays take the dtype of the inputs and a fixed size, ``MAX_HEAD_SIZE`` (the
released RWKV-5/6/7 models all use N = 64).

Importing this module does not touch the GPU. Host wrappers (NumPy in, NumPy out):

    y, S = forward(r, k, v, w, u, state=None, version=2)
    y, S = step(r, k, v, w, u, state=None)
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .wkv6_numpy import check_inputs, starting_state
from . import wkv6_numpy

FORWARD_VERSIONS = (1, 2)
DEFAULT_VERSION = 2
MAX_HEAD_SIZE = 64      # the size of the per-thread and shared arrays (a compile-time constant)


@cuda.jit
def wkv6_forward_v1(r, k, v, w, u, S, y):
    """Naive: block = (b, h), thread j = value channel j; S read and written in global memory.

    r, k, v, y: (B, T, H, N); w: (B, T, H, N) or (1, 1, H, N); u: (H, N); S: (B, H, N, N) in/out.
    """
    B, T, H, N = r.shape
    b = cuda.blockIdx.x // H
    h = cuda.blockIdx.x % H
    j = cuda.threadIdx.x
    if j >= N:
        return
    wb = b if w.shape[0] > 1 else 0
    for t in range(T):
        wt = t if w.shape[1] > 1 else 0
        vj = v[b, t, h, j]
        acc = r.dtype.type(0.0)
        for i in range(N):
            kv = k[b, t, h, i] * vj
            acc += r[b, t, h, i] * (S[b, h, i, j] + u[h, i] * kv)
            S[b, h, i, j] = w[wb, wt, h, i] * S[b, h, i, j] + kv
        y[b, t, h, j] = acc


@cuda.jit
def wkv6_forward_v2(r, k, v, w, u, S, y):
    """Column in local memory, the step's r, k, w (and u, once) in shared memory. Arguments as v1."""
    B, T, H, N = r.shape
    b = cuda.blockIdx.x // H
    h = cuda.blockIdx.x % H
    j = cuda.threadIdx.x
    rs = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    ks = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    ws = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    us = cuda.shared.array(MAX_HEAD_SIZE, r.dtype)
    s = cuda.local.array(MAX_HEAD_SIZE, r.dtype)          # s[i] = S[b, h, i, j]: this thread's column
    for i in range(N):
        s[i] = S[b, h, i, j]
    us[j] = u[h, j]
    wb = b if w.shape[0] > 1 else 0
    for t in range(T):
        wt = t if w.shape[1] > 1 else 0
        cuda.syncthreads()                                # everyone is done with the previous step
        rs[j] = r[b, t, h, j]                             # thread j loads channel j for the block
        ks[j] = k[b, t, h, j]
        ws[j] = w[wb, wt, h, j]
        cuda.syncthreads()
        vj = v[b, t, h, j]
        acc = r.dtype.type(0.0)
        for i in range(N):
            kv = ks[i] * vj
            acc += rs[i] * (s[i] + us[i] * kv)
            s[i] = ws[i] * s[i] + kv
        y[b, t, h, j] = acc
    for i in range(N):
        S[b, h, i, j] = s[i]


def forward_on_device(r, k, v, w, u, S, y, version=DEFAULT_VERSION):
    """Launches forward ``version`` on device arrays (shapes as the kernels); S updated in place, y written.

    w must already be 4-D: (B, T, H, N) or (1, 1, H, N). One block of N threads per (b, h).
    """
    B, T, H, N = r.shape
    kernel = {1: wkv6_forward_v1, 2: wkv6_forward_v2}.get(version)
    if kernel is None:
        raise ValueError(f"wkv6.forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")
    kernel[B * H, N](r, k, v, w, u, S, y)


def step_on_device(r, k, v, w, u, S, y, version=DEFAULT_VERSION):
    """One decoding step on device arrays: r, k, v, y (B, H, N); w (B, H, N) or (1, 1, H, N); S updated in place."""
    B, H, N = r.shape
    w4 = w if len(w.shape) == 4 else w.reshape(B, 1, H, N)
    forward_on_device(r.reshape(B, 1, H, N), k.reshape(B, 1, H, N), v.reshape(B, 1, H, N), w4, u, S,
                      y.reshape(B, 1, H, N), version)


def _check_head_size(N, fn):
    if N > MAX_HEAD_SIZE:
        raise ValueError(f"{fn}: the cuda kernels take heads of at most {MAX_HEAD_SIZE} channels "
                         f"(MAX_HEAD_SIZE), got N = {N}; use the numba backend")


def _to_device(x, dtype):
    return cuda.to_device(np.ascontiguousarray(x, dtype))


def _decay_4d(w, dtype):
    w = np.ascontiguousarray(w, dtype)
    return w if w.ndim == 4 else w.reshape((1, 1) + w.shape)


def forward(r, k, v, w, u, state=None, version=DEFAULT_VERSION):
    """WKV-5/6 forward on the GPU: NumPy in, NumPy out (shapes in ``wkv6_numpy``).

    ``version`` picks the kernel (1, 2). Returns y (B, T, H, N) and S (B, H, N, N); the input state
    is not modified.
    """
    B, T, H, N = check_inputs(r, k, v, w, u, state, fn="wkv6.forward")
    if version not in FORWARD_VERSIONS:
        raise ValueError(f"wkv6.forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")
    _check_head_size(N, "wkv6.forward")
    if r.size == 0:                                       # nothing to launch
        return wkv6_numpy.forward(r, k, v, w, u, state)
    dt = r.dtype
    S = cuda.to_device(starting_state(state, B, H, N, dt))
    y = cuda.device_array((B, T, H, N), dt)
    forward_on_device(_to_device(r, dt), _to_device(k, dt), _to_device(v, dt),
                      cuda.to_device(_decay_4d(w, dt)), _to_device(u, dt), S, y, version)
    return y.copy_to_host(), S.copy_to_host()


def step(r, k, v, w, u, state=None, version=DEFAULT_VERSION):
    """One decoding step for B sequences on the GPU: r, k, v (B, H, N) -> y (B, H, N), S (B, H, N, N)."""
    check_inputs(r, k, v, w, u, state, fn="wkv6.step", step=True)
    w = np.asarray(w)[:, None] if np.ndim(w) == 3 else w
    y, S = forward(r[:, None], k[:, None], v[:, None], w, u, state, version)
    return y[:, 0], S
