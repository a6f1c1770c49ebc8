"""RWKV-4's forward with fused elementwise kernels: the same equations as ``models/rwkv.py``, fewer passes.

``rwkv.py`` is the readable reference: layer norm, token shift, mixes and gates are NumPy ops from
``nn.functional``, each a pass (or several) over (B, T, C) arrays. Here the layer norm and the
token-shift mixes of a block are one compiled pass (``kernels.fused_numba.ln_shift_mix``), and the
gates run in place in one pass each, so a prompt's time goes to its matrix products. Matrix
products are still ``F.linear`` (float32 BLAS or a compact weight's kernels).

``RWKV(..., fused=True)`` (the default of ``RWKV``) runs ``run_fused``; ``fused=False`` runs the
reference ``RWKV._run``. ``tests/test_fused.py`` holds the two equal (rtol 1e-5) in both modes.
"""
from __future__ import annotations

import numpy as np

from ..kernels import fused_numba as K
from ..nn import functional as F


def time_mix_fused(x, x_prev, wkv_state, att, ln_w, ln_b, eps, wkv, keep_last=None):
    """ln1 + TimeMix of ``models.rwkv.time_mix`` from the block's input x (B, T, C) (not ln1's output).

    x_prev: (B, C) the ln1 output of the token before x[:, 0]. Returns (out (B, T', C) with T' = T
    or keep_last, the new x_prev, the new wkv_state)."""
    mus = (att["time_mix_k"], att["time_mix_v"], att["time_mix_r"])                 # 3 x (C,)
    (xk, xv, xr), h_last = K.ln_shift_mix(x, x_prev, ln_w, ln_b, eps, mus)        # each (B, T, C)
    k = F.linear(xk, att["key.weight"])                               # (B, T, C)
    v = F.linear(xv, att["value.weight"])
    w = -np.exp(att["time_decay"])                                    # (C,)
    u = att["time_first"]
    if x.shape[1] == 1:
        y, wkv_state = wkv.wkv_step(w, u, k[:, 0], v[:, 0], wkv_state)
        y = y[:, None]                                                # (B, 1, C)
    else:
        y, wkv_state = wkv.wkv_forward(w, u, k, v, wkv_state)         # (B, T, C)
    if keep_last is not None:
        xr, y = xr[:, -keep_last:], y[:, -keep_last:]
    r = F.linear(xr, att["receptance.weight"])                        # (B, T', C)
    y = np.ascontiguousarray(y)
    K.sigmoid_gate(r, y)                                              # y *= sigmoid(r), one pass
    return F.linear(y, att["output.weight"]), h_last, wkv_state


def channel_mix_fused(x, x_prev, ffn, ln_w, ln_b, eps):
    """ln2 + ChannelMix of ``models.rwkv.channel_mix`` from the block's residual x (B, T, C).
    Returns (out (B, T, C), the new x_prev)."""
    mus = (ffn["time_mix_k"], ffn["time_mix_r"])                                   # 2 x (C,)
    (xk, xr), h_last = K.ln_shift_mix(x, x_prev, ln_w, ln_b, eps, mus)
    k = K.squared_relu_(F.linear(xk, ffn["key.weight"]))              # (B, T, F): relu(k)^2 in place
    kv = F.linear(k, ffn["value.weight"])                             # (B, T, C)
    K.sigmoid_gate(F.linear(xr, ffn["receptance.weight"]), kv)        # kv *= sigmoid(r)
    return kv, h_last


def run_fused(model, tokens, state, last_only: bool):
    """``RWKV._run`` with the fused kernels: tokens (B, T) from ``state`` -> (logits, new state)."""
    p, eps = model.params, model.config.layer_norm_epsilon
    new = type(state).empty_like(state)
    x = p["emb.weight"][tokens]                                       # (B, T, C)
    x = F.layer_norm(x, p["ln0.weight"], p["ln0.bias"], eps)[0]
    for i, (att, ffn) in enumerate(model.blocks):
        b = f"blocks.{i}."
        keep = 2 if last_only and i == len(model.blocks) - 1 else None   # as in RWKV._run
        branch, new.att_x[i], (new.aa[i], new.bb[i], new.pp[i]) = time_mix_fused(
            x, state.att_x[i], (state.aa[i], state.bb[i], state.pp[i]), att,
            p[b + "ln1.weight"], p[b + "ln1.bias"], eps, model.wkv, keep)
        if keep:
            x = x[:, -keep:] + branch                                 # (B, 2, C)
        else:
            x += branch                                               # the residual stream
        branch, new.ffn_x[i] = channel_mix_fused(x, state.ffn_x[i], ffn, p[b + "ln2.weight"],
                                                 p[b + "ln2.bias"], eps)
        x += branch
    if last_only:
        x = x[:, -1]
    x = F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], eps)[0]
    return F.linear(x, p["head.weight"]), new
