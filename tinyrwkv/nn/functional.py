"""Functional ops, each defined once, with its backward right beside its forward.

Every model in tinyrwkv (RNN ... RWKV) calls these; no other file re-derives a sigmoid,
a softmax or a layer norm. Conventions:

* ``op(x, ...)`` computes the forward pass and returns plain arrays.
* ``op_backward(dy, ...)`` takes the upstream gradient ``dy`` (same shape as the output)
  plus whatever the forward needed to remember, and returns the gradient(s) of the inputs.
* Arrays may have any leading shape; the op acts elementwise or over the last axis.
  Shapes in comments: ``(..., C)`` means "any leading axes, C features last".
* dtype follows the input: float32 for running, float64 for gradient checks.
"""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- activations


def sigmoid(x, out=None):
    """sigma(x) = 1 / (1 + e^-x), computed without overflow for large |x|.

    out: optional array of x's shape to write into (it may be x itself); returns the result.
    """
    # sigma(x) = e^min(x,0) / (1 + e^-|x|): for x >= 0 that is 1/(1+e^-x), for x < 0 it is
    # e^x/(1+e^x). Both exponents are <= 0, so neither can overflow, and no branch is needed
    # (np.where over a random sign pattern is several times slower than this arithmetic).
    # Written with out= so that only one temporary is made (~10% faster at (512, 768)).
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)                          # ints: float64, as np.exp would give
    den = np.abs(x, out=np.empty_like(x))                 # (explicit outs: arrays even when x is 0-d)
    np.negative(den, out=den)
    np.exp(den, out=den)
    den += 1.0                                            # 1 + e^-|x|
    num = np.minimum(x, 0, out=np.empty_like(x) if out is None else out)   # last read of x
    np.exp(num, out=num)                                  # e^min(x,0)
    num /= den
    return num


def sigmoid_backward(dy, y):
    """d sigma / dx = sigma (1 - sigma); takes the forward *output* y."""
    return dy * y * (1.0 - y)


def tanh(x):
    """Hyperbolic tangent (NumPy's is already stable)."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """d tanh / dx = 1 - tanh^2; takes the forward *output* y."""
    return dy * (1.0 - y * y)


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(dy, x):
    """Passes the gradient where the *input* x was positive."""
    return dy * (x > 0)


def squared_relu(x, out=None):
    """relu(x)^2, the activation of RWKV's channel-mix. out: optional array to write into (may be x)."""
    x = np.asarray(x)
    r = np.maximum(x, 0, out=np.empty_like(x) if out is None else out)   # an array even when x is 0-d
    return np.multiply(r, r, out=r)                       # squared in place: no second temporary


def squared_relu_backward(dy, x):
    """d relu(x)^2 / dx = 2 relu(x); takes the forward *input* x."""
    return dy * 2.0 * np.maximum(x, 0)


# --------------------------------------------------------------------------- softmax family


def softmax(x, axis=-1):
    """exp(x) / sum exp(x) along ``axis``; the max is subtracted first so exp never overflows."""
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy, y, axis=-1):
    """Jacobian-vector product of softmax: dx = y * (dy - sum(dy * y)); takes the output y."""
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """log softmax(x), stable: z - log sum exp z with z = x - max x."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def cross_entropy(logits, targets, ignore_index=None):
    """Mean softmax cross-entropy.

    logits: (N, V) float, targets: (N,) int. Positions whose target equals ``ignore_index``
    (padding) count for nothing. Returns (loss: float, probs: (N, V)) where probs is kept
    for the backward pass.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy expects logits (N, V) and targets (N,), got {logits.shape} and {targets.shape}"
        )
    logp = log_softmax(logits)                                    # (N, V)
    mask = np.ones(len(targets), dtype=bool) if ignore_index is None else targets != ignore_index
    n = max(int(mask.sum()), 1)
    safe_t = np.where(mask, targets, 0)
    picked = logp[np.arange(len(targets)), safe_t]                # (N,)
    loss = -np.sum(picked * mask) / n
    return float(loss), np.exp(logp)


def cross_entropy_backward(probs, targets, ignore_index=None):
    """d loss / d logits = (softmax - onehot) / N, zero on ignored rows. probs: (N, V)."""
    targets = np.asarray(targets)
    mask = np.ones(len(targets), dtype=bool) if ignore_index is None else targets != ignore_index
    n = max(int(mask.sum()), 1)
    d = probs.copy()
    d[np.arange(len(targets)), np.where(mask, targets, 0)] -= 1.0
    d *= (mask / n)[:, None]
    return d.astype(probs.dtype, copy=False)


# --------------------------------------------------------------------------- layer norm


def layer_norm(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.

    x: (..., C), weight and bias: (C,). Returns (y, cache) where cache = (xhat, rstd, weight)
    is what ``layer_norm_backward`` needs. ``var`` is the biased variance, as torch uses.
    """
    mean = x.mean(axis=-1, keepdims=True)                       # (..., 1)
    xc = x - mean                                              # (..., C)
    # var = mean(xc^2): a dot product of each row with itself (no (..., C) temporary for xc^2)
    var = np.einsum("...c,...c->...", xc, xc)[..., None] / x.shape[-1]   # (..., 1)
    rstd = 1.0 / np.sqrt(var + eps)                           # (..., 1)
    xhat = xc
    xhat *= rstd                                              # (..., C), in place of xc
    y = xhat * weight
    y += bias
    return y.astype(x.dtype, copy=False), (xhat, rstd, weight)


def layer_norm_backward(dy, cache):
    """Gradients of layer_norm: returns (dx, dweight, dbias).

    With xhat = (x - mean) * rstd and g = dy * weight:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), all means over the last axis.
    """
    xhat, rstd, weight = cache
    lead = tuple(range(dy.ndim - 1))
    dweight = np.sum(dy * xhat, axis=lead)
    dbias = np.sum(dy, axis=lead)
    g = dy * weight
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dweight, dbias


def silu(x):
    """x * sigmoid(x) (SiLU, "swish"): the output gate of RWKV-5/6."""
    return x * sigmoid(x)


def group_norm(x, n_groups, weight, bias, eps=64e-5):
    """GroupNorm over the last axis cut into ``n_groups`` equal groups (torch's group_norm on
    (rows, C)): each group normalised to mean 0, (biased) variance 1, then * weight + bias.

    x: (..., C); weight, bias: (C,). RWKV-5/6/7 normalise each head's WKV output this way ("ln_x").
    """
    shape = x.shape
    xg = x.reshape(*shape[:-1], n_groups, shape[-1] // n_groups)     # (..., G, C/G)
    xc = xg - xg.mean(axis=-1, keepdims=True)
    var = np.einsum("...c,...c->...", xc, xc)[..., None] / xg.shape[-1]
    xc *= 1.0 / np.sqrt(var + eps)
    y = xc.reshape(shape) * weight
    y += bias
    return y.astype(x.dtype, copy=False)


def l2_normalize(x, eps=1e-12):
    """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
    norm = np.sqrt(np.einsum("...c,...c->...", x, x))[..., None]
    return x / np.maximum(norm, eps)


# --------------------------------------------------------------------------- linear


def linear(x, weight, bias=None):
    """y = x W^T + b, torch's layout: weight (out, in), x (..., in) -> y (..., out).

    weight: a float32 ndarray, or a compact weight (``tinyrwkv.nn.compact``: bf16 words, int8 + scales)
    that multiplies itself (its own kernels, accumulating in float32): models never ask which."""
    if isinstance(weight, np.ndarray):
        y = x @ weight.T
    else:
        y = weight.linear(x)
    if bias is not None:
        y = y + bias
    return y


def linear_backward(dy, x, weight):
    """Returns (dx, dweight, dbias) for y = x W^T + b. dy: (..., out), x: (..., in)."""
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"linear_backward: compact weights ({type(weight).__name__}) are for inference; "
                        f"train on float32 weights (weights='fp32')")
    dx = dy @ weight                                               # (..., in)
    dweight = dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])  # (out, in)
    dbias = dy.reshape(-1, dy.shape[-1]).sum(axis=0)               # (out,)
    return dx, dweight, dbias
