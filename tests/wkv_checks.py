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


def wkv6_inputs(B, T, H, N, seed=0, dtype=np.float32, constant_decay=False):
    """r, k, v, w, u, gy for WKV-5/6: w in (0, 1) as (B, T, H, N), or (H, N) with constant_decay (v5)."""
    rng = np.random.default_rng(seed)
    r, k, v, gy = (rng.normal(size=(B, T, H, N)).astype(dtype) for _ in range(4))
    w_shape = (H, N) if constant_decay else (B, T, H, N)
    w = np.exp(-np.exp(rng.normal(-1.0, 1.0, size=w_shape))).astype(dtype)
    u = rng.normal(size=(H, N)).astype(dtype)
    return r, k, v, w, u, gy


def wkv7_inputs(B, T, H, N, seed=0, dtype=np.float32):
    """(r, w, k, v, a, b) and gy for WKV-7, built like the model builds them: w in (0.545, 1),
    a = -kk, b = kk * iclr with kk unit-length per head and iclr in (0, 1)."""
    rng = np.random.default_rng(seed)
    r, k, v, gy = (rng.normal(size=(B, T, H, N)) for _ in range(4))
    w = np.exp(-np.exp(-0.5) / (1 + np.exp(-rng.normal(size=(B, T, H, N)))))
    kk = rng.normal(size=(B, T, H, N))
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    iclr = 1 / (1 + np.exp(-rng.normal(size=(B, T, H, N))))
    inputs = tuple(x.astype(dtype) for x in (r, w, k, v, -kk, kk * iclr))
    return inputs, gy.astype(dtype)
