"""The dates translation task: vocabularies, pairs, batches, the exact-match metric."""
import datetime

import numpy as np
import pytest

from tinyrwkv.data.translation import BOS, EOS, FORMATS, PAD, DateTask, exact_match, pad_batch


def test_pairs_are_correct_dates_in_every_format():
    task = DateTask()
    pairs = task.pairs(400, seed=0)
    for source, target in pairs:
        day = datetime.date.fromisoformat(target)
        assert source in {f(day) for f in FORMATS.values()}
        assert 1950 <= day.year <= 2049
    assert {"3 March 2021", "March 3, 2021", "3 Mar 2021", "03/03/2021"} == {
        f(datetime.date(2021, 3, 3)) for f in FORMATS.values()}
    assert pairs == task.pairs(400, seed=0)                       # seeded: the held-out set is fixed
    assert max(len(s) for s, _ in pairs) <= task.max_src_len


def test_batch_layout_teacher_forcing_and_padding():
    task = DateTask()
    pairs = [("3 Mar 2021", "2021-03-03"), ("September 30, 2049", "2049-09-30")]
    src, tgt_in, tgt_out = task.encode_pairs(pairs)
    assert src.shape == (2, 18) and tgt_in.shape == tgt_out.shape == (2, 11)
    assert np.all(src[0, 10:] == PAD) and np.all(src[1] != PAD)
    assert np.all(tgt_in[:, 0] == BOS) and np.all(tgt_out[:, -1] == EOS)
    np.testing.assert_array_equal(tgt_in[:, 1:], tgt_out[:, :-1])   # shifted by one
    assert task.src_vocab.decode(src[0]) == "3 Mar 2021"
    assert task.tgt_vocab.decode(tgt_out[1]) == "2049-09-30"
    assert task.tgt_vocab.decode([5, 6, EOS, 7]) == task.tgt_vocab.itos[5] + task.tgt_vocab.itos[6]


def test_batches_callable_is_reproducible():
    make = DateTask().batches(8)
    a = make(np.random.default_rng(3), 0)
    b = make(np.random.default_rng(3), 0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape[0] == 8


def test_exact_match_and_evaluate():
    assert exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    task = DateTask(formats=["dd/mm/yyyy"])
    pairs = task.pairs(10)

    def oracle(src):
        # "dd/mm/yyyy" -> the true ISO date, as target ids followed by EOS
        rows = []
        for s in src:
            d, m, y = task.src_vocab.decode(s).split("/")
            rows.append(task.tgt_vocab.encode(f"{y}-{m}-{d}") + [EOS])
        return pad_batch(rows)

    result = task.evaluate(oracle, pairs, batch_size=3)
    assert result["exact_match"] == 1.0 and result["char_accuracy"] == 1.0
    wrong = task.evaluate(lambda src: np.full((len(src), 1), EOS), pairs)
    assert wrong["exact_match"] == 0.0


def test_bad_input_errors():
    task = DateTask()
    with pytest.raises(ValueError, match="'x' is not in the vocabulary"):
        task.src_vocab.encode("3 x 2021")
    with pytest.raises(ValueError, match="unknown or no formats"):
        DateTask(formats=["iso"])
    with pytest.raises(ValueError, match="4-digit"):
        DateTask(years=(2050, 2000))
    with pytest.raises(ValueError, match="batch_size"):
        task.batches(0)
    with pytest.raises(ValueError, match="3 outputs for 2 targets"):
        exact_match(["a", "b", "c"], ["a", "b"])
