"""The checks of lessons 01-03 catch plausible mistakes, and say which mistake in their message.

``tests/test_exercises.py`` proves that the solutions pass and the blanks fail; here each check
meets wrong answers a learner could write (a forgotten bias, the wrong gate order, an off-by-one
state), and must fail with a message that points at the mistake.
"""
import importlib.util
import pathlib

import numpy as np
import pytest

from tinyrwkv.exercises import check

SOLUTIONS = pathlib.Path(__file__).resolve().parents[1] / "lessons" / "solutions"


def load_solutions(stem):
    spec = importlib.util.spec_from_file_location(f"solutions_{stem}", SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fails_with(result, *fragments):
    """The check failed, and its message contains every fragment (case-insensitive)."""
    assert not result.ok, f"{result.name} accepted a wrong answer"
    for fragment in fragments:
        assert fragment.lower() in result.message.lower(), f"{result.name}: {result.message!r} lacks {fragment!r}"


# =========================================================================== lesson 01: the RNN

S01 = load_solutions("01_rnn")


@pytest.mark.parametrize("mistake,hint", [
    (lambda x, h, wi, wh, bi, bh: x @ wi.T + bi + h @ wh.T + bh, "forgot the tanh"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + h @ wh.T), "left out b_hh"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + bh), "recurrent term"),
    (lambda x, h, wi, wh, bi, bh: np.maximum(x @ wi.T + bi + h @ wh.T + bh, 0), "not relu"),
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi + bi + h @ wh.T + bh), "raised ValueError"),   # W_ih not transposed
    (lambda x, h, wi, wh, bi, bh: np.tanh(x @ wi.T + bi + h @ wh + bh), "h is wrong"),           # W_hh not transposed
])
def test_rnn_cell_catches(mistake, hint):
    fails_with(check.rnn_cell(mistake, verbose=False), hint)


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
    fails_with(check.rnn_cell_backward(mistake, verbose=False), hint)


def clip_per_array(grads, max_norm):
    norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values())))
    return {k: g * min(1.0, max_norm / np.linalg.norm(g)) for k, g in grads.items()}, norm


def clip_always(grads, max_norm):
    norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values())))
    return {k: g * max_norm / norm for k, g in grads.items()}, norm


def clip_reports_norm_after(grads, max_norm):
    clipped, _ = S01.clip_by_global_norm(grads, max_norm)
    return clipped, float(np.sqrt(sum(np.sum(g ** 2) for g in clipped.values())))


def clip_sum_of_norms(grads, max_norm):
    norm = float(sum(np.linalg.norm(g) for g in grads.values()))
    return {k: g * min(1.0, max_norm / norm) for k, g in grads.items()}, norm


@pytest.mark.parametrize("mistake,hint", [
    (clip_per_array, "one factor"),
    (clip_always, "leave the gradients unchanged"),
    (clip_reports_norm_after, "before clipping"),
    (clip_sum_of_norms, "sqrt(sum of squares"),
    (lambda grads, max_norm: S01.clip_by_global_norm(grads, max_norm)[0], "tuple of 2"),
])
def test_clip_by_global_norm_catches(mistake, hint):
    fails_with(check.clip_by_global_norm(mistake, verbose=False), hint)


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
    fails_with(check.jacobian_norms(mistake, verbose=False), hint)


def test_jacobian_reference_is_the_explicit_product():
    """The check's reference (tinyrwkv's step_backward) equals the product of diag(1 - h^2) W_hh."""
    from tinyrwkv.exercises.lesson01_rnn import _jacobian_inputs, reference_jacobian_norms

    layer, x = _jacobian_inputs()
    y, _, _ = layer.forward(x)
    np.testing.assert_allclose(reference_jacobian_norms(layer, x),
                               jacobian_norms_with(right_jacobian)(layer.params["w_hh"], y[0]), rtol=1e-10)
