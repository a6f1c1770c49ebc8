"""Helpers shared by the WKV backend tests (test_wkv_numba.py, test_wkv_cuda.py).

* ``wkv_inputs(B, T, C, ...)``: random inputs of the WKV contract, and an upstream gradient.
* ``assert_close(ours, ref, tol, what)``: same dtype, and max |ours - ref| <= tol * max(1, max |ref|).
"""
import numpy as np


def wkv_inputs(B, T, C, seed=0, dtype=np.float32, key_scale=1.0):
    """w = -exp(normal) < 0 (C,), u (C,), k, v, gy (B, T, C); ``key_scale`` makes keys large."""
    rng = np.random.default_rng(seed)
    w = -np.exp(rng.normal(size=C)).astype(dtype)
    u = rng.normal(size=C).astype(dtype)
    k = (key_scale * rng.normal(size=(B, T, C))).astype(dtype)
    v = rng.normal(size=(B, T, C)).astype(dtype)
    gy = rng.normal(size=(B, T, C)).astype(dtype)
    return w, u, k, v, gy


def assert_close(ours, ref, tol, what):
    """max |ours - ref| <= tol * max(1, max |ref|): absolute for O(1) values, relative for sums."""
    err = float(np.max(np.abs(ours - ref)))
    scale = max(1.0, float(np.max(np.abs(ref))))
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} != {ref.dtype}"
    assert err <= tol * scale, f"{what}: max abs diff {err:.3g} (scale {scale:.3g})"
