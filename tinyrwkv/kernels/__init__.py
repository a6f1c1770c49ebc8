"""WKV kernels: one file per backend, all with the same signature (see ``wkv_numpy``).

``get_wkv(name)`` picks a backend by name and imports it only then, so importing tinyrwkv
never compiles Numba code and never touches CUDA.

    numpy  the readable reference (wkv_numpy.py)
    numba  @njit on the CPU (wkv_numba.py)
    auto   the fastest backend available here
"""
from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = ("numpy", "numba")


def get_wkv(name: str = "auto") -> ModuleType:
    """Returns the backend module for ``name``; it has ``wkv_forward(w, u, k, v, state)``."""
    if name == "auto":
        name = "numba"
    if name not in BACKENDS:
        raise ValueError(f"unknown WKV backend {name!r}; choose one of {', '.join(BACKENDS + ('auto',))}")
    return importlib.import_module(f"{__name__}.wkv_{name}")
