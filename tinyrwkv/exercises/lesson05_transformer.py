"""Self-checks for lesson 05 (the Transformer).

    check.causal_attention(fn)      scaled dot-product attention with a causal mask, one head
    check.sinusoidal_encoding(fn)   the sin/cos positional-encoding table
    check.kv_cache_step(fn)         one generation step with a KV cache == the full forward's last row
    check.split_heads(fn)           (B, T, E) -> (B, H, T, E/H) for multi-head attention

Each check compares the learner's function with tinyrwkv's own code (``nn.attention``,
``models.transformer.sinusoidal_positions``, ``MultiHeadAttention.split_heads``) on fixed inputs;
when the answer matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..models.transformer import sinusoidal_positions
from ..nn import functional as F
from ..nn.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from ._checker import CheckFailed, expect_close, expect_shape, exercise


def _qkv(T=5, D=4, Dv=3, seed=7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, D)) * 1.5, rng.normal(size=(T, D)) * 1.5, rng.normal(size=(T, Dv))


def _attention_with(q, k, v, mask, scale):
    """softmax(q k^T * scale, masked) v, for spelling out mistakes."""
    scores = np.where(mask, q @ k.T * scale, -np.inf)
    w = F.softmax(scores, axis=-1)
    return w @ v, w


# --------------------------------------------------------------------------- 1. causal attention


@exercise("05", library=(
    "tinyrwkv.nn.attention:scaled_dot_product_attention",
    "tinyrwkv.nn.attention:MultiHeadAttention.forward",
    "tinyrwkv.exercises.lesson05_transformer:_attention_with",
))
def causal_attention(fn):
    """fn(q (T, D), k (T, D), v (T, Dv)) -> (y (T, Dv), weights (T, T)), query i attending keys 0..i."""
    q, k, v = _qkv()
    T, D = q.shape
    want_y, want_w = scaled_dot_product_attention(q, k, v, causal_mask(T))
    out = fn(q.copy(), k.copy(), v.copy())
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("return a tuple (y (T, Dv), weights (T, T)).")
    got_y, got_w = out
    expect_shape("weights", got_w, want_w.shape)
    scale, lower = 1 / np.sqrt(D), causal_mask(T)
    scores = q @ k.T * scale
    e = np.exp(np.where(lower, scores, -np.inf) - np.where(lower, scores, -np.inf).max(axis=0, keepdims=True))
    expect_close("weights", got_w, want_w, mistakes={
        "did you forget to divide the scores by sqrt(D)?": _attention_with(q, k, v, lower, 1.0)[1],
        "divide by sqrt(D), not by D": _attention_with(q, k, v, lower, 1.0 / D)[1],
        "the mask is upside down: query i may see keys j <= i (np.tril), not the future (np.triu)":
            _attention_with(q, k, v, lower.T, scale)[1],
        "no mask: a causal model must not look at future keys (set scores with j > i to -inf)":
            _attention_with(q, k, v, np.ones((T, T), bool), scale)[1],
        "the softmax runs over the keys (axis -1), so each query's weights sum to 1": e / e.sum(axis=0, keepdims=True),
    })
    expect_shape("y", got_y, want_y.shape)
    expect_close("y", got_y, want_y, time_axis=0, mistakes={
        "y is weights @ v (the values), not weights @ k": want_w @ k[:, :v.shape[1]],
    })


# --------------------------------------------------------------------------- 2. positional encoding


@exercise("05", library=(
    "tinyrwkv.models.transformer:sinusoidal_positions",
))
def sinusoidal_encoding(fn):
    """fn(n_positions, dim) -> (T, C): PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(same)."""
    T, C = 12, 8
    want = sinusoidal_positions(T, C, dtype=np.float64)
    got = fn(T, C)
    expect_shape("PE", got, (T, C))
    p = np.arange(T)[:, None]
    freq = 1.0 / 10000.0 ** (np.arange(0, C, 2) / C)             # (C/2,)
    swapped = np.empty((T, C))
    swapped[:, 0::2], swapped[:, 1::2] = np.cos(p * freq), np.sin(p * freq)
    wrong_exp = np.empty((T, C))
    freq_i = 1.0 / 10000.0 ** (np.arange(C // 2) / C)             # i / C instead of 2i / C
    wrong_exp[:, 0::2], wrong_exp[:, 1::2] = np.sin(p * freq_i), np.cos(p * freq_i)
    expect_close("PE", got, want, mistakes={
        "sin and cos are swapped: even channels (0, 2, ...) get sin, odd channels get cos": swapped,
        "the channels interleave (sin, cos, sin, cos ...); you put all the sines first, then all the cosines":
            np.concatenate([np.sin(p * freq), np.cos(p * freq)], axis=1),
        "the exponent is 2i / C for the channel pair i (so the frequencies are 10000^(-0/C), 10000^(-2/C), ...)":
            wrong_exp,
        "the angle is p / 10000^(2i/C), not p * 10000^(2i/C)": np.where(
            np.arange(C) % 2 == 0, np.sin(p / np.repeat(freq, 2)), np.cos(p / np.repeat(freq, 2))),
    })
    expect_close("PE with 3 positions and 4 channels", fn(3, 4), sinusoidal_positions(3, 4, dtype=np.float64))


# --------------------------------------------------------------------------- 3. one KV-cache step


@exercise("05", library=(
    "tinyrwkv.nn.attention:scaled_dot_product_attention",
    "tinyrwkv.nn.attention:MultiHeadAttention.forward",
    "tinyrwkv.exercises.lesson05_transformer:_attention_with",
))
def kv_cache_step(fn):
    """fn(q, k, v (D,) the new token's; cache_k, cache_v (Tp, D)) -> (y (D,), cache_k (Tp+1, D), cache_v (Tp+1, D)).

    Fed a sequence token by token from an empty cache, the outputs must equal full causal attention.
    """
    q, k, v = _qkv(T=6, D=4, Dv=4, seed=8)
    T, D = q.shape
    want_y, _ = scaled_dot_product_attention(q, k, v, causal_mask(T))   # (T, D): the full forward
    cache_k, cache_v = np.zeros((0, D)), np.zeros((0, D))
    for t in range(T):
        out = fn(q[t].copy(), k[t].copy(), v[t].copy(), cache_k, cache_v)
        if not isinstance(out, tuple) or len(out) != 3:
            raise CheckFailed("return a tuple (y (D,), cache_k (Tp+1, D), cache_v (Tp+1, D)).")
        y, cache_k, cache_v = out
        expect_shape(f"cache_k after token {t}", cache_k, (t + 1, D))
        expect_shape(f"cache_v after token {t}", cache_v, (t + 1, D))
        expect_close(f"cache_k after token {t} (the keys so far, in order)", cache_k, k[:t + 1], mistakes={
            "append the new key at the END of the cache (np.concatenate([cache_k, k[None]])): row j must hold "
            "token j's key": k[:t + 1][::-1],
        })
        expect_close(f"cache_v after token {t} (the values so far, in order)", cache_v, v[:t + 1])
        expect_shape(f"y at token {t}", y, (D,))
        past_only = (np.zeros(D) if t == 0 else
                     _attention_with(q[t:t + 1], k[:t], v[:t], np.ones((1, t), bool), 1 / np.sqrt(D))[0][0])
        expect_close(f"y at token {t} (full-forward row {t})", y, want_y[t], mistakes={
            "did you forget to divide the scores by sqrt(D)?":
                _attention_with(q[t:t + 1], k[:t + 1], v[:t + 1], np.ones((1, t + 1), bool), 1.0)[0][0],
            "append the new key and value to the cache BEFORE attending: a token also attends to itself":
                past_only,
        })


# --------------------------------------------------------------------------- 4. split heads


@exercise("05", library=(
    "tinyrwkv.nn.attention:MultiHeadAttention.split_heads",
))
def split_heads(fn):
    """fn(x (B, T, E), n_heads) -> (B, H, T, E/H); head h owns features h*E/H .. (h+1)*E/H - 1."""
    B, T, E, H = 2, 3, 8, 4
    x = np.arange(B * T * E, dtype=np.float64).reshape(B, T, E)
    attn = MultiHeadAttention(E, H, rng=np.random.default_rng(0))
    want = attn.split_heads(x)                                    # (B, H, T, E/H)
    got = fn(x.copy(), H)
    if np.shape(got) == (B, T, H, E // H):
        raise CheckFailed(f"the result has shape {(B, T, H, E // H)}: after the reshape to (B, T, H, E/H), move "
                          "the head axis before time (transpose(0, 2, 1, 3)) so each head is a (T, E/H) sequence.")
    expect_shape("heads", got, want.shape)
    expect_close("heads", got, want, mistakes={
        "a plain reshape to (B, H, T, E/H) mixes time steps into heads: reshape to (B, T, H, E/H), then transpose":
            x.reshape(B, H, T, E // H),
        "head h owns a contiguous block of features (h*E/H ...), not every H-th feature":
            x.reshape(B, T, E // H, H).transpose(0, 3, 1, 2),
    })
    x2 = np.random.default_rng(1).normal(size=(1, 5, 6))
    expect_close("heads for x of shape (1, 5, 6) and 2 heads", fn(x2.copy(), 2),
                 MultiHeadAttention(6, 2, rng=np.random.default_rng(0)).split_heads(x2))
