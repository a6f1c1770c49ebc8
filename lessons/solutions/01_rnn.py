"""Solutions to lesson 01's exercises (the Elman RNN, BPTT, vanishing and exploding gradients)."""
import numpy as np


def rnn_cell(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """h = tanh(x W_ih^T + b_ih + h_prev W_hh^T + b_hh): (B, D), (B, H) -> (B, H)."""
    return np.tanh(x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh)


def rnn_cell_backward(dh, x, h_prev, h, w_ih, w_hh):
    """Gradients of one step, given dL/dh (B, H): returns dx, dh_prev, dw_ih, dw_hh, db."""
    dpre = dh * (1 - h ** 2)             # (B, H): through the tanh, whose derivative is 1 - tanh^2
    dx = dpre @ w_ih                     # (B, D)
    dh_prev = dpre @ w_hh                # (B, H)
    dw_ih = dpre.T @ x                   # (H, D)
    dw_hh = dpre.T @ h_prev              # (H, H)
    db = dpre.sum(axis=0)                # (H,): the same for b_ih and b_hh
    return dx, dh_prev, dw_ih, dw_hh, db


def clip_by_global_norm(grads, max_norm):
    """Scales every gradient by one factor so the global L2 norm is <= max_norm; returns (clipped, norm)."""
    norm = float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values())))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return {name: g * scale for name, g in grads.items()}, norm


def jacobian_norms(w_hh, hs):
    """Spectral norm of d h_{T-1} / d h_{T-1-d} for d = 0 .. T-1; hs (T, H) holds h_0 .. h_{T-1}."""
    T, H = hs.shape
    P = np.eye(H)                                    # d h_{T-1} / d h_{T-1}
    norms = [np.linalg.norm(P, 2)]
    for t in range(T - 1, 0, -1):
        J = (1 - hs[t] ** 2)[:, None] * w_hh         # d h_t / d h_{t-1} = diag(1 - h_t^2) W_hh
        P = P @ J                                    # d h_{T-1} / d h_{t-1}
        norms.append(np.linalg.norm(P, 2))
    return np.array(norms)
