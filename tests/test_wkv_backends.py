"""The backend switch: names, 'auto', the no-GPU message, and one contract for every backend."""
import inspect

import numpy as np
import pytest

import tinyrwkv.kernels as kernels
from tinyrwkv.kernels import available_backends, get_wkv, wkv_numpy

ALL = ("numpy", "numba") + (("cuda",) if kernels.cuda_usable() else ())   # cuda: the simulator in CI

simulator_only = pytest.mark.skipif(not kernels.cuda_simulator_on(),
                                    reason="checks the simulator set-up of CI (TINYRWKV_REAL_GPU=1 turns it off)")


def test_get_wkv_returns_the_named_module():
    for name in ALL:
        assert get_wkv(name).__name__ == f"tinyrwkv.kernels.wkv_{name}"


@simulator_only
def test_auto_never_picks_the_simulator():
    assert not kernels.real_gpu_present()
    assert get_wkv("auto").__name__ == "tinyrwkv.kernels.wkv_numba"
    assert get_wkv().__name__ == "tinyrwkv.kernels.wkv_numba"


def test_auto_picks_cuda_when_a_real_gpu_is_present(monkeypatch):
    monkeypatch.setattr(kernels, "real_gpu_present", lambda: True)
    assert get_wkv("auto").__name__ == "tinyrwkv.kernels.wkv_cuda"


def test_cuda_without_gpu_or_simulator_says_what_to_do(monkeypatch):
    monkeypatch.setattr(kernels, "cuda_simulator_on", lambda: False)
    monkeypatch.setattr(kernels, "real_gpu_present", lambda: False)
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU") as err:
        get_wkv("cuda")
    assert "NUMBA_ENABLE_CUDASIM=1" in str(err.value)
    assert "before numba is first imported" in str(err.value)
    assert "get_wkv('numba')" in str(err.value)
    assert get_wkv("auto").__name__ == "tinyrwkv.kernels.wkv_numba"
    assert "cuda" not in available_backends()


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="unknown WKV backend 'tpu'; choose one of numpy, numba, cuda, auto"):
        get_wkv("tpu")


@simulator_only
def test_available_backends_says_what_runs_here():
    found = available_backends()
    assert list(found)[:2] == ["numba", "numpy"]        # no real GPU here: 'auto' = the first = numba
    assert "simulator" in found["cuda"]
    assert all(isinstance(d, str) and d for d in found.values())


@pytest.mark.parametrize("name", ALL)
def test_every_backend_has_the_contract(name):
    backend = get_wkv(name)
    for fn, params in (("wkv_forward", ["w", "u", "k", "v", "state"]),
                       ("wkv_backward", ["w", "u", "k", "v", "gy"]),
                       ("wkv_step", ["w", "u", "k", "v", "state"])):
        assert list(inspect.signature(getattr(backend, fn)).parameters)[:5] == params, (name, fn)
    assert "dL/dtime_decay = gw * w" in backend.wkv_backward.__doc__      # who chains time_decay


@pytest.mark.parametrize("name", ALL)
def test_every_backend_names_bad_arguments(name):
    backend = get_wkv(name)
    rng = np.random.default_rng(0)
    w, u = -np.ones(4, np.float32), np.zeros(4, np.float32)
    k = v = rng.normal(size=(2, 3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"wkv_forward: u must be \(C,\) = \(4,\), got \(3,\)"):
        backend.wkv_forward(w, u[:3], k, v)
    with pytest.raises(ValueError, match=r"wkv_forward: state pp must be \(B, C\) = \(2, 4\), got \(1, 4\)"):
        backend.wkv_forward(w, u, k, v, (np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((1, 4))))
    with pytest.raises(ValueError, match=r"wkv_forward: k and v must both be \(B, T, C\)"):
        backend.wkv_forward(w, u, k[0], v[0])
    with pytest.raises(ValueError, match=r"wkv_backward: gy must be"):
        backend.wkv_backward(w, u, k, v, k[:, :1])
    with pytest.raises(ValueError, match=r"wkv_step: w must be \(C,\)"):
        backend.wkv_step(w[:2], u, k[:, 0], v[:, 0])


@pytest.mark.parametrize("name", ALL)
def test_every_backend_agrees_on_a_tiny_case(name):
    rng = np.random.default_rng(1)
    w, u = -np.exp(rng.normal(size=3)), rng.normal(size=3)
    k, v, gy = (rng.normal(size=(1, 5, 3)) for _ in range(3))
    backend = get_wkv(name)
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v)
    y1, s1 = backend.wkv_forward(w, u, k, v)
    assert np.allclose(y1, y0, atol=1e-12)
    for a, b in zip(backend.wkv_backward(w, u, k, v, gy), wkv_numpy.wkv_backward(w, u, k, v, gy)):
        assert np.allclose(a, b, atol=1e-12)
    y2, _ = backend.wkv_step(w, u, k[:, 0], v[:, 0], s1)
    assert np.allclose(y2, wkv_numpy.wkv_step(w, u, k[:, 0], v[:, 0], s0)[0], atol=1e-12)


@pytest.mark.parametrize("version, family", [(4, "wkv"), (5, "wkv6"), (6, "wkv6"), (7, "wkv7")])
def test_get_wkv_picks_the_version_family(version, family):
    for name in ("numpy", "numba"):
        assert get_wkv(name, version=version).__name__ == f"tinyrwkv.kernels.{family}_{name}"
    assert get_wkv("auto", version=version).__name__.startswith(f"tinyrwkv.kernels.{family}_")
    with pytest.raises(ValueError, match="no WKV kernels for RWKV version 8; choose one of 4, 5, 6, 7"):
        get_wkv("numpy", version=8)


@pytest.mark.parametrize("name", ALL)
def test_every_wkv6_and_wkv7_backend_has_the_contract(name):
    v6, v7 = get_wkv(name, version=6), get_wkv(name, version=7)
    for fn in ("forward", "step"):
        assert list(inspect.signature(getattr(v6, fn)).parameters)[:6] == ["r", "k", "v", "w", "u", "state"]
        assert list(inspect.signature(getattr(v7, fn)).parameters)[:7] == ["r", "w", "k", "v", "a", "b", "state"]
    assert list(inspect.signature(v7.backward).parameters)[:8] == ["r", "w", "k", "v", "a", "b", "gy", "state"]
