"""Self-checks for lesson 06 (from attention to AFT to RWKV).

    check.wkv_one_channel(fn)     the WKV closed form for one channel: a decayed, bonus-weighted average
    check.wkv_stable_step(fn)     one step of the stable recurrence (aa, bb, pp), the max trick included
    check.rwkv_token_shift(fn)    x_{t-1} for every t, the previous chunk's last x in front
    check.rwkv_channel_mix(fn)    RWKV-4's channel-mix: token shift, squared ReLU, sigmoid receptance

Each check compares the learner's function with tinyrwkv's own code (``kernels.wkv_numpy``,
``models.rwkv.token_shift`` / ``channel_mix``) on fixed inputs; when the answer matches a typical
mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..kernels.wkv_numpy import stable_step, wkv_closed_form
from ..models.rwkv import channel_mix, token_shift
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, expect_shape, exercise

# --------------------------------------------------------------------------- 1. WKV closed form


def _wkv_variant(w, u, k, v, distance_offset=1, bonus=True, normalise=True):
    """The closed form for one channel, with knobs that reproduce plausible mistakes. k, v: (T,)."""
    T = len(k)
    y = np.empty(T)
    for t in range(T):
        i = np.arange(t)
        past = np.exp((t - distance_offset - i) * w + k[:t])
        now = np.exp((u if bonus else 0.0) + k[t])
        num = past @ v[:t] + now * v[t]
        y[t] = num / (past.sum() + now) if normalise else num
    return y


@exercise("06", library=(
    "tinyrwkv.kernels.wkv_numpy:wkv_closed_form",
    "tinyrwkv.kernels.wkv_numpy:wkv_forward",
    "tinyrwkv.kernels.wkv_numpy:wkv_step",
    "tinyrwkv.kernels.wkv_numpy:stable_step",
    "tinyrwkv.kernels.wkv_numba:wkv_forward",
    "tinyrwkv.exercises.lesson06_attention_to_rwkv:_wkv_variant",
))
def wkv_one_channel(fn):
    """fn(w, u, k (T,), v (T,)) -> wkv (T,): the closed form for one channel, w < 0, u the bonus."""
    rng = np.random.default_rng(6)
    T, w, u = 7, -0.6, 0.9
    k, v = rng.normal(size=T), rng.normal(size=T)
    want = wkv_closed_form(np.array([w]), np.array([u]), k[None, :, None], v[None, :, None])[0, :, 0]
    got = fn(w, u, k.copy(), v.copy())
    expect_shape("wkv", got, (T,))
    expect_close("wkv", got, want, time_axis=0, mistakes={
        "the current token's weight is e^(u + k_t): you left out the bonus u": _wkv_variant(w, u, k, v, bonus=False),
        "token i < t is (t-1-i) steps back, not (t-i): the most recent past token is not decayed at all":
            _wkv_variant(w, u, k, v, distance_offset=0),
        "divide by the sum of the weights (the denominator): WKV is a weighted *average* of the values":
            _wkv_variant(w, u, k, v, normalise=False),
        "w is already negative (w = -exp(time_decay)): use e^{(t-1-i) w}, not e^{-(t-1-i) w}":
            _wkv_variant(-w, u, k, v),
    })


# --------------------------------------------------------------------------- 2. one stable step


def _step_variant(w, u, k, v, aa, bb, pp, bonus_in_state=False, decay=True, output_after_update=False):
    """stable_step with knobs for plausible mistakes; returns the four outputs stacked, (4, C)."""
    ww = pp + (w if decay else 0.0)
    kk = k + (u if bonus_in_state else 0.0)
    p = np.maximum(ww, kk)
    e1, e2 = np.exp(ww - p), np.exp(kk - p)
    new_aa, new_bb = e1 * aa + e2 * v, e1 * bb + e2
    if output_after_update:
        y = new_aa / new_bb
    else:
        q = np.maximum(pp, u + k)
        f1, f2 = np.exp(pp - q), np.exp(u + k - q)
        y = (f1 * aa + f2 * v) / (f1 * bb + f2)
    return np.stack([y, new_aa, new_bb, p])


@exercise("06", library=(
    "tinyrwkv.kernels.wkv_numpy:stable_step",
    "tinyrwkv.kernels.wkv_numpy:wkv_step",
    "tinyrwkv.kernels.wkv_numpy:wkv_forward",
    "tinyrwkv.kernels.wkv_numba:wkv_step",
    "tinyrwkv.kernels.wkv_numba:wkv_forward",
    "tinyrwkv.exercises.lesson06_attention_to_rwkv:_step_variant",
))
def wkv_stable_step(fn):
    """fn(w, u, k, v, aa, bb, pp), all (C,) -> (y, aa, bb, pp), each (C,): one step of the stable recurrence."""
    rng = np.random.default_rng(16)
    C = 6
    w = -np.exp(rng.normal(size=C)).astype(np.float32)
    u = rng.normal(size=C).astype(np.float32)
    v = rng.normal(size=C).astype(np.float32)
    k = (rng.normal(size=C) + 95.0).astype(np.float32)       # e^95 overflows float32: the max trick is needed
    aa = rng.uniform(-1, 1, C).astype(np.float32)
    bb = rng.uniform(0.5, 2, C).astype(np.float32)
    pp = (rng.normal(size=C) + 95.0).astype(np.float32)
    args64 = [a.astype(np.float64) for a in (w, u, k, v, aa, bb, pp)]
    want = np.stack(stable_step(*args64))                    # (4, C), in float64
    out = fn(w.copy(), u.copy(), k.copy(), v.copy(), aa.copy(), bb.copy(), pp.copy())
    if not isinstance(out, tuple) or len(out) != 4:
        raise CheckFailed("return a tuple (y, aa, bb, pp) of four (C,) arrays.")
    for name, a in zip(("y", "aa", "bb", "pp"), out):
        expect_shape(name, a, (C,))
    got = np.stack([np.asarray(a, np.float64) for a in out])
    if not np.all(np.isfinite(got)):
        raise CheckFailed("your step produced inf or NaN: k and pp are about 95 here and e^95 overflows float32. "
                          "Subtract the larger exponent first (p = max(...)), so every exp() sees a number <= 0.")
    with np.errstate(over="ignore", invalid="ignore"):
        expect_close("(y, aa, bb, pp)", got, want, mistakes={
            "the bonus u is for the output only: the state adds e^k v, not e^(u+k) v":
                _step_variant(*args64, bonus_in_state=True),
            "the state must decay before the new token is added: compare pp + w with k, not pp with k":
                _step_variant(*args64, decay=False),
            "y uses the state *before* this token, plus the current token with the bonus u "
            "(compute y first, then update the state)": _step_variant(*args64, output_after_update=True),
        })


# --------------------------------------------------------------------------- 3. token shift


@exercise("06", library=(
    "tinyrwkv.models.rwkv:token_shift",
))
def rwkv_token_shift(fn):
    """fn(x (B, T, C), x_prev (B, C)) -> (B, T, C): position t holds x[:, t-1]; position 0 holds x_prev."""
    rng = np.random.default_rng(26)
    x, x_prev = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 3))
    want = token_shift(x, x_prev)
    got = fn(x.copy(), x_prev.copy())
    expect_shape("shifted x", got, x.shape)
    expect_close("shifted x", got, want, time_axis=1, mistakes={
        "position 0 gets x_prev, the last x of the previous chunk (or of the state), not zeros":
            np.concatenate([np.zeros_like(x_prev)[:, None], x[:, :-1]], axis=1),
        "you shifted the wrong way: position t must hold the *previous* token x[:, t-1], not the next one":
            np.concatenate([x[:, 1:], x_prev[:, None]], axis=1),
        "np.roll wraps the last token around to position 0; put x_prev there instead": np.roll(x, 1, axis=1),
        "nothing was shifted: position t must hold x[:, t-1]": x,
    })


# --------------------------------------------------------------------------- 4. channel-mix


@exercise("06", library=(
    "tinyrwkv.models.rwkv:channel_mix",
))
def rwkv_channel_mix(fn):
    """fn(x (T, C), x_prev (C,), mu_k (C,), mu_r (C,), W_k (F, C), W_r (C, C), W_v (C, F)) -> (T, C)."""
    rng = np.random.default_rng(36)
    T, C, F_ = 5, 4, 8
    x, x_prev = rng.normal(size=(T, C)), rng.normal(size=C)
    mu_k, mu_r = rng.uniform(0.1, 0.9, C), rng.uniform(0.1, 0.9, C)
    W_k, W_r, W_v = rng.normal(size=(F_, C)), rng.normal(size=(C, C)), rng.normal(size=(C, F_)) * 0.3
    ffn = {"time_mix_k": mu_k, "time_mix_r": mu_r, "key.weight": W_k, "receptance.weight": W_r,
           "value.weight": W_v}
    want = channel_mix(x[None], x_prev[None], ffn)[0][0]
    got = fn(x.copy(), x_prev.copy(), mu_k.copy(), mu_r.copy(), W_k.copy(), W_r.copy(), W_v.copy())
    expect_shape("channel-mix output", got, (T, C))

    def variant(mix_k=None, mix_r=None, act=F.squared_relu, gate=F.sigmoid):
        xx = token_shift(x[None], x_prev[None])[0]                     # (T, C): x_{t-1}
        mk = mix_k if mix_k is not None else mu_k * x + (1 - mu_k) * xx
        mr = mix_r if mix_r is not None else mu_r * x + (1 - mu_r) * xx
        return gate(mr @ W_r.T) * (act(mk @ W_k.T) @ W_v.T)

    xx = token_shift(x[None], x_prev[None])[0]
    expect_close("channel-mix output", got, want, time_axis=0, mistakes={
        "the activation is the *squared* ReLU, relu(k)^2": variant(act=F.relu),
        "the receptance gate is sigmoid(r), multiplied in; you left it out": variant(gate=lambda r: 1.0),
        "mu weighs the current token: mu * x_t + (1 - mu) * x_{t-1}, not the other way round":
            variant(mu_k * xx + (1 - mu_k) * x, mu_r * xx + (1 - mu_r) * x),
        "no token shift: mix x_t with x_{t-1} (x_prev for the first row) before the projections": variant(x, x),
    })
