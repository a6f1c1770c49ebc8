"""Solutions to lesson 04's exercises (GNMT-style seq2seq with attention).

Each function has the name of its check: ``check.additive_attention(additive_attention)`` passes.
"""
import numpy as np


def additive_attention(query, memory, W_q, b_q, W_k, v):
    """Bahdanau attention for one query: weights (S,) over the source, context (Hm,)."""
    hidden = np.tanh(W_q @ query + b_q + memory @ W_k.T)       # (S, A): one small net per source position
    scores = hidden @ v                                         # (S,)
    e = np.exp(scores - scores.max())                           # softmax over the source positions
    weights = e / e.sum()                                       # (S,)
    context = weights @ memory                                  # (Hm,) the weighted sum of memory rows
    return weights, context


def masked_softmax(scores, mask):
    """Softmax over the last axis of scores (B, S), with weight 0 where mask (B, S) is False."""
    scores = np.where(mask, scores, -np.inf)                    # PAD: exp(-inf) = 0 exactly
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))     # the max is over real positions only
    return e / e.sum(axis=-1, keepdims=True)


def length_normalised_score(logprob, length, alpha):
    """GNMT's beam score: log P(Y|X) / lp(Y), lp(Y) = ((5 + |Y|) / (5 + 1))^alpha."""
    lp = (5.0 + length) ** alpha / (5.0 + 1.0) ** alpha
    return logprob / lp


def beam_expand(beam_logprobs, next_logprobs, beam_size):
    """The best beam_size (beam, token) pairs over all K x V candidates, best first."""
    totals = beam_logprobs[:, None] + next_logprobs             # (K, V): each beam extended by each token
    best = np.argsort(-totals, axis=None, kind="stable")[:beam_size]   # flat indices, best first
    rows, tokens = np.unravel_index(best, totals.shape)
    return rows, tokens, totals[rows, tokens]
