"""Linear, Embedding and LayerNorm as Modules: thin wrappers over nn.functional with parameters.

Initialisation follows torch's defaults so that a learner's model behaves like torch's twin:
Linear ~ U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, Embedding ~ N(0, 1), LayerNorm (1, 0).
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .module import Module, check_float, check_tokens


def uniform_init(rng, shape, fan_in, dtype=np.float32):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for Linear and RNN weights."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x W^T + b.  x: (..., in) -> y: (..., out); W: (out, in), b: (out,)."""

    def __init__(self, n_in, n_out, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.n_in, self.n_out = n_in, n_out
        self.add_param("weight", uniform_init(rng, (n_out, n_in), n_in, dtype))
        if bias:
            self.add_param("bias", uniform_init(rng, (n_out,), n_in, dtype))

    def forward(self, x):
        check_float("Linear input", x)
        if x.shape[-1] != self.n_in:
            raise ValueError(f"Linear: expected input (..., {self.n_in}), got {x.shape}")
        return F.linear(x, self.params["weight"], self.params.get("bias")), x

    def backward(self, dy, x):
        dx, dw, db = F.linear_backward(dy, x, self.params["weight"])
        self.grads["weight"] += dw
        if "bias" in self.params:
            self.grads["bias"] += db
        return dx


class Embedding(Module):
    """A lookup table: ids (...,) ints -> vectors (..., C). Backward scatters dy into the used rows."""

    def __init__(self, vocab_size, dim, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng or np.random.default_rng()
        self.vocab_size, self.dim = vocab_size, dim
        self.add_param("weight", rng.normal(size=(vocab_size, dim)).astype(dtype))

    def forward(self, ids):
        ids = check_tokens("Embedding input", ids, self.vocab_size)
        return self.params["weight"][ids], ids

    def backward(self, dy, ids):
        # np.add.at, not +=: a token that appears twice must receive both gradients.
        np.add.at(self.grads["weight"], ids.reshape(-1), dy.reshape(-1, self.dim))
        return None


class LayerNorm(Module):
    """Normalise the last axis to mean 0 / variance 1, then scale and shift. x: (..., C)."""

    def __init__(self, dim, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.add_param("weight", np.ones(dim, dtype))
        self.add_param("bias", np.zeros(dim, dtype))

    def forward(self, x):
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm: expected input (..., {self.dim}), got {x.shape}")
        return F.layer_norm(x, self.params["weight"], self.params["bias"], self.eps)

    def backward(self, dy, cache):
        dx, dw, db = F.layer_norm_backward(dy, cache)
        self.grads["weight"] += dw
        self.grads["bias"] += db
        return dx
