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


def pytest_collection_modifyitems(config, items):
    network = os.environ.get("TINYRWKV_NETWORK") == "1"
    real_gpu = os.environ.get("TINYRWKV_REAL_GPU") == "1"
    for item in items:
        if item.get_closest_marker("network") and not network:
            item.add_marker(pytest.mark.skip(
                reason="needs internet and the real RWKV-4 169M weights: run with TINYRWKV_NETWORK=1"))
        if item.get_closest_marker("gpu") and not real_gpu:   # (a marker: a folder named gpu is not one)
            item.add_marker(pytest.mark.skip(
                reason="needs a real CUDA GPU: run with TINYRWKV_REAL_GPU=1 on a machine that has one"))
