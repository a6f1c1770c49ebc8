"""Greedy and beam-search decoding for encoder-decoder models (GNMT seq2seq, Transformer).

A model decodes through three methods, so one search serves both:

    state = model.start_decoding(src)                       # src (B, S): encode once
    logp, attention, state = model.decode_step(prev, state) # prev (B,) -> log-probs (B, V), attention (B, S)
    state = model.reorder_state(state, index)               # keep / duplicate batch rows (beams)

Greedy decoding takes the most likely token at every step. Beam search keeps the K best partial
translations (by total log-probability) and extends each by every token, so a choice that looked
second-best early can still win. Finished hypotheses are ranked with GNMT's length normalisation
(Wu et al. 2016, eq. 14)

    score(Y) = log P(Y | X) / lp(Y),    lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha

because raw log-probabilities only fall as a sentence grows, so without it the search prefers
short outputs. alpha = 0 ranks by log P alone (and beam size 1 is then exactly greedy).
"""
from __future__ import annotations

import numpy as np


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha; |Y| counts the tokens emitted, EOS included."""
    return ((5.0 + length) / 6.0) ** alpha


def greedy_decode(model, src, bos_id: int, eos_id: int, max_len: int, pad_id: int = 0):
    """Most-likely token at every step, for a whole batch at once.

    src: (B, S) ids. Returns (ids (B, L) with EOS included and PAD after it, L <= max_len,
    log-probs (B,) summed over the emitted tokens up to EOS, attention (B, L, S) one row per
    emitted token).
    """
    src = np.asarray(src)
    if src.ndim != 2:
        raise ValueError(f"greedy_decode: expected src of shape (B, S), got {src.shape}")
    B = src.shape[0]
    state = model.start_decoding(src)
    prev = np.full(B, bos_id, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    total = np.zeros(B)
    out, attention = [], []
    for _ in range(max_len):
        logp, attn, state = model.decode_step(prev, state)       # (B, V), (B, S)
        nxt = np.argmax(logp, axis=-1)
        total += np.where(done, 0.0, logp[np.arange(B), nxt])
        out.append(np.where(done, pad_id, nxt))
        attention.append(attn)
        done |= nxt == eos_id
        prev = nxt
        if done.all():
            break
    return np.stack(out, axis=1), total, np.stack(attention, axis=1)


def beam_search(model, src, bos_id: int, eos_id: int, max_len: int, beam_size: int = 4, alpha: float = 0.6):
    """Beam search for one source sentence src (S,) ids.

    Returns a list of up to ``beam_size`` hypotheses, best first, each a dict with
    ``ids`` (list, EOS included if emitted), ``logprob`` (log P(Y|X)), ``score`` (logprob / lp)
    and ``attention`` ((len(ids), S) array).
    """
    src = np.asarray(src)
    if src.ndim != 1:
        raise ValueError(f"beam_search: expected one source sentence of shape (S,), got {src.shape}")
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"beam_search: beam_size and max_len must be >= 1, got {beam_size} and {max_len}")
    state = model.start_decoding(src[None, :])                  # batch of 1; grows to K rows below
    live = [{"ids": [], "logprob": 0.0, "attention": []}]        # unfinished hypotheses, one state row each
    finished = []
    prev = np.array([bos_id])
    for _ in range(max_len):
        logp, attn, state = model.decode_step(prev, state)       # (K, V), (K, S)
        # Every live hypothesis extended by every token; keep the best by total log-probability.
        # A hypothesis that emits EOS is finished and leaves the beam, so the beam shrinks
        # (K - finished live rows) and the search ends once K hypotheses have finished.
        totals = np.array([h["logprob"] for h in live])[:, None] + logp      # (K, V)
        n_keep = beam_size - len(finished)
        best = np.argsort(-totals, axis=None, kind="stable")[:n_keep]
        rows, tokens = np.unravel_index(best, totals.shape)
        survivors, keep_rows = [], []
        for r, t in zip(rows, tokens):
            hyp = {"ids": live[r]["ids"] + [int(t)], "logprob": float(totals[r, t]),
                   "attention": live[r]["attention"] + [attn[r]]}
            if t == eos_id:
                finished.append(hyp)
            else:
                survivors.append(hyp)
                keep_rows.append(r)
        live = survivors
        if not live:
            break
        state = model.reorder_state(state, np.array(keep_rows))
        prev = np.array([h["ids"][-1] for h in live])
    candidates = finished + live                                 # live ones ran out of max_len
    for h in candidates:
        h["score"] = h["logprob"] / length_penalty(len(h["ids"]), alpha)
        h["attention"] = np.stack(h["attention"])               # (len(ids), S)
    return sorted(candidates, key=lambda h: -h["score"])[:beam_size]
