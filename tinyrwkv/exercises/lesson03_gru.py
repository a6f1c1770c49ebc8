"""Self-checks for lesson 03 (the GRU).

    check.gru_cell(fn)               one step, torch's equations and gate order (r, z, n)
    check.gru_hold_biases(fn)        biases that make a GRU keep its state: the update gate as a switch
    check.recurrent_num_params(fn)   parameters of torch.nn.RNN / LSTM / GRU, stacked and bidirectional

Each check runs the learner's function on fixed inputs and compares it with tinyrwkv's own code
(``GRULayer``, ``RNN`` / ``LSTM`` / ``GRU.num_parameters``). When the answer matches a typical
mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..models.gru import GRU, GRULayer
from ..models.lstm import LSTM
from ..models.rnn import RNN
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, expect_shape, expect_true, expect_tuple, exercise


def _gru_step_inputs(seed=301, B=3, D=4, H=5):
    """A float64 GRULayer with visibly non-zero biases, an input x (B, D) and a previous state (B, H)."""
    rng = np.random.default_rng(seed)
    layer = GRULayer(D, H, rng=rng, dtype=np.float64)
    layer.params["b_hh"][...] = rng.normal(size=3 * H)                 # so misplacing b_hn shows
    x = rng.normal(size=(B, D))
    h_prev = 0.8 * rng.normal(size=(B, H))
    return layer, x, h_prev


def _gru_variant(x, h_prev, w_ih, w_hh, b_ih, b_hh, order="rzn", reset="torch", swap_interpolation=False):
    """A GRU step with an optional mistake: another gate order, another place for the reset gate, or
    the interpolation's weights swapped."""
    H = h_prev.shape[1]
    xw = x @ w_ih.T + b_ih                                               # (B, 3H)
    hw = h_prev @ w_hh.T + b_hh                                          # (B, 3H)
    xs = {name: xw[:, k * H:(k + 1) * H] for k, name in enumerate(order)}
    hs = {name: hw[:, k * H:(k + 1) * H] for k, name in enumerate(order)}
    r = F.sigmoid(xs["r"] + hs["r"])
    z = F.sigmoid(xs["z"] + hs["z"])
    w_hn = w_hh[order.index("n") * H:(order.index("n") + 1) * H]        # (H, H)
    b_hn = b_hh[order.index("n") * H:(order.index("n") + 1) * H]        # (H,)
    if reset == "torch":                                                 # r * (W_hn h + b_hn)
        n = np.tanh(xs["n"] + r * hs["n"])
    elif reset == "before_matmul":                                       # Cho et al. 2014: W_hn (r * h) + b_hn
        n = np.tanh(xs["n"] + (r * h_prev) @ w_hn.T + b_hn)
    elif reset == "bias_outside":                                        # r * (W_hn h) + b_hn
        n = np.tanh(xs["n"] + r * (h_prev @ w_hn.T) + b_hn)
    elif reset == "none":
        n = np.tanh(xs["n"] + hs["n"])
    return z * n + (1 - z) * h_prev if swap_interpolation else (1 - z) * n + z * h_prev


# --------------------------------------------------------------------------- 1. the cell


@exercise("03", library=(
    "tinyrwkv.models.rnn:RecurrentLayer.cell",
    "tinyrwkv.models.gru:GRULayer.step",
    "tinyrwkv.models.rnn:RecurrentLayer.forward",
    "tinyrwkv.exercises.lesson03_gru:_gru_variant",
))
def gru_cell(fn):
    """fn(x (B, D), h_prev (B, H), w_ih (3H, D), w_hh (3H, H), b_ih (3H,), b_hh (3H,)) -> h (B, H)."""
    layer, x, h_prev = _gru_step_inputs()
    params = tuple(layer.params[k].copy() for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
    (want,), _ = layer.cell(x, (h_prev,))
    got = fn(x.copy(), h_prev.copy(), *params)
    expect_shape("h", got, want.shape)

    def wrong(**mistake):
        return _gru_variant(x, h_prev, *params, **mistake)

    expect_close("h", got, want, mistakes={
        "h = (1 - z) * n + z * h_prev: z is the share of the OLD state kept (you swapped z and 1 - z).":
            wrong(swap_interpolation=True),
        "the gates are stacked in torch's order r, z, n: rows [0:H] reset, [H:2H] update, [2H:3H] candidate.":
            [wrong(order=o) for o in ("zrn", "nrz", "rnz", "znr", "nzr")],
        "torch applies the reset gate AFTER the matrix product: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); "
        "you wrote the original paper's W_hn (r * h).": wrong(reset="before_matmul"),
        "in torch, r multiplies b_hn too: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).": wrong(reset="bias_outside"),
        "you left out the reset gate r in the candidate n.": wrong(reset="none"),
    })


# --------------------------------------------------------------------------- 2. the update gate as a switch


def _hold_test_layer(seed=302, D=6, H=8):
    rng = np.random.default_rng(seed)
    return GRULayer(D, H, rng=rng, dtype=np.float64), rng


@exercise("03")
def gru_hold_biases(fn):
    """fn(hidden_size) -> (b_ih (3H,), b_hh (3H,)) that make any torch-initialised GRU keep h_0 for 20 steps."""
    layer, rng = _hold_test_layer()
    H = layer.hidden_size
    out = fn(H)
    expect_tuple(out, 2, "b_ih, b_hh")
    b_ih, b_hh = (np.asarray(b, dtype=np.float64) for b in out)
    expect_shape("b_ih", b_ih, (3 * H,))
    expect_shape("b_hh", b_hh, (3 * H,))
    expect_true(np.all(np.isfinite(b_ih)) and np.all(np.isfinite(b_hh)), "the biases must be finite numbers")
    layer.params["b_ih"][...] = b_ih
    layer.params["b_hh"][...] = b_hh
    x = rng.normal(size=(4, 20, layer.input_size))                      # (B, T, D) ordinary inputs
    h0 = np.tanh(rng.normal(size=(4, H)))                                # (B, H) a state worth keeping
    _, (h_final,), (_, _, caches) = layer.forward(x, (h0,))
    drift = float(np.abs(h_final - h0).max())
    if drift > 1e-3:
        z = np.stack([c[2] for c in caches])                             # (T, B, H): the update gates
        r = np.stack([c[1] for c in caches])
        moved = f"after 20 steps h moved by up to {drift:.3g} from h_0 (allowed 1e-3). "
        if z.mean() < 0.1:
            raise CheckFailed(moved + f"The update gate z averaged {z.mean():.4f}, near 0: h = (1 - z) * n + "
                              f"z * h_prev then REPLACES the state by the candidate n at every step. To keep h_0, "
                              f"z must be near 1: a large POSITIVE bias on z's block (rows [H:2H]).")
        if z.mean() > 0.9:
            raise CheckFailed(moved + f"The update gate z averaged {z.mean():.4f}: close to 1, but after 20 steps the "
                              f"old state keeps only about z**20 = {z.mean() ** 20:.3f} of its weight. Use a larger bias.")
        raise CheckFailed(moved + f"The update gate z averaged {z.mean():.3f} and the reset gate r {r.mean():.3f}: "
                          f"h = (1 - z) * n + z * h_prev keeps the state only when z is close to 1, and z is the "
                          f"SECOND block in torch's order (r, z, n).")


# --------------------------------------------------------------------------- 3. counting parameters


_STACKS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_CONFIGS = [("rnn", 10, 20, 1, False), ("lstm", 10, 20, 1, False), ("gru", 10, 20, 1, False),
            ("gru", 3, 7, 2, False), ("lstm", 5, 4, 3, True), ("rnn", 6, 3, 2, True), ("gru", 2, 9, 2, True)]


@exercise("03", library=(
    "tinyrwkv.nn.module:Module.num_parameters",
))
def recurrent_num_params(fn):
    """fn(kind in {"rnn", "lstm", "gru"}, input_size, hidden_size, num_layers, bidirectional) -> int."""
    for kind, D, H, L, bi in _CONFIGS:
        want = _STACKS[kind](D, H, num_layers=L, bidirectional=bi, rng=np.random.default_rng(0)).num_parameters()
        got = fn(kind, D, H, L, bi)
        where = f"for {kind!r}, input_size={D}, hidden_size={H}, num_layers={L}, bidirectional={bi}: "
        expect_true(np.ndim(got) == 0 and float(got) == int(got), where + f"return one whole number, got {got!r}")
        got = int(got)
        if got == want:
            continue
        G, dirs = _GATES[kind], 2 if bi else 1
        where += f"you have {got}, expected {want}. "

        def count(gates=G, biases=2, upper_input=dirs * H, directions=dirs):
            per = lambda d_in: gates * H * (d_in + H) + biases * gates * H  # noqa: E731
            return directions * (per(D) + (L - 1) * per(upper_input))

        if got == count(gates=1) or (G != 1 and got == count(gates=4 if G == 3 else 3)):
            raise CheckFailed(where + f"a {kind.upper()} layer has {G} gate block(s): W_ih is ({G}H, input_size).")
        if got == count(biases=1):
            raise CheckFailed(where + "torch keeps TWO biases per layer and direction, b_ih and b_hh.")
        if bi and got == count(upper_input=H):
            raise CheckFailed(where + "in a bidirectional stack, layers above the first read both directions: "
                                      "their input size is 2H.")
        if bi and got == count(directions=1):
            raise CheckFailed(where + "bidirectional means two full sets of weights per layer, one per direction.")
        if L > 1 and got == count(upper_input=D):
            raise CheckFailed(where + "layers above the first read the layer below, not the input.")
        raise CheckFailed(where + f"per layer and direction: W_ih ({G}H, in), W_hh ({G}H, H), b_ih and b_hh ({G}H,).")
