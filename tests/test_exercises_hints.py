"""A wrong answer that matches no named mistake still learns WHICH property it breaks (``diagnose``):
sign, scale, normalisation, a shift in time, the carried state, transposed axes, order, dtype,
precision, overflow, and shapes explained."""
import numpy as np
import pytest

from exercise_checks import fails_with, load_solutions
from tinyrwkv.exercises import check
from tinyrwkv.exercises._checker import CheckFailed, diagnose, expect_close

S01, S05, S06, S07 = (load_solutions(n) for n in ("01", "05", "06", "07"))


def test_sign():
    fails_with(check.wkv_one_channel, lambda w, u, k, v: -S06.wkv_one_channel(w, u, k, v), "(sign:")


def test_scale():
    fails_with(check.rnn_cell, lambda *a: 0.5 * S01.rnn_cell(*a), "(scale:", "times 0.5")


def test_normalisation():
    def unnormalised(scores, mask):
        e = np.exp(scores - scores.max(-1, keepdims=True)) * mask
        return e / (e.sum(-1, keepdims=True) + 1.0)
    fails_with(check.masked_softmax, unnormalised, "(normalisation:", "sum to 1")


def test_one_step_late_and_one_step_early():
    def two_back(x, x_prev):             # x[t-2]: the expected answer one step late
        shifted = S06.rwkv_token_shift(x, x_prev)
        return S06.rwkv_token_shift(shifted, x_prev)
    fails_with(check.rwkv_token_shift, two_back, "(off by one in time:", "one step late")

    def early(w, u, k, v):               # y_t from the window that ends at t+1: it reads the future
        y = S06.wkv_one_channel(w, u, k, v)
        return np.concatenate([y[1:], y[-1:] + 1.0])
    fails_with(check.wkv_one_channel, early, "one step early", "causality")


def test_carried_state():
    def forgets_after_three(w, u, k, v):
        y = S06.wkv_one_channel(w, u, k, v)
        later = S06.wkv_one_channel(w, u, k[3:], v[3:])          # restarts the state at t = 3
        return np.concatenate([y[:3], later])
    fails_with(check.wkv_one_channel, forgets_after_three, "right for steps 0..2", "the state")


def test_transposed():
    def dw_hh_transposed(*a):
        dx, dh_prev, dw_ih, dw_hh, db = S01.rnn_cell_backward(*a)
        return dx, dh_prev, dw_ih, dw_hh.T, db
    fails_with(check.rnn_cell_backward, dw_hh_transposed, "dw_hh is wrong (axes:", "transpose")


def test_order():
    def heads_of_another_order(x, H):
        return S05.split_heads(x, H)[:, ::-1]
    fails_with(check.split_heads, heads_of_another_order, "(order:")


def test_dtype():
    fails_with(check.half_life, lambda td: S07.half_life(td).astype(np.int64), "(dtype:")


def test_precision():
    fails_with(check.rnn_cell, lambda *a: S01.rnn_cell(*a).astype(np.float16), "(precision:")


def test_overflow_and_shape_words():
    with pytest.raises(CheckFailed, match="stability"):
        expect_close("y", np.array([1.0, np.inf]), np.array([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="transposed axes"):
        expect_close("y", np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(CheckFailed, match="off by one"):
        expect_close("y", np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(CheckFailed, match="extra axis of size 1"):
        expect_close("y", np.zeros((1, 5)), np.zeros(5))


def test_an_unrelated_wrong_answer_gets_no_made_up_property():
    rng = np.random.default_rng(0)
    assert diagnose(rng.normal(size=(4, 3)), rng.normal(size=(4, 3))) is None
