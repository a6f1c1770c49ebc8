"""The checks of lessons 04 (seq2seq) and 05 (Transformer) catch plausible mistakes, and say which.

``tests/test_exercises.py`` proves that solutions pass and blanks fail; here each exercise gets
wrong answers a learner might write (a forgotten tanh, the mask after the softmax, no sqrt(D), the
wrong triangle, sin/cos swapped, a reshape without the transpose ...), and the check must fail
with a message that points at the mistake.
"""
import numpy as np
import pytest

from tinyrwkv.exercises import check


def fails_with(check_fn, fn, *needles):
    result = check_fn(fn, verbose=False)
    assert not result.ok, f"{result.name} accepted a wrong answer"
    for needle in needles:
        assert needle.lower() in result.message.lower(), f"{result.name}: {needle!r} not in {result.message!r}"
    return result


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
