"""numba.cuda WKV-5/6 and WKV-7 kernels against the NumPy references, on Numba's CUDA simulator in CI
(every CUDA thread is a Python thread: ~70k thread-steps/s, so the shapes are TINY). With
TINYRWKV_REAL_GPU=1 they run on the GPU, plus the ``gpu``-marked ones at real head sizes. The kernels
are compiled for the real CUDA target by tests/test_wkv_cuda.py."""
import numpy as np
import pytest
from wkv_checks import assert_close, wkv6_inputs, wkv7_inputs

from tinyrwkv.kernels import cuda_usable, get_wkv, wkv6_numpy, wkv7_numpy

if not cuda_usable():
    pytest.skip("TINYRWKV_REAL_GPU=1 turned the simulator off, but no CUDA GPU is usable here",
                allow_module_level=True)
wkv6_cuda = get_wkv("cuda", version=6)
wkv7_cuda = get_wkv("cuda", version=7)
TOL = {np.float32: 2e-6, np.float64: 1e-12}
B, T, H, N = 2, 3, 2, 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("constant_decay", [False, True])
def test_wkv6_forward_versions_equal_numpy(version, dtype, constant_decay):
    r, k, v, w, u, _ = wkv6_inputs(B, T, H, N, dtype=dtype, constant_decay=constant_decay, seed=version)
    state = np.random.default_rng(0).normal(size=(B, H, N, N)).astype(dtype)
    before = state.copy()
    y0, s0 = wkv6_numpy.forward(r, k, v, w, u, state)
    y1, s1 = wkv6_cuda.forward(r, k, v, w, u, state, version=version)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    assert np.array_equal(state, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wkv6_step_equals_numpy_and_forward_with_one_token(dtype):
    r, k, v, w, u, _ = wkv6_inputs(3, 1, H, N, dtype=dtype, seed=3)
    state = np.random.default_rng(1).normal(size=(3, H, N, N)).astype(dtype)
    y0, s0 = wkv6_numpy.step(r[:, 0], k[:, 0], v[:, 0], w[:, 0], u, state)
    y1, s1 = wkv6_cuda.step(r[:, 0], k[:, 0], v[:, 0], w[:, 0], u, state)
    y2, _ = wkv6_cuda.forward(r, k, v, w, u, state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    assert_close(y1, y2[:, 0], TOL[dtype], "step vs forward T=1")
    y3, _ = wkv6_cuda.step(r[:, 0], k[:, 0], v[:, 0], w[0, 0], u)       # v5 decay, empty state
    assert_close(y3, wkv6_numpy.step(r[:, 0], k[:, 0], v[:, 0], w[0, 0], u)[0], TOL[dtype], "v5 step")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("version", [1, 2])
def test_wkv7_forward_versions_and_halves_equal_numpy(version, dtype):
    inputs, _ = wkv7_inputs(B, T, H, N, dtype=dtype, seed=4)
    state = np.random.default_rng(2).normal(size=(B, H, N, N)).astype(dtype)
    before = state.copy()
    y0, s0 = wkv7_numpy.forward(*inputs, state=state)
    y1, s1 = wkv7_cuda.forward(*inputs, state=state, version=version)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    ya, sa = wkv7_cuda.forward(*(x[:, :1] for x in inputs), state=state, version=version)
    yb, sb = wkv7_cuda.forward(*(x[:, 1:] for x in inputs), state=sa, version=version)
    assert_close(np.concatenate([ya, yb], 1), y0, TOL[dtype], "halves y")
    assert_close(sb, s0, TOL[dtype], "halves S")
    assert np.array_equal(state, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wkv7_step_equals_numpy_and_forward_with_one_token(dtype):
    inputs, _ = wkv7_inputs(3, 1, H, N, dtype=dtype, seed=5)
    state = np.random.default_rng(3).normal(size=(3, H, N, N)).astype(dtype)
    y0, s0 = wkv7_numpy.step(*(x[:, 0] for x in inputs), state=state)
    y1, s1 = wkv7_cuda.step(*(x[:, 0] for x in inputs), state=state)
    y2, _ = wkv7_cuda.forward(*inputs, state=state)
    assert_close(y1, y0, TOL[dtype], "y")
    assert_close(s1, s0, TOL[dtype], "S")
    assert_close(y1, y2[:, 0], TOL[dtype], "step vs forward T=1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wkv7_backward_equals_numpy(dtype):
    inputs, gy = wkv7_inputs(B, T, H, N, dtype=dtype, seed=6)
    state = (0.5 * np.random.default_rng(4).normal(size=(B, H, N, N))).astype(dtype)
    ref = wkv7_numpy.backward(*inputs, gy, state=state)
    ours = wkv7_cuda.backward(*inputs, gy, state=state)
    for name, g1, g0 in zip(wkv7_numpy.INPUT_NAMES, ours, ref):
        assert_close(g1, g0, 5 * TOL[dtype], "g" + name)


def test_bad_versions_and_head_sizes_are_named():
    r, k, v, w, u, _ = wkv6_inputs(1, 1, 1, 65)
    with pytest.raises(ValueError, match="heads of at most 64 channels"):
        wkv6_cuda.forward(r, k, v, w, u)
    with pytest.raises(ValueError, match=r"wkv6.forward: version must be one of \(1, 2\), got 3"):
        wkv6_cuda.forward(r[..., :4], k[..., :4], v[..., :4], w[..., :4], u[..., :4], version=3)
    inputs, gy = wkv7_inputs(1, 1, 1, 4)
    with pytest.raises(ValueError, match=r"wkv7.forward: version must be one of \(1, 2\), got 0"):
        wkv7_cuda.forward(*inputs, version=0)
    with pytest.raises(ValueError, match=r"wkv7.backward: gy must be"):
        wkv7_cuda.backward(*inputs, gy[..., :2])


# --------------------------------------------------------------------------- real GPU only

@pytest.mark.gpu
@pytest.mark.parametrize("version", [1, 2])
def test_real_gpu_at_real_head_size(version):
    r, k, v, w, u, _ = wkv6_inputs(2, 64, 4, 64, seed=7)
    y0, s0 = wkv6_numpy.forward(r, k, v, w, u)
    y1, s1 = wkv6_cuda.forward(r, k, v, w, u, version=version)
    assert_close(y1, y0, 2e-5, "wkv6 y")
    assert_close(s1, s0, 2e-5, "wkv6 S")
    inputs, gy = wkv7_inputs(2, 64, 4, 64, seed=8)
    y0, s0 = wkv7_numpy.forward(*inputs)
    y1, s1 = wkv7_cuda.forward(*inputs, version=version)
    assert_close(y1, y0, 2e-5, "wkv7 y")
    assert_close(s1, s0, 2e-5, "wkv7 S")
    if version == 1:
        for g1, g0 in zip(wkv7_cuda.backward(*inputs, gy), wkv7_numpy.backward(*inputs, gy)):
            assert_close(g1, g0, 1e-4, "wkv7 grad")
