"""The offline tasks: the copy task's layout and metric, the shipped character corpus and its sampler."""
import numpy as np
import pytest

from tinyrwkv.data.copy_task import BLANK, GO, CopyTask
from tinyrwkv.data.corpus import CORPORA, CharCorpus, CharVocab, load_corpus


class Oracle:
    """A 'model' that reads the answer from the inputs: what perfect memory looks like."""

    def __init__(self, task, vocab_size):
        self.task, self.V = task, vocab_size

    def forward(self, ids):
        B, T = ids.shape
        logits = np.zeros((B, T, self.V))
        k = self.task.length
        answer = self.task.answer_slice
        logits[np.arange(B)[:, None], np.arange(T)[answer][None, :], ids[:, :k]] = 1.0
        return logits, None


class Uniform:
    def __init__(self, V, seed=0):
        self.V, self.rng = V, np.random.default_rng(seed)

    def forward(self, ids):
        return self.rng.normal(size=ids.shape + (self.V,)), None


def test_copy_task_layout():
    task = CopyTask(n_symbols=5, length=3, delay=4)
    inputs, targets = task.sample(np.random.default_rng(0), 6)
    assert inputs.shape == targets.shape == (6, task.seq_len) == (6, 10)
    assert task.vocab_size == 7 and inputs.max() < 7 and inputs.dtype == np.int64
    assert np.all(inputs[:, :3] >= 2)                              # the symbols
    assert np.all(inputs[:, 3:7] == BLANK) and np.all(inputs[:, 7] == GO) and np.all(inputs[:, 8:] == BLANK)
    assert np.all(targets[:, :7] == -1)                            # nothing to predict before the go marker
    assert np.array_equal(targets[:, 7:], inputs[:, :3])          # then the symbols, in order
    again = task.sample(np.random.default_rng(0), 6)[0]
    assert np.array_equal(inputs, again)                           # seeded


def test_copy_task_accuracy_metric():
    task = CopyTask(n_symbols=4, length=4, delay=6)
    perfect = task.accuracy(Oracle(task, task.vocab_size))
    assert perfect == {"symbol": 1.0, "sequence": 1.0, "chance": 0.25}
    guess = task.accuracy(Uniform(task.vocab_size), batch_size=512)
    # random logits over 6 ids, 4 of them symbols: about 1/6 right (the chance of a good guesser is 1/4)
    assert 0.1 < guess["symbol"] < 0.25 and guess["sequence"] < 0.02
    with pytest.raises(ValueError, match="n_symbols >= 2"):
        CopyTask(n_symbols=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        task.sample(np.random.default_rng(0), 0)


def test_shipped_corpus_is_small_ascii_and_split():
    path = CORPORA["small_tales"]
    assert path.stat().st_size < 300_000
    path.read_bytes().decode("ascii")                              # raises if not plain ASCII
    c = load_corpus()
    assert c.vocab.size == len(set(c.text)) and 40 < c.vocab.size < 100
    assert len(c.train_ids) + len(c.val_ids) == len(c.text)
    assert c.vocab.decode(np.concatenate([c.train_ids, c.val_ids])) == c.text   # contiguous split, nothing lost
    assert c.vocab.decode(c.vocab.encode("The fox.")) == "The fox."
    # the two baselines a char-LM must beat: no context, then one character of context
    assert 0 < c.bigram_cross_entropy() < c.unigram_entropy() < np.log(c.vocab.size)


def test_batches_are_shifted_windows_and_seeded():
    c = CharCorpus.from_text("abcdefghij" * 20, val_fraction=0.2)
    draw = c.batches(batch_size=4, seq_len=7)
    x, y = draw(np.random.default_rng(3), 0)
    assert x.shape == y.shape == (4, 7)
    assert np.array_equal(x[:, 1:], y[:, :-1])                     # targets = inputs shifted by one
    assert np.all((y - x) % 10 == 1)                               # in this text the next char is +1
    x2, _ = draw(np.random.default_rng(3), 0)
    assert np.array_equal(x, x2)
    xv, _ = c.sample_batch(np.random.default_rng(0), 2, 5, split="val")
    assert xv.max() < c.vocab.size


def test_evaluate_a_uniform_model_gives_log_vocab():
    c = load_corpus()

    class Flat:
        def forward(self, ids):
            return np.zeros(ids.shape + (c.vocab.size,)), None
    assert c.evaluate(Flat()) == pytest.approx(np.log(c.vocab.size))


def test_corpus_errors_name_the_problem():
    c = CharCorpus.from_text("hello world, hello there", val_fraction=0.25)
    with pytest.raises(ValueError, match="character 'Z' is not in the vocabulary"):
        c.vocab.encode("Zebra")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        c.vocab.decode([99])
    with pytest.raises(ValueError, match="seq_len 50 does not fit the train split"):
        c.sample_batch(np.random.default_rng(0), 1, 50)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        c.batches(split="test")
    with pytest.raises(ValueError, match="unknown corpus 'shakespeare'"):
        load_corpus("shakespeare")
    assert CharVocab("cba").chars == ["a", "b", "c"]
