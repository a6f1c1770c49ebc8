"""The WKV-5/6 and WKV-7 references: equal to the `rwkv` pip package's torch loops (the math of
RWKV_x070 and att_seq_v6_0), state carried over halves == one pass, step == forward with T = 1,
and the WKV-7 backward equals finite differences (float64) and torch autograd."""
import numpy as np
import pytest
from wkv_checks import wkv6_inputs, wkv7_inputs

from tinyrwkv.kernels import wkv6_numpy, wkv7_numpy
from tinyrwkv.nn.gradcheck import numerical_gradient, relative_error

torch = pytest.importorskip("torch")


# --------------------------------------------------------------------------- WKV-5/6

def torch_wkv6(r, k, v, w, u, s):
    """The loop of rwkv/model.py att_seq_v6_0 (one sequence, all heads; s (H, N, N) [key, value])."""
    r, k, v, w, u, s = (torch.tensor(x) for x in (r, k, v, w, u, s))
    T, H, N = r.shape
    r, v = r.transpose(0, 1), v.transpose(0, 1)               # (H, T, N)
    k = k.permute(1, 2, 0)                                    # (H, N, T)
    w = w.view(T, H, N, 1)
    out = torch.empty((T, H, N), dtype=r.dtype)
    for t in range(T):
        at = k[:, :, t:t + 1] @ v[:, t:t + 1, :]
        out[t] = (r[:, t:t + 1, :] @ (u.view(H, N, 1) * at + s)).squeeze(1)
        s = at + w[t] * s
    return out.numpy(), s.numpy()


def test_wkv6_equals_the_pip_package_loop():
    r, k, v, w, u, _ = wkv6_inputs(2, 7, 3, 4, dtype=np.float64)
    s0 = np.random.default_rng(1).normal(size=(2, 3, 4, 4))
    y, s = wkv6_numpy.forward(r, k, v, w, u, s0)
    for b in range(2):
        y_ref, s_ref = torch_wkv6(r[b], k[b], v[b], w[b], u, s0[b])
        assert np.allclose(y[b], y_ref, atol=1e-12) and np.allclose(s[b], s_ref, atol=1e-12)


def test_wkv5_constant_decay_equals_wkv6_with_the_decay_repeated():
    r, k, v, w, u, _ = wkv6_inputs(2, 5, 2, 3, dtype=np.float64, constant_decay=True)
    y5, s5 = wkv6_numpy.forward(r, k, v, w, u)
    y6, s6 = wkv6_numpy.forward(r, k, v, np.broadcast_to(w, r.shape), u)
    assert np.array_equal(y5, y6) and np.array_equal(s5, s6)


@pytest.mark.parametrize("constant_decay", [False, True])
def test_wkv6_halves_and_steps_equal_one_pass(constant_decay):
    r, k, v, w, u, _ = wkv6_inputs(2, 8, 2, 4, dtype=np.float64, constant_decay=constant_decay)
    y, s = wkv6_numpy.forward(r, k, v, w, u)
    cut = (lambda x, sl: x if constant_decay else x[:, sl])
    y1, s1 = wkv6_numpy.forward(r[:, :3], k[:, :3], v[:, :3], cut(w, slice(0, 3)), u)
    before = s1.copy()
    y2, s2 = wkv6_numpy.forward(r[:, 3:], k[:, 3:], v[:, 3:], cut(w, slice(3, None)), u, s1)
    assert np.allclose(np.concatenate([y1, y2], 1), y, atol=1e-12) and np.allclose(s2, s, atol=1e-12)
    assert np.array_equal(s1, before)                                    # the input state is untouched
    state = None
    for t in range(8):
        y_t, state = wkv6_numpy.step(r[:, t], k[:, t], v[:, t], w if constant_decay else w[:, t], u, state)
        assert np.allclose(y_t, y[:, t], atol=1e-12)
    assert np.allclose(state, s, atol=1e-12)


def test_wkv6_bad_shapes_are_named():
    r, k, v, w, u, _ = wkv6_inputs(2, 3, 2, 4)
    with pytest.raises(ValueError, match=r"wkv6.forward: w must be \(B, T, H, N\) = \(2, 3, 2, 4\) .* or \(H, N\)"):
        wkv6_numpy.forward(r, k, v, w[:, :2], u)
    with pytest.raises(ValueError, match=r"wkv6.forward: u must be \(H, N\) = \(2, 4\), got \(4,\)"):
        wkv6_numpy.forward(r, k, v, w, u[0])
    with pytest.raises(ValueError, match=r"wkv6.forward: state must be \(B, H, N, N\) = \(2, 2, 4, 4\)"):
        wkv6_numpy.forward(r, k, v, w, u, np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match=r"wkv6.step: r must be \(B, H, N\)"):
        wkv6_numpy.step(r, k, v, w, u)
    with pytest.raises(ValueError, match=r"wkv6.forward: v must be \(B, T, H, N\) = \(2, 3, 2, 4\) like r"):
        wkv6_numpy.forward(r, k, v[:, :1], w, u)


# --------------------------------------------------------------------------- WKV-7

def torch_wkv7_loop(r, w, k, v, a, b, s):
    """The loop of rwkv/model.py RWKV_x070_TMix_seq (torch tensors, one sequence: (T, H, N); s (H, N, N))."""
    T, H, N = r.shape
    ys = []
    for t in range(T):
        vk = v[t].view(H, N, 1) @ k[t].view(H, 1, N)
        ab = a[t].view(H, N, 1) @ b[t].view(H, 1, N)           # the package passes a = -kk, b = kk * iclr
        s = s * w[t].view(H, 1, N) + s @ ab + vk
        ys.append((s @ r[t].view(H, N, 1)).view(H, N))
    return torch.stack(ys), s


def test_wkv7_equals_the_pip_package_loop():
    inputs, _ = wkv7_inputs(2, 6, 3, 4, dtype=np.float64)
    s0 = np.random.default_rng(2).normal(size=(2, 3, 4, 4))
    y, s = wkv7_numpy.forward(*inputs, state=s0)
    for bi in range(2):
        y_ref, s_ref = torch_wkv7_loop(*(torch.tensor(x[bi]) for x in inputs), torch.tensor(s0[bi]))
        assert np.allclose(y[bi], y_ref.numpy(), atol=1e-12) and np.allclose(s[bi], s_ref.numpy(), atol=1e-12)


def test_wkv7_delta_rule_replaces_the_value_stored_under_a_key():
    # w = 1, iclr = 1, k = kk: S <- S (I - kk kk^T) + v kk^T, so reading with kk returns exactly v.
    N = 5
    rng = np.random.default_rng(3)
    kk = rng.normal(size=N)
    kk /= np.linalg.norm(kk)
    one = lambda x: x.reshape(1, 1, 1, N)                                # noqa: E731
    S = rng.normal(size=(1, 1, N, N))
    v_new = rng.normal(size=N)
    y, S2 = wkv7_numpy.forward(one(kk), one(np.ones(N)), one(kk), one(v_new), one(-kk), one(kk), S)
    assert np.allclose(y.ravel(), v_new, atol=1e-12)


def test_wkv7_halves_and_steps_equal_one_pass():
    inputs, _ = wkv7_inputs(2, 8, 2, 4, dtype=np.float64)
    y, s = wkv7_numpy.forward(*inputs)
    y1, s1 = wkv7_numpy.forward(*(x[:, :5] for x in inputs))
    before = s1.copy()
    y2, s2 = wkv7_numpy.forward(*(x[:, 5:] for x in inputs), state=s1)
    assert np.allclose(np.concatenate([y1, y2], 1), y, atol=1e-12) and np.allclose(s2, s, atol=1e-12)
    assert np.array_equal(s1, before)
    state = None
    for t in range(8):
        y_t, state = wkv7_numpy.step(*(x[:, t] for x in inputs), state=state)
        assert np.allclose(y_t, y[:, t], atol=1e-12)
    assert np.allclose(state, s, atol=1e-12)


def test_wkv7_backward_equals_finite_differences():
    inputs, gy = wkv7_inputs(2, 5, 2, 3, dtype=np.float64, seed=4)
    s0 = 0.3 * np.random.default_rng(5).normal(size=(2, 2, 3, 3))          # a non-empty start too
    grads = wkv7_numpy.backward(*inputs, gy, state=s0)
    inputs = [x.copy() for x in inputs]

    def loss():
        return float(np.sum(wkv7_numpy.forward(*inputs, state=s0)[0] * gy))

    for name, x, g in zip(wkv7_numpy.INPUT_NAMES, inputs, grads):
        num = numerical_gradient(loss, x)
        assert relative_error(g, num) < 1e-8, name


def test_wkv7_backward_equals_torch_autograd():
    inputs, gy = wkv7_inputs(2, 7, 2, 4, dtype=np.float64, seed=6)
    grads = wkv7_numpy.backward(*inputs, gy)
    for bi in range(2):
        ts = [torch.tensor(x[bi], requires_grad=True) for x in inputs]
        y, _ = torch_wkv7_loop(*ts, torch.zeros(2, 4, 4, dtype=torch.float64))
        (y * torch.tensor(gy[bi])).sum().backward()
        for name, t, g in zip(wkv7_numpy.INPUT_NAMES, ts, grads):
            assert np.allclose(g[bi], t.grad.numpy(), atol=1e-11), name


def test_wkv7_bad_shapes_are_named():
    (r, w, k, v, a, b), gy = wkv7_inputs(2, 3, 2, 4)
    with pytest.raises(ValueError, match=r"wkv7.forward: a must be \(B, T, H, N\) = \(2, 3, 2, 4\) like r, got \(2, 3, 4\)"):
        wkv7_numpy.forward(r, w, k, v, a[:, :, 0], b)
    with pytest.raises(ValueError, match=r"wkv7.backward: gy must be"):
        wkv7_numpy.backward(r, w, k, v, a, b, gy[:, :1])
    with pytest.raises(ValueError, match=r"wkv7.step: state must be \(B, H, N, N\) = \(2, 2, 4, 4\)"):
        wkv7_numpy.step(r[:, 0], w[:, 0], k[:, 0], v[:, 0], a[:, 0], b[:, 0], np.zeros((2, 2, 4, 3)))
