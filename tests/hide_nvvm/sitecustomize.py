"""Makes libNVVM unloadable in a Python started with this folder on PYTHONPATH, as on a laptop
without the CUDA toolkit (where Numba raises NvvmSupportError even to lower a kernel to LLVM IR).

    PYTHONPATH=tests/hide_nvvm python -m pytest -q -rs tests/test_wkv_cuda.py

shows the tests that need NVVM skipped (with the reason) instead of failing. Python imports
``sitecustomize`` at start-up, in the test process and in every child it starts with this
environment; nothing else is changed.
"""
import ctypes

_load = ctypes.CDLL.__init__


def _refuse_nvvm(self, name, *args, **kwargs):
    if name is not None and "nvvm" in str(name).lower():
        raise OSError(f"{name}: cannot open shared object file: No such file or directory (hidden by tests/hide_nvvm)")
    _load(self, name, *args, **kwargs)


ctypes.CDLL.__init__ = _refuse_nvvm
