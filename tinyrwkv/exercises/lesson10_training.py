"""Self-checks for lesson 10 (training a tiny RWKV against a GPT and an LSTM).

    check.rwkv4_time_decay_init(fn)   RWKV-4's initial time_decay curve for one layer
    check.gpt_num_params(fn)          the parameter count of tinyrwkv's GPT, to match model sizes
    check.adam_update(fn)             one Adam step on one parameter array

Each check compares the learner's function with tinyrwkv's own code
(``models.rwkv_train.init_rwkv4_params``, ``GPT(...).num_parameters()``, ``nn.Adam``) and names
typical mistakes.
"""
from __future__ import annotations

import numpy as np

from ..models.rwkv import RWKVConfig
from ..models.rwkv_train import init_rwkv4_params
from ..models.transformer import GPT
from ..nn import Adam
from ._checker import CheckFailed, expect_close, expect_shape, exercise

# --------------------------------------------------------------------------- 1. the decay curve at init


def _curve(layer, n_layer, C, layer_ratio=None, channel_ratio=None):
    r01 = layer / (n_layer - 1) if layer_ratio is None else layer_ratio
    i = np.arange(C, dtype=np.float64)
    x = i / (C - 1) if channel_ratio is None else channel_ratio
    return -5.0 + 8.0 * x ** (0.7 + 1.3 * r01)


@exercise("10", library=(
    "tinyrwkv.models.rwkv_train:init_rwkv4_params",
    "tinyrwkv.exercises.lesson10_training:_curve",
))
def rwkv4_time_decay_init(fn):
    """fn(layer, n_layer, C) -> (C,) RWKV-4's initial time_decay for that layer."""
    for n_layer, C in ((4, 16), (6, 10)):
        config = RWKVConfig(n_layer=n_layer, n_embd=C, vocab_size=5, ffn_dim=4 * C)
        params = init_rwkv4_params(config)
        for layer in range(n_layer):
            want = params[f"blocks.{layer}.att.time_decay"].astype(np.float64)
            got = np.asarray(fn(layer, n_layer, C), dtype=np.float64)
            expect_shape(f"time_decay of layer {layer}", got, (C,))
            i = np.arange(C)
            expect_close(f"time_decay of layer {layer} of {n_layer} (C = {C})", got, want, mistakes={
                "the layer ratio is layer / (n_layer - 1), running from 0 at the first layer to 1 at the last":
                    _curve(layer, n_layer, C, layer_ratio=layer / n_layer),
                "the channel ratio is i / (C - 1), running from 0 to exactly 1":
                    _curve(layer, n_layer, C, channel_ratio=i / C),
                "the exponent grows with depth: 0.7 + 1.3 * layer / (n_layer - 1)":
                    _curve(layer, n_layer, C, layer_ratio=1 - layer / (n_layer - 1)),
                "this is w; the checkpoint stores time_decay, and w = -exp(time_decay)": -np.exp(want),
            })


# --------------------------------------------------------------------------- 2. counting a GPT


@exercise("10", library=(
    "tinyrwkv.nn.module:Module.num_parameters",
))
def gpt_num_params(fn):
    """fn(vocab_size, dim, n_layers, ffn_dim) -> the number of parameters of GPT(vocab_size, dim, ..., ffn_dim)."""
    for V, C, L, F_ in ((61, 64, 4, 100), (50, 32, 2, 128), (10, 8, 1, 20)):
        want = GPT(V, dim=C, n_heads=4, n_layers=L, ffn_dim=F_, rng=np.random.default_rng(0)).num_parameters()
        got = fn(V, C, L, F_)
        if not isinstance(got, (int, np.integer)):
            raise CheckFailed(f"return an int, got {type(got).__name__}.")
        got = int(got)
        if got == want:
            continue
        per_layer_biases = 3 * C + C + F_ + C                         # in_proj, out_proj, linear1, linear2
        where = f"for V={V}, dim={C}, n_layers={L}, ffn_dim={F_}"
        mistakes = {
            "every Linear has a bias too (attention's in_proj 3C and out_proj C, the FFN's F and C, the head's V)":
                want - L * per_layer_biases - V,
            "the head (C x V weights + V biases) is a separate matrix from the embedding (no weight tying)":
                want - V * C - V,
            "pre-norm GPTs normalise once more before the head (norm_f: 2C)": want - 2 * C,
            "each layer has two LayerNorms, each with a weight and a bias (4C per layer)": want - 4 * L * C,
            "a LayerNorm has a bias as well as a weight (2C each)": want - 2 * L * C - C,
            "the positions are sinusoidal: computed, not learned, so they have no parameters": None,
        }
        for message, wrong in mistakes.items():
            if wrong is not None and got == wrong:
                raise CheckFailed(f"{where}: {message} (you have {got:,}, expected {want:,}).")
        raise CheckFailed(f"{where}: expected {want:,}, you have {got:,} "
                          f"({'too many' if got > want else 'too few'}: {abs(got - want):,}).")


# --------------------------------------------------------------------------- 3. one Adam step


def _adam_variant(p, g, m, v, t, lr, b1, b2, eps, bias_correction=True, sqrt=True, eps_inside=False, t_offset=0):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    tt = t + t_offset
    m_hat = m / (1 - b1 ** tt) if bias_correction else m
    v_hat = v / (1 - b2 ** tt) if bias_correction else v
    denom = np.sqrt(v_hat + eps) if eps_inside else (np.sqrt(v_hat) if sqrt else v_hat) + eps
    return np.concatenate([p - lr * m_hat / denom, m, v])


@exercise("10", library=(
    "tinyrwkv.nn.optim:Adam.step",
    "tinyrwkv.exercises.lesson10_training:_adam_variant",
))
def adam_update(fn):
    """fn(p, g, m, v, t, lr, beta1, beta2, eps) -> (p, m, v) after Adam's step number t (t starts at 1)."""
    rng = np.random.default_rng(10)
    p, g = rng.normal(size=6) * 0.01, rng.normal(size=6) * 0.1
    m, v = rng.normal(size=6) * 0.01, rng.uniform(0, 1e-3, size=6)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-3            # a large step and eps, so every detail shows in p
    for t in (1, 3):
        opt = Adam({"p": p.copy()}, lr=lr, betas=(b1, b2), eps=eps)
        opt.m["p"], opt.v["p"], opt.t = m.copy(), v.copy(), t - 1
        opt.step({"p": g.copy()})
        want = np.concatenate([opt.params["p"], opt.m["p"], opt.v["p"]])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # the message below says why
            out = fn(p.copy(), g.copy(), m.copy(), v.copy(), t, lr, b1, b2, eps)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise CheckFailed("return a tuple (p, m, v): the new parameter and both new moments.")
        got = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in out])
        if t == 1 and not np.all(np.isfinite(got)):
            raise CheckFailed("at t=1 you divide by zero: t is the number of this step (1 on the first), so the "
                              "bias correction is 1 - beta^t = 1 - beta, not 1 - beta^(t-1) = 0.")
        args = (p, g, m, v, t, lr, b1, b2, eps)
        expect_close(f"(p, m, v) at step t={t}", got, want, mistakes={
            "undo the zero start of the moments: m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)":
                _adam_variant(*args, bias_correction=False),
            "divide by the square root of v_hat (the RMS of the gradient), not by v_hat":
                _adam_variant(*args, sqrt=False),
            "eps goes outside the square root: sqrt(v_hat) + eps": _adam_variant(*args, eps_inside=True),
            "t is the number of this step (1 on the first): use beta^t, not beta^(t-1) or beta^(t+1)":
                _adam_variant(*args, t_offset=1) if t == 1 else _adam_variant(*args, t_offset=-1),
        })
