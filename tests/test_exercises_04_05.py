"""The checks of lessons 04 (seq2seq) and 05 (Transformer) catch plausible mistakes, and say which.

``tests/test_exercises.py`` proves that solutions pass and blanks fail; here each exercise gets
wrong answers a learner might write (a forgotten tanh, the mask after the softmax, no sqrt(D), the
wrong triangle, sin/cos swapped, a reshape without the transpose ...), and the check must fail
with a message that points at the mistake.
"""
import numpy as np

from exercise_checks import fails_with
from tinyrwkv.exercises import check


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------- lesson 04


def attention_with(score, combine=lambda w, memory, W_k: w @ memory, normalise=softmax):
    def fn(query, memory, W_q, b_q, W_k, v):
        w = normalise(score(query, memory, W_q, b_q, W_k, v))
        return w, combine(w, memory, W_k)
    return fn


def test_additive_attention_catches_mistakes():
    right = lambda q, m, W_q, b_q, W_k, v: np.tanh(W_q @ q + b_q + m @ W_k.T) @ v   # noqa: E731
    assert check.additive_attention(attention_with(right), verbose=False).ok
    fails_with(check.additive_attention, attention_with(lambda q, m, W_q, b_q, W_k, v: (W_q @ q + b_q + m @ W_k.T) @ v),
               "forget the tanh")
    fails_with(check.additive_attention, attention_with(lambda q, m, W_q, b_q, W_k, v: np.tanh(W_q @ q + m @ W_k.T) @ v),
               "bias")
    fails_with(check.additive_attention, attention_with(right, normalise=lambda s: s), "raw scores", "softmax")
    fails_with(check.additive_attention, attention_with(right, combine=lambda w, m, W_k: m.mean(axis=0)), "plain mean")
    fails_with(check.additive_attention, attention_with(right, combine=lambda w, m, W_k: w @ (m @ W_k.T)), "projected keys")
    fails_with(check.additive_attention, lambda *args: attention_with(right)(*args)[0], "tuple")


def test_masked_softmax_catches_mistakes():
    def after(scores, mask):
        return softmax(scores) * mask

    def unstable(scores, mask):
        e = np.exp(np.where(mask, scores, -np.inf))                # no max subtracted: exp(800) = inf
        return e / e.sum(axis=-1, keepdims=True)

    def wrong_axis(scores, mask):
        return softmax(np.where(mask, scores, -np.inf), axis=0)

    with np.errstate(over="ignore", invalid="ignore"):
        fails_with(check.masked_softmax, unstable, "overflow", "max")
    fails_with(check.masked_softmax, after, "mask the scores first")
    fails_with(check.masked_softmax, lambda s, m: softmax(s), "-inf")
    fails_with(check.masked_softmax, wrong_axis, "last axis")


def test_length_normalised_score_catches_mistakes():
    fails_with(check.length_normalised_score, lambda lp, n, a: lp / (5.0 + n) ** a, "6^alpha")
    fails_with(check.length_normalised_score, lambda lp, n, a: lp / n, "not divide by the length")
    fails_with(check.length_normalised_score, lambda lp, n, a: lp * ((5.0 + n) / 6.0) ** a, "do not multiply")
    fails_with(check.length_normalised_score, lambda lp, n, a: lp / ((5.0 + n) / 6.0) ** (1 - a), "score(")


def test_beam_expand_catches_mistakes():
    def per_beam(beam_logprobs, next_logprobs, beam_size):
        tokens = next_logprobs.argmax(axis=1)
        totals = beam_logprobs + next_logprobs.max(axis=1)
        order = np.argsort(-totals)[:beam_size]
        return order, tokens[order], totals[order]

    def no_prefix(beam_logprobs, next_logprobs, beam_size):
        best = np.argsort(-next_logprobs, axis=None)[:beam_size]
        rows, tokens = np.unravel_index(best, next_logprobs.shape)
        return rows, tokens, next_logprobs[rows, tokens]

    def worst_first(beam_logprobs, next_logprobs, beam_size):
        totals = beam_logprobs[:, None] + next_logprobs
        best = np.argsort(totals, axis=None)[:beam_size]
        rows, tokens = np.unravel_index(best, totals.shape)
        return rows, tokens, totals[rows, tokens]

    def swapped_indices(beam_logprobs, next_logprobs, beam_size):
        totals = beam_logprobs[:, None] + next_logprobs
        best = np.argsort(-totals, axis=None)[:beam_size]
        return best // totals.shape[0], best % totals.shape[0], totals.reshape(-1)[best]   # divides by K, not V

    fails_with(check.beam_expand, per_beam, "best token of each beam")
    fails_with(check.beam_expand, no_prefix, "plus")
    fails_with(check.beam_expand, worst_first, "totals is wrong")
    fails_with(check.beam_expand, swapped_indices, "unravel")


# --------------------------------------------------------------------------- lesson 05


def attention(q, k, v, allowed, scale, axis=-1):
    w = softmax(np.where(allowed, q @ k.T * scale, -np.inf), axis=axis)
    return w @ v, w


def test_causal_attention_catches_mistakes():
    def tril(T):
        return np.tril(np.ones((T, T), bool))

    fails_with(check.causal_attention, lambda q, k, v: attention(q, k, v, tril(len(q)), 1.0), "sqrt(d)")
    fails_with(check.causal_attention, lambda q, k, v: attention(q, k, v, tril(len(q)), 1 / q.shape[1]), "not by d")
    fails_with(check.causal_attention, lambda q, k, v: attention(q, k, v, tril(len(q)).T, q.shape[1] ** -0.5),
               "upside down")
    fails_with(check.causal_attention, lambda q, k, v: attention(q, k, v, np.ones((len(q),) * 2, bool), q.shape[1] ** -0.5),
               "no mask")
    fails_with(check.causal_attention, lambda q, k, v: attention(q, k, v, tril(len(q)), q.shape[1] ** -0.5, axis=0),
               "over the keys")

    def y_from_keys(q, k, v):
        _, w = attention(q, k, v, tril(len(q)), q.shape[1] ** -0.5)
        return w @ k[:, :v.shape[1]], w

    fails_with(check.causal_attention, y_from_keys, "y is weights @ v")


def pe_with(first, second, exponent=lambda i2, C: i2 / C, interleave=True):
    def fn(T, C):
        p = np.arange(T)[:, None]
        angle = p / 10000.0 ** exponent(np.arange(0, C, 2), C)
        if not interleave:
            return np.concatenate([first(angle), second(angle)], axis=1)
        pe = np.zeros((T, C))
        pe[:, 0::2], pe[:, 1::2] = first(angle), second(angle)
        return pe
    return fn


def test_sinusoidal_encoding_catches_mistakes():
    assert check.sinusoidal_encoding(pe_with(np.sin, np.cos), verbose=False).ok
    fails_with(check.sinusoidal_encoding, pe_with(np.cos, np.sin), "swapped")
    fails_with(check.sinusoidal_encoding, pe_with(np.sin, np.cos, interleave=False), "interleave")
    fails_with(check.sinusoidal_encoding, pe_with(np.sin, np.cos, exponent=lambda i2, C: (i2 // 2) / C), "2i / c")
    fails_with(check.sinusoidal_encoding, pe_with(np.sin, np.cos, exponent=lambda i2, C: -i2 / C), "not p *")
    fails_with(check.sinusoidal_encoding, lambda T, C: pe_with(np.sin, np.cos)(T, C)[:, :C // 2], "shape")


def test_kv_cache_step_catches_mistakes():
    def step(scale=None, append_first=True, keep=True):
        def fn(q, k, v, cache_k, cache_v):
            new_k = np.concatenate([cache_k, k[None]])
            new_v = np.concatenate([cache_v, v[None]])
            keys, values = (new_k, new_v) if append_first else (cache_k, cache_v)
            s = keys @ q * (q.shape[0] ** -0.5 if scale is None else scale)
            w = softmax(s) if len(s) else s
            return w @ values, (new_k if keep else cache_k), (new_v if keep else cache_v)
        return fn

    assert check.kv_cache_step(step(), verbose=False).ok
    fails_with(check.kv_cache_step, step(scale=1.0), "sqrt(d)")
    with np.errstate(invalid="ignore"):
        fails_with(check.kv_cache_step, step(append_first=False), "before attending")
    fails_with(check.kv_cache_step, step(keep=False), "cache_k after token 0", "shape (1, 4)")

    def reversed_cache(q, k, v, cache_k, cache_v):
        y, ck, cv = step()(q, k, v, cache_k, cache_v)
        return y, np.concatenate([k[None], cache_k]), np.concatenate([v[None], cache_v])

    fails_with(check.kv_cache_step, reversed_cache, "in order", "at the END of the cache")


def test_split_heads_catches_mistakes():
    def plain_reshape(x, H):
        B, T, E = x.shape
        return x.reshape(B, H, T, E // H)

    def no_transpose(x, H):
        B, T, E = x.shape
        return x.reshape(B, T, H, E // H)

    def strided(x, H):
        B, T, E = x.shape
        return x.reshape(B, T, E // H, H).transpose(0, 3, 1, 2)

    fails_with(check.split_heads, plain_reshape, "plain reshape")
    fails_with(check.split_heads, no_transpose, "transpose(0, 2, 1, 3)")
    fails_with(check.split_heads, strided, "contiguous block")
