"""nn.functional ops against torch (when present) and against finite differences."""
import numpy as np
import pytest

from tinyrwkv.nn import functional as F


def numgrad(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps; fp = f()
        x[i] = old - eps; fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "squared_relu"])
def test_activation_gradients(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)) * 3
    dy = rng.normal(size=(3, 4))
    fwd = getattr(F, name)
    bwd = getattr(F, name + "_backward")
    y = fwd(x)
    dx = bwd(dy, x if name == "squared_relu" else y)
    assert np.allclose(dx, numgrad(lambda: np.sum(fwd(x) * dy), x), atol=1e-6)


def test_sigmoid_extremes_do_not_overflow():
    x = np.array([-1000.0, 0.0, 1000.0], np.float32)
    with np.errstate(over="raise"):
        y = F.sigmoid(x)
    assert np.allclose(y, [0.0, 0.5, 1.0]) and y.dtype == np.float32


def test_softmax_gradient_and_shift_invariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5))
    dy = rng.normal(size=(2, 5))
    y = F.softmax(x)
    assert np.allclose(y, F.softmax(x + 1000.0))
    assert np.allclose(F.softmax_backward(dy, y), numgrad(lambda: np.sum(F.softmax(x) * dy), x), atol=1e-6)


def test_layer_norm_gradients():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 6))
    w = rng.normal(size=6)
    b = rng.normal(size=6)
    dy = rng.normal(size=(2, 3, 6))
    _, cache = F.layer_norm(x, w, b)
    dx, dw, db = F.layer_norm_backward(dy, cache)
    loss = lambda: np.sum(F.layer_norm(x, w, b)[0] * dy)  # noqa: E731
    assert np.allclose(dx, numgrad(loss, x), atol=1e-6)
    assert np.allclose(dw, numgrad(loss, w), atol=1e-6)
    assert np.allclose(db, numgrad(loss, b), atol=1e-6)


def test_cross_entropy_gradient_with_ignore_index():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 7))
    t = np.array([1, 6, -1, 0, 3])
    loss, p = F.cross_entropy(logits, t, ignore_index=-1)
    d = F.cross_entropy_backward(p, t, ignore_index=-1)
    assert np.allclose(d, numgrad(lambda: F.cross_entropy(logits, t, ignore_index=-1)[0], logits), atol=1e-6)
    assert np.all(d[2] == 0)


def test_cross_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        F.cross_entropy(np.zeros((2, 3, 4)), np.zeros(2, int))


def test_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    w = rng.normal(size=8).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    t = rng.integers(0, 8, size=4)
    tx = torch.tensor(x)
    assert np.allclose(F.layer_norm(x, w, b)[0],
                       torch.nn.functional.layer_norm(tx, (8,), torch.tensor(w), torch.tensor(b)).numpy(), atol=1e-5)
    assert np.allclose(F.log_softmax(x), torch.log_softmax(tx, -1).numpy(), atol=1e-6)
    assert np.isclose(F.cross_entropy(x, t)[0],
                      torch.nn.functional.cross_entropy(tx, torch.tensor(t)).item(), atol=1e-6)
