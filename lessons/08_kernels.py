# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Kernels: from a NumPy loop to `@njit` to `numba.cuda`
#
# > **Objectives.** After this lesson you can
# > 1. run the WKV recurrence as a NumPy loop, as an `@njit` kernel and as `numba.cuda` kernels, and
# >    check each against the NumPy reference;
# > 2. explain the max trick that keeps every `exp()` argument $\le 0$;
# > 3. map (batch, channel) pairs onto CUDA threads and blocks, on a GPU or on Numba's simulator;
# > 4. check a backward kernel against finite differences, and time kernels fairly (warm-up first).
# >
# > **Prerequisites.** Lesson 06 (the WKV recurrence and its stable form). No GPU needed.
# >
# > **Time.** about 65 minutes: reading 30 (2,203 words, 264 lines of code),
# > running 1 (full mode, measured), exercises 30 (3 x 10). How these are estimated: lesson 00.
#
# Everything in an RWKV layer is a matrix product, except one thing: the WKV recurrence (lesson
# 06), a loop over time with a tiny state per channel. Real RWKV runs it in a dedicated CUDA kernel
# (BlinkDL's `wkv_cuda.cu`). This lesson climbs the ladder of ways to run that loop, all of them in
# Python you can read:
#
# 1. **NumPy**: a Python loop over $T$, each step vectorised over all (batch, channel) pairs;
# 2. the **max trick**: why every backend carries $(aa, bb, pp)$ and never $e^{k}$ itself;
# 3. **`@njit`** (Numba): the same loop compiled to machine code, pairs shared among CPU cores;
# 4. **`numba.cuda`**: one GPU thread per (batch, channel) pair: v1 naive, v2 state in registers,
#    v3 chunked over time; a batched decoding step. It runs on a real GPU or on Numba's
#    **CUDA simulator**;
# 5. the **backward** kernels, checked against finite differences;
# 6. `get_wkv`: one switch for the model.
#
# **Before any code: GPU or simulator?** Numba decides *once*, when `numba.cuda` is first
# imported, whether it talks to a real GPU or to its CUDA simulator (which runs every CUDA thread
# as a Python thread on the CPU: slow, but you can `print()` and debug inside a kernel). The
# switch is the environment variable `NUMBA_ENABLE_CUDASIM=1`, and it must be set **before numba
# is imported**. Importing tinyrwkv's kernels imports numba, so the first code cell below asks the
# CUDA driver directly (through `ctypes`, without numba) whether there is a GPU. If there is none,
# it turns the simulator on. If you change your mind later, restart the kernel: setting the
# variable after numba is loaded does nothing.

# %%
import ctypes
import ctypes.util
import os
import sys


def cuda_gpu_visible() -> bool:
    """True when the CUDA driver library loads and reports at least one GPU (asked without numba)."""
    name = ctypes.util.find_library("cuda") or ("nvcuda.dll" if os.name == "nt" else "libcuda.so.1")
    try:
        driver = ctypes.CDLL(name)
        count = ctypes.c_int(0)
        return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):
        return False


if "numba" in sys.modules:
    print("numba is already imported: the GPU/simulator choice is fixed; restart the kernel to change it")
elif not cuda_gpu_visible():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")   # no GPU: numba.cuda will be the simulator
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")      # small matrices: one BLAS thread is faster
os.environ.setdefault("OMP_NUM_THREADS", "1")
print("NUMBA_ENABLE_CUDASIM =", os.environ.get("NUMBA_ENABLE_CUDASIM", "0"))

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numba
import numpy as np
from numba import cuda

from tinyrwkv.diagrams import draw
from tinyrwkv.exercises import check
from tinyrwkv.experiments.kernel_ladder import measure_ladder, median_ms, plot_ladder, random_wkv_inputs
from tinyrwkv.kernels import (NO_GPU_MESSAGE, available_backends, cuda_simulator_on, get_wkv, real_gpu_present,
                              wkv_cuda, wkv_numba, wkv_numpy)
from tinyrwkv.models.rwkv import RWKV, RWKVConfig
from tinyrwkv.nn.gradcheck import numerical_gradient, relative_error

FAST = os.environ.get("TINYRWKV_FAST") == "1"
GPU = real_gpu_present()
SIM = cuda_simulator_on()
# Shapes for the CUDA section: tiny on the simulator (each thread is a Python thread), real on a GPU.
CUDA_SHAPE = (8, 1024, 768) if GPU else (2, 16, 8)
LADDER_SHAPES = [(1, 128, 16), (2, 128, 128)] if FAST else [(1, 1024, 64), (1, 1024, 768), (8, 1024, 768)]
SEED = 0
print(f"FAST={FAST}; real GPU: {GPU}; CUDA simulator: {SIM}")
print("backends here:")
for name, what in available_backends().items():
    print(f"  {name:6s} {what}")

# %% [markdown]
# ## 1. The NumPy reference: a Python loop over time
#
# The stable recurrence of lesson 06, for inputs of shape `(B, T, C)`. Channels and sequences are
# independent, so NumPy handles all $B \cdot C$ pairs at once at each step, and Python loops over the
# $T$ steps:

# %%
print(inspect.getsource(wkv_numpy.wkv_forward))
w, u, k, v, gy = random_wkv_inputs(2, 64, 16, seed=SEED)           # w, u (C,); k, v, gy (B, T, C)
y, (aa, bb, pp) = wkv_numpy.wkv_forward(w, u, k, v)
print("k", k.shape, "-> y", y.shape, "; state (aa, bb, pp):", aa.shape, bb.shape, pp.shape)
assert y.shape == k.shape and aa.shape == bb.shape == pp.shape == (2, 16)

# %% [markdown]
# Every Python iteration costs a few microseconds of interpreter overhead, whatever the amount of
# work inside it. When $B \cdot C$ is small (decoding one sequence, say), that overhead *is* the cost:

# %%
for B, T, C in [(1, 512, 16), (1, 512, 768), (8, 512, 768)]:
    w_, u_, k_, v_, _ = random_wkv_inputs(B, T, C)
    ms = median_ms(lambda: wkv_numpy.wkv_forward(w_, u_, k_, v_), repeats=3)
    print(f"B={B} T={T} C={C:3d}: {ms:7.2f} ms = {1e3 * ms / T:6.1f} us per step = "
          f"{1e6 * ms / (B * T * C):7.1f} ns per (b, t, c) element")

# %% [markdown]
# ## 2. The max trick, and what happens without it
#
# The textbook recurrence $a_t = e^{w} a_{t-1} + e^{k_t} v_t$, $b_t = e^{w} b_{t-1} + e^{k_t}$ needs $e^{k}$.
# A float32 holds numbers up to $3.4 \cdot 10^{38} = e^{88.7}$. Past that, the sums become `inf`,
# and `inf / inf` is `NaN`:

# %%
print(f"largest float32: {np.finfo(np.float32).max:.3g} = e^{np.log(np.finfo(np.float32).max):.1f};  "
      f"largest float64: e^{np.log(np.finfo(np.float64).max):.0f}")


def wkv_textbook(w, u, k, v):
    """The recurrence without the max trick: a, b hold the true sums. For showing the overflow only."""
    a = np.zeros(k.shape[::2], k.dtype)                            # (B, C)
    b = np.zeros(k.shape[::2], k.dtype)
    y = np.empty_like(k)
    for t in range(k.shape[1]):
        now = np.exp(u + k[:, t])
        y[:, t] = (a + now * v[:, t]) / (b + now)
        a = np.exp(w) * a + np.exp(k[:, t]) * v[:, t]
        b = np.exp(w) * b + np.exp(k[:, t])
    return y


w, u, k, v, gy = random_wkv_inputs(1, 32, 4, seed=SEED)
for shift in (0, 60, 90):
    with np.errstate(over="ignore", invalid="ignore"):
        y_textbook = wkv_textbook(w, u, k + shift, v)
    y_stable, _ = wkv_numpy.wkv_forward(w, u, k + shift, v)
    print(f"keys + {shift:2d}: textbook finite? {str(np.isfinite(y_textbook).all()):5s}  "
          f"stable finite? {np.isfinite(y_stable).all()}  |stable - stable(keys + 0)| = "
          f"{np.abs(y_stable - wkv_numpy.wkv_forward(w, u, k, v)[0]).max():.1e}")

# %% [markdown]
# Adding a constant to every key changes nothing mathematically, since it cancels between
# numerator and denominator. So the stable form stores the sums **in units of** $e^{pp}$, with $pp$
# the largest exponent seen so far. Adding two numbers kept as (mantissa, exponent) pairs is the
# core move of every kernel below:
#
# $$ m_1 e^{p_1} + m_2 e^{p_2} = \big(m_1 e^{p_1 - p} + m_2 e^{p_2 - p}\big)\, e^{p}, \qquad p = \max(p_1, p_2), $$
#
# so every `exp()` sees an argument $\le 0$ and returns a number in $(0, 1]$. The state update is
# exactly this with $(aa, pp + w)$ and $(v, k)$: the old sums decayed by $e^{w}$, plus the new token.
#
# ## 3. `@njit`: the loop compiled
#
# Numba compiles a Python function for the types it is called with. `wkv_numba` writes the loop
# the other way round: **each (batch, channel) pair runs its whole time loop**, with its state in
# local variables, and `prange` hands pairs to different CPU cores. That is the structure of the GPU
# kernel too. The loop over $t$ inside is exercise 1 (`wkv_thread`), so it is cut here; read the whole
# kernel in `tinyrwkv/kernels/wkv_numba.py` after you have tried:

# %%
def source_until_time_loop(fn):
    """fn's source up to its loop over time (the loop is exercise 1, wkv_thread)."""
    src = inspect.getsource(fn)
    cut = src.index("for t in range(T):")
    indent = src[src.rindex("\n", 0, cut) + 1:cut]
    return src[:cut] + f"for t in range(T):\n{indent}    ...   # exercise 1: the stable step, per (b, c)"


print(source_until_time_loop(wkv_numba._wkv_forward_kernel.py_func))

# %%
B, T, C = 2, 256, 64
w, u, k, v, gy = random_wkv_inputs(B, T, C, seed=SEED)
t0 = time.perf_counter()
y_numba, state_numba = wkv_numba.wkv_forward(w, u, k, v)           # first call: compile (or load the disk cache)
first = time.perf_counter() - t0
second = median_ms(lambda: wkv_numba.wkv_forward(w, u, k, v), repeats=3) / 1e3
y_ref, state_ref = wkv_numpy.wkv_forward(w, u, k, v)
print(f"first call {first * 1e3:.0f} ms (compiling, or loading the compiled code from disk), "
      f"then {second * 1e3:.2f} ms")
print("max |numba - numpy|: y", np.abs(y_numba - y_ref).max(),
      " state", max(np.abs(a - b).max() for a, b in zip(state_numba, state_ref)))
assert np.allclose(y_numba, y_ref, atol=1e-5)
assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(state_numba, state_ref))

# %% [markdown]
# ### The CPU ladder, measured
#
# NumPy against `@njit` on one thread and on every thread, forward and backward, at a few shapes
# (`tinyrwkv.experiments.kernel_ladder`, which also draws `figures/kernel_ladder.png`; on a real GPU
# it adds the `numba.cuda` rows). Times are medians of a few runs. On a busy machine they are
# noisy, so compare the bars within one run.

# %%
ladder = measure_ladder(LADDER_SHAPES, repeats=3)
for shape, rows in ladder.items():
    print(shape, "forward:", "  ".join(f"{name} {r['forward_ms']:.2f} ms ({r['forward_speedup']:.1f}x)"
                                       for name, r in rows.items()))
plot_ladder(ladder, fig=plt.figure())
plt.show()

# %% [markdown]
# What the bars say (on a 2-core laptop-class CPU; your numbers will differ):
#
# * when $B \cdot C$ is small, `@njit` wins by a wide margin, because NumPy pays the interpreter
#   on every step for very little work;
# * when $B \cdot C$ is large (768 or 8 × 768), NumPy catches up and often overtakes the compiled loop:
#   its per-step overhead is amortised over hundreds or thousands of elements, and its `exp` is
#   vectorised (SIMD) C, while the compiled loop calls a scalar `exp` four times per element.
#   Compiling removes the overhead. It does not make an `exp` cheaper. Also, a CPU thread walking
#   one pair through time reads memory with a stride of $C$ floats, which the cache does not love.
#   On a GPU, the same loop runs in thousands of threads at once, and this is where it pays off;
# * more threads help only when there is enough work per thread, and when the cores are not busy
#   with something else.
#
# ## 4. `numba.cuda`: one thread per (batch, channel)

# %%
draw('kernel_threads')

# %% [markdown]
# A GPU runs thousands of threads at once, in **blocks** (up to 1024 threads each) that the
# hardware schedules in **warps** of 32 threads executing in lockstep. The WKV plan, from BlinkDL's
# kernel: **thread $i$ owns the pair $(b, c) = (i \,//\, C,\ i \,\%\, C)$** and walks over time with
# the stable state in its registers. The launch needs $\lceil B C / \text{threads per block} \rceil$
# blocks. The last block may stick out past $B \cdot C$, and those threads return at once.
#
# The layout matters: `k[b, t, c]` sits at $(bT + t)\,C + c$, so at each step the 32 threads of a warp
# (neighbouring $c$) read 32 neighbouring floats, one 128-byte **coalesced** transaction.
#
# Here is the mapping, from inside the threads. This small kernel writes down who each thread is.
# It runs the same on a GPU and on the simulator:

# %%
@cuda.jit
def whoami(B, C, out):
    i = cuda.grid(1)                         # = blockIdx.x * blockDim.x + threadIdx.x
    if i >= B * C:
        return                               # past the last pair: nothing to do
    out[i, 0] = cuda.blockIdx.x
    out[i, 1] = cuda.threadIdx.x
    out[i, 2] = i
    out[i, 3] = i // C                       # b
    out[i, 4] = i % C                        # c


B, C = 2, 5
blocks, threads = wkv_cuda.launch_config(B * C, threads_per_block=4)
out = np.full((B * C, 5), -1, np.int32)
whoami[blocks, threads](B, C, out)           # numba copies out to the device and back
print(f"B={B}, C={C}: {blocks} blocks x {threads} threads = {blocks * threads} threads for {B * C} pairs")
print(" block  thread  i  ->  b  c")
for row in out:
    print(f"{row[0]:5d} {row[1]:7d} {row[2]:3d}     {row[3]:2d} {row[4]:2d}")
assert sorted(map(tuple, out[:, 3:])) == [(b, c) for b in range(B) for c in range(C)]

# %% [markdown]
# ### v1 → v2 → v3
#
# `tinyrwkv/kernels/wkv_cuda.py` has three forward kernels, each tested against NumPy:
#
# * **v1, naive**: the state `aa, bb, pp` is read from and written to *global memory* at every step.
#   Numba's arrays carry no `__restrict__`, so the compiler must assume every store may change
#   any other array, and it reloads everything;
# * **v2, registers**: the state, `w[c]` and `u[c]` live in local variables (registers). Global
#   memory sees only `k`, `v` in and `y` out. This is BlinkDL's kernel:

# %%
print(source_until_time_loop(wkv_cuda.wkv_forward_v2.py_func))

# %% [markdown]
# * **v3, chunked over time**: at $B = 8$, $C = 768$ there are only 6144 threads, too few to keep
#   a large GPU busy while each one walks $T$ steps. The state after a chunk of $L$ steps is
#   $e^{Lw} \cdot (\text{state before}) + (\text{the chunk's own state from zero})$, so chunks can
#   run in parallel: (1) each (b, chunk, c) thread computes its chunk's own state, (2) one thread
#   per (b, c) hops over the chunks ($T/L$ steps, not $T$), (3) each chunk reruns from its
#   carried-in state and writes `y`. That is twice the arithmetic, but $T/L$ times more threads. This
#   "a linear recurrence is a parallel scan" idea is what later RWKV versions and Mamba build on.
#
# All three, plus the batched decoding step, against NumPy. On the simulator we keep the shapes
# tiny (every thread is a Python thread); on a GPU they are real:

# %%
B, T, C = CUDA_SHAPE
w, u, k, v, gy = random_wkv_inputs(B, T, C, seed=SEED)
y_ref, state_ref = wkv_numpy.wkv_forward(w, u, k, v)
for version in wkv_cuda.FORWARD_VERSIONS:
    if not SIM:   # on a GPU the first call compiles the kernel: warm up untimed (the simulator compiles nothing)
        wkv_cuda.wkv_forward(w, u, k, v, version=version, chunk_len=32)
    t0 = time.perf_counter()
    y_gpu, state_gpu = wkv_cuda.wkv_forward(w, u, k, v, version=version, chunk_len=4 if SIM else 32)
    seconds = time.perf_counter() - t0
    err = max(np.abs(y_gpu - y_ref).max(), *(np.abs(a - b).max() for a, b in zip(state_gpu, state_ref)))
    print(f"v{version}: y {y_gpu.shape}, max |cuda - numpy| = {err:.1e}  ({seconds:.2f} s with copies"
          f"{', on the simulator' if SIM else ''})")
    assert y_gpu.shape == (B, T, C) and err < 1e-4

y_step, state_step = wkv_cuda.wkv_step(w, u, k[:, 0], v[:, 0])     # one decoding step for B sequences
y_step_ref, _ = wkv_numpy.wkv_step(w, u, k[:, 0], v[:, 0])
print("step: y", y_step.shape, " max |cuda - numpy| =", np.abs(y_step - y_step_ref).max())
assert np.allclose(y_step, y_step_ref, atol=1e-5)

# %% [markdown]
# On a real GPU, the ladder continues (timed with the inputs already on the device and
# `cuda.synchronize()` after each run; the simulator is never timed). Without one, the message
# `get_wkv("cuda")` would give is printed instead:

# %%
if GPU:
    gpu_ladder = measure_ladder([CUDA_SHAPE], repeats=5)
    for name, r in next(iter(gpu_ladder.values())).items():
        print(f"  {name:18s} forward {r['forward_ms']:8.3f} ms ({r['forward_speedup']:6.1f}x numpy)")
else:
    print("no real GPU here. Without the simulator, get_wkv('cuda') would say:\n")
    print(NO_GPU_MESSAGE)

# %% [markdown]
# ## 5. The backward: the same recurrence, transposed
#
# Training needs $\partial L / \partial w, \partial u, \partial k, \partial v$ for $L = \sum y \odot g_y$.
# `wkv_backward` (derived step by step in lesson 06, section 7; the stable version line by line in
# the docstring of `wkv_numpy.py`) runs the recurrence forwards to save
# the state entering each step, then backwards through the transposed recurrence. Every exponent
# stays $\le 0$ here too. We check every backend against **finite differences in float64**,
# $\partial L / \partial \theta \approx (L(\theta + \epsilon) - L(\theta - \epsilon)) / 2\epsilon$:

# %%
B, T, C = 2, 6, 3
w, u, k, v, gy = (a.astype(np.float64) for a in random_wkv_inputs(B, T, C, seed=SEED + 1))
inputs = {"w": w, "u": u, "k": k, "v": v}


def loss():
    return float(np.sum(wkv_numpy.wkv_forward(w, u, k, v)[0] * gy))


numerical = {name: numerical_gradient(loss, array) for name, array in inputs.items()}   # perturbs in place
backends = {"numpy": wkv_numpy, "numba": wkv_numba, "cuda" + (" (simulator)" if SIM else ""): wkv_cuda}
for label, backend in backends.items():
    grads = dict(zip(inputs, backend.wkv_backward(w, u, k, v, gy)))
    errors = {name: relative_error(grads[name], numerical[name]) for name in inputs}
    print(f"{label:17s} relative error vs finite differences: " + ", ".join(f"{n} {e:.1e}" for n, e in errors.items()))
    assert all(grads[n].shape == inputs[n].shape for n in inputs) and max(errors.values()) < 1e-7

# The model stores time_decay, and w = -exp(time_decay): the chain rule gives dL/dtime_decay = gw * w.
time_decay = np.log(-w)
gw = wkv_numpy.wkv_backward(w, u, k, v, gy)[0]
numeric_td = numerical_gradient(lambda: float(np.sum(wkv_numpy.wkv_forward(-np.exp(time_decay), u, k, v)[0] * gy)),
                                time_decay)
print("dL/dtime_decay = gw * w: relative error", f"{relative_error(gw * w, numeric_td):.1e}")
assert relative_error(gw * w, numeric_td) < 1e-7

# %% [markdown]
# ## 6. One switch for the model
#
# `get_wkv(name)` returns a backend module, imported only when asked. `'auto'` picks `cuda` on a
# real GPU and `numba` otherwise, never the simulator. `RWKV(config, params, backend=...)` uses it
# for every layer, and the logits do not depend on the choice:

# %%
print("get_wkv('auto') ->", get_wkv("auto").__name__)
config = RWKVConfig(n_layer=2, n_embd=16, vocab_size=50, ffn_dim=64)
tokens = np.random.default_rng(SEED).integers(0, 50, size=12)
logits = {}
for backend in ("numpy", "numba", "cuda"):
    model = RWKV.random(config, seed=SEED, backend=backend)
    logits[backend], _ = model.forward(tokens)                    # (T, V)
    print(f"backend {backend:5s}: logits {logits[backend].shape}, max |vs numpy| = "
          f"{np.abs(logits[backend] - logits['numpy']).max():.1e}")
    assert np.allclose(logits[backend], logits["numpy"], atol=1e-5)

# %% [markdown]
# ## 7. The whole hot path on the device
#
# Section 6 put one kernel on the GPU: the WKV. Everything else (the matrix products, the layer
# norms, the mixes) still ran in NumPy on the CPU, so each layer copied `w, u, k, v` and the state
# to the device and `y` and the state back. `tinyrwkv.runners.cuda_rwkv4.DeviceRWKV` moves the whole
# forward pass onto the device: the weights are uploaded once, the state stays there, and every op
# is a kernel from `tinyrwkv/kernels/cuda_ops.py` or `wkv_cuda.py`. Per block, for $M = BT$ rows:
#
# | step | kernel | what it does |
# |---|---|---|
# | `ln1`, `ln2`, `ln_out` | `layernorm` v1/v2 | one thread, or one block, per row |
# | token shift + $\mu$ mixes | `shift_mix3`, `shift_mix2` | $x_{t-1} + \mu (x_t - x_{t-1})$ for k, v, r in one pass |
# | $W_k, W_v, W_r, W_o$, FFN | `matvec` v1-v3 (decoding), `matmul` v1-v2 (prompt) | the 7 matrices per block |
# | WKV | `wkv_step_v1` / `wkv_forward_v2` | the recurrence of sections 4-5 |
# | gates | `sigmoid_mul`, `squared_relu`, `gate_add` | $\sigma(r) \odot y$, $\mathrm{relu}(k)^2$, $x \mathrel{+}= \sigma(r) \odot kv$ |
#
# ### The matrix-vector ladder: who reads which address
#
# Decoding one token multiplies every weight matrix by one vector. That reads every weight once and
# does 2 flops per weight, so the speed is set by **how the weights are read**. A warp's 32 threads
# issue their loads together, and the hardware serves them in 128-byte lines. Count the lines one
# load instruction of a warp touches, for the first warp of each version on a $768 \times 768$
# float32 matrix:

# %%
from tinyrwkv.kernels import cuda_ops


def lines_touched(byte_addresses, line=128):
    """Distinct 128-byte memory lines that one warp-wide load touches (1 = perfectly coalesced)."""
    return len({a // line for a in byte_addresses})


K, itemsize = 768, 4
lanes = np.arange(32)
v1 = [((0 + lane) * K + 0) * itemsize for lane in lanes]      # v1: lane = row, all at column k = 0
v2 = [(0 * K + lane) * itemsize for lane in lanes]            # v2: lane = column, all in row n = 0
print(f"v1 (thread per row):  one load touches {lines_touched(v1):2d} lines "
      f"({32 * itemsize} useful bytes out of {lines_touched(v1) * 128} moved)")
print(f"v2 (warp per row):    one load touches {lines_touched(v2):2d} line  "
      f"({32 * itemsize} useful bytes out of {lines_touched(v2) * 128} moved)")
assert lines_touched(v1) == 32 and lines_touched(v2) == 1

# %% [markdown]
# v1 is one thread per output row: simple, but neighbouring threads read addresses $K$ floats
# apart. (Caches rescue some of it: the next 31 columns of each row arrive with the first line.)
# v2 gives each row a whole warp: lane $j$ reads columns $j, j+32, \dots$, and the 32 partial sums
# are added **inside the warp** by `shfl_down_sync`, a register exchange between lanes, in five
# halving steps:

# %%
print(inspect.getsource(cuda_ops.warp_sum.py_func))
print(inspect.getsource(cuda_ops.matvec_v2.py_func))

# %% [markdown]
# v3 is v2 for a batch: one warp per row for up to 4 sequences, so each weight is read once per
# four sequences instead of once per sequence. (Numba's simulator has no warp shuffles, so
# `cuda_ops` gives it a stand-in that exchanges through the block barrier. On a GPU the real
# instruction runs; `tests/test_cuda_runner.py` checks the PTX contains it.) Every rung computes the
# same numbers, checked here against NumPy, with float32 and float16 weights:

# %%
rng = np.random.default_rng(SEED)
N, K, B = (3072, 768, 4) if GPU else (8, 40, 2)
x = rng.standard_normal((B, K)).astype(np.float32)
d_x = cuda.to_device(x)
for wdtype in (np.float32, np.float16):
    W = rng.standard_normal((N, K)).astype(wdtype)
    d_W, d_y = cuda.to_device(W), cuda.device_array((B, N), np.float32)
    for version in cuda_ops.MATVEC_VERSIONS:
        cuda_ops.matvec(d_W, d_x, d_y, version=version)
        err = np.abs(d_y.copy_to_host() - cuda_ops.matvec_reference(W, x)).max()
        timing = ""
        if GPU:
            ms = median_ms(lambda: cuda_ops.matvec(d_W, d_x, d_y, version=version), repeats=20, sync=cuda.synchronize)
            timing = f"  {ms * 1e3:7.1f} us = {W.nbytes / ms / 1e6:6.1f} GB/s of weights"
        print(f"matvec v{version} {np.dtype(wdtype).name:7s} ({N}x{K}) x {B} vectors: max |diff| {err:.1e}{timing}")
        assert err < 1e-3

# %% [markdown]
# ### Layer norm: a thread per row, or a block per row
#
# `layernorm_v1` gives each row one thread, which walks the row three times (mean, variance,
# output). With one token there is **one** row: one thread works while the GPU idles. `layernorm_v2`
# gives each row a block of 128 threads: each sums a strided slice, then the 128 partial sums meet
# in a tree in shared memory, halving the active threads at each step, with a barrier
# (`cuda.syncthreads()`) between steps so that no thread reads a sum before it is written:

# %%
print(inspect.getsource(cuda_ops.block_sum.py_func))
M, C = (512, 768) if GPU else (2, 40)
xs = (rng.standard_normal((M, C)) * 3 + 1).astype(np.float32)
gamma, beta = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
d_in, d_out = cuda.to_device(xs), cuda.device_array((M, C), np.float32)
d_gamma, d_beta = cuda.to_device(gamma), cuda.to_device(beta)
for version in cuda_ops.LAYERNORM_VERSIONS:
    cuda_ops.layernorm(d_in, d_gamma, d_beta, 1e-5, d_out, version=version)
    err = np.abs(d_out.copy_to_host() - cuda_ops.layernorm_reference(xs, gamma, beta, 1e-5)).max()
    print(f"layernorm v{version} ({M}x{C}): max |diff| vs NumPy {err:.1e}")
    assert err < 1e-5

# %% [markdown]
# ### The whole model, and the copies it no longer makes
#
# `DeviceRWKV` has the reference model's `forward`, `step` and state semantics, so `generate` runs
# on it unchanged (`tinyrwkv generate --device cuda`). Its logits equal the NumPy model's. Then we
# count the host <-> device copies of one decoding step, by wrapping `numba.cuda`'s copy functions
# (`count_copies`), for the NumPy model with the WKV on the device and for the device runner:

# %%
from tinyrwkv.runners.cuda_rwkv4 import DeviceRWKV, count_copies

config = RWKVConfig(n_layer=2, n_embd=16, vocab_size=50, ffn_dim=64)
reference = RWKV.random(config, seed=SEED, scale=0.3, backend="numpy")
device_model = DeviceRWKV.from_model(reference)            # weights uploaded once, here
print(device_model)
tokens = np.random.default_rng(SEED).integers(0, 50, size=4)
ref_logits, ref_state = reference.forward(tokens)
dev_logits, dev_state = device_model.forward(tokens)       # dev_state lives on the device
print("forward: max |device - numpy| =", np.abs(dev_logits - ref_logits).max())
assert np.allclose(dev_logits, ref_logits, atol=1e-5)

hybrid = RWKV(config, reference.params, backend="cuda")    # section 6: only the WKV on the device
with count_copies() as before:
    hybrid.step(3, ref_state)
with count_copies() as after:
    device_model.step(3, dev_state)
print(f"copies per token, WKV-only GPU backend: {before}  ({sum(before.values()) // config.n_layer} per layer)")
print(f"copies per token, DeviceRWKV:            {after}  (the token id in, the logits out)")
real = RWKVConfig(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
print(f"at RWKV-4 169M ({real.n_layer} layers): {sum(before.values()) // config.n_layer * real.n_layer} copies per "
      f"token before, {sum(after.values())} after")
assert after == {"to_device": 1, "to_host": 1}

# %% [markdown]
# ### Time per kernel per token
#
# Where does a decoding step spend its time? Every matrix is read once per token, so the bytes each
# kernel family reads give a floor on its time at the GPU's memory bandwidth. At 169M shapes, in
# float16 storage (computed from the parameter table):

# %%
from tinyrwkv.models.rwkv import param_shapes

FAMILIES = {"att k,v,r": ("att.key", "att.value", "att.receptance"), "att output": ("att.output",),
            "ffn key": ("ffn.key",), "ffn receptance": ("ffn.receptance",), "ffn value": ("ffn.value",),
            "head": ("head",)}
shapes = param_shapes(real)
bytes_per_family = {fam: 2 * sum(int(np.prod(shape)) for name, shape in shapes.items()
                                 if name.endswith(".weight") and any(f".{p}." in f".{name}" for p in prefixes))
                    for fam, prefixes in FAMILIES.items()}
total = sum(bytes_per_family.values())
for bandwidth_name, gbps in (("a T4 (320 GB/s, NVIDIA's spec)", 320), ("an H200 (4.8 TB/s, NVIDIA's spec)", 4800)):
    print(f"floor on {bandwidth_name}:")
    for fam, nbytes in bytes_per_family.items():
        print(f"  {fam:15s} {nbytes / 1e6:6.1f} MB  {nbytes / gbps / 1e3:7.1f} us")
    print(f"  {'all matrices':15s} {total / 1e6:6.1f} MB  {total / gbps / 1e3:7.1f} us  -> at most "
          f"{gbps * 1e9 / total:,.0f} tokens/s")

# %% [markdown]
# On a GPU, `DeviceRWKV.profile_step()` measures the real time per family with CUDA events around
# each launch. The simulator has no clock (each thread is a Python thread), so here there is no
# table; `docs/GPU.md` holds the numbers `scripts/gpu_check.py` measured on an H200. When you read
# them, compare the total with the floor above, and remember the kernel count: every launch from
# Python costs some microseconds of host time whatever the kernel does, and one decoding step
# launches this many:

# %%
device_model.profile = []                                   # record every launch of one step
device_model.step(0)
launches = [name for name, _, _ in device_model.profile]
device_model.profile = None
print(f"{len(launches)} launches per token at {config.n_layer} layers "
      f"({(len(launches) - 5) // config.n_layer} per block + 5: embedding, ln0, last position, ln_out, head); "
      f"at 169M: {(len(launches) - 5) // config.n_layer * 12 + 5}")
if GPU:
    big = DeviceRWKV(real, RWKV.random(real, seed=SEED).params, dtype="float16")
    for name, ms in big.profile_step(0).items():
        print(f"  {name:15s} {ms * 1e3:8.1f} us")
else:
    print("(no GPU: see docs/GPU.md for the per-kernel times measured on an H200)")

# %% [markdown]
# ## Summary
#
# * The WKV loop is independent per (batch, channel), sequential in time. Every backend
#   parallelises over pairs and loops over $t$.
# * NumPy pays interpreter overhead per time step. `@njit` removes it, which matters most when few
#   pairs share a step, and `prange` spreads pairs over cores.
# * $e^{k}$ overflows float32 past $k \approx 88.7$. The kernels keep $(aa, bb, pp)$ and add with the
#   **max trick**, so every `exp` sees an argument $\le 0$.
# * `numba.cuda`: **one thread per pair**, $\lceil BC/\text{tpb} \rceil$ blocks, neighbouring
#   threads on neighbouring channels (coalesced). v1 keeps the state in global memory, v2 in
#   registers, and v3 cuts time into chunks for more parallelism.
# * `NUMBA_ENABLE_CUDASIM=1`, set **before numba is imported**, runs the same kernels on the CPU,
#   for learning and tests. It is never used for timing.
# * The backward is the transposed recurrence, checked against finite differences in float64.
#   Chain $w = -e^{\text{time\_decay}}$ yourself.
#
# ## Exercises

# %% tags=["exercise"]
def wkv_thread(b, c, w, u, k, v, y):
    """The work of ONE CUDA thread, written as a plain Python function of its pair (b, c).

    w, u: (C,); k, v, y: (B, T, C). Loop over t with the stable state (aa, bb, pp) in local
    variables, starting from aa = bb = 0, pp = -1e38, and write y[b, t, c] for every t. Write nothing
    else: the other pairs belong to other threads. (The check's keys are about 90: use the max trick.)
    """
    raise NotImplementedError


check.wkv_thread(wkv_thread)


# %% tags=["exercise"]
def max_trick_add(m1, p1, m2, p2):
    """Add two numbers stored as mantissa and exponent: return (m, p) with m e^p = m1 e^p1 + m2 e^p2.

    Arrays, elementwise. Use p = max(p1, p2), so that no exp() sees a positive number (p can be 1000).
    """
    raise NotImplementedError


check.max_trick_add(max_trick_add)


# %% tags=["exercise"]
def launch_grid(B, C, threads_per_block):
    """The CUDA launch for one thread per (batch, channel) pair: return (blocks, threads_per_block).

    Use the fewest blocks that give every pair a thread.
    """
    raise NotImplementedError


check.launch_grid(launch_grid)

# %% [markdown]
# **Going further:** (1) Put a `print(b, c, t, pp)` inside a copy of `wkv_forward_v2` and run it on
# the simulator: watch the running max follow the keys. (2) Write a v4 that gives each thread
# *two* channels. Does it help on your GPU? (`scripts/bench_kernels.py` times it.)
# (3) Run `python scripts/gpu_check.py` on a machine with a GPU.
#
# Next: [09 · Cost and memory against sequence length](09_cost_and_memory.ipynb). What each model carries
# and pays per token as the context grows.
