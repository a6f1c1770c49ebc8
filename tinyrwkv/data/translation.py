"""A toy translation task that runs offline in minutes: dates as people write them -> ISO 8601.

    "3 March 2021"   -> "2021-03-03"
    "March 3, 2021"  -> "2021-03-03"
    "3 Mar 2021"     -> "2021-03-03"
    "03/03/2021"     -> "2021-03-03"      (day first)

Why dates: the output is short and exact (so exact-match is a fair metric), the input varies in
length and order (so a model must learn *where* to look: the year moves from the end of the source
to the start of the target, which is what attention is for), and the month names make it a small
translation problem, not a copy. Every pair is generated, nothing is downloaded.

Characters are the tokens. Both vocabularies start with the same three specials:
    PAD = 0  pads a batch to its longest sequence (the loss and attention ignore it)
    BOS = 1  the first decoder input ("start translating")
    EOS = 2  the last target ("done")
A batch is (src (B, S), tgt_in (B, T), tgt_out (B, T)) ints, right-padded with PAD, with
tgt_in = BOS + target and tgt_out = target + EOS (teacher forcing: the decoder reads the true
previous character and predicts the next one).
"""
from __future__ import annotations

import datetime

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")

# name -> how a date is written; each takes a datetime.date
FORMATS = {
    "day_month_year": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "month_day_year": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "day_mon_year": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
}


class CharVocab:
    """Characters <-> ids, with PAD/BOS/EOS at 0/1/2."""

    def __init__(self, chars: str):
        self.itos = list(SPECIALS) + sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """A string -> ids (no specials added). Unknown characters raise, naming the character."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"CharVocab.encode: character {e.args[0]!r} is not in the vocabulary "
                             f"{''.join(self.itos[len(SPECIALS):])!r}") from None

    def decode(self, ids) -> str:
        """ids -> string, stopping at the first EOS and skipping PAD and BOS."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return "".join(out)


class DateTask:
    """Generates (source, target) date pairs and batches them.

    formats: names from ``FORMATS`` (all four by default); years: inclusive range of years.
    """

    def __init__(self, formats=tuple(FORMATS), years=(1950, 2049)):
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise ValueError(f"DateTask: unknown or no formats {unknown}; choose from {list(FORMATS)}")
        if years[0] > years[1] or years[0] < 1000 or years[1] > 9999:
            raise ValueError(f"DateTask: years must be a (first, last) range of 4-digit years, got {years}")
        self.formats = tuple(formats)
        self.first_day = datetime.date(years[0], 1, 1).toordinal()
        self.n_days = datetime.date(years[1], 12, 31).toordinal() - self.first_day + 1
        self.src_vocab = CharVocab("".join(MONTHS) + "0123456789 ,/")
        self.tgt_vocab = CharVocab("0123456789-")
        # longest source: "September 30, 2049"; target: "2049-09-30"; +1 for BOS/EOS
        self.max_src_len = max(len(FORMATS[f](datetime.date(2000, 9, 30))) for f in self.formats)
        self.max_tgt_len = 10 + 1

    def sample(self, rng) -> tuple[str, str]:
        """One random (source, target) pair: a uniform day in the year range, a uniform format."""
        day = datetime.date.fromordinal(self.first_day + int(rng.integers(self.n_days)))
        fmt = self.formats[int(rng.integers(len(self.formats)))]
        return FORMATS[fmt](day), day.isoformat()

    def pairs(self, n: int, seed: int = 1234) -> list[tuple[str, str]]:
        """n pairs from their own seed (a held-out set: training draws from the ``train`` rng)."""
        rng = np.random.default_rng(seed)
        return [self.sample(rng) for _ in range(n)]

    def encode_sources(self, sources) -> np.ndarray:
        """Source strings -> src (B, S) ids, right-padded with PAD."""
        return pad_batch([self.src_vocab.encode(s) for s in sources])

    def encode_pairs(self, pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[(source, target)] -> (src (B, S), tgt_in (B, T), tgt_out (B, T)), right-padded with PAD."""
        src = self.encode_sources([s for s, _ in pairs])
        targets = [self.tgt_vocab.encode(t) for _, t in pairs]
        tgt_in = pad_batch([[BOS] + t for t in targets])          # the decoder reads BOS, y1, y2 ...
        tgt_out = pad_batch([t + [EOS] for t in targets])         # ... and predicts y1, y2, ..., EOS
        return src, tgt_in, tgt_out

    def batches(self, batch_size: int = 32):
        """A ``batches(rng, step) -> (src, tgt_in, tgt_out)`` callable for ``tinyrwkv.training.train``."""
        if batch_size < 1:
            raise ValueError(f"DateTask.batches: batch_size must be >= 1, got {batch_size}")

        def make(rng, step):
            return self.encode_pairs([self.sample(rng) for _ in range(batch_size)])
        return make

    def evaluate(self, translate, pairs, batch_size: int = 256) -> dict:
        """Exact match of ``translate(src (B, S)) -> ids (B, L)`` on ``pairs``.

        Returns {"exact_match": fraction of outputs equal to the target, "char_accuracy": fraction of
        target characters right at their position, "examples": the first 5 (source, target, output)}.
        """
        outputs = []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            ids = translate(self.encode_sources([s for s, _ in chunk]))
            outputs += [self.tgt_vocab.decode(row) for row in ids]
        targets = [t for _, t in pairs]
        chars = sum(sum(a == b for a, b in zip(o, t)) for o, t in zip(outputs, targets))
        return {"exact_match": exact_match(outputs, targets),
                "char_accuracy": chars / max(sum(len(t) for t in targets), 1),
                "examples": [(s, t, o) for (s, t), o in list(zip(pairs, outputs))[:5]]}


def pad_batch(sequences, pad_id: int = PAD) -> np.ndarray:
    """Lists of ids -> (B, max length) int64, right-padded with ``pad_id``."""
    if not sequences:
        raise ValueError("pad_batch: got no sequences")
    out = np.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
    return out


def exact_match(outputs, targets) -> float:
    """Fraction of outputs exactly equal to their target (strings)."""
    if len(outputs) != len(targets):
        raise ValueError(f"exact_match: {len(outputs)} outputs for {len(targets)} targets")
    return sum(o == t for o, t in zip(outputs, targets)) / max(len(targets), 1)
