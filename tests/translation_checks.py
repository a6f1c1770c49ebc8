"""Helpers shared by test_seq2seq.py (GNMT) and test_transformer.py: the two encoder-decoders are
trained on the same date task and decoded by the same greedy_decode and beam_search.

* ``perturb(model, rng)``: moves every parameter off its init so gradient checks see generic values.
* ``train_on_dates(model, task, steps, lr)``: held-out pairs, exact-match before and after, History.
* ``beam1_is_greedy_and_beam4_no_worse(model, task, pairs)``: what beam search promises against greedy.
"""
import numpy as np

from tinyrwkv.data.translation import BOS, EOS, PAD
from tinyrwkv.models.decoding import beam_search, greedy_decode
from tinyrwkv.training import train


def perturb(model, rng, scale=0.1):
    """Moves every parameter off its init (zero biases, unit norms) so gradient checks see generic values."""
    for p in model.parameters().values():
        p += rng.normal(size=p.shape).astype(p.dtype) * scale


def train_on_dates(model, task, steps, lr):
    """Trains ``model`` on ``task`` (batches of 32, Adam, seed 0); returns (200 held-out pairs,
    task.evaluate of greedy decoding before training, the same after, the training History)."""
    pairs = task.pairs(200, seed=99)
    translate = lambda src: greedy_decode(model, src, BOS, EOS, task.max_tgt_len)[0]   # noqa: E731
    before = task.evaluate(translate, pairs)
    history = train(model, task.batches(32), steps, lr=lr, seed=0, progress=False)
    return pairs, before, task.evaluate(translate, pairs), history


def beam1_is_greedy_and_beam4_no_worse(model, task, pairs):
    """For each source of ``pairs``: a beam of 1 (alpha 0) returns greedy decoding's ids, log-prob and
    attention; a beam of 4 (alpha 0) finds a log-prob at least greedy's. Returns the beams of 4."""
    src = task.encode_sources([s for s, _ in pairs])
    ids, logp, attention = greedy_decode(model, src, BOS, EOS, task.max_tgt_len)
    assert attention.shape == (len(pairs), ids.shape[1], src.shape[1])
    beams = []
    for i, (source, _) in enumerate(pairs):
        one = task.src_vocab.encode(source)
        greedy_ids = [t for t in ids[i].tolist() if t != PAD]
        b1 = beam_search(model, one, BOS, EOS, task.max_tgt_len, beam_size=1, alpha=0.0)[0]
        assert b1["ids"] == greedy_ids and np.isclose(b1["logprob"], logp[i])
        np.testing.assert_allclose(b1["attention"], attention[i, :len(greedy_ids), :len(one)], atol=1e-6)
        # Not a theorem (the greedy path can fall out of the beam), but on these inputs it holds:
        b4 = beam_search(model, one, BOS, EOS, task.max_tgt_len, beam_size=4, alpha=0.0)
        assert max(h["logprob"] for h in b4) >= logp[i] - 1e-5     # float32: K rows vs B rows round differently
        beams.append(b4)
    return beams
