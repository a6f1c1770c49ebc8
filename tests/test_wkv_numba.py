"""@njit WKV (forward, backward, step) equals the NumPy reference at real-ish shapes."""
import functools

import numpy as np
import pytest
from wkv_checks import assert_close, wkv_inputs

from tinyrwkv.kernels import wkv_numba, wkv_numpy

B, T, C = 2, 256, 64
rand_inputs = functools.partial(wkv_inputs, B=B, T=T, C=C)

TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_equals_numpy(dtype):
    w, u, k, v, _ = rand_inputs(dtype=dtype, seed=1)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :10], v[:, :10])
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v, state)
    y1, s1 = wkv_numba.wkv_forward(w, u, k, v, state)
    assert_close(y1, y0, TOL[dtype], "y")
    for name, a, b in zip(("aa", "bb", "pp"), s1, s0):
        assert_close(a, b, TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_equals_numpy(dtype):
    w, u, k, v, gy = rand_inputs(dtype=dtype, seed=2)
    ref = wkv_numpy.wkv_backward(w, u, k, v, gy)
    ours = wkv_numba.wkv_backward(w, u, k, v, gy)
    for name, a, b in zip(("gw", "gu", "gk", "gv"), ours, ref):
        assert_close(a, b, TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_equals_numpy_and_forward_with_one_token(dtype):
    w, u, k, v, _ = rand_inputs(dtype=dtype, seed=3)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :50], v[:, :50])
    y0, s0 = wkv_numpy.wkv_step(w, u, k[:, 50], v[:, 50], state)
    y1, s1 = wkv_numba.wkv_step(w, u, k[:, 50], v[:, 50], state)
    y2, s2 = wkv_numba.wkv_forward(w, u, k[:, 50:51], v[:, 50:51], state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(y1, y2[:, 0], TOL[dtype], "y vs forward T=1")
    for a, b, c in zip(s1, s0, s2):
        assert_close(a, b, TOL[dtype], "state")
        assert_close(a, c, TOL[dtype], "state vs forward T=1")


def test_state_chaining_equals_one_pass():
    w, u, k, v, _ = rand_inputs(seed=4, dtype=np.float64)
    y, s = wkv_numba.wkv_forward(w, u, k, v)
    y1, s1 = wkv_numba.wkv_forward(w, u, k[:, :100], v[:, :100])
    y2, s2 = wkv_numba.wkv_forward(w, u, k[:, 100:], v[:, 100:], s1)
    state = s2
    ys = []
    for t in range(3):                                   # and then decode on
        y_t, state = wkv_numba.wkv_step(w, u, v[:, t], k[:, t], state)
        ys.append(y_t)
    assert_close(np.concatenate([y1, y2], 1), y, 1e-12, "y chained")
    y_ref, _ = wkv_numpy.wkv_forward(w, u, np.concatenate([k, v[:, :3]], 1), np.concatenate([v, k[:, :3]], 1))
    assert_close(np.stack(ys, 1), y_ref[:, T:], 1e-12, "decoded after chaining")


def test_large_keys_stay_finite_and_match():
    w, u, k, v, gy = rand_inputs(T=64, seed=5, key_scale=60.0)      # keys of +-60..200
    k[:, ::7] = 200.0
    y0, _ = wkv_numpy.wkv_forward(w, u, k, v)
    y1, s1 = wkv_numba.wkv_forward(w, u, k, v)
    assert np.all(np.isfinite(y1)) and all(np.all(np.isfinite(s)) for s in s1)
    assert_close(y1, y0, 1e-5, "y")
    for a, b in zip(wkv_numba.wkv_backward(w, u, k, v, gy), wkv_numpy.wkv_backward(w, u, k, v, gy)):
        assert np.all(np.isfinite(a))
        assert_close(a, b, 1e-5, "grad")


def test_float32_forward_blocks_of_channels_cover_every_channel():
    """The float32 forward runs blocks of CHANNEL_BLOCK channels: a width that is not a multiple of it
    (a partial last block), several sequences, and a carried-in state all match the reference."""
    C = wkv_numba.CHANNEL_BLOCK * 2 + 13
    w, u, k, v, _ = wkv_inputs(B=3, T=40, C=C, dtype=np.float32, seed=5)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :7], v[:, :7])
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v, state)
    y1, s1 = wkv_numba.wkv_forward(w, u, k, v, state)
    assert_close(y1, y0, TOL[np.float32], "y")
    for name, a, b in zip(("aa", "bb", "pp"), s1, s0):
        assert_close(a, b, TOL[np.float32], name)
