"""WKV kernels: one contract per recurrence, one file per backend.

RWKV-4 (``wkv_<backend>.py``, math in ``wkv_numpy``):

    y, (aa, bb, pp) = wkv_forward(w, u, k, v, state=None)      k, v, y: (B, T, C); w, u: (C,)
    gw, gu, gk, gv = wkv_backward(w, u, k, v, gy)               gw = dL/dw; dL/dtime_decay = gw * w
    y, (aa, bb, pp) = wkv_step(w, u, k, v, state)               k, v, y: (B, C): one decoding step

RWKV-5 and RWKV-6 (``wkv6_<backend>.py``, math in ``wkv6_numpy``; v5's decay is constant in time):

    y, S = forward(r, k, v, w, u, state=None)     r, k, v: (B, T, H, N); w: (B, T, H, N) or (H, N); u: (H, N)
    y, S = step(r, k, v, w, u, state=None)        S: (B, H, N, N) [b, h, key, value]

RWKV-7 (``wkv7_<backend>.py``, math and the backward's derivation in ``wkv7_numpy``):

    y, S = forward(r, w, k, v, a, b, state=None)  all six (B, T, H, N); S: (B, H, N, N) [b, h, value, key]
    y, S = step(r, w, k, v, a, b, state=None)
    gr, gw, gk, gv, ga, gb = backward(r, w, k, v, a, b, gy, state=None)

``get_wkv(name, version=4)`` picks the backend for a model version by name and imports it only
then, so importing tinyrwkv never compiles Numba code and never touches CUDA.

    numpy  the readable reference (wkv_numpy.py, wkv6_numpy.py, wkv7_numpy.py)
    numba  @njit on the CPU, parallel over (batch, channel) or (batch, head) (wkv*_numba.py)
    cuda   numba.cuda kernels on an NVIDIA GPU, or on Numba's CUDA simulator (wkv*_cuda.py)
    auto   cuda when a real GPU is present, else numba (never the simulator: it is slow)
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType

from ..errors import ParameterError

BACKENDS = ("numpy", "numba", "cuda")

# The one fast-math licence the @njit kernels take: reassociating float sums (so LLVM can keep several
# partial sums and vectorise reductions: it changes float32 rounding by ~1e-6 relative, not the math)
# and contracting a * b + c into one fused multiply-add. No other: NaN and inf stay as IEEE says
# (full fastmath lets LLVM assume there are none, so an inf in x could come out with the wrong sign).
FASTMATH = {"reassoc", "contract"}


def one_thread_twin(kernel):
    """The ``@njit(parallel=True, cache=True)`` ``kernel`` compiled for one thread (its prange loops run
    as plain loops), for calls too small to wake the thread pool, cached under its own name.

    Why a renamed copy: Numba's on-disk cache keys a function by module, qualified name, signature and
    bytecode, not by its options, so ``njit(cache=True)(kernel.py_func)`` shares one cache entry with
    ``kernel``, and whichever is compiled first is loaded for both. The "one-thread" twin then ran on
    the thread pool, and on 2 cores a single decoding step waited for a worker descheduled by BLAS's
    spinning threads (measured: a 768-wide layer norm after a BLAS matvec, 5 us -> 9 ms)."""
    import types

    from numba import njit
    f = kernel.py_func
    copy = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_one_thread", f.__defaults__, f.__closure__)
    copy.__qualname__ = f.__qualname__ + "_one_thread"
    copy.__doc__ = f.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k in ("fastmath", "error_model", "boundscheck")}
    return njit(cache=True, **options)(copy)

NO_GPU_MESSAGE = (
    "the 'cuda' WKV backend needs an NVIDIA GPU with a working CUDA driver, and none was found. "
    "To run the CUDA kernels on the CPU with Numba's CUDA simulator (slow; for learning and testing), "
    "set NUMBA_ENABLE_CUDASIM=1 before numba is first imported, e.g. `NUMBA_ENABLE_CUDASIM=1 python ...` "
    "or os.environ['NUMBA_ENABLE_CUDASIM'] = '1' at the very top of your script or notebook. "
    "Or pick the CPU backend: get_wkv('numba') (or 'auto')."
)


def cuda_simulator_on() -> bool:
    """True when numba.cuda is Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 when numba.cuda was imported)."""
    from numba import cuda   # importing numba.cuda does not initialise the driver

    # numba.cuda decides once, at its import, between the simulator and the real driver API.
    return cuda.is_available.__module__.startswith("numba.cuda.simulator")


@functools.lru_cache(maxsize=None)
def real_gpu_present() -> bool:
    """True when a real CUDA GPU and driver are usable (never under the simulator). Cached.

    Asked only when needed: the first call loads the CUDA driver library, if any (milliseconds).
    """
    if cuda_simulator_on():
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:        # a broken driver install counts as "no GPU", with no crash
        return False


def cuda_usable() -> bool:
    """True when get_wkv('cuda') works here: a real GPU, or the simulator."""
    return cuda_simulator_on() or real_gpu_present()


# Which module family holds a model version's recurrence: v5 and v6 share one (see wkv6_numpy).
MODULE_PREFIX = {4: "wkv", 5: "wkv6", 6: "wkv6", 7: "wkv7"}


def get_wkv(name: str = "auto", version: int = 4) -> ModuleType:
    """Returns the backend module for ``name`` ('numpy' | 'numba' | 'cuda' | 'auto') of RWKV-``version``.

    version 4: wkv_forward, wkv_backward, wkv_step; 5 and 6: forward, step; 7: forward, step,
    backward (signatures in this package's docstring). 'cuda' without a GPU (and without the
    simulator) raises RuntimeError saying what to do.
    """
    if version not in MODULE_PREFIX:
        raise ParameterError(f"no WKV kernels for RWKV version {version!r}; choose one of "
                         f"{', '.join(map(str, MODULE_PREFIX))}")
    if name == "auto":
        name = "cuda" if real_gpu_present() else "numba"
    if name not in BACKENDS:
        raise ParameterError(f"unknown WKV backend {name!r}; choose one of {', '.join(BACKENDS + ('auto',))}")
    if name == "cuda" and not cuda_usable():
        raise RuntimeError(NO_GPU_MESSAGE)
    return importlib.import_module(f"{__name__}.{MODULE_PREFIX[version]}_{name}")


def available_backends() -> dict:
    """The backends that work here, name -> one line saying what runs. 'auto' resolves to the first."""
    import numba

    found = {}
    if real_gpu_present():
        from numba import cuda
        gpu = cuda.get_current_device().name
        found["cuda"] = f"numba.cuda kernels on {gpu.decode() if isinstance(gpu, bytes) else gpu}"
    found["numba"] = f"@njit on the CPU, {numba.get_num_threads()} threads"
    found["numpy"] = "the NumPy reference (loops over time in Python)"
    if "cuda" not in found and cuda_simulator_on():
        found["cuda"] = "numba.cuda kernels on the CUDA simulator (slow: for learning and tests)"
    return found
