"""Self-checks for lesson 04 (GNMT-style seq2seq with attention).

    check.additive_attention(fn)        Bahdanau scores -> weights -> context, for one decoder query
    check.masked_softmax(fn)            softmax over a padded source: PAD positions get weight 0
    check.length_normalised_score(fn)   GNMT's beam score log P / lp(|Y|)
    check.beam_expand(fn)               one beam-search step: the best (beam, token) pairs over all beams

Each check runs the learner's function on fixed inputs and compares it with tinyrwkv's own code
(``AdditiveAttention``, ``F.softmax``, ``decoding.length_penalty``, ``decoding.beam_search``'s
selection). When the answer matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..models.decoding import length_penalty
from ..models.seq2seq import AdditiveAttention
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, expect_shape, exercise, matches


# --------------------------------------------------------------------------- 1. additive attention


def _attention_inputs():
    rng = np.random.default_rng(4)
    Hq, Hm, A, S = 5, 6, 4, 7
    attn = AdditiveAttention(Hq, Hm, A, rng=rng, dtype=np.float64)
    attn.query_proj.params["bias"][...] = rng.normal(size=A)      # a non-zero bias, so forgetting it shows
    query = rng.normal(size=Hq)                                   # (Hq,) one decoder state
    memory = rng.normal(size=(S, Hm))                             # (S, Hm) the encoder outputs
    return attn, query, memory


@exercise("04", library=(
    "tinyrwkv.models.seq2seq:AdditiveAttention.forward",
    "tinyrwkv.models.seq2seq:AdditiveAttention.step",
))
def additive_attention(fn):
    """fn(query (Hq,), memory (S, Hm), W_q (A, Hq), b_q (A,), W_k (A, Hm), v (A,)) -> (weights (S,), context (Hm,))."""
    attn, query, memory = _attention_inputs()
    W_q, b_q = attn.query_proj.params["weight"], attn.query_proj.params["bias"]
    W_k, v = attn.key_proj.params["weight"], attn.params["v"]
    S = memory.shape[0]
    context, weights, _ = attn.forward(query[None, None], memory[None], np.ones((1, S), bool))
    want_w, want_c = weights[0, 0], context[0, 0]                 # (S,), (Hm,)

    out = fn(query.copy(), memory.copy(), W_q.copy(), b_q.copy(), W_k.copy(), v.copy())
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("return a tuple (weights (S,), context (Hm,)).")
    got_w, got_c = out
    expect_shape("weights", got_w, want_w.shape)
    pre = query @ W_q.T + b_q + memory @ W_k.T                    # (S, A) before the tanh
    expect_close("weights", got_w, want_w, mistakes={
        "did you forget the tanh? score_j = v . tanh(W_q q + b_q + W_k m_j)": F.softmax(pre @ v),
        "did you forget the bias b_q inside the tanh?": F.softmax(np.tanh(query @ W_q.T + memory @ W_k.T) @ v),
        "these are the raw scores; the weights are their softmax over the S source positions": np.tanh(pre) @ v,
    })
    if np.shape(got_c) == (W_k.shape[0],) and W_k.shape[0] != memory.shape[1]:
        raise CheckFailed(f"context has shape {np.shape(got_c)}, the attention size: the context is the weighted "
                          f"sum of the memory rows m_j (S, Hm), not of the projected keys W_k m_j.")
    expect_shape("context", got_c, want_c.shape)
    expect_close("context", got_c, want_c, mistakes={
        "the context is the weighted *sum* of the memory rows, sum_j weights_j m_j, not their plain mean":
            memory.mean(axis=0),
    })


# --------------------------------------------------------------------------- 2. masked softmax


def _reference_masked_softmax(scores, mask):
    return F.softmax(np.where(mask, scores, -np.inf), axis=-1)    # exp(-inf) = 0 at PAD


def _reference_masked_softmax_axis0(scores, mask):
    s = np.where(mask, scores, -np.inf)
    e = np.exp(s - np.max(s, axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


@exercise("04", library=(
    "tinyrwkv.exercises.lesson04_seq2seq:_reference_masked_softmax",
))
def masked_softmax(fn):
    """fn(scores (B, S), mask (B, S) bool, True = real token) -> weights (B, S), 0 at PAD, rows sum to 1."""
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(3, 6)) * 2.0
    lengths = np.array([6, 4, 1])                                 # right padding, as the dates batches
    mask = np.arange(6)[None, :] < lengths[:, None]               # (3, 6)
    want = _reference_masked_softmax(scores, mask)
    got = fn(scores.copy(), mask.copy())
    expect_shape("weights", got, want.shape)
    after = F.softmax(scores, axis=-1) * mask
    expect_close("weights", got, want, mistakes={
        "you masked after the softmax, so the real positions no longer sum to 1: mask the scores "
        "first (PAD -> -inf), then take the softmax": after,
        "the PAD positions should get weight 0: set their scores to -inf before the softmax": F.softmax(scores, axis=-1),
        "the softmax runs over the source positions (the last axis), one distribution per sentence":
            _reference_masked_softmax_axis0(scores, mask),
    })
    # scores as large as an untrained net can produce: exp(800) overflows float64
    big = scores * 400.0
    got_big = fn(big.copy(), mask.copy())
    if not np.all(np.isfinite(np.asarray(got_big, dtype=np.float64))):
        raise CheckFailed("weights contain NaN or inf for large scores (e.g. 800): exp overflowed. "
                          "Subtract each row's max (over real positions) before np.exp.")
    expect_close("weights for large scores", got_big, _reference_masked_softmax(big, mask))


# --------------------------------------------------------------------------- 3. GNMT's length normalisation


@exercise("04", library=(
    "tinyrwkv.models.decoding:length_penalty",
))
def length_normalised_score(fn):
    """fn(logprob, length, alpha) -> logprob / lp(length), lp(L) = (5 + L)^alpha / (5 + 1)^alpha."""
    cases = [(-3.2, 4, 0.6), (-7.5, 11, 0.6), (-1.0, 1, 1.0), (-12.0, 20, 0.2), (-2.5, 6, 0.0)]
    for logprob, length, alpha in cases:
        want = logprob / length_penalty(length, alpha)
        got = fn(logprob, length, alpha)
        expect_shape(f"score({logprob}, {length}, {alpha})", got, ())
        expect_close(f"score(logprob={logprob}, length={length}, alpha={alpha})", got, want, mistakes={
            "lp is (5 + |Y|)^alpha divided by (5 + 1)^alpha; you forgot the division by 6^alpha":
                logprob / (5.0 + length) ** alpha,
            "GNMT does not divide by the length itself but by lp = ((5 + |Y|) / 6)^alpha":
                logprob / length,
            "divide the log-probability by lp, do not multiply": logprob * length_penalty(length, alpha),
        } if alpha else {})
    # the point of it: with alpha > 0 a longer hypothesis with a better per-token fit can win
    short, long_ = fn(-2.0, 3, 1.0), fn(-2.6, 11, 1.0)
    if not long_ > short:
        raise CheckFailed("with alpha = 1 the 11-token hypothesis (log P -2.6) should outrank the 3-token one "
                          f"(log P -2.0), but your scores are {long_:.4g} and {short:.4g}.")


# --------------------------------------------------------------------------- 4. one beam-search step


def _reference_beam_expand(beam_logprobs, next_logprobs, beam_size):
    totals = beam_logprobs[:, None] + next_logprobs               # (K, V)
    best = np.argsort(-totals, axis=None, kind="stable")[:beam_size]
    rows, tokens = np.unravel_index(best, totals.shape)
    return rows, tokens, totals[rows, tokens]


@exercise("04", library=(
    "tinyrwkv.exercises.lesson04_seq2seq:_reference_beam_expand",
    "tinyrwkv.models.decoding:beam_search",
))
def beam_expand(fn):
    """fn(beam_logprobs (K,), next_logprobs (K, V), beam_size) -> (rows, tokens, totals), each (beam_size,), best first."""
    rng = np.random.default_rng(6)
    K, V, beam_size = 3, 5, 3
    beam_logprobs = np.array([-0.3, -1.2, -2.9])                  # the live hypotheses so far
    next_logprobs = F.log_softmax(rng.normal(size=(K, V)) * 2.0)  # (K, V) the model's next-token log-probs
    rows, tokens, totals = _reference_beam_expand(beam_logprobs, next_logprobs, beam_size)
    out = fn(beam_logprobs.copy(), next_logprobs.copy(), beam_size)
    if not isinstance(out, tuple) or len(out) != 3:
        raise CheckFailed("return a tuple (rows, tokens, totals), each of shape (beam_size,).")
    got_rows, got_tokens, got_totals = (np.asarray(a) for a in out)
    for name, got in (("rows", got_rows), ("tokens", got_tokens), ("totals", got_totals)):
        expect_shape(name, got, (beam_size,))
    per_row = np.array([next_logprobs[r].max() + beam_logprobs[r] for r in range(K)])
    if matches(np.sort(got_totals), np.sort(per_row)):
        raise CheckFailed("you kept the best token of each beam; beam search keeps the best beam_size (beam, token) "
                          "pairs over all K x V candidates at once (a beam may keep several children, or none).")
    no_prefix = _reference_beam_expand(np.zeros(K), next_logprobs, beam_size)
    if matches(got_totals, no_prefix[2]):
        raise CheckFailed("a candidate's score is the beam's log-probability so far PLUS the new token's: "
                          "totals = beam_logprobs[:, None] + next_logprobs.")
    expect_close("totals", got_totals, totals)
    if not (np.array_equal(got_rows, rows) and np.array_equal(got_tokens, tokens)):
        raise CheckFailed(f"totals are right but (rows, tokens) are {list(zip(got_rows.tolist(), got_tokens.tolist()))}, "
                          f"expected {list(zip(rows.tolist(), tokens.tolist()))}: unravel the flat index with "
                          "np.unravel_index(best, (K, V)).")
