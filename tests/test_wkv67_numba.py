"""@njit WKV-5/6 and WKV-7 (forward, step, and WKV-7's backward) equal the NumPy references, in
float32 and float64, with a state carried in and out."""
import numpy as np
import pytest
from wkv_checks import assert_close, wkv6_inputs, wkv7_inputs

from tinyrwkv.kernels import get_wkv, wkv6_numpy, wkv7_numpy

wkv6_numba = get_wkv("numba", version=6)
wkv7_numba = get_wkv("numba", version=7)
TOL = {np.float32: 2e-5, np.float64: 1e-12}
B, T, H, N = 2, 24, 3, 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("constant_decay", [False, True])
def test_wkv6_forward_and_step_equal_numpy(dtype, constant_decay):
    r, k, v, w, u, _ = wkv6_inputs(B, T, H, N, dtype=dtype, constant_decay=constant_decay, seed=1)
    wt = (lambda t: w) if constant_decay else (lambda t: w[:, t])
    w_half = w if constant_decay else w[:, :5]
    _, state = wkv6_numpy.forward(r[:, :5], k[:, :5], v[:, :5], w_half, u)
    before = state.copy()
    y0, s0 = wkv6_numpy.forward(r, k, v, w, u, state)
    y1, s1 = wkv6_numba.forward(r, k, v, w, u, state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    y2, s2 = wkv6_numba.step(r[:, 0], k[:, 0], v[:, 0], wt(0), u, state)
    y3, s3 = wkv6_numpy.step(r[:, 0], k[:, 0], v[:, 0], wt(0), u, state)
    assert_close(y2, y3, TOL[dtype], "step y")
    assert_close(s2, s3, TOL[dtype], "step S")
    y4, _ = wkv6_numba.forward(r[:, :1], k[:, :1], v[:, :1], w if constant_decay else w[:, :1], u, state)
    assert_close(y2, y4[:, 0], TOL[dtype], "step vs forward T=1")
    assert np.array_equal(state, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wkv7_forward_step_and_halves_equal_numpy(dtype):
    inputs, _ = wkv7_inputs(B, T, H, N, dtype=dtype, seed=2)
    _, state = wkv7_numpy.forward(*(x[:, :5] for x in inputs))
    before = state.copy()
    y0, s0 = wkv7_numpy.forward(*inputs, state=state)
    y1, s1 = wkv7_numba.forward(*inputs, state=state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    ya, sa = wkv7_numba.forward(*(x[:, :10] for x in inputs), state=state)
    yb, sb = wkv7_numba.forward(*(x[:, 10:] for x in inputs), state=sa)
    assert_close(np.concatenate([ya, yb], 1), y1, TOL[dtype], "halves y")
    assert_close(sb, s1, TOL[dtype], "halves S")
    y2, s2 = wkv7_numba.step(*(x[:, 0] for x in inputs), state=state)
    y3, s3 = wkv7_numpy.step(*(x[:, 0] for x in inputs), state=state)
    assert_close(y2, y3, TOL[dtype], "step y")
    assert_close(s2, s3, TOL[dtype], "step S")
    assert_close(y2, y1[:, 0], TOL[dtype], "step vs forward")
    assert np.array_equal(state, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_state", [False, True])
def test_wkv7_backward_equals_numpy(dtype, with_state):
    inputs, gy = wkv7_inputs(B, T, H, N, dtype=dtype, seed=3)
    state = wkv7_numpy.forward(*(x[:, :4] for x in inputs))[1] if with_state else None
    ref = wkv7_numpy.backward(*inputs, gy, state=state)
    ours = wkv7_numba.backward(*inputs, gy, state=state)
    for name, g1, g0 in zip(wkv7_numpy.INPUT_NAMES, ours, ref):
        assert_close(g1, g0, 5 * TOL[dtype], "g" + name)


def test_bad_shapes_are_named_by_the_numba_backends():
    r, k, v, w, u, _ = wkv6_inputs(1, 2, 2, 4)
    with pytest.raises(ValueError, match=r"wkv6.forward: u must be \(H, N\)"):
        wkv6_numba.forward(r, k, v, w, u[:1])
    (r, w, k, v, a, b), gy = wkv7_inputs(1, 2, 2, 4)
    with pytest.raises(ValueError, match=r"wkv7.backward: gy must be"):
        wkv7_numba.backward(r, w, k, v, a, b, gy[..., :2])
