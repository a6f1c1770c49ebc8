"""Test set-up shared by every test file.

The CUDA simulator must be switched on *before* numba is first imported, so it happens here,
at the top of conftest, which pytest imports before any test module. Set TINYRWKV_REAL_GPU=1
to run the kernels on a real GPU instead (then the tests marked ``gpu`` run too).
"""
import os
import pathlib

# Tests run many small matrix products (one per time step). OpenBLAS's spinning threads made them
# 10-45x slower on a busy 2-core machine, so tests (and the notebook kernels they start, which
# inherit this environment) use one BLAS thread. Set before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

if os.environ.get("TINYRWKV_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tokenizer_path():
    """The real GPT-NeoX-20B tokenizer: $TINYRWKV_TOKENIZER, else ../shared/data/20B_tokenizer.json."""
    env = os.environ.get("TINYRWKV_TOKENIZER")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data" / "20B_tokenizer.json")
    for c in candidates:
        if c.is_file():
            return c
    return None


@pytest.fixture
def neox_tokenizer_path():
    p = tokenizer_path()
    if p is None:
        pytest.skip("the GPT-NeoX-20B tokenizer is absent: set TINYRWKV_TOKENIZER to 20B_tokenizer.json "
                    "(it ships in ../shared/data/ in the project workspace)")
    return p


def libnvvm_missing_reason():
    """None when Numba can load libNVVM (which it needs even to lower a kernel for a real GPU), else why
    not. Looks where Numba looks (numba.cuda.cuda_paths, importable under the simulator too, unlike
    numba.cuda.cudadrv.libs) and loads the library in this process: no subprocess, no GPU needed."""
    import ctypes
    import sys
    try:
        from numba.cuda.cuda_paths import get_cuda_paths
        path = get_cuda_paths()["nvvm"].info
    except Exception as e:      # a Numba without its CUDA package, or one laid out differently
        return f"cannot locate libNVVM through numba.cuda.cuda_paths ({type(e).__name__}: {e})"
    name = path or {"win32": "nvvm.dll", "darwin": "libnvvm.dylib"}.get(sys.platform, "libnvvm.so")
    try:
        ctypes.CDLL(name)
    except OSError as e:
        return (f"libNVVM (the CUDA toolkit's compiler library) is not installed here ({e}); "
                f"install the CUDA toolkit to run this test")
    return None


def pytest_collection_modifyitems(config, items):
    network = os.environ.get("TINYRWKV_NETWORK") == "1"
    real_gpu = os.environ.get("TINYRWKV_REAL_GPU") == "1"
    nvvm_missing = libnvvm_missing_reason() if any(item.get_closest_marker("nvvm") for item in items) else None
    for item in items:
        if item.get_closest_marker("nvvm") and nvvm_missing:
            item.add_marker(pytest.mark.skip(reason=nvvm_missing))
        if item.get_closest_marker("network") and not network:
            item.add_marker(pytest.mark.skip(
                reason="needs internet and the real RWKV-4 169M weights: run with TINYRWKV_NETWORK=1"))
        if item.get_closest_marker("gpu") and not real_gpu:   # (a marker: a folder named gpu is not one)
            item.add_marker(pytest.mark.skip(
                reason="needs a real CUDA GPU: run with TINYRWKV_REAL_GPU=1 on a machine that has one"))
