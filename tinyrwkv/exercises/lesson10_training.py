"""Self-checks for lesson 10 (training a tiny RWKV against a GPT and an LSTM).

    check.rwkv4_time_decay_init(fn)   RWKV-4's initial time_decay curve for one layer
    check.gpt_num_params(fn)          the parameter count of tinyrwkv's GPT, to match model sizes
    check.adam_update(fn)             one Adam step on one parameter array
    check.wkv_backward_step(fn)       the WKV backward for ONE step, against finite differences: which of
                                      gw, gu, gk, gv and the state's gradients is wrong

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


# --------------------------------------------------------------------------- 4. the WKV backward, one step


def _frozen_step(w, u, k, v, aa, bb, pp, p_new):
    """One forward step of the stable WKV recurrence with the new state's units e^{p_new} held fixed.

    All (C,) float64. Returns y, aa', bb' (C,). With p_new fixed (it only chooses the units) the step is a
    smooth function of every input, which is what the gradients below are gradients of.
    """
    q = np.maximum(pp, u + k)
    e1, e2 = np.exp(pp - q), np.exp(u + k - q)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    f1, f2 = np.exp(pp + w - p_new), np.exp(k - p_new)
    return y, f1 * aa + f2 * v, f1 * bb + f2


def _numerical_step_gradients(w, u, k, v, aa, bb, pp, gy, ga, gb, h=1e-6):
    """Central finite differences of L = sum(gy y + ga aa' + gb bb') through ``_frozen_step``; each
    channel is independent, so one perturbation of a whole (C,) input gives all C derivatives.
    Returns {"gw", "gu", "gk", "gv", "ga_prev", "gb_prev"}, each (C,)."""
    p_new = np.maximum(pp + w, k)
    inputs = {"gw": w, "gu": u, "gk": k, "gv": v, "ga_prev": aa, "gb_prev": bb}
    order = list(inputs)

    def loss(vals):                                                    # (C,): the loss of each channel
        y, a2, b2 = _frozen_step(*(vals[n] for n in order), pp, p_new)
        return gy * y + ga * a2 + gb * b2

    out = {}
    for name in order:
        plus, minus = dict(inputs), dict(inputs)
        plus[name], minus[name] = inputs[name] + h, inputs[name] - h
        out[name] = (loss(plus) - loss(minus)) / (2 * h)
    return out


def _step_backward_variant(w, u, k, v, aa, bb, pp, gy, ga, gb, bonus_in_state=False, denominator=True,
                           state_in_gk=True, carry=True, gb_sign=-1.0, gw_new_state=False):
    """The analytic one-step backward, with knobs for plausible mistakes (all off: the right answer)."""
    q = np.maximum(pp, u + k)
    e1, e2 = np.exp(pp - q), np.exp(u + k - q)
    den = e1 * bb + e2
    y = (e1 * aa + e2 * v) / den
    p_new = np.maximum(pp + w, k)
    f1, f2 = np.exp(pp + w - p_new), np.exp(k - p_new)
    g = gy / den
    out_k = g * e2 * ((v - y) if denominator else v)                   # y's derivative through e^{u+k}
    state_k = f2 * (ga * v + gb)                                       # the new state's through e^{k}
    gu = out_k + (state_k if bonus_in_state else 0.0)
    gk = out_k + (state_k if state_in_gk else 0.0)
    gv = g * e2 + f2 * ga
    new_aa, new_bb = f1 * aa + f2 * v, f1 * bb + f2
    gw = f1 * (ga * aa + gb * bb) if not gw_new_state else ga * new_aa + gb * new_bb
    ga_prev = (f1 * ga if carry else 0.0) + g * e1
    gb_prev = (f1 * gb if carry else 0.0) + gb_sign * g * e1 * y
    return {"gw": gw, "gu": gu, "gk": gk, "gv": gv, "ga_prev": ga_prev, "gb_prev": gb_prev}


@exercise("10", library=(
    "tinyrwkv.kernels.wkv_numpy:wkv_backward",
    "tinyrwkv.kernels.wkv_numba:wkv_backward",
    "tinyrwkv.kernels.wkv_numba:_wkv_backward_kernel",
    "tinyrwkv.exercises.lesson10_training:_step_backward_variant",
    "tinyrwkv.exercises.lesson10_training:_numerical_step_gradients",
))
def wkv_backward_step(fn):
    """fn(w, u, k, v, aa, bb, pp, gy, ga, gb), all (C,) -> (gw, gu, gk, gv, ga_prev, gb_prev), each (C,):
    the gradients of one step of the stable recurrence, L = sum(gy * y + ga * aa' + gb * bb') with the
    new state's units p' = max(pp + w, k) held fixed, checked against finite differences."""
    rng = np.random.default_rng(110)
    C = 8
    names = ("gw", "gu", "gk", "gv", "ga_prev", "gb_prev")
    what = {"gw": "gw (dL/dw)", "gu": "gu (dL/du)", "gk": "gk (dL/dk)", "gv": "gv (dL/dv)",
            "ga_prev": "ga_prev (the gradient reaching the previous state aa)",
            "gb_prev": "gb_prev (the gradient reaching the previous state bb)"}
    for offset in (0.0, 800.0):                  # e^800 overflows float64: the max trick is needed here too
        w = -np.exp(rng.normal(size=C))
        u = rng.normal(size=C)
        k = rng.normal(size=C) * 1.5 + offset
        pp = rng.normal(size=C) * 1.5 + offset                         # both branches of every max
        v, gy, ga, gb = rng.normal(size=(4, C))
        aa = rng.normal(size=C)
        bb = rng.uniform(0.5, 2.0, size=C)
        args = (w, u, k, v, aa, bb, pp, gy, ga, gb)
        want = _numerical_step_gradients(*args)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = fn(*(a.copy() for a in args))
        if not isinstance(out, (tuple, list)) or len(out) != 6:
            raise CheckFailed("return a tuple (gw, gu, gk, gv, ga_prev, gb_prev) of six (C,) arrays.")
        got = dict(zip(names, out))
        for name in names:
            expect_shape(what[name], got[name], (C,))
        if not all(np.all(np.isfinite(np.asarray(got[n], np.float64))) for n in names):
            raise CheckFailed(f"with k and pp near {offset:g} your gradients contain inf or NaN (stability): reuse "
                              "the forward's scaled factors e1 = e^(pp-q), e2 = e^(u+k-q), f1 = e^(pp+w-p'), "
                              "f2 = e^(k-p'), every exponent <= 0, and never compute e^k or e^pp alone.")
        wrong = {
            "k enters the denominator too: dy/dk = e2 (v - y) / den, not e2 v / den":
                _step_backward_variant(*args, denominator=False),
            "k also enters the new state (aa' += f2 v, bb' += f2): gk has a second term f2 (ga v + gb)":
                _step_backward_variant(*args, state_in_gk=False),
            "u is the bonus of the OUTPUT only; it is not in the new state, so gu has no f2 (ga v + gb) term":
                _step_backward_variant(*args, bonus_in_state=True),
            "w multiplies the OLD state: gw = f1 (ga aa + gb bb) with the incoming aa, bb, not the new ones":
                _step_backward_variant(*args, gw_new_state=True),
            "the old state also reaches the loss through the new state: ga_prev = f1 ga + g e1 (and likewise "
            "gb_prev): add the carried gradient f1 ga": _step_backward_variant(*args, carry=False),
            "sign: bb is in the denominator of y, so its gradient through y is NEGATIVE: gb_prev = f1 gb - g e1 y":
                _step_backward_variant(*args, gb_sign=1.0),
        }
        for name in names:
            expect_close(what[name] + (f" with k, pp near {offset:g}" if offset else ""), got[name], want[name],
                         atol=1e-6, rtol=1e-5,
                         mistakes={m: grads[name] for m, grads in wrong.items()
                                   if not np.allclose(grads[name], want[name], rtol=1e-5, atol=1e-6)})
