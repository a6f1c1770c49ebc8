"""A character-level language-model corpus that needs no download.

The text: ``tinyrwkv/data/small_tales.txt``, short fables and stories in plain English written
for tinyrwkv (so the project owns it and ships it under its own licence), about 33 KB of ASCII.
Why this and not something else:
* nothing to download (the project must run offline) and nothing whose licence needs a notice;
* real English, so a model visibly learns spelling, words and punctuation, and samples read as
  recognisable (unlike a generated grammar);
* small enough for a CPU: a character RNN gets well below the unigram baseline in seconds,
  and a tiny RWKV / Transformer can fit it in minutes;
* plain ASCII (61 distinct characters): a small, readable vocabulary.

Use:
    corpus = load_corpus()                          # CharCorpus: text, vocab, train / val ids
    batches = corpus.batches(batch_size=32, seq_len=64)      # for tinyrwkv.training.train
    corpus.unigram_entropy()                        # the baseline loss (nats/char) to beat
    corpus.evaluate(model)                          # mean val cross-entropy (nats/char)
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np

from ..nn import functional as F

DATA_DIR = pathlib.Path(__file__).resolve().parent
CORPORA = {"small_tales": DATA_DIR / "small_tales.txt"}


class CharVocab:
    """Characters <-> integer ids, one id per distinct character, sorted so ids are stable."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(text)

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str) -> np.ndarray:
        """str -> (len,) int64 ids. Raises naming the first character not in the vocabulary."""
        try:
            return np.array([self.index[c] for c in text], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"CharVocab.encode: character {e.args[0]!r} is not in the vocabulary "
                             f"({self.size} characters)") from None

    def decode(self, ids) -> str:
        """ids (any int sequence) -> str."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"CharVocab.decode: ids must lie in [0, {self.size}), got min {ids.min()} max {ids.max()}")
        return "".join(self.chars[i] for i in ids)


@dataclass
class CharCorpus:
    """A text split into contiguous train (first part) and validation (last part) id arrays.

    A contiguous split (rather than random windows) keeps validation text unseen in training.
    """

    name: str
    text: str
    vocab: CharVocab
    train_ids: np.ndarray          # (N_train,) int64
    val_ids: np.ndarray            # (N_val,) int64

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1, name: str = "text") -> "CharCorpus":
        if not 0 < val_fraction < 1:
            raise ValueError(f"CharCorpus: val_fraction must lie in (0, 1), got {val_fraction}")
        vocab = CharVocab.from_text(text)
        ids = vocab.encode(text)
        n_val = max(int(len(ids) * val_fraction), 2)
        if len(ids) - n_val < 2:
            raise ValueError(f"CharCorpus: text of {len(ids)} characters is too short to split")
        return cls(name, text, vocab, ids[:-n_val], ids[-n_val:])

    def split(self, split: str) -> np.ndarray:
        if split == "train":
            return self.train_ids
        if split == "val":
            return self.val_ids
        raise ValueError(f"CharCorpus: split must be 'train' or 'val', got {split!r}")

    def sample_batch(self, rng: np.random.Generator, batch_size: int, seq_len: int, split: str = "train"):
        """B random windows: inputs (B, T) and targets (B, T) = the same windows shifted by one char."""
        ids = self.split(split)
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"sample_batch: batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        if seq_len + 1 > len(ids):
            raise ValueError(f"sample_batch: seq_len {seq_len} does not fit the {split} split ({len(ids)} chars)")
        starts = rng.integers(0, len(ids) - seq_len, size=batch_size)        # (B,)
        window = starts[:, None] + np.arange(seq_len + 1)[None, :]             # (B, T+1)
        chunk = ids[window]
        return chunk[:, :-1], chunk[:, 1:]

    def batches(self, batch_size: int = 32, seq_len: int = 64, split: str = "train"):
        """``batches(rng, step) -> (inputs, targets)``, the callable ``tinyrwkv.training.train`` takes."""
        self.split(split)
        def draw(rng, step):
            return self.sample_batch(rng, batch_size, seq_len, split)
        return draw

    def unigram_entropy(self, split: str = "train") -> float:
        """Entropy (nats/char) of the character frequencies: the loss of the best model that ignores context."""
        counts = np.bincount(self.split(split), minlength=self.vocab.size).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    def bigram_cross_entropy(self, split: str = "val", alpha: float = 0.1) -> float:
        """Loss (nats/char) on ``split`` of the bigram model p(next | current) counted on train.

        The best you can do with one character of context (add-alpha smoothing for unseen pairs);
        a recurrent model that beats it is using more than the last character.
        """
        V = self.vocab.size
        counts = np.full((V, V), alpha)
        np.add.at(counts, (self.train_ids[:-1], self.train_ids[1:]), 1.0)
        logp = np.log(counts / counts.sum(axis=1, keepdims=True))           # (V, V): row = current char
        ids = self.split(split)
        return float(-logp[ids[:-1], ids[1:]].mean())

    def evaluate(self, model, split: str = "val", seq_len: int = 64, max_windows: int = 64) -> float:
        """Mean next-char cross-entropy (nats/char) of a LanguageModel over fixed, evenly spaced windows.

        Deterministic (no rng), so two models are compared on exactly the same characters.
        """
        ids = self.split(split)
        seq_len = min(seq_len, len(ids) - 1)
        n = min(max_windows, (len(ids) - 1) // seq_len)
        starts = np.linspace(0, len(ids) - seq_len - 1, n).astype(np.int64)
        window = starts[:, None] + np.arange(seq_len + 1)[None, :]
        chunk = ids[window]
        logits, _ = model.forward(chunk[:, :-1])                                # (n, T, V)
        loss, _ = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        return loss


def load_corpus(name: str = "small_tales", val_fraction: float = 0.1) -> CharCorpus:
    """The shipped corpus ``name`` (see ``CORPORA``) as a CharCorpus."""
    if name not in CORPORA:
        raise ValueError(f"load_corpus: unknown corpus {name!r}; available: {sorted(CORPORA)}")
    path = CORPORA[name]
    if not path.is_file():
        raise FileNotFoundError(f"load_corpus: {path} is missing (it ships inside the tinyrwkv package)")
    return CharCorpus.from_text(path.read_text(encoding="ascii"), val_fraction=val_fraction, name=name)
