"""Self-checks for lesson 12 (after RWKV-4: RWKV-5, -6 and -7).

    check.state_per_version(fn)   floats each version carries per sequence (L layers, width C, heads of N)
    check.wkv6_head_step(fn)      one step of RWKV-5/6's matrix-state recurrence for one head
    check.delta_rule_step(fn)     one step of RWKV-7's delta-rule recurrence for one head
    check.rwkv7_decay(fn)         RWKV-7's decay factor from the pre-activation: exp(-e^{-1/2} sigmoid(z))

Each check compares the learner's function with tinyrwkv's own code (``experiments.after_rwkv4``,
``kernels.wkv6_numpy``, ``kernels.wkv7_numpy``) on fixed inputs; when the answer matches a typical
mistake, the message names the mistake.
"""
from __future__ import annotations

import math

import numpy as np

from ..experiments.after_rwkv4 import state_floats
from ..kernels import wkv6_numpy, wkv7_numpy
from ._checker import CheckFailed, expect_close, expect_shape, expect_true, expect_tuple, exercise

DECAY_SCALE = math.exp(-0.5)                              # RWKV-7's w = exp(-DECAY_SCALE * sigmoid(z))
SIZES = [(2, 64, 16), (12, 768, 64), (24, 2048, 64)]     # (L, C, N): tiny, RWKV-7 168M, RWKV-7 1.5B


def _numbers(out, keys):
    if not isinstance(out, dict) or set(out) != set(keys):
        raise CheckFailed(f"return a dict with exactly the keys {sorted(keys)}, got "
                          f"{sorted(out) if isinstance(out, dict) else type(out).__name__}.")
    try:
        return {key: float(out[key]) for key in keys}
    except (TypeError, ValueError):
        raise CheckFailed("every value must be a number of floats") from None


@exercise("12", library=(
    "tinyrwkv.experiments.after_rwkv4:state_floats",
    "tinyrwkv.models.rwkv7_train:RWKV7LanguageModel.state_size",
    "tinyrwkv.models.rwkv_train:RWKVLanguageModel.state_size",
))
def state_per_version(fn):
    """fn(L, C, N) -> {"rwkv4", "rwkv5", "rwkv6", "rwkv7"}: floats carried per sequence, any context length."""
    for L, C, N in SIZES:
        got = _numbers(fn(L, C, N), ("rwkv4", "rwkv5", "rwkv6", "rwkv7"))
        where = f"for L={L}, C={C}, N={N}"
        if got["rwkv4"] != state_floats(4, L, C, N):
            raise CheckFailed(f"{where}, rwkv4: RWKV-4 carries five vectors of C per layer (two token "
                              f"shifts, aa, bb, pp): {got['rwkv4']:g} is not that.")
        want = state_floats(7, L, C, N)
        for name in ("rwkv5", "rwkv6", "rwkv7"):
            if got[name] == want:
                continue
            mistakes = {
                L * C * N: "each layer also keeps its two token-shift vectors (time-mix and channel-mix x_prev): + 2C",
                L * (2 * C + N * N): "one N x N matrix per HEAD, and a layer has C / N heads",
                L * (2 * C + C * C): "the heads are separate: C / N matrices of N x N, not one C x C matrix",
                L * (3 * C + C * N): "v5-v7 have no denominator and no running max: only 2 vectors + the matrices",
            }
            raise CheckFailed(f"{where}, {name}: " + mistakes.get(got[name], f"you have {got[name]:g}, expected {want:g}."))


# --------------------------------------------------------------------------- one head of WKV-5/6


def _head_inputs(seed, N=5):
    rng = np.random.default_rng(seed)
    r, k, v, u = (rng.normal(size=N) for _ in range(4))
    w = np.exp(-np.exp(rng.normal(-1, 1, N)))
    S = rng.normal(size=(N, N))
    return r, k, v, w, u, S


def _wkv6_variant(r, k, v, w, u, S, bonus_in_state=False, read_after=False, decay_after_add=False,
                  transposed=False, decay_on_values=False):
    """One head's step with knobs for plausible mistakes. S [key i, value j]. Returns (y, S')."""
    kv = np.outer(v, k) if transposed else np.outer(k, v)
    decay = w[None, :] if decay_on_values else w[:, None]
    new = decay * (S + kv) if decay_after_add else decay * S + kv
    if bonus_in_state:
        new = new + u[:, None] * kv
    y = r @ new if read_after else r @ (S + u[:, None] * kv)
    return y, new


@exercise("12", library=(
    "tinyrwkv.kernels.wkv6_numpy:step_math",
    "tinyrwkv.kernels.wkv6_numpy:step",
    "tinyrwkv.kernels.wkv6_numpy:forward",
    "tinyrwkv.kernels.wkv6_numba:step",
    "tinyrwkv.kernels.wkv6_numba:forward",
    "tinyrwkv.exercises.lesson12_after_rwkv4:_wkv6_variant",
))
def wkv6_head_step(fn):
    """fn(r, k, v, w, u, S) -> (y (N,), S' (N, N)): one RWKV-5/6 step of one head, S [key i, value j]."""
    r, k, v, w, u, S = _head_inputs(12)
    want_y, want_S = wkv6_numpy.step(*(x[None, None] for x in (r, k, v, w)), u[None], S[None, None])
    want_y, want_S = want_y[0, 0], want_S[0, 0]
    before = S.copy()
    out = fn(r.copy(), k.copy(), v.copy(), w.copy(), u.copy(), S)
    expect_tuple(out, 2, "y, S")
    y, S_new = out
    expect_true(np.array_equal(S, before), "do not change S in place: return the new state")
    expect_shape("S'", S_new, (5, 5))
    expect_close("S'", S_new, want_S, mistakes={
        "the bonus u only weights the CURRENT token's k v^T in the output; it never enters the state":
            _wkv6_variant(r, k, v, w, u, S, bonus_in_state=True)[1],
        "decay the old state, THEN add the new k v^T (it is not decayed in its own step)":
            _wkv6_variant(r, k, v, w, u, S, decay_after_add=True)[1],
        "S is indexed [key, value]: add the outer product k v^T (keys down the rows), not v k^T":
            _wkv6_variant(r, k, v, w, u, S, transposed=True)[1],
        "w[i] belongs to key channel i: it scales ROW i of S (w[:, None] * S), not column i":
            _wkv6_variant(r, k, v, w, u, S, decay_on_values=True)[1],
    })
    expect_shape("y", y, (5,))
    expect_close("y", y, want_y, mistakes={
        "read the state from BEFORE this token's update, plus the bonus term u k v^T for the current token":
            _wkv6_variant(r, k, v, w, u, S, read_after=True)[0],
        "y[j] = sum_i r[i] (S[i, j] + u[i] k[i] v[j]): read with r on the KEY axis (r @ S), not S @ r":
            (S + u[:, None] * np.outer(k, v)) @ r,
        "the current token enters the output weighted by the bonus u: r @ (S + u[:, None] * k v^T)":
            r @ (S + np.outer(k, v)),
    })


# --------------------------------------------------------------------------- one head of WKV-7


def _delta_inputs(seed, N=5):
    rng = np.random.default_rng(seed)
    r, k, v = (rng.normal(size=N) for _ in range(3))
    w = np.exp(-DECAY_SCALE / (1 + np.exp(-rng.normal(size=N))))
    kk = rng.normal(size=N)
    kk /= np.linalg.norm(kk)
    a, b = -kk, kk / (1 + np.exp(-rng.normal(size=N)))
    S = rng.normal(size=(N, N))
    return r, w, k, v, a, b, S


def _delta_variant(r, w, k, v, a, b, S, sa_after_decay=False, read_before=False, transposed=False,
                   sab_transposed=False, no_decay=False):
    """One head's RWKV-7 step with knobs for plausible mistakes. S [value i, key j]. Returns (y, S')."""
    decayed = S if no_decay else S * w[None, :]
    sa = (decayed if sa_after_decay else S) @ a
    sab = np.outer(b, sa) if sab_transposed else np.outer(sa, b)
    vk = np.outer(k, v) if transposed else np.outer(v, k)
    new = decayed + sab + vk
    y = (S if read_before else new) @ r
    return y, new


@exercise("12", library=(
    "tinyrwkv.kernels.wkv7_numpy:step_math",
    "tinyrwkv.kernels.wkv7_numpy:step",
    "tinyrwkv.kernels.wkv7_numpy:forward",
    "tinyrwkv.kernels.wkv7_numba:step",
    "tinyrwkv.kernels.wkv7_numba:forward",
    "tinyrwkv.exercises.lesson12_after_rwkv4:_delta_variant",
))
def delta_rule_step(fn):
    """fn(r, w, k, v, a, b, S) -> (y (N,), S' (N, N)): one RWKV-7 step of one head, S [value i, key j]."""
    r, w, k, v, a, b, S = _delta_inputs(7)
    want_y, want_S = wkv7_numpy.step(*(x[None, None] for x in (r, w, k, v, a, b)), S[None, None])
    want_y, want_S = want_y[0, 0], want_S[0, 0]
    before = S.copy()
    out = fn(r.copy(), w.copy(), k.copy(), v.copy(), a.copy(), b.copy(), S)
    expect_tuple(out, 2, "y, S")
    y, S_new = out
    expect_true(np.array_equal(S, before), "do not change S in place: return the new state")
    expect_shape("S'", S_new, (5, 5))
    expect_close("S'", S_new, want_S, mistakes={
        "sa = S a uses the state from BEFORE the decay (all three terms start from the old S)":
            _delta_variant(r, w, k, v, a, b, S, sa_after_decay=True)[1],
        "S is indexed [value, key]: write v k^T (values down the rows), not k v^T":
            _delta_variant(r, w, k, v, a, b, S, transposed=True)[1],
        "the correction is sa b^T: row i (value i) gets sa[i] times b, i.e. np.outer(sa, b)":
            _delta_variant(r, w, k, v, a, b, S, sab_transposed=True)[1],
        "decay first: S diag(w) scales column j (key j) by w[j]":
            _delta_variant(r, w, k, v, a, b, S, no_decay=True)[1],
    })
    expect_shape("y", y, (5,))
    expect_close("y", y, want_y, mistakes={
        "RWKV-7 reads the state AFTER this token's update: y = S' r (there is no bonus u any more)":
            _delta_variant(r, w, k, v, a, b, S, read_before=True)[0],
        "y[i] = sum_j S'[i, j] r[j]: S' @ r, not r @ S'": r @ want_S,
    })


# --------------------------------------------------------------------------- the decay


@exercise("12", library=("tinyrwkv.models.rwkv7_train:time_mix_forward",))
def rwkv7_decay(fn):
    """fn(z) -> w: RWKV-7's decay factor per channel, exp(-e^{-1/2} sigmoid(z)), for z any array."""
    z = np.linspace(-6, 6, 13)
    want = np.exp(-DECAY_SCALE / (1 + np.exp(-z)))
    got = fn(z.copy())
    expect_shape("w", got, z.shape)
    sig = 1 / (1 + np.exp(-z))
    expect_close("w", got, want, mistakes={
        "that is RWKV-6's decay exp(-exp(z)); RWKV-7 squashes z with a sigmoid first, so w stays in (0.545, 1)":
            np.exp(-np.exp(z)),
        "the sigmoid is scaled by e^{-1/2} = 0.6065 (BlinkDL writes it as -softplus(-z) - 0.5 in log-log space)":
            np.exp(-sig),
        "w is a factor applied every step: exp(-0.6065 * sigmoid(z)), not the sigmoid itself": sig,
        "the scale is e^{-1/2} = 0.6065, not 1/2": np.exp(-0.5 * sig),
    })
