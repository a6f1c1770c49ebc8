"""The interface every model of the lineage shares, so a lesson can swap one for another.

Three contracts:

``Trainable`` — anything ``tinyrwkv.training.train`` can fit:
    loss, cache = model.loss(batch)      # scalar float, and whatever backward needs
    model.loss_backward(cache)           # ADDS gradients into model.grads (zero them first)

``LanguageModel(Trainable)`` — a next-token model over integer ids (RNN, LSTM, GRU, GPT, RWKV):
    logits, cache = model.forward(ids)            # ids (B, T) int -> logits (B, T, V)
    model.backward(dlogits, cache)                # dlogits (B, T, V); accumulates parameter grads
    state = model.init_state(batch_size)          # what the model carries between tokens
    logits, state = model.step(ids, state)        # ids (B,) -> logits (B, V): generation, one token at a time
    model.state_size(context_length) -> int       # floats carried per sequence after that many tokens

``batch`` for a language model is ``(inputs, targets)``, both (B, T) ints; targets equal to
``ignore_index`` (-1) count for nothing. The loss is the mean next-token cross-entropy in nats.

``EncoderDecoder(Trainable)`` — a translator (GNMT seq2seq, the encoder-decoder Transformer):
    logits, cache = model.teacher_forced(src, tgt_in)   # src (B, S), tgt_in (B, T) -> logits (B, T, V)
    model.backward(dlogits, cache)
``batch`` is ``(src, tgt_in, tgt_out)``, padded with ``model.pad_id``; targets equal to pad_id count
for nothing. Decoding (``tinyrwkv.models.decoding``) goes through start_decoding / decode_step /
reorder_state.

Both losses are ``sequence_cross_entropy`` (below), with its backward beside it.
"""
from __future__ import annotations

import numpy as np

from ..nn import Module, check_tokens
from ..nn import functional as F

IGNORE_INDEX = -1


def sequence_cross_entropy(logits, targets, ignore_index):
    """Mean cross-entropy of logits (B, T, V) against integer targets (B, T), over the positions
    whose target is not ``ignore_index``. Returns (loss, cache for sequence_cross_entropy_backward)."""
    B, T, V = logits.shape
    targets = np.asarray(targets).reshape(B * T)                  # (B T,): every position is one prediction
    loss, probs = F.cross_entropy(logits.reshape(B * T, V), targets, ignore_index=ignore_index)
    return loss, (probs, targets, (B, T, V))


def sequence_cross_entropy_backward(cache, ignore_index):
    """dloss / dlogits (B, T, V), in the logits' dtype."""
    probs, targets, shape = cache
    dlogits = F.cross_entropy_backward(probs, targets, ignore_index=ignore_index).reshape(shape)
    return dlogits.astype(probs.dtype, copy=False)


class Trainable(Module):
    """Something with a scalar loss on a batch and a backward pass for it."""

    def loss(self, batch):
        raise NotImplementedError

    def loss_backward(self, cache):
        raise NotImplementedError


class LanguageModel(Trainable):
    """Next-token prediction over ids (B, T). Subclasses implement forward/backward/init_state/step."""

    vocab_size: int

    def forward(self, ids):
        raise NotImplementedError

    def backward(self, dlogits, cache):
        raise NotImplementedError

    def init_state(self, batch_size: int):
        raise NotImplementedError

    def step(self, ids, state):
        raise NotImplementedError

    def state_size(self, context_length: int) -> int:
        raise NotImplementedError

    # -- the loss is the same for every language model, so it lives here, once -----------------

    def loss(self, batch):
        """Mean cross-entropy of next-token prediction. batch = (inputs (B, T), targets (B, T))."""
        inputs, targets = batch
        logits, cache = self.forward(inputs)                      # (B, T, V)
        loss, loss_cache = sequence_cross_entropy(logits, targets, IGNORE_INDEX)
        return loss, (cache, loss_cache)

    def loss_backward(self, cache):
        fwd_cache, loss_cache = cache
        self.backward(sequence_cross_entropy_backward(loss_cache, IGNORE_INDEX), fwd_cache)

    def generate(self, prompt_ids, max_new_tokens: int, temperature: float = 0.0, rng=None):
        """Feeds ``prompt_ids`` (T,) through ``step`` then samples ``max_new_tokens`` ids.

        temperature 0 means greedy. Returns the new ids as a list. Kept minimal on purpose: the
        full sampler (top-k, top-p, penalties) lives in ``tinyrwkv.generation``.
        """
        prompt_ids = check_tokens(f"{type(self).__name__}.generate prompt_ids", prompt_ids, self.vocab_size, "(T,)")
        if temperature < 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
        rng = rng or np.random.default_rng()
        state = self.init_state(1)
        for t in prompt_ids:
            logits, state = self.step(np.array([t]), state)
        out = []
        for _ in range(max_new_tokens):
            if temperature == 0:
                nxt = int(np.argmax(logits[0]))
            else:
                p = F.softmax(logits[0].astype(np.float64) / temperature)
                nxt = int(rng.choice(len(p), p=p))
            out.append(nxt)
            logits, state = self.step(np.array([nxt]), state)
        return out


class EncoderDecoder(Trainable):
    """Translation from a source to a target sequence, trained by teacher forcing. Subclasses set
    ``pad_id`` and implement teacher_forced / backward (and, to decode, start_decoding / decode_step /
    reorder_state)."""

    pad_id: int

    def teacher_forced(self, src, tgt_in):
        """src (B, S), tgt_in (B, T) -> (logits (B, T, V) of the token after each tgt_in position, cache)."""
        raise NotImplementedError

    def backward(self, dlogits, cache):
        raise NotImplementedError

    # -- the loss is the same for every encoder-decoder, so it lives here, once ------------------

    def loss(self, batch):
        """batch = (src (B, S), tgt_in (B, T), tgt_out (B, T)) -> (mean cross-entropy over non-PAD targets, cache)."""
        src, tgt_in, tgt_out = batch
        logits, cache = self.teacher_forced(src, tgt_in)          # (B, T, V)
        tgt_out = np.asarray(tgt_out)
        if tgt_out.shape != logits.shape[:2]:
            raise ValueError(f"{type(self).__name__}.loss: expected tgt_out of shape (B, T) = {logits.shape[:2]}, "
                             f"got {tgt_out.shape}")
        loss, loss_cache = sequence_cross_entropy(logits, tgt_out, self.pad_id)
        return loss, (cache, loss_cache)

    def loss_backward(self, cache):
        fwd_cache, loss_cache = cache
        self.backward(sequence_cross_entropy_backward(loss_cache, self.pad_id), fwd_cache)
