"""Linear / Embedding / LayerNorm, optimisers and clipping: against torch and finite differences."""
import numpy as np
import pytest

from tinyrwkv.nn import SGD, Adam, Embedding, LayerNorm, Linear, Module, clip_grad_norm, gradcheck


class Tiny(Module):
    """Embedding -> LayerNorm -> Linear, enough to exercise every layer's backward together."""

    def __init__(self, rng):
        super().__init__()
        self.emb = Embedding(7, 5, rng=rng)
        self.norm = LayerNorm(5)
        self.layers = [Linear(5, 3, rng=rng)]

    def loss(self, ids, dy):
        e, c0 = self.emb.forward(ids)
        n, c1 = self.norm.forward(e)
        y, c2 = self.layers[0].forward(n)
        return float(np.sum(y * dy)), (c0, c1, c2)

    def backward(self, dy, caches):
        c0, c1, c2 = caches
        self.emb.backward(self.norm.backward(self.layers[0].backward(dy, c2), c1), c0)


def test_layers_gradcheck_float64():
    rng = np.random.default_rng(0)
    m = Tiny(rng).astype(np.float64)
    m.norm.params["weight"] += rng.normal(size=5)      # away from the (1, 0) init
    ids = np.array([[1, 2, 2], [6, 0, 1]])                # token 2 repeats: add.at must accumulate
    dy = rng.normal(size=(2, 3, 3))
    _, caches = m.loss(ids, dy)
    m.zero_grad()
    m.backward(dy, caches)
    errs = gradcheck(lambda: m.loss(ids, dy)[0], m.parameters(), m.gradients(), tol=1e-7)
    assert set(errs) == {"emb.weight", "norm.weight", "norm.bias", "layers.0.weight", "layers.0.bias"}


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    lin = Linear(4, 3, rng=rng)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    dy = rng.normal(size=(2, 5, 3)).astype(np.float32)
    ref = torch.nn.Linear(4, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(lin.params["weight"]))
        ref.bias.copy_(torch.tensor(lin.params["bias"]))
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(dy))
    y, cache = lin.forward(x)
    dx = lin.backward(dy, cache)
    assert np.allclose(y, ty.detach().numpy(), atol=1e-5)
    assert np.allclose(dx, tx.grad.numpy(), atol=1e-5)
    assert np.allclose(lin.grads["weight"], ref.weight.grad.numpy(), atol=1e-4)


def test_adam_and_sgd_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p0 = rng.normal(size=(3, 4))
    for ours_cls, torch_cls, kw in [(Adam, torch.optim.Adam, dict(lr=0.01)),
                                    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9))]:
        p = {"p": p0.copy()}
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt, topt = ours_cls(p, **kw), torch_cls([tp], **kw)
        for step in range(5):
            g = np.sin(p["p"] * (step + 1))               # any deterministic gradient
            opt.step({"p": g})
            tp.grad = torch.tensor(np.sin(tp.detach().numpy() * (step + 1)))
            topt.step()
        assert np.allclose(p["p"], tp.detach().numpy(), atol=1e-10), ours_cls.__name__


def test_clip_grad_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    assert np.sqrt(np.sum(g["a"] ** 2) + np.sum(g["b"] ** 2)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0)


def test_bad_inputs_name_the_shape():
    lin = Linear(4, 3)
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 4\), got \(2, 5\)"):
        lin.forward(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="float"):
        lin.forward(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        Embedding(7, 2).forward(np.array([7]))
    m = Tiny(np.random.default_rng(0))
    sd = m.state_dict()
    sd["layers.0.weight"] = np.zeros((2, 2))
    del sd["norm.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['norm.bias'\].*layers.0.weight: expected \(3, 5\), got \(2, 2\)"):
        m.load_state_dict(sd)
