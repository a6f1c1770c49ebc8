"""The WKV reference: closed form == stable recurrence, chunking with state == one pass, the step
equals the forward, and the backward equals finite differences (float64) and torch autograd."""
import numpy as np
import pytest

from tinyrwkv.kernels import get_wkv
from tinyrwkv.kernels.wkv_numpy import (initial_state, wkv_backward, wkv_closed_form, wkv_forward,
                                        wkv_step)
from tinyrwkv.nn.gradcheck import numerical_gradient, relative_error


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


def test_step_by_step_equals_forward():
    w, u, k, v = rand_inputs(T=6)
    y, s = wkv_forward(w, u, k, v)
    state = None
    for t in range(6):
        y_t, state = wkv_step(w, u, k[:, t], v[:, t], state)
        assert np.allclose(y_t, y[:, t], atol=1e-12)
    for a, b in zip(state, s):
        assert np.allclose(a, b, atol=1e-12)


def test_forward_and_step_leave_the_input_state_alone():
    w, u, k, v = rand_inputs()
    _, state = wkv_forward(w, u, k[:, :3], v[:, :3])
    before = [s.copy() for s in state]
    wkv_forward(w, u, k, v, state)
    wkv_step(w, u, k[:, 0], v[:, 0], state)
    for a, b in zip(state, before):
        assert np.array_equal(a, b)


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


# --------------------------------------------------------------------------- backward


def _loss_and_grads(B=2, T=7, C=3, seed=1):
    w, u, k, v = rand_inputs(B, T, C, seed=seed)
    gy = np.random.default_rng(seed + 100).normal(size=(B, T, C))
    loss = lambda: float(np.sum(wkv_forward(w, u, k, v)[0] * gy))   # noqa: E731  L = sum(y * gy)
    return (w, u, k, v), loss, wkv_backward(w, u, k, v, gy)


def test_backward_equals_finite_differences_float64():
    inputs, loss, grads = _loss_and_grads()
    for name, x, g in zip("wukv", inputs, grads):
        numeric = numerical_gradient(loss, x)
        assert relative_error(g, numeric) < 1e-8, name


def test_backward_with_large_keys_equals_finite_differences():
    # Keys around 60..90: e^k overflows float32 and would lose everything in a naive float64
    # sum; the stable backward must still be exact, and finite.
    (w, u, k, v), _, _ = _loss_and_grads()
    k = k * 10 + 75.0
    gy = np.random.default_rng(7).normal(size=k.shape)
    loss = lambda: float(np.sum(wkv_forward(w, u, k, v)[0] * gy))   # noqa: E731
    grads = wkv_backward(w, u, k, v, gy)
    for name, x, g in zip("wukv", (w, u, k, v), grads):
        assert np.all(np.isfinite(g)), name
        assert relative_error(g, numerical_gradient(loss, x)) < 1e-7, name


def test_time_decay_gradient_is_gw_times_w():
    # The backward returns dL/dw; with w = -exp(time_decay), dL/dtime_decay = gw * w.
    (w, u, k, v), _, _ = _loss_and_grads()
    time_decay = np.log(-w)
    gy = np.random.default_rng(3).normal(size=k.shape)
    loss = lambda: float(np.sum(wkv_forward(-np.exp(time_decay), u, k, v)[0] * gy))   # noqa: E731
    gw, *_ = wkv_backward(w, u, k, v, gy)
    assert relative_error(gw * w, numerical_gradient(loss, time_decay)) < 1e-8


def torch_wkv(w, u, k, v):
    """The plain (unstabilised) recurrence in torch, an independent oracle for autograd."""
    import torch

    B, T, C = k.shape
    num = torch.zeros(B, C, dtype=k.dtype)
    den = torch.zeros(B, C, dtype=k.dtype)
    ys = []
    for t in range(T):
        now = torch.exp(u + k[:, t])
        ys.append((num + now * v[:, t]) / (den + now))
        num = torch.exp(w) * num + torch.exp(k[:, t]) * v[:, t]
        den = torch.exp(w) * den + torch.exp(k[:, t])
    return torch.stack(ys, dim=1)


def test_backward_equals_torch_autograd():
    torch = pytest.importorskip("torch")
    (w, u, k, v), _, _ = _loss_and_grads(B=3, T=16, C=5, seed=4)
    gy = np.random.default_rng(11).normal(size=k.shape)
    time_decay = torch.tensor(np.log(-w), requires_grad=True)
    tu, tk, tv = (torch.tensor(a, requires_grad=True) for a in (u, k, v))
    y = torch_wkv(-torch.exp(time_decay), tu, tk, tv)
    (y * torch.tensor(gy)).sum().backward()

    assert np.allclose(y.detach().numpy(), wkv_forward(w, u, k, v)[0], atol=1e-12)
    gw, gu, gk, gv = wkv_backward(w, u, k, v, gy)
    assert np.allclose(gw * w, time_decay.grad.numpy(), atol=1e-10)
    for ours, theirs in ((gu, tu), (gk, tk), (gv, tv)):
        assert np.allclose(ours, theirs.grad.numpy(), atol=1e-10)


def test_backward_stays_finite_in_float32_with_huge_keys():
    w, u, k, v = rand_inputs(T=20, dtype=np.float32)
    k = np.where(np.arange(20)[None, :, None] % 2 == 0, 200.0, -200.0).astype(np.float32) + k
    gy = np.ones_like(k)
    for g in wkv_backward(w, u, k, v, gy):
        assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------- bad input


def test_bad_shapes_name_the_argument():
    w, u, k, v = rand_inputs()
    with pytest.raises(ValueError, match=r"u must be \(C,\)"):
        wkv_forward(w, u[:2], k, v)
    with pytest.raises(ValueError, match="unknown WKV backend 'tpu'"):
        get_wkv("tpu")


def test_bad_backward_and_step_shapes_name_the_argument():
    w, u, k, v = rand_inputs(B=2, T=9, C=4)
    with pytest.raises(ValueError, match=r"wkv_backward: gy must be \(B, T, C\) = \(2, 9, 4\)"):
        wkv_backward(w, u, k, v, k[:, :3])
    with pytest.raises(ValueError, match=r"wkv_step: k and v must both be \(B, C\)"):
        wkv_step(w, u, k, v, None)
    state = initial_state(3, 4)
    with pytest.raises(ValueError, match=r"wkv_step: state aa must be \(B, C\) = \(2, 4\), got \(3, 4\)"):
        wkv_step(w, u, k[:, 0], v[:, 0], state)
    with pytest.raises(ValueError, match=r"w must be \(C,\) = \(4,\)"):
        wkv_backward(w[:3], u, k, v, k)
