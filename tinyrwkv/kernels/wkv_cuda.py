"""WKV on an NVIDIA GPU with ``numba.cuda``, written to be read.

The plan is the one of BlinkDL's ``wkv_cuda.cu``: channels and sequences are independent, so
**one CUDA thread owns one (batch, channel) pair** and walks over time with the stable running
max of ``wkv_numpy`` (the math, and the derivation of the backward, live there). Numbered
versions, in the style of llm.c, show what each change buys; every one is tested against
``wkv_numpy`` on the CUDA simulator:

    wkv_forward_v1   naive: the state (aa, bb, pp) lives in global memory and is read and written
                     at every time step, w and u are re-read at every step
    wkv_forward_v2   the state, w and u live in registers; global memory only sees k, v in and
                     y out (BlinkDL's kernel)
    wkv_forward_v3   chunked over time: T is cut into chunks that run in parallel, because the
                     state update is linear; three small kernels instead of one (see below)
    wkv_backward_v1  a forward sweep that stores the state entering each step in global scratch,
                     then the reverse sweep of the transposed recurrence
    wkv_step_v1      one decoding step for B sequences, the state updated in place

Memory layout. k, v, y are (B, T, C) row-major, so k[b, t, c] sits at (b*T + t)*C + c. Threads
next to each other in a warp hold neighbouring channels c, so at every step a warp reads 32
neighbouring floats: one coalesced 128-byte transaction. (A (B, C, T) layout would make each
thread read its own row and waste most of every transaction.)

Why v1 is slow. numba.cuda arrays carry no ``__restrict__``: the compiler must assume that
writing y or aa might change k or w, so v1 reloads the state from memory after every store.
v2 keeps it in local variables, which the compiler puts in registers.

Why v3 exists. At B=8, C=768 there are only 6144 threads: a few warps per streaming
multiprocessor on a large GPU, which idles waiting for memory between steps. The WKV state after a
chunk of L steps, starting from state s, is  e^{L w} s + (the chunk's own state from zero):
so (1) every (b, chunk, c) thread computes its chunk's own state, (2) one thread per (b, c) walks
over the chunks (T / L steps, not T) to find the state entering each chunk, and (3) every
(b, chunk, c) thread re-runs its chunk from that state and writes y. Twice the arithmetic, but
T / L times more threads. This "linear recurrence = parallel scan" idea is what later RWKV
versions and Mamba build on.

Float32. The kernels compile once per dtype. A bare Python float literal such as ``0.0`` is
float64 in Numba and would silently turn float32 arithmetic into float64 (much slower on most
GPUs), and so would ``int * float32``. So constants are written in the dtype of the data,
``k.dtype.type(0.0)``; ``tests/test_wkv_cuda.py`` compiles every kernel for the real CUDA target
(no GPU needed) and checks that the float32 versions contain no float64 arithmetic.

Importing this module does not touch the GPU: ``cuda.jit`` compiles at the first launch, and
the CUDA driver is initialised only then. ``tinyrwkv.kernels.get_wkv("cuda")`` checks first
that a GPU (or the simulator, ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported) is there.

Host wrappers take and return NumPy arrays with the contract of every backend:

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None, version=2)
    gw, gu, gk, gv = wkv_backward(w, u, k, v, gy)              gw = dL/dw (chain time_decay yourself)
    y, (aa, bb, pp) = wkv_step(w, u, k, v, state)

and ``forward_on_device`` / ``backward_on_device`` / ``step_on_device`` launch on arrays already
on the GPU (for timing without host transfers).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .wkv_numpy import NEG_INF, check_wkv_inputs, check_wkv_step_inputs, starting_state
from . import wkv_numpy

FORWARD_VERSIONS = (1, 2, 3)
DEFAULT_VERSION = 2
THREADS_PER_BLOCK = 64      # small blocks spread few threads over many multiprocessors
CHUNK_LEN = 32              # time steps per chunk in v3


# --------------------------------------------------------------------------- helpers


# Python's max(a, b) and min(a, b) do not compile for the CUDA target in Numba 0.66-0.68
# (numba/numba#10753; the CPU target and the simulator are fine), so the kernels use these.
@cuda.jit(device=True)
def maximum(a, b):
    """The larger of two scalars (a device function: callable from kernels only)."""
    return a if a > b else b


@cuda.jit(device=True)
def minimum(a, b):
    """The smaller of two scalars."""
    return a if a < b else b


# --------------------------------------------------------------------------- forward kernels


@cuda.jit
def wkv_forward_v1(w, u, k, v, aa, bb, pp, y):
    """Naive: one thread per (b, c); the state is read from and written to global memory at every step.

    w, u: (C,); k, v, y: (B, T, C); aa, bb, pp: (B, C), the state in, overwritten with the state out.
    """
    B, T, C = k.shape
    i = cuda.grid(1)                      # global thread index = b * C + c
    if i >= B * C:
        return                            # the last block may stick out past B*C
    b = i // C
    c = i % C
    for t in range(T):
        # Output: the past (aa/bb, in units of e^pp) mixed with the current token boosted by u.
        q = maximum(pp[b, c], u[c] + k[b, t, c])
        e1 = math.exp(pp[b, c] - q)
        e2 = math.exp(u[c] + k[b, t, c] - q)
        y[b, t, c] = (e1 * aa[b, c] + e2 * v[b, t, c]) / (e1 * bb[b, c] + e2)
        # State: decay the past by e^w, add the current token without the bonus.
        q = maximum(pp[b, c] + w[c], k[b, t, c])
        e1 = math.exp(pp[b, c] + w[c] - q)
        e2 = math.exp(k[b, t, c] - q)
        aa[b, c] = e1 * aa[b, c] + e2 * v[b, t, c]
        bb[b, c] = e1 * bb[b, c] + e2
        pp[b, c] = q


@cuda.jit
def wkv_forward_v2(w, u, k, v, aa, bb, pp, y):
    """State in registers: read the state and w, u once, loop over time, write the state once.

    Same arguments as v1. Global memory traffic per step: k and v in, y out.
    """
    B, T, C = k.shape
    i = cuda.grid(1)
    if i >= B * C:
        return
    b = i // C
    c = i % C
    wc, uc = w[c], u[c]
    a, d, p = aa[b, c], bb[b, c], pp[b, c]
    for t in range(T):
        kt = k[b, t, c]
        vt = v[b, t, c]
        q = maximum(p, uc + kt)               # output step
        e1 = math.exp(p - q)
        e2 = math.exp(uc + kt - q)
        y[b, t, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
        q = maximum(p + wc, kt)               # state step
        e1 = math.exp(p + wc - q)
        e2 = math.exp(kt - q)
        a = e1 * a + e2 * vt
        d = e1 * d + e2
        p = q
    aa[b, c], bb[b, c], pp[b, c] = a, d, p


@cuda.jit
def chunk_state_kernel(w, k, v, chunk_len, sa, sb, sp):
    """v3 phase 1: one thread per (b, chunk j, c) computes the chunk's own state, starting from zero.

    k, v: (B, T, C); sa, sb, sp: (B, n_chunks, C), the chunk states (numerator, denominator, max).
    """
    B, T, C = k.shape
    n_chunks = sa.shape[1]
    i = cuda.grid(1)                      # i = (b * n_chunks + j) * C + c
    if i >= B * n_chunks * C:
        return
    c = i % C
    j = (i // C) % n_chunks
    b = i // (C * n_chunks)
    wc = w[c]
    a, d, p = k.dtype.type(0.0), k.dtype.type(0.0), k.dtype.type(NEG_INF)
    for t in range(j * chunk_len, minimum((j + 1) * chunk_len, T)):
        kt = k[b, t, c]
        q = maximum(p + wc, kt)
        e1 = math.exp(p + wc - q)
        e2 = math.exp(kt - q)
        a = e1 * a + e2 * v[b, t, c]
        d = e1 * d + e2
        p = q
    sa[b, j, c], sb[b, j, c], sp[b, j, c] = a, d, p


@cuda.jit
def chunk_carry_kernel(w, sa, sb, sp, T, chunk_len, aa, bb, pp, ca, cb, cp):
    """v3 phase 2: one thread per (b, c) walks over the chunks, not the steps.

    The state entering chunk j goes to ca, cb, cp (B, n_chunks, C). Leaving a chunk of L steps:
    state = e^{L w} * state + chunk state, done in the stable form (a max of two exponents).
    aa, bb, pp (B, C): the state in, overwritten with the state after step T-1.
    """
    B, n_chunks, C = sa.shape
    i = cuda.grid(1)
    if i >= B * C:
        return
    b = i // C
    c = i % C
    wc = w[c]
    a, d, p = aa[b, c], bb[b, c], pp[b, c]
    for j in range(n_chunks):
        ca[b, j, c], cb[b, j, c], cp[b, j, c] = a, d, p
        steps = minimum(chunk_len, T - j * chunk_len)
        decayed = p + wc * w.dtype.type(steps)     # the old state decays over every step of the chunk
        q = maximum(decayed, sp[b, j, c])
        e1 = math.exp(decayed - q)
        e2 = math.exp(sp[b, j, c] - q)
        a = e1 * a + e2 * sa[b, j, c]
        d = e1 * d + e2 * sb[b, j, c]
        p = q
    aa[b, c], bb[b, c], pp[b, c] = a, d, p


@cuda.jit
def chunk_output_kernel(w, u, k, v, chunk_len, ca, cb, cp, y):
    """v3 phase 3: one thread per (b, chunk j, c) re-runs its chunk from the carried-in state, writing y.

    The loop is v2's; only the start state and the range of t differ.
    """
    B, T, C = k.shape
    n_chunks = ca.shape[1]
    i = cuda.grid(1)
    if i >= B * n_chunks * C:
        return
    c = i % C
    j = (i // C) % n_chunks
    b = i // (C * n_chunks)
    wc, uc = w[c], u[c]
    a, d, p = ca[b, j, c], cb[b, j, c], cp[b, j, c]
    for t in range(j * chunk_len, minimum((j + 1) * chunk_len, T)):
        kt = k[b, t, c]
        vt = v[b, t, c]
        q = maximum(p, uc + kt)
        e1 = math.exp(p - q)
        e2 = math.exp(uc + kt - q)
        y[b, t, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
        q = maximum(p + wc, kt)
        e1 = math.exp(p + wc - q)
        e2 = math.exp(kt - q)
        a = e1 * a + e2 * vt
        d = e1 * d + e2
        p = q


# --------------------------------------------------------------------------- backward, step


@cuda.jit
def wkv_backward_v1(w, u, k, v, gy, saved_a, saved_b, saved_p, gw, gu, gk, gv):
    """One thread per (b, c): forward sweep saving states, then the reverse sweep (see wkv_numpy).

    k, v, gy, gk, gv: (B, T, C). saved_a/b/p: (B, T, C) scratch for the state entering each step
    (BlinkDL keeps such per-step values in a per-thread array of a fixed maximum T; global
    scratch in the same coalesced layout as k works for any T). gw, gu: (B, C), per sequence.
    """
    B, T, C = k.shape
    i = cuda.grid(1)
    if i >= B * C:
        return
    b = i // C
    c = i % C
    wc, uc = w[c], u[c]
    a, d, p = k.dtype.type(0.0), k.dtype.type(0.0), k.dtype.type(NEG_INF)
    for t in range(T):                                     # forward sweep: remember the states
        saved_a[b, t, c], saved_b[b, t, c], saved_p[b, t, c] = a, d, p
        kt = k[b, t, c]
        q = maximum(p + wc, kt)
        e1 = math.exp(p + wc - q)
        e2 = math.exp(kt - q)
        a = e1 * a + e2 * v[b, t, c]
        d = e1 * d + e2
        p = q
    ga, gd = k.dtype.type(0.0), k.dtype.type(0.0)          # dL/daa_t, dL/dbb_t after the last step
    gw_bc, gu_bc = k.dtype.type(0.0), k.dtype.type(0.0)
    for t in range(T - 1, -1, -1):                         # reverse sweep: the transposed recurrence
        a, d, p = saved_a[b, t, c], saved_b[b, t, c], saved_p[b, t, c]
        kt = k[b, t, c]
        vt = v[b, t, c]
        q = maximum(p, uc + kt)                            # the output step again
        e1 = math.exp(p - q)
        e2 = math.exp(uc + kt - q)
        den = e1 * d + e2
        yt = (e1 * a + e2 * vt) / den
        q = maximum(p + wc, kt)                            # the state step again
        f1 = math.exp(p + wc - q)
        f2 = math.exp(kt - q)
        g = gy[b, t, c] / den
        gu_bc += g * e2 * (vt - yt)
        gw_bc += f1 * (ga * a + gd * d)
        gk[b, t, c] = g * e2 * (vt - yt) + f2 * (ga * vt + gd)
        gv[b, t, c] = g * e2 + f2 * ga
        ga, gd = f1 * ga + g * e1, f1 * gd - g * e1 * yt
    gw[b, c] = gw_bc
    gu[b, c] = gu_bc


@cuda.jit
def wkv_step_v1(w, u, k, v, aa, bb, pp, y):
    """One decoding step for B sequences: one thread per (b, c). k, v, y, aa, bb, pp: (B, C); state updated in place."""
    B, C = k.shape
    i = cuda.grid(1)
    if i >= B * C:
        return
    b = i // C
    c = i % C
    a, d, p = aa[b, c], bb[b, c], pp[b, c]
    kt, vt = k[b, c], v[b, c]
    q = maximum(p, u[c] + kt)
    e1 = math.exp(p - q)
    e2 = math.exp(u[c] + kt - q)
    y[b, c] = (e1 * a + e2 * vt) / (e1 * d + e2)
    q = maximum(p + w[c], kt)
    e1 = math.exp(p + w[c] - q)
    e2 = math.exp(kt - q)
    aa[b, c] = e1 * a + e2 * vt
    bb[b, c] = e1 * d + e2
    pp[b, c] = q


# --------------------------------------------------------------------------- launching


def launch_config(n_threads, threads_per_block=THREADS_PER_BLOCK):
    """(blocks, threads_per_block) covering n_threads: blocks = ceil(n / threads_per_block)."""
    return (n_threads + threads_per_block - 1) // threads_per_block, threads_per_block


def forward_scratch(B, T, C, dtype=np.float32, version=DEFAULT_VERSION, chunk_len=CHUNK_LEN):
    """Device scratch that forward ``version`` needs: six (B, n_chunks, C) arrays for v3, else ().

    Allocating GPU memory costs far more than these kernels at small shapes: allocate once, reuse.
    """
    if version != 3:
        return ()
    n_chunks = (T + chunk_len - 1) // chunk_len
    return tuple(cuda.device_array((B, n_chunks, C), dtype) for _ in range(6))


def forward_on_device(w, u, k, v, aa, bb, pp, y, version=DEFAULT_VERSION,
                      threads_per_block=THREADS_PER_BLOCK, chunk_len=CHUNK_LEN, scratch=None):
    """Launches forward kernel ``version`` on device arrays; aa, bb, pp are updated in place, y written.

    Shapes as in ``wkv_forward``; ``scratch`` from ``forward_scratch`` (allocated here when None).
    No checks, no copies, no synchronisation (time it with cuda.synchronize()).
    """
    B, T, C = k.shape
    if version == 1:
        wkv_forward_v1[launch_config(B * C, threads_per_block)](w, u, k, v, aa, bb, pp, y)
    elif version == 2:
        wkv_forward_v2[launch_config(B * C, threads_per_block)](w, u, k, v, aa, bb, pp, y)
    elif version == 3:
        if scratch is None:
            scratch = forward_scratch(B, T, C, k.dtype, 3, chunk_len)
        chunk_states, carried_in = scratch[:3], scratch[3:]     # (sa, sb, sp), (ca, cb, cp)
        n_chunks = chunk_states[0].shape[1]
        per_chunk = launch_config(B * n_chunks * C, threads_per_block)
        chunk_state_kernel[per_chunk](w, k, v, chunk_len, *chunk_states)
        chunk_carry_kernel[launch_config(B * C, threads_per_block)](
            w, *chunk_states, T, chunk_len, aa, bb, pp, *carried_in)
        chunk_output_kernel[per_chunk](w, u, k, v, chunk_len, *carried_in, y)
    else:
        raise ValueError(f"wkv_forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")


def backward_scratch(B, T, C, dtype=np.float32):
    """Device scratch for the backward: the state entering each step, three (B, T, C) arrays."""
    return tuple(cuda.device_array((B, T, C), dtype) for _ in range(3))


def backward_on_device(w, u, k, v, gy, gw_bc, gu_bc, gk, gv, threads_per_block=THREADS_PER_BLOCK,
                       scratch=None):
    """Launches the backward kernel on device arrays. gw_bc, gu_bc: (B, C) per sequence (sum over B yourself).

    ``scratch`` from ``backward_scratch`` (allocated here when None).
    """
    B, T, C = k.shape
    saved = backward_scratch(B, T, C, k.dtype) if scratch is None else scratch
    wkv_backward_v1[launch_config(B * C, threads_per_block)](w, u, k, v, gy, *saved, gw_bc, gu_bc, gk, gv)


def step_on_device(w, u, k, v, aa, bb, pp, y, threads_per_block=THREADS_PER_BLOCK):
    """Launches one decoding step on device arrays; aa, bb, pp (B, C) updated in place, y (B, C) written."""
    B, C = k.shape
    wkv_step_v1[launch_config(B * C, threads_per_block)](w, u, k, v, aa, bb, pp, y)


def _check_launch(fn, threads_per_block, chunk_len=CHUNK_LEN):
    if not isinstance(threads_per_block, (int, np.integer)) or not 1 <= threads_per_block <= 1024:
        raise ValueError(f"{fn}: threads_per_block must be an int in 1..1024 (CUDA's limit), got {threads_per_block!r}")
    if not isinstance(chunk_len, (int, np.integer)) or chunk_len < 1:
        raise ValueError(f"{fn}: chunk_len must be a positive int, got {chunk_len!r}")


def _to_device(x, dtype):
    return cuda.to_device(np.ascontiguousarray(x, dtype))


def _state_to_device(state, B, C, dtype):
    return [cuda.to_device(s) for s in starting_state(state, B, C, dtype)]


def wkv_forward(w, u, k, v, state=None, version=DEFAULT_VERSION,
                threads_per_block=THREADS_PER_BLOCK, chunk_len=CHUNK_LEN):
    """WKV forward on the GPU: NumPy in, NumPy out. k, v: (B, T, C); w, u: (C,); state: None or three (B, C).

    ``version`` picks the kernel (1, 2, 3: see the module docstring). Returns y (B, T, C) and
    the state after the last step; the input state is not modified.
    """
    B, T, C = check_wkv_inputs(w, u, k, v, state, fn="wkv_forward")
    if version not in FORWARD_VERSIONS:
        raise ValueError(f"wkv_forward: version must be one of {FORWARD_VERSIONS}, got {version!r}")
    _check_launch("wkv_forward", threads_per_block, chunk_len)
    if k.size == 0:                                     # nothing to launch
        return wkv_numpy.wkv_forward(w, u, k, v, state)
    dt = k.dtype
    aa, bb, pp = _state_to_device(state, B, C, dt)
    y = cuda.device_array((B, T, C), dt)
    forward_on_device(_to_device(w, dt), _to_device(u, dt), _to_device(k, dt), _to_device(v, dt),
                      aa, bb, pp, y, version=version, threads_per_block=threads_per_block,
                      chunk_len=chunk_len)
    return y.copy_to_host(), (aa.copy_to_host(), bb.copy_to_host(), pp.copy_to_host())


def wkv_backward(w, u, k, v, gy, threads_per_block=THREADS_PER_BLOCK):
    """Gradients of sum(y * gy) w.r.t. w (C,), u (C,), k, v (B, T, C), from the empty state; on the GPU.

    gw is dL/dw; chain the parametrisation yourself: dL/dtime_decay = gw * w.
    """
    B, T, C = check_wkv_inputs(w, u, k, v, gy=gy, fn="wkv_backward")
    _check_launch("wkv_backward", threads_per_block)
    if k.size == 0:
        return wkv_numpy.wkv_backward(w, u, k, v, gy)
    dt = k.dtype
    gw_bc, gu_bc = cuda.device_array((B, C), dt), cuda.device_array((B, C), dt)
    gk, gv = cuda.device_array((B, T, C), dt), cuda.device_array((B, T, C), dt)
    backward_on_device(_to_device(w, dt), _to_device(u, dt), _to_device(k, dt), _to_device(v, dt),
                       _to_device(gy, dt), gw_bc, gu_bc, gk, gv, threads_per_block=threads_per_block)
    return (gw_bc.copy_to_host().sum(axis=0), gu_bc.copy_to_host().sum(axis=0),
            gk.copy_to_host(), gv.copy_to_host())


def wkv_step(w, u, k, v, state=None, threads_per_block=THREADS_PER_BLOCK):
    """One RNN step for B sequences on the GPU: k, v (B, C) -> y (B, C) and the new state (input not modified)."""
    B, C = check_wkv_step_inputs(w, u, k, v, state)
    _check_launch("wkv_step", threads_per_block)
    if k.size == 0:
        return wkv_numpy.wkv_step(w, u, k, v, state)
    dt = k.dtype
    aa, bb, pp = _state_to_device(state, B, C, dt)
    y = cuda.device_array((B, C), dt)
    step_on_device(_to_device(w, dt), _to_device(u, dt), _to_device(k, dt), _to_device(v, dt),
                   aa, bb, pp, y, threads_per_block=threads_per_block)
    return y.copy_to_host(), (aa.copy_to_host(), bb.copy_to_host(), pp.copy_to_host())
