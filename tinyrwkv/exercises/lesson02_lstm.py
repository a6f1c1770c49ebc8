"""Self-checks for lesson 02 (the LSTM).

    check.lstm_cell(fn)         one step, torch's equations and gate order (i, f, g, o)
    check.lstm_dc_prev(fn)      the gradient reaching c_{t-1}: the cell's highway, one step back
    check.lstm_num_params(fn)   how many parameters torch.nn.LSTM(D, H, num_layers) has

Each check runs the learner's function on fixed inputs and compares it with tinyrwkv's own code
(``LSTMLayer.cell``, ``LSTMLayer.step_backward``, ``LSTM.num_parameters``). When the answer
matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..models.lstm import LSTM, LSTMLayer
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, expect_shape, expect_true, expect_tuple, exercise


def _lstm_step_inputs(seed=201, B=3, D=4, H=5):
    """A float64 LSTMLayer with non-zero biases, an input x (B, D) and a previous state (h, c)."""
    rng = np.random.default_rng(seed)
    layer = LSTMLayer(D, H, rng=rng, dtype=np.float64)
    x = rng.normal(size=(B, D))
    h_prev = 0.8 * rng.normal(size=(B, H))
    c_prev = 1.5 * rng.normal(size=(B, H))
    return layer, x, h_prev, c_prev


def _lstm_variant(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh, order="ifgo", tanh_on_c=True, use_i=True,
                  use_f=True):
    """An LSTM step with an optional mistake: another gate order, no tanh(c), no input or forget gate."""
    pre = x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh                       # (B, 4H)
    H = h_prev.shape[1]
    blocks = {name: pre[:, k * H:(k + 1) * H] for k, name in enumerate(order)}
    i, f, o = (F.sigmoid(blocks[n]) for n in "ifo")
    g = np.tanh(blocks["g"])
    c = (f if use_f else 1.0) * c_prev + (i if use_i else 1.0) * g
    h = o * (np.tanh(c) if tanh_on_c else c)
    return h, c


# --------------------------------------------------------------------------- 1. the cell, forward


@exercise("02", library=(
    "tinyrwkv.models.rnn:RecurrentLayer.cell",
    "tinyrwkv.models.lstm:LSTMLayer.step",
    "tinyrwkv.models.rnn:RecurrentLayer.forward",
    "tinyrwkv.exercises.lesson02_lstm:_lstm_variant",
))
def lstm_cell(fn):
    """fn(x (B, D), h_prev (B, H), c_prev (B, H), w_ih (4H, D), w_hh (4H, H), b_ih (4H,), b_hh (4H,)) -> (h, c)."""
    layer, x, h_prev, c_prev = _lstm_step_inputs()
    params = tuple(layer.params[k].copy() for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
    (want_h, want_c), _ = layer.cell(x, (h_prev, c_prev))
    out = fn(x.copy(), h_prev.copy(), c_prev.copy(), *params)
    expect_tuple(out, 2, "h, c")
    h, c = out
    expect_shape("h", h, want_h.shape)
    expect_shape("c", c, want_c.shape)

    def wrong(**mistake):
        return _lstm_variant(x, h_prev, c_prev, *params, **mistake)

    # every one of the 23 wrong orders of the four gate blocks, named by what the learner read
    wrong_orders = ["".join(p) for p in itertools.permutations("ifgo") if "".join(p) != "ifgo"]

    def order_hint(order):
        return (f"gate order: you read the four blocks of rows as {', '.join(order)}; torch stacks them "
                f"i, f, g, o: rows [0:H] input, [H:2H] forget, [2H:3H] candidate g, [3H:4H] output.")

    for name, got, want, k in (("c", c, want_c, 1), ("h", h, want_h, 0)):
        hints = {order_hint(o): wrong(order=o)[k] for o in wrong_orders}
        hints["you left out the input gate: c = f * c_prev + i * g."] = wrong(use_i=False)[k]
        hints["you left out the forget gate: c = f * c_prev + i * g."] = wrong(use_f=False)[k]
        if name == "h":
            hints["h = o * tanh(c): squash the cell before the output gate."] = wrong(tanh_on_c=False)[0]
        expect_close(name, got, want, mistakes=hints)


# --------------------------------------------------------------------------- 2. the cell's gradient


@exercise("02", library=(
    "tinyrwkv.models.lstm:LSTMLayer.step_backward",
    "tinyrwkv.models.rnn:RecurrentLayer.cell_backward",
    "tinyrwkv.models.rnn:RecurrentLayer.backward",
))
def lstm_dc_prev(fn):
    """fn(dh (B, H), dc (B, H), f (B, H), o (B, H), c (B, H)) -> dL/dc_{t-1} (B, H)."""
    layer, x, h_prev, c_prev = _lstm_step_inputs(seed=202)
    (h, c), (_, step_cache) = layer.cell(x, (h_prev, c_prev))
    _, _, i, f, g, o, tanh_c = step_cache
    rng = np.random.default_rng(8)
    dh, dc = rng.normal(size=h.shape), rng.normal(size=c.shape)        # gradients arriving at h_t and c_t
    _, (_, want) = layer.step_backward((dh, dc), step_cache)
    layer.zero_grad()
    got = fn(dh.copy(), dc.copy(), f.copy(), o.copy(), c.copy())
    expect_shape("dc_prev", got, want.shape)
    expect_close("dc_prev", got, want, mistakes={
        "c_t reaches the loss twice, directly (dc) and through h_t = o * tanh(c_t): add dh * o * (1 - tanh(c)**2) "
        "to dc before multiplying by f.": dc * f,
        "through h = o * tanh(c) the derivative is o * (1 - tanh(c)**2): you left out the tanh's derivative.":
            (dc + dh * o) * f,
        "you left out the output gate: dh reaches c through h = o * tanh(c), so multiply by o.":
            (dc + dh * (1 - tanh_c ** 2)) * f,
        "the last step back along the cell multiplies by f (c_t = f * c_prev + i * g), nothing else.":
            dc + dh * o * (1 - tanh_c ** 2),
        "tanh'(c) is 1 - tanh(c)**2, not 1 - c**2.": (dc + dh * o * (1 - c ** 2)) * f,
    })


# --------------------------------------------------------------------------- 3. counting parameters


_CONFIGS = ((10, 20, 1), (3, 7, 2), (16, 4, 3), (1, 1, 1))


@exercise("02", library=(
    "tinyrwkv.nn.module:Module.num_parameters",
))
def lstm_num_params(fn):
    """fn(input_size, hidden_size, num_layers) -> int, as torch.nn.LSTM(input_size, hidden_size, num_layers)."""
    for D, H, L in _CONFIGS:
        want = LSTM(D, H, num_layers=L, rng=np.random.default_rng(0)).num_parameters()
        got = fn(D, H, L)
        expect_true(np.ndim(got) == 0 and float(got) == int(got),
                    f"return one whole number, got {got!r} for ({D}, {H}, {L})")
        got = int(got)
        if got == want:
            continue
        where = f"for input_size={D}, hidden_size={H}, num_layers={L}: you have {got}, expected {want}. "
        if got == L * (4 * H * (D + H) + 4 * H) or got == 4 * H * (D + H) + 4 * H + (L - 1) * (4 * H * 2 * H + 4 * H):
            raise CheckFailed(where + "torch's LSTM has TWO bias vectors per layer, b_ih and b_hh (4H each).")
        if got == L * (H * (D + H) + 2 * H) or got == H * (D + H) + 2 * H + (L - 1) * (H * 2 * H + 2 * H):
            raise CheckFailed(where + "every weight and bias holds 4 gates (i, f, g, o): W_ih is (4H, D).")
        if got == L * (4 * H * (D + H) + 8 * H):
            raise CheckFailed(where + "layers above the first read the layer below, so their input size is H, not D.")
        raise CheckFailed(where + "per layer: W_ih (4H, in), W_hh (4H, H), b_ih (4H,), b_hh (4H,).")
