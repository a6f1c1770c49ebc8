"""The copy task: see k symbols, wait ``delay`` blanks, then say the k symbols back.

A long-range memory test with a dial. Every symbol must be carried across ``delay + k`` steps,
so a model whose gradient fades with distance cannot learn *which* input to remember. With the
defaults below a plain RNN stalls near chance as the delay grows, while an LSTM / GRU learns it:
the gates give the gradient a path that does not shrink at every step.

One sequence (k = 3, delay = 4), '_' = blank, '>' = go, targets '.' are ignored (-1):

    inputs   a  c  b  _  _  _  _  >  _  _          length T = k + delay + k
    targets  .  .  .  .  .  .  .  a  c  b          the answer starts when the go marker is read

Token ids: 0 = blank, 1 = go, 2 .. n_symbols + 1 = the symbols. Batches are ``(inputs, targets)``
(B, T) ints, the ``LanguageModel`` batch format, so any LM of the lineage trains on it unchanged.
Chance accuracy is 1 / n_symbols: without memory, every answer is a guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.base import IGNORE_INDEX

BLANK, GO, FIRST_SYMBOL = 0, 1, 2


@dataclass(frozen=True)
class CopyTask:
    """k = ``length`` symbols drawn from ``n_symbols``, recalled after ``delay`` blanks."""

    n_symbols: int = 8
    length: int = 5
    delay: int = 10

    def __post_init__(self):
        if self.n_symbols < 2 or self.length < 1 or self.delay < 0:
            raise ValueError(f"CopyTask: need n_symbols >= 2, length >= 1, delay >= 0; got {self}")

    @property
    def vocab_size(self) -> int:
        return self.n_symbols + FIRST_SYMBOL

    @property
    def seq_len(self) -> int:
        return 2 * self.length + self.delay

    @property
    def chance(self) -> float:
        """Accuracy of guessing: the best a model without memory can do."""
        return 1.0 / self.n_symbols

    @property
    def answer_slice(self) -> slice:
        """Positions whose targets are the symbols to recall."""
        return slice(self.length + self.delay, self.seq_len)

    def sample(self, rng: np.random.Generator, batch_size: int):
        """A batch: inputs (B, T) and targets (B, T) int64, T = 2k + delay; targets -1 except the answer."""
        if batch_size < 1:
            raise ValueError(f"CopyTask.sample: batch_size must be >= 1, got {batch_size}")
        k, T = self.length, self.seq_len
        symbols = rng.integers(FIRST_SYMBOL, self.vocab_size, size=(batch_size, k))   # (B, k)
        inputs = np.full((batch_size, T), BLANK, dtype=np.int64)
        inputs[:, :k] = symbols
        inputs[:, k + self.delay] = GO
        targets = np.full((batch_size, T), IGNORE_INDEX, dtype=np.int64)
        targets[:, self.answer_slice] = symbols
        return inputs, targets

    def batches(self, batch_size: int):
        """``batches(rng, step) -> (inputs, targets)``: the callable ``tinyrwkv.training.train`` takes."""
        def draw(rng, step):
            return self.sample(rng, batch_size)
        return draw

    def accuracy(self, model, rng=None, batch_size: int = 256, batches: int = 1) -> dict:
        """Greedy recall accuracy of a ``LanguageModel`` on fresh sequences (seeded: default seed 1234).

        Returns {"symbol": fraction of recalled symbols right, "sequence": fraction of sequences
        with all k right, "chance": 1 / n_symbols}.
        """
        rng = rng if rng is not None else np.random.default_rng(1234)
        right = whole = 0
        for _ in range(batches):
            inputs, targets = self.sample(rng, batch_size)
            logits, _ = model.forward(inputs)                                 # (B, T, V)
            guess = logits[:, self.answer_slice].argmax(axis=-1)              # (B, k)
            correct = guess == targets[:, self.answer_slice]
            right += int(correct.sum())
            whole += int(correct.all(axis=1).sum())
        n = batches * batch_size
        return {"symbol": right / (n * self.length), "sequence": whole / n, "chance": self.chance}
