"""The checks of lessons 01-03 catch plausible mistakes, and say which mistake in their message.

``tests/test_exercises.py`` proves that the solutions pass and the blanks fail; here each check
meets wrong answers a learner could write (a forgotten bias, the wrong gate order, an off-by-one
state), and must fail with a message that points at the mistake.
"""
import itertools

import numpy as np
import pytest

from exercise_checks import fails_with, load_solutions, own_copy
from tinyrwkv.exercises import check


# =========================================================================== lesson 01: the RNN

S01 = load_solutions("01")


@pytest.mark.parametrize("mistake,hint", [
    (lambda x, h, wi, wh, bi, bh: x @ wi.T + bi + h @ wh.T + bh, "forgot the tanh"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + h @ wh.T), "left out b_hh"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + h @ wh.T + bh), "left out b_ih"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + bh), "recurrent term"),
    (lambda x, h, wi, wh, bi, bh: np.maximum(x @ wi.T + bi + h @ wh.T + bh, 0), "not relu"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi + bi + h @ wh.T + bh), "raised ValueError"),   # W_ih not transposed
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + h @ wh + bh), "h is wrong"),           # W_hh not transposed
])
def test_rnn_cell_catches(mistake, hint):
    fails_with(check.rnn_cell, mistake, hint)


def _rnn_backward_with(dpre_of, dh_prev_of=None, dw_hh_of=None, db_of=None):
    """The solution's backward with one piece replaced by a mistake."""
    def backward(dh, x, h_prev, h, w_ih, w_hh):
        dpre = dpre_of(dh, h, h_prev)
        dh_prev = dpre @ w_hh if dh_prev_of is None else dh_prev_of(dpre, w_hh)
        dw_hh = dpre.T @ h_prev if dw_hh_of is None else dw_hh_of(dpre, h)
        db = dpre.sum(0) if db_of is None else db_of(dpre)
        return dpre @ w_ih, dh_prev, dpre.T @ x, dw_hh, db
    return backward


right_dpre = lambda dh, h, h_prev: dh * (1 - h ** 2)  # noqa: E731


@pytest.mark.parametrize("mistake,hint", [
    (_rnn_backward_with(lambda dh, h, h_prev: dh), "skipped the tanh"),
    (_rnn_backward_with(lambda dh, h, h_prev: dh * (1 - h_prev ** 2)), "output, not h_prev"),
    (_rnn_backward_with(right_dpre, dh_prev_of=lambda d, w_hh: d @ w_hh.T), "dh_prev = dpre @ w_hh"),
    (_rnn_backward_with(right_dpre, dw_hh_of=lambda d, h: d.T @ h), "not the new h"),
    (_rnn_backward_with(right_dpre, db_of=lambda d: d.mean(0)), "not the mean"),
    (_rnn_backward_with(right_dpre, db_of=lambda d: d), "db should have shape (5,)"),
    (lambda dh, x, h_prev, h, w_ih, w_hh: S01.rnn_cell_backward(dh, x, h_prev, h, w_ih, w_hh)[:4], "tuple of 5"),
])
def test_rnn_cell_backward_catches(mistake, hint):
    fails_with(check.rnn_cell_backward, mistake, hint)


def clip_per_array(grads, max_norm):
    norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values())))
    return {k: g * min(1.0, max_norm / np.linalg.norm(g)) for k, g in grads.items()}, norm


def clip_always(grads, max_norm):
    norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values())))
    return {k: g * max_norm / norm for k, g in grads.items()}, norm


def clip_reports_norm_after(grads, max_norm):
    clipped, _ = S01.clip_by_global_norm(grads, max_norm)
    return clipped, float(np.sqrt(sum(np.sum(g ** 2) for g in clipped.values())))


def clip_squared_norm(grads, max_norm):
    clipped, norm = S01.clip_by_global_norm(grads, max_norm)
    return clipped, norm ** 2


def clip_sum_of_norms(grads, max_norm):
    norm = float(sum(np.linalg.norm(g) for g in grads.values()))
    return {k: g * min(1.0, max_norm / norm) for k, g in grads.items()}, norm


@pytest.mark.parametrize("mistake,hint", [
    (clip_per_array, "one factor"),
    (clip_always, "leave the gradients unchanged"),
    (clip_reports_norm_after, "before clipping"),
    (clip_sum_of_norms, "sqrt(sum of squares"),
    (clip_squared_norm, "take the square root"),
    (lambda grads, max_norm: S01.clip_by_global_norm(grads, max_norm)[0], "tuple of 2"),
])
def test_clip_by_global_norm_catches(mistake, hint):
    fails_with(check.clip_by_global_norm, mistake, hint)


def jacobian_norms_with(jacobian, norm=lambda P: np.linalg.norm(P, 2), latest_left=True):
    def fn(w_hh, hs):
        P, out = np.eye(w_hh.shape[0]), [1.0]
        for t in range(len(hs) - 1, 0, -1):
            J = jacobian(w_hh, hs, t)
            P = P @ J if latest_left else J @ P
            out.append(norm(P))
        return np.array(out)
    return fn


right_jacobian = lambda w, hs, t: (1 - hs[t] ** 2)[:, None] * w  # noqa: E731


@pytest.mark.parametrize("mistake,hint", [
    (jacobian_norms_with(lambda w, hs, t: w), "left out the tanh derivative"),
    (jacobian_norms_with(lambda w, hs, t: (1 - hs[t - 1] ** 2)[:, None] * w), "not h_{t-1}"),
    (jacobian_norms_with(right_jacobian, norm=np.linalg.norm), "frobenius"),
    (jacobian_norms_with(right_jacobian, latest_left=False), "on the left"),
    (jacobian_norms_with(lambda w, hs, t: w * (1 - hs[t] ** 2)[None, :]), "rows"),
    (lambda w_hh, hs: S01.jacobian_norms(w_hh, hs)[1:], "shape (12,)"),
    (lambda w_hh, hs: S01.jacobian_norms(w_hh, hs) * 2, "identity"),
])
def test_jacobian_norms_catches(mistake, hint):
    fails_with(check.jacobian_norms, mistake, hint)


def test_jacobian_reference_is_the_explicit_product():
    """The check's reference (tinyrwkv's step_backward) equals the product of diag(1 - h^2) W_hh."""
    from tinyrwkv.exercises.lesson01_rnn import _jacobian_inputs, reference_jacobian_norms

    layer, x = _jacobian_inputs()
    y, _, _ = layer.forward(x)
    np.testing.assert_allclose(reference_jacobian_norms(layer, x),
                               jacobian_norms_with(right_jacobian)(layer.params["w_hh"], y[0]), rtol=1e-10)


# =========================================================================== lesson 02: the LSTM

S02 = load_solutions("02")


def lstm_cell_with(order="ifgo", tanh_on_c=True, use_i=True, use_f=True, biases=("b_ih", "b_hh")):
    """The LSTM step with one mistake."""
    def cell(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
        b = {"b_ih": b_ih, "b_hh": b_hh}
        pre = x @ w_ih.T + h_prev @ w_hh.T + sum(b[k] for k in biases)
        H = h_prev.shape[1]
        block = {name: pre[:, k * H:(k + 1) * H] for k, name in enumerate(order)}
        i, f, o = (S02.sigmoid(block[n]) for n in "ifo")
        g = np.tanh(block["g"])
        c = (f if use_f else 1) * c_prev + (i if use_i else 1) * g
        return o * (np.tanh(c) if tanh_on_c else c), c
    return cell


@pytest.mark.parametrize("mistake,hint", [
    (lstm_cell_with(tanh_on_c=False), "o * tanh(c)"),
    (lstm_cell_with(use_i=False), "input gate"),
    (lstm_cell_with(use_f=False), "forget gate"),
    (lstm_cell_with(biases=("b_ih",)), "c is wrong"),
    (lambda *args: S02.lstm_cell(*args)[0], "tuple of 2"),
])
def test_lstm_cell_catches(mistake, hint):
    fails_with(check.lstm_cell, mistake, hint)


WRONG_LSTM_ORDERS = ["".join(p) for p in itertools.permutations("ifgo") if "".join(p) != "ifgo"]


@pytest.mark.parametrize("order", WRONG_LSTM_ORDERS)
def test_lstm_cell_names_every_one_of_the_23_wrong_gate_orders(order):
    assert len(WRONG_LSTM_ORDERS) == 23
    fails_with(check.lstm_cell, lstm_cell_with(order=order), f"read the four blocks of rows as {', '.join(order)};",
               "torch stacks them i, f, g, o")


@pytest.mark.parametrize("mistake,hint", [
    (lambda dh, dc, f, o, c: dc * f, "reaches the loss twice"),
    (lambda dh, dc, f, o, c: (dc + dh * o) * f, "tanh's derivative"),
    (lambda dh, dc, f, o, c: (dc + dh * (1 - np.tanh(c) ** 2)) * f, "output gate"),
    (lambda dh, dc, f, o, c: dc + dh * o * (1 - np.tanh(c) ** 2), "multiplies by f"),
    (lambda dh, dc, f, o, c: (dc + dh * o * (1 - c ** 2)) * f, "not 1 - c**2"),
    (lambda dh, dc, f, o, c: ((dc + dh * o * (1 - np.tanh(c) ** 2)) * f).sum(0), "should have shape (3, 5)"),
])
def test_lstm_dc_prev_catches(mistake, hint):
    fails_with(check.lstm_dc_prev, mistake, hint)


@pytest.mark.parametrize("mistake,hint", [
    (lambda D, H, L: L * (4 * H * (D + H) + 4 * H), "two bias vectors"),
    (lambda D, H, L: L * (H * (D + H) + 2 * H), "4 gates"),
    (lambda D, H, L: L * (4 * H * (D + H) + 8 * H), "input size is h, not d"),
    (lambda D, H, L: 4 * H * (D + H) + 8 * H, "expected"),                      # ignores num_layers
    (lambda D, H, L: S02.lstm_num_params(D, H, L) + 0.5, "whole number"),
])
def test_lstm_num_params_catches(mistake, hint):
    fails_with(check.lstm_num_params, mistake, hint)


# =========================================================================== lesson 03: the GRU

S03 = load_solutions("03")


def gru_cell_with(**mistake):
    from tinyrwkv.exercises import lesson03_gru

    _gru_variant = own_copy(lesson03_gru._gru_variant)
    return lambda x, h_prev, w_ih, w_hh, b_ih, b_hh: _gru_variant(x, h_prev, w_ih, w_hh, b_ih, b_hh, **mistake)


def gru_cell_swapped_interpolation(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """Written from scratch (not via the check's own helper): h = z * n + (1 - z) * h_prev."""
    xr, xz, xn = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    hr, hz, hn = np.split(h_prev @ w_hh.T + b_hh, 3, axis=1)
    r, z = S03.sigmoid(xr + hr), S03.sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return z * n + (1 - z) * h_prev


def gru_cell_cho(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """Written from scratch: the paper's candidate tanh(W_in x + b_in + W_hn (r * h) + b_hn)."""
    H = h_prev.shape[1]
    xr, xz, xn = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    hr, hz, _ = np.split(h_prev @ w_hh.T + b_hh, 3, axis=1)
    r, z = S03.sigmoid(xr + hr), S03.sigmoid(xz + hz)
    n = np.tanh(xn + (r * h_prev) @ w_hh[2 * H:].T + b_hh[2 * H:])
    return (1 - z) * n + z * h_prev


@pytest.mark.parametrize("mistake,hint", [
    (gru_cell_swapped_interpolation, "swapped z and 1 - z"),
    (gru_cell_cho, "after the matrix product"),
    (gru_cell_with(order="zrn"), "torch's order r, z, n"),
    (gru_cell_with(reset="bias_outside"), "r multiplies b_hn too"),
    (gru_cell_with(reset="none"), "left out the reset gate"),
    (lambda x, h, wi, wh, bi, bh: S03.gru_cell(x, h, wi, wh, bi, np.zeros_like(bh)), "h is wrong"),
])
def test_gru_cell_catches(mistake, hint):
    fails_with(check.gru_cell, mistake, hint)


def biases_on_block(block, value):
    def fn(H):
        b_ih = np.zeros(3 * H)
        b_ih[block * H:(block + 1) * H] = value
        return b_ih, np.zeros(3 * H)
    return fn


@pytest.mark.parametrize("mistake,hint", [
    (biases_on_block(0, 30.0), "second block"),          # pinned the reset gate instead
    (biases_on_block(1, -30.0), "replaces the state"),   # z = 0: h becomes the candidate
    (biases_on_block(1, 4.0), "larger bias"),            # z about 0.98: the state still leaks away
    (biases_on_block(2, 30.0), "second block"),
    (lambda H: (np.zeros(H), np.zeros(H)), "b_ih should have shape (24,)"),
    (lambda H: np.zeros(3 * H), "tuple of 2"),
])
def test_gru_hold_biases_catches(mistake, hint):
    fails_with(check.gru_hold_biases, mistake, hint)


def count_with(gates=None, biases=2, upper_reads_both=True, directions_count=True, upper_input_is_d=False):
    def fn(kind, D, H, L=1, bi=False):
        G = gates or {"rnn": 1, "lstm": 4, "gru": 3}[kind]
        dirs = 2 if (bi and directions_count) else 1
        total = 0
        for layer in range(L):
            d_in = D if (layer == 0 or upper_input_is_d) else (2 if (bi and upper_reads_both) else 1) * H
            total += dirs * (G * H * (d_in + H) + biases * G * H)
        return total
    return fn


@pytest.mark.parametrize("mistake,hint", [
    (count_with(gates=1), "gate block"),
    (count_with(biases=1), "two biases"),
    (count_with(upper_reads_both=False), "input size is 2h"),
    (count_with(directions_count=False), "one per direction"),
    (count_with(upper_input_is_d=True), "not the input"),
    (lambda kind, D, H, L=1, bi=False: S03.recurrent_num_params(kind, D, H, L, bi) - 1, "expected"),
])
def test_recurrent_num_params_catches(mistake, hint):
    fails_with(check.recurrent_num_params, mistake, hint)
