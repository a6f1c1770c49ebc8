"""The numba.cuda kernels of the hot path (tinyrwkv/kernels/cuda_ops.py), each version against NumPy.

On the CUDA simulator in CI (conftest), at tiny shapes: each CUDA thread is a Python thread. Odd
sizes (N = 37, K = 45 ...) make the last block and the last tile stick out past the data, so the
bounds checks are exercised. The compile test for the real CUDA target lives in test_cuda_runner.py.
"""
import numpy as np
import pytest

from tinyrwkv.kernels import cuda_usable

if not cuda_usable():
    pytest.skip("TINYRWKV_REAL_GPU=1 turned the simulator off, but no CUDA GPU is usable here",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from tinyrwkv.kernels import cuda_ops as O  # noqa: E402
from tinyrwkv.nn import functional as F  # noqa: E402

rng = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def close(a, b, tol, what):
    err = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
    assert err <= tol, f"{what}: max |diff| = {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("wdtype, accumulate", [(np.float32, False), (np.float16, False), (np.float32, True)])
@pytest.mark.parametrize("version", O.MATVEC_VERSIONS)
def test_matvec_versions_equal_numpy(version, wdtype, accumulate):
    B, N, K = (5, 3, 45) if version == 3 else (2, 5, 45)     # v3: B > MATVEC_BATCH, two groups
    W, x, y0 = rand(N, K, dtype=wdtype), rand(B, K), rand(B, N)
    d_y = cuda.to_device(y0)
    O.matvec(cuda.to_device(W), cuda.to_device(x), d_y, accumulate=accumulate, version=version)
    want = O.matvec_reference(W, x) + (y0 if accumulate else 0)
    close(d_y.copy_to_host(), want, 2e-5, f"matvec v{version} {np.dtype(wdtype).name}")


@pytest.mark.parametrize("wdtype", [np.float32, np.float16])
@pytest.mark.parametrize("version", O.MATMUL_VERSIONS)
def test_matmul_versions_equal_numpy(version, wdtype):
    M, N, K = 19, 18, 37                      # 2 x 2 tiles of 16, the last ones mostly empty
    X, W, Y0 = rand(M, K), rand(N, K, dtype=wdtype), rand(M, N)
    for accumulate in (False, True):
        d_y = cuda.to_device(Y0)
        O.matmul(cuda.to_device(X), cuda.to_device(W), d_y, accumulate=accumulate, version=version)
        close(d_y.copy_to_host(), O.matvec_reference(W, X) + (Y0 if accumulate else 0), 3e-5,
              f"matmul v{version} accumulate={accumulate}")


@pytest.mark.parametrize("version", O.LAYERNORM_VERSIONS)
def test_layernorm_versions_equal_numpy(version):
    M, C = 3, 200                               # C > LN_THREADS: each v2 thread sums two columns
    x = rand(M, C) * 3 + 1.5
    w, b = rand(C), rand(C)
    d_y = cuda.device_array((M, C), np.float32)
    O.layernorm(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), 1e-5, d_y, version=version)
    close(d_y.copy_to_host(), O.layernorm_reference(x, w, b, 1e-5), 2e-6, f"layernorm v{version}")


def test_warp_sum_gives_lane_zero_the_sum_of_the_warp():
    @cuda.jit
    def kernel(values, out):
        i = cuda.grid(1)
        total = O.warp_sum(values[i])
        if cuda.threadIdx.x % O.WARP == 0:
            out[i // O.WARP] = total

    values = rng.integers(-100, 100, 64).astype(np.float32)
    out = np.zeros(2, np.float32)
    kernel[1, 64](values, out)
    np.testing.assert_array_equal(out, values.reshape(2, 32).sum(axis=1))


def test_elementwise_kernels_equal_numpy():
    from tinyrwkv.models.rwkv import token_mix, token_shift
    B, T, C, V = 2, 3, 5, 11
    x, prev = rand(B, T, C), rand(B, C)
    mus = [rng.uniform(0, 1, C).astype(np.float32) for _ in range(3)]
    xx = token_shift(x, prev)
    outs = [cuda.device_array((B, T, C), np.float32) for _ in range(3)]
    O.elementwise(O.shift_mix3, B * T * C, x, prev, *mus, *outs)
    for mu, out in zip(mus, outs):
        close(out.copy_to_host(), token_mix(xx, x - xx, mu), 1e-6, "shift_mix3")
    O.elementwise(O.shift_mix2, B * T * C, x, prev, mus[0], mus[2], outs[0], outs[1])
    close(outs[1].copy_to_host(), token_mix(xx, x - xx, mus[2]), 1e-6, "shift_mix2")
    d_prev = cuda.to_device(prev)
    O.elementwise(O.save_last, B * C, x, d_prev)
    np.testing.assert_array_equal(d_prev.copy_to_host(), x[:, -1])
    # one token: the mix itself moves the shift state along (and reads the old one first)
    d_prev, one = cuda.to_device(prev), x[:, :1].copy()
    O.elementwise(O.shift_mix3, B * C, one, d_prev, *mus, *(o[:, :1].copy() for o in (x, x, x)))
    np.testing.assert_array_equal(d_prev.copy_to_host(), one[:, 0])
    outs1 = [cuda.device_array((B, 1, C), np.float32) for _ in range(2)]
    d_prev = cuda.to_device(prev)
    O.elementwise(O.shift_mix2, B * C, one, d_prev, mus[0], mus[2], *outs1)
    close(outs1[1].copy_to_host(), token_mix(prev[:, None], one - prev[:, None], mus[2]), 1e-6, "shift_mix2 T=1")
    np.testing.assert_array_equal(d_prev.copy_to_host(), one[:, 0])

    r, y, k = rand(B * T, C) * 5, rand(B * T, C), rand(B * T, C)
    d_y = cuda.to_device(y)
    O.elementwise(O.sigmoid_mul, y.size, cuda.to_device(r), d_y)
    close(d_y.copy_to_host(), y * F.sigmoid(r), 1e-6, "sigmoid_mul")
    d_k = cuda.to_device(k)
    O.elementwise(O.squared_relu, k.size, d_k)
    close(d_k.copy_to_host(), F.squared_relu(k), 1e-6, "squared_relu")
    d_x = cuda.to_device(x.reshape(B * T, C))
    O.elementwise(O.gate_add, y.size, d_x, cuda.to_device(r), cuda.to_device(y))
    close(d_x.copy_to_host(), x.reshape(B * T, C) + F.sigmoid(r) * y, 1e-6, "gate_add")

    emb = rand(V, C, dtype=np.float16)
    tokens = np.array([3, 0, 10, 3], np.int64)
    out = cuda.device_array((4, C), np.float32)
    O.elementwise(O.embedding_gather, out.size, cuda.to_device(emb), cuda.to_device(tokens), out)
    np.testing.assert_array_equal(out.copy_to_host(), emb[tokens].astype(np.float32))


def test_bad_versions_are_named():
    W, x = cuda.to_device(rand(3, 4)), cuda.to_device(rand(1, 4))
    y = cuda.device_array((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"matvec: version must be one of \(1, 2, 3\), got 7"):
        O.matvec(W, x, y, version=7)
    with pytest.raises(ValueError, match="matmul: version must be one of"):
        O.matmul(x, W, y, version=0)
    with pytest.raises(ValueError, match="layernorm: version must be one of"):
        O.layernorm(x, x, x, 1e-5, x, version=3)
