"""The WKV reference: closed form == stable recurrence, chunking with state == one pass."""
import numpy as np
import pytest

from tinyrwkv.kernels import get_wkv
from tinyrwkv.kernels.wkv_numpy import wkv_closed_form, wkv_forward


def rand_inputs(B=2, T=9, C=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = -np.exp(rng.normal(size=C)).astype(dtype)
    u = rng.normal(size=C).astype(dtype)
    k = rng.normal(size=(B, T, C)).astype(dtype)
    v = rng.normal(size=(B, T, C)).astype(dtype)
    return w, u, k, v


def test_closed_form_equals_recurrence():
    w, u, k, v = rand_inputs()
    y, _ = wkv_forward(w, u, k, v)
    assert np.allclose(y, wkv_closed_form(w, u, k, v), atol=1e-12)


def test_state_carries_over_chunks():
    w, u, k, v = rand_inputs(T=12)
    y, s = wkv_forward(w, u, k, v)
    y1, s1 = wkv_forward(w, u, k[:, :5], v[:, :5])
    y2, s2 = wkv_forward(w, u, k[:, 5:], v[:, 5:], s1)
    assert np.allclose(np.concatenate([y1, y2], 1), y, atol=1e-12)
    for a, b in zip(s, s2):
        assert np.allclose(a, b, atol=1e-12)


def test_stable_form_survives_large_keys():
    w, u, k, v = rand_inputs(dtype=np.float32)
    k = k * 0 + 200.0                                   # e^200 overflows float32
    with np.errstate(over="ignore", invalid="ignore"):
        naive = wkv_closed_form(w, u, k, v)
    y, _ = wkv_forward(w, u, k, v)
    assert not np.all(np.isfinite(naive))
    assert np.all(np.isfinite(y))


def test_numba_equals_numpy():
    w, u, k, v = rand_inputs(B=3, T=40, C=16, dtype=np.float32, seed=5)
    y0, s0 = get_wkv("numpy").wkv_forward(w, u, k, v)
    y1, s1 = get_wkv("numba").wkv_forward(w, u, k, v)
    assert np.allclose(y0, y1, atol=1e-5)
    for a, b in zip(s0, s1):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bad_shapes_name_the_argument():
    w, u, k, v = rand_inputs()
    with pytest.raises(ValueError, match=r"u must be \(C,\)"):
        wkv_forward(w, u[:2], k, v)
    with pytest.raises(ValueError, match="unknown WKV backend 'tpu'"):
        get_wkv("tpu")
