"""Numerical gradient checking: the referee for every hand-written backward pass.

For a scalar loss L(theta), the central difference (L(theta + eps) - L(theta - eps)) / (2 eps)
approximates dL/dtheta with error O(eps^2). Run in float64: in float32 the rounding error of L
(~1e-7 relative) divided by 2 eps swamps the signal.
"""
from __future__ import annotations

import numpy as np


def numerical_gradient(loss_fn, x: np.ndarray, eps=1e-6, indices=None) -> np.ndarray:
    """Central-difference gradient of the scalar ``loss_fn()`` w.r.t. the array ``x`` (perturbed in place).

    ``indices``: optional list of index tuples to check (the rest stay 0), for large arrays.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs float64 arrays (got {x.dtype}): float32 is too coarse")
    grad = np.zeros_like(x)
    for idx in (indices if indices is not None else np.ndindex(x.shape)):
        old = x[idx]
        x[idx] = old + eps
        plus = loss_fn()
        x[idx] = old - eps
        minus = loss_fn()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a| + |b|, tiny): 1e-7 or less is agreement in float64."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), 1e-12))


def gradcheck(loss_fn, params: dict, grads: dict, eps=1e-6, max_checks=30, rng=None, tol=1e-6) -> dict:
    """Compares analytic ``grads`` with numerical ones for every parameter in ``params``.

    loss_fn(): recomputes the scalar loss from the current parameter values.
    Checks at most ``max_checks`` random entries per parameter. Returns name -> relative error
    and raises AssertionError naming every parameter whose error exceeds ``tol``.
    """
    rng = rng or np.random.default_rng(0)
    errors = {}
    for name, p in params.items():
        flat = [np.unravel_index(i, p.shape) for i in
                rng.choice(p.size, size=min(max_checks, p.size), replace=False)]
        num = numerical_gradient(loss_fn, p, eps, flat)
        ana = np.zeros_like(p)
        for idx in flat:
            ana[idx] = grads[name][idx]
        errors[name] = relative_error(ana, num)
    bad = {k: v for k, v in errors.items() if v > tol}
    if bad:
        raise AssertionError(f"gradcheck failed (relative error > {tol}): {bad}")
    return errors
