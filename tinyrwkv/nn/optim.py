"""Optimisers and gradient clipping. They update parameters in place, by name.

``params`` and ``grads`` are the dicts ``Module.parameters()`` / ``Module.gradients()`` return,
so the optimiser sees the same arrays the model computes with (and the same names a checkpoint
stores). Formulas follow torch.optim.SGD and torch.optim.Adam so results can be compared.
"""
from __future__ import annotations

import numpy as np


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scales all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the norm *before* clipping (worth logging: spikes are exploding gradients).
    """
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm}")
    total = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values())))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total


class SGD:
    """p -= lr * (g + weight_decay * p), with optional momentum (torch's convention: v = mu v + g)."""

    def __init__(self, params: dict, lr=0.1, momentum=0.0, weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"SGD: lr must be > 0, got {lr}")
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, grads: dict):
        for k, p in self.params.items():
            g = grads[k] + self.weight_decay * p if self.weight_decay else grads[k]
            if self.momentum:
                self.velocity[k] = self.momentum * self.velocity[k] + g
                g = self.velocity[k]
            p -= self.lr * g

    def state_dict(self) -> dict:
        """The momentum buffers by parameter name (what a checkpoint needs to resume exactly)."""
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict):
        for k in self.params:
            self.velocity[k] = np.array(state[f"velocity.{k}"])


class Adam:
    """Adam (Kingma & Ba): per-parameter step sizes from running moments of the gradient.

    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)
    where m_hat, v_hat undo the bias of starting the averages at zero. ``weight_decay`` is
    decoupled (AdamW) when > 0: p -= lr * wd * p.
    """

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"Adam: lr must be > 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: betas must lie in [0, 1), got {betas}")
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, betas, eps, weight_decay
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, grads: dict):
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            g = grads[k]
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            if self.weight_decay:
                p -= self.lr * self.weight_decay * p
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype)

    def state_dict(self) -> dict:
        out = {"t": np.array(self.t)}
        out.update({f"m.{k}": v for k, v in self.m.items()})
        out.update({f"v.{k}": v for k, v in self.v.items()})
        return out

    def load_state_dict(self, state: dict):
        self.t = int(state["t"])
        for k in self.params:
            self.m[k] = np.array(state[f"m.{k}"])
            self.v[k] = np.array(state[f"v.{k}"])
