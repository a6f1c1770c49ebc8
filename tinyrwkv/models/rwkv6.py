"""RWKV-6 ("Finch"): RWKV-5 whose token shift and decay depend on the data.

RWKV-5 mixes x_t with x_{t-1} by learned constants and decays its state by a learned constant
per channel. RWKV-6 makes both depend on the current input through small low-rank MLPs
("LoRA", rank Dm for the mixes, Dw for the decay): how much of the previous token to take in, and
how fast to forget, are decided token by token.

TimeMix, per token t (x: ln1's output, (B, T, C); lerp(a, b, mu) = a + (b - a) * mu):

    back   = x_{t-1} - x_t                                         token shift, as a difference
    h      = tanh(W1 (x_t + back * maa_x))                          (5 Dm,): five codes, one per mix
    m_s    = W2_s h_s                    for s in w, k, v, r, g   (C,) data-dependent extra mix
    xs     = x_t + back * (maa_s + m_s)                             the five token-shifted inputs
    r, k, v = W_r xr, W_k xk, W_v xv;   g = SiLU(W_g xg)
    w_t    = exp(-exp(time_decay + Wd2 tanh(Wd1 xw)))             (H, N) decay FACTOR, now per token
    y_t, S = WKV-5/6(r, k, v, w_t, u)                             u = time_faaaa; as in RWKV-5
    out_t  = W_o (GroupNorm_H(y_t) * g)

ChannelMix (the mixes as lerps, same as RWKV-4 otherwise):

    k = W_k (x_t + back * maa_k);  r = W_r (x_t + back * maa_r);  out = sigmoid(r) * W_v relu(k)^2

The recurrence is the same kernel as RWKV-5's (``tinyrwkv.kernels.wkv6_*``) with w of shape
(B, T, H, N) instead of (H, N). Parameters: see ``tinyrwkv.layouts.BLOCK[6]``.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F
from .rwkv import gated_ffn, token_shift
from .rwkv5 import MatrixRWKV


def lerp_shift(x, back, mu):
    """x_t + (x_{t-1} - x_t) * mu with back = x_{t-1} - x_t: RWKV-6/7's token shift (mu in [0, 1],
    (C,) or (B, T, C)). mu = 0 keeps the current token, mu = 1 takes the previous one."""
    mixed = np.multiply(back, mu)
    mixed += x
    return mixed


class RWKV6(MatrixRWKV):
    """RWKV-6 "Finch" in NumPy: same API as ``RWKV`` (forward, step, generate, the CLI)."""

    VERSION = 6

    def time_mix(self, i, x, x_prev, S, carry, keep=None):
        """RWKV-6 TimeMix on ln1's output x (B, T, C), from x_prev (B, C) and S (B, H, N, N)."""
        att = self.blocks[i][0]
        B, T, C = x.shape
        back = token_shift(x, x_prev) - x                              # x_{t-1} - x_t: (B, T, C)
        # the five data-dependent mixes: one shared down-projection, five up-projections
        h = np.tanh(F.linear(lerp_shift(x, back, att["time_maa_x"]), att["time_maa_w1"]))    # (B, T, 5 Dm)
        h = h.reshape(B, T, 5, -1)                                    # (B, T, 5, Dm)
        m = np.einsum("btsd,sdc->sbtc", h, att["time_maa_w2"])       # (5, B, T, C): W2_s h_s
        mw, mk, mv, mr, mg = m
        r = F.linear(lerp_shift(x, back, att["time_maa_r"] + mr), att["receptance.weight"])   # (B, T, C)
        k = F.linear(lerp_shift(x, back, att["time_maa_k"] + mk), att["key.weight"])
        v = F.linear(lerp_shift(x, back, att["time_maa_v"] + mv), att["value.weight"])
        xg = lerp_shift(x, back, att["time_maa_g"] + mg)
        xw = lerp_shift(x, back, att["time_maa_w"] + mw)
        d = F.linear(np.tanh(F.linear(xw, att["time_decay_w1"])), att["time_decay_w2"])      # (B, T, C)
        w = np.exp(-np.exp(self.heads(d) + att["time_decay"]))       # (B, T, H, N) in (0, 1), per token
        y, S = self.wkv_run(self.heads(r), self.heads(k), self.heads(v), w, att["time_faaaa"], S, T=T)
        if keep:                                                      # only the last positions are read
            xg, y = xg[:, -keep:], y[:, -keep:]
        g = F.silu(F.linear(xg, att["gate.weight"]))
        return self.output(y, g, att), S, carry

    def channel_mix(self, x, x_prev, ffn_params):
        """RWKV-6 ChannelMix: RWKV-4's with lerp mixes. Returns (out (B, T, C), the new x_prev)."""
        back = token_shift(x, x_prev) - x
        out = gated_ffn(lerp_shift(x, back, ffn_params["time_maa_k"]), lerp_shift(x, back, ffn_params["time_maa_r"]),
                        ffn_params)
        return out, x[:, -1]
