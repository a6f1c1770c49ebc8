"""Self-checks for lesson 01 (the Elman RNN, backprop through time, vanishing/exploding gradients).

    check.rnn_cell(fn)              one step h = tanh(x W_ih^T + b_ih + h_prev W_hh^T + b_hh)
    check.rnn_cell_backward(fn)     the gradients of that step (dx, dh_prev, dW_ih, dW_hh, db)
    check.clip_by_global_norm(fn)   scale all gradients together so their global norm is <= max_norm
    check.jacobian_norms(fn)        ||d h_{T-1} / d h_{T-1-d}|| for every distance d: the BPTT product

Each check runs the learner's function on fixed inputs and compares it with tinyrwkv's own code
(``RNNLayer.cell`` / ``cell_backward`` / ``step_backward``, ``nn.clip_grad_norm``). When the answer
matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..models.rnn import RNNLayer
from ..nn import clip_grad_norm
from ._checker import CheckFailed, expect_close, expect_shape, expect_true, expect_tuple, exercise, matches


def _rnn_step_inputs(seed=101, B=3, D=4, H=5):
    """A float64 RNNLayer with non-zero biases, an input x (B, D) and a previous state h_prev (B, H)."""
    rng = np.random.default_rng(seed)
    layer = RNNLayer(D, H, rng=rng, dtype=np.float64)
    x = rng.normal(size=(B, D))
    h_prev = 0.8 * rng.normal(size=(B, H))
    return layer, x, h_prev


def _params(layer):
    return tuple(layer.params[k].copy() for k in ("w_ih", "w_hh", "b_ih", "b_hh"))


# --------------------------------------------------------------------------- 1. the cell, forward


@exercise("01", library=(
    "tinyrwkv.models.rnn:RecurrentLayer.cell",
    "tinyrwkv.models.rnn:RNNLayer.step",
    "tinyrwkv.models.rnn:RecurrentLayer.forward",
))
def rnn_cell(fn):
    """fn(x (B, D), h_prev (B, H), w_ih (H, D), w_hh (H, H), b_ih (H,), b_hh (H,)) -> h (B, H)."""
    layer, x, h_prev = _rnn_step_inputs()
    w_ih, w_hh, b_ih, b_hh = _params(layer)
    (want,), _ = layer.cell(x, (h_prev,))                                  # (B, H)
    got = fn(x.copy(), h_prev.copy(), w_ih, w_hh, b_ih, b_hh)
    expect_shape("h", got, want.shape)
    pre = x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh
    expect_close("h", got, want, mistakes={
        "you forgot the tanh (h is the pre-activation).": pre,
        "you left out b_hh (torch has two biases, b_ih and b_hh; add both).": np.tanh(pre - b_hh),
        "you left out b_ih (torch has two biases, b_ih and b_hh; add both).": np.tanh(pre - b_ih),
        "you left out the recurrent term h_prev @ w_hh.T: without it there is no memory.": np.tanh(pre - h_prev @ w_hh.T),
        "use tanh, not ReLU (the Elman RNN of torch.nn.RNN is tanh by default).": np.maximum(pre, 0),
    })


# --------------------------------------------------------------------------- 2. the cell, backward


@exercise("01", library=(
    "tinyrwkv.models.rnn:RecurrentLayer.cell_backward",
    "tinyrwkv.models.rnn:RNNLayer.step_backward",
    "tinyrwkv.models.rnn:RecurrentLayer.backward",
))
def rnn_cell_backward(fn):
    """fn(dh, x, h_prev, h, w_ih, w_hh) -> (dx (B, D), dh_prev (B, H), dw_ih (H, D), dw_hh (H, H), db (H,))."""
    layer, x, h_prev = _rnn_step_inputs(seed=102)
    w_ih, w_hh, _, _ = _params(layer)
    (h,), cache = layer.cell(x, (h_prev,))
    dh = np.random.default_rng(7).normal(size=h.shape)                     # upstream gradient (B, H)
    layer.zero_grad()
    want_dx, (want_dh_prev,) = layer.cell_backward((dh,), cache)
    g = layer.grads
    want = {"dx": want_dx, "dh_prev": want_dh_prev, "dw_ih": g["w_ih"], "dw_hh": g["w_hh"], "db": g["b_ih"]}

    out = fn(dh.copy(), x.copy(), h_prev.copy(), h.copy(), w_ih, w_hh)
    expect_tuple(out, 5, "dx, dh_prev, dw_ih, dw_hh, db")
    got = dict(zip(want, out))
    for name in want:
        expect_shape(name, got[name], want[name].shape)

    # Typical mistakes, each pushed through the same formulas so every output gets its hint.
    dpre = dh * (1 - h ** 2)                                               # the right one (B, H)
    wrong_dpre = {
        "you skipped the tanh: multiply dh by (1 - h**2) first, the derivative of tanh at the output.": dh,
        "the tanh derivative is 1 - h**2 with h the step's OUTPUT, not h_prev.": dh * (1 - h_prev ** 2),
    }
    formulas = {"dx": lambda d: d @ w_ih, "dh_prev": lambda d: d @ w_hh, "dw_ih": lambda d: d.T @ x,
                "dw_hh": lambda d: d.T @ h_prev, "db": lambda d: d.sum(0)}
    extra = {
        "dh_prev": {"dh_prev = dpre @ w_hh (the forward multiplied by w_hh.T, so the backward multiplies by w_hh).":
                    dpre @ w_hh.T},
        "dw_hh": {"dw_hh = dpre.T @ h_prev: the state the weights multiplied, not the new h.": dpre.T @ h},
        "db": {"sum the bias gradient over the batch axis (not the mean).": dpre.mean(0)},
    }
    for name, formula in formulas.items():
        hints = {message: formula(d) for message, d in wrong_dpre.items()}
        hints.update(extra.get(name, {}))
        expect_close(name, got[name], want[name], mistakes=hints)


# --------------------------------------------------------------------------- 3. gradient clipping


def _gradients(scale, seed=103):
    rng = np.random.default_rng(seed)
    return {"w_ih": scale * rng.normal(size=(5, 4)), "w_hh": scale * rng.normal(size=(5, 5)),
            "b": scale * rng.normal(size=(5,))}


@exercise("01", library=(
    "tinyrwkv.nn.optim:clip_grad_norm",
))
def clip_by_global_norm(fn):
    """fn(grads: dict name -> array, max_norm) -> (clipped: dict of new arrays, norm before clipping: float)."""
    max_norm = 1.0
    for scale, situation in ((3.0, "above"), (0.05, "below")):
        grads = _gradients(scale)
        want = {k: g.copy() for k, g in grads.items()}
        want_norm = clip_grad_norm(want, max_norm)                        # tinyrwkv's, in place on the copies
        out = fn({k: g.copy() for k, g in grads.items()}, max_norm)
        expect_tuple(out, 2, "the clipped dict and the norm before clipping")
        clipped, norm = out
        expect_true(isinstance(clipped, dict) and set(clipped) == set(grads),
                    f"the first return value must be a dict with the same keys {sorted(grads)}")
        total_after = np.sqrt(sum(float(np.sum(np.asarray(g) ** 2)) for g in clipped.values()))
        if situation == "above" and not matches(norm, want_norm) and matches(norm, total_after):
            raise CheckFailed("return the global norm measured BEFORE clipping (it is what you log to spot spikes).")
        expect_close(f"the norm ({situation} max_norm)", norm, want_norm, mistakes={
            "the global norm is sqrt(sum of squares over ALL arrays), not the sum of per-array norms.":
                sum(np.linalg.norm(g) for g in grads.values()),
            "that is the squared norm: take the square root.": want_norm ** 2,
        })
        for k in grads:
            per_tensor = grads[k] * min(1.0, max_norm / np.linalg.norm(grads[k]))
            hints = {"clip all arrays together by ONE factor max_norm / global_norm, not each array by its own norm "
                     "(that changes the gradient's direction).": per_tensor}
            if situation == "below":
                hints["when the global norm is already below max_norm, leave the gradients unchanged."] = \
                    grads[k] * max_norm / want_norm
            expect_close(f"clipped[{k!r}] ({situation} max_norm)", clipped[k], want[k], mistakes=hints)


# --------------------------------------------------------------------------- 4. the BPTT product


def _jacobian_inputs(seed=104, D=3, H=6, T=12, radius=1.3):
    """A float64 RNN whose W_hh has spectral radius ``radius``, run over one sequence of T inputs."""
    rng = np.random.default_rng(seed)
    layer = RNNLayer(D, H, rng=rng, dtype=np.float64)
    w = rng.normal(size=(H, H))
    layer.params["w_hh"][...] = w * radius / np.max(np.abs(np.linalg.eigvals(w)))
    x = np.repeat(rng.normal(size=(1, T, D)), H, axis=0)                   # (H, T, D): H identical rows
    return layer, x


def reference_jacobian_norms(layer, x) -> np.ndarray:
    """||d h_{T-1} / d h_{T-1-d}||_2 for d = 0 .. T-1, by tinyrwkv's own BPTT (``step_backward``).

    x holds H copies of one sequence; backpropagating the H unit vectors e_k from h_{T-1} gives,
    row by row, the Jacobian of h_{T-1} with respect to every earlier state.
    """
    _, _, (_, _, caches) = layer.forward(x)
    H = layer.hidden_size
    T = x.shape[1]
    rows = np.eye(H)                                                       # row k: e_k^T d h_{T-1}/d h_{T-1}
    norms = [np.linalg.norm(rows, 2)]
    for t in range(T - 1, 0, -1):                                          # steps T-1 .. 1
        _, (rows,) = layer.step_backward((rows,), caches[t])               # now d h_{T-1} / d h_{t-1}
        norms.append(np.linalg.norm(rows, 2))
    layer.zero_grad()
    return np.array(norms)                                                 # (T,), index = distance


@exercise("01", library=(
    "tinyrwkv.exercises.lesson01_rnn:reference_jacobian_norms",
    "tinyrwkv.models.rnn:RNNLayer.step_backward",
    "tinyrwkv.models.rnn:RecurrentLayer.cell_backward",
    "tinyrwkv.models.rnn:RecurrentLayer.backward",
))
def jacobian_norms(fn):
    """fn(w_hh (H, H), hs (T, H)) -> (T,): entry d is the spectral norm of d h_{T-1} / d h_{T-1-d}."""
    layer, x = _jacobian_inputs()
    y, _, _ = layer.forward(x)
    hs = y[0]                                                              # (T, H): h_0 .. h_{T-1}
    w_hh = layer.params["w_hh"].copy()
    want = reference_jacobian_norms(layer, x)
    got = fn(w_hh.copy(), hs.copy())
    expect_shape("the result", got, want.shape)
    expect_true(np.isclose(np.asarray(got, dtype=np.float64)[0], 1.0),
                "entry 0 is d h_{T-1} / d h_{T-1}, the identity matrix, whose norm is 1.")

    def products(jac, norm):
        P, out = np.eye(w_hh.shape[0]), [1.0]
        for t in range(len(hs) - 1, 0, -1):
            P = P @ jac(t)
            out.append(norm(P))
        return np.array(out)

    spectral = lambda P: np.linalg.norm(P, 2)  # noqa: E731
    jac = lambda t: (1 - hs[t] ** 2)[:, None] * w_hh  # noqa: E731
    expect_close("the result", got, want, mistakes={
        "you left out the tanh derivative: each step's Jacobian is diag(1 - h_t**2) @ w_hh, not w_hh alone.":
            products(lambda t: w_hh, spectral),
        "the tanh derivative at step t uses h_t (that step's output), not h_{t-1}.":
            products(lambda t: (1 - hs[t - 1] ** 2)[:, None] * w_hh, spectral),
        "use the spectral norm np.linalg.norm(P, 2), not the Frobenius norm.": products(jac, np.linalg.norm),
        "the product is J_{T-1} @ J_{T-2} @ ... (the latest step on the LEFT): P = P @ J_t as you walk back.":
            _reversed_products(jac, len(hs), spectral, w_hh.shape[0]),
        "diag(1 - h**2) multiplies the ROWS of w_hh: J_t = (1 - h_t**2)[:, None] * w_hh.":
            products(lambda t: w_hh * (1 - hs[t] ** 2)[None, :], spectral),
    }, atol=0, rtol=1e-6)


def _reversed_products(jac, T, norm, H):
    """The same chain multiplied in the wrong order: J_t @ P (earliest step on the left)."""
    P, out = np.eye(H), [1.0]
    for t in range(T - 1, 0, -1):
        P = jac(t) @ P
        out.append(norm(P))
    return np.array(out)
