"""RWKV-7 ("Goose", x070): the state update becomes a generalized delta rule.

RWKV-5/6 only ever ADD k v^T to a decayed state: once a key is written, a new value for the same
key piles on top of the old one. RWKV-7 first REMOVES part of what the state holds along a key
direction, then writes: S <- S (diag(w) - kk^T (a * kk)) + v k^T, the delta rule of fast-weight
memories with a learned per-channel decay w and an in-context learning rate a. This is what lets
a fixed-size state keep key -> value associations up to date (lesson 12's associative recall).

TimeMix, per token t (x: ln1's output (B, T, C); back = x_{t-1} - x_t; lerp as in RWKV-6):

    xr, xw, xk, xv, xa, xg = x + back * (x_r, x_w, x_k, x_v, x_a, x_g)      six token shifts
    r = W_r xr;  k = W_k xk;  v = W_v xv
    w = exp(-e^{-1/2} sigmoid(w0 + W_w2 tanh(W_w1 xw)))       decay FACTOR in (e^{-0.61}, 1), per channel
    a = sigmoid(a0 + W_a2 W_a1 xa)                             in-context learning rate in (0, 1)
    g = W_g2 sigmoid(W_g1 xg)                                  output gate
    kk = normalize(k * k_k) per head                           the (unit) key direction to erase along
    k  = k * (1 + (a - 1) * k_a)                               the key actually written
    v  = v                                          in block 0 (and v_first = v)
    v  = v + (v_first - v) * sigmoid(v0 + W_v2 W_v1 xv)        in later blocks: a residual to block 0's values
    per head, S (N, N) indexed [value i, key j]:
        S <- S diag(w) + (S a') b'^T + v k^T     with a' = -kk, b' = kk * a    (the WKV-7 kernel)
        y = S r
    y = GroupNorm_H(y) + (sum_N r * k * r_k) v                  per head: a "bonus" for the current token
    out = W_o (y * g)

ChannelMix (no receptance gate any more): out = W_v relu(W_k (x + back * x_k))^2.

Parameters: see ``tinyrwkv.layouts.BLOCK[7]``; block 0's v0/v1/v2 exist in BlinkDL's files but
are never used. The recurrence runs in ``tinyrwkv.kernels.wkv7_*``.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F
from .rwkv import token_shift
from .rwkv5 import MatrixRWKV
from .rwkv6 import lerp_shift

# w = exp(-e^{-1/2} sigmoid(.)): the decay factor stays in (exp(-0.606531), 1), never 0
DECAY_SCALE = np.float32(np.exp(-0.5))


class RWKV7(MatrixRWKV):
    """RWKV-7 "Goose" (x070) in NumPy: same API as ``RWKV`` (forward, step, generate, the CLI)."""

    VERSION = 7

    def time_mix(self, i, x, x_prev, S, v_first, keep=None):
        """RWKV-7 TimeMix on ln1's output x (B, T, C), from x_prev (B, C) and S (B, H, N, N).
        ``v_first`` is block 0's values (B, T, C) (None when i == 0). Returns (out, S, v_first)."""
        att = self.blocks[i][0]
        back = token_shift(x, x_prev) - x                              # x_{t-1} - x_t: (B, T, C)
        r = F.linear(lerp_shift(x, back, att["x_r"]), att["receptance.weight"])        # (B, T, C)
        k = F.linear(lerp_shift(x, back, att["x_k"]), att["key.weight"])
        xv = lerp_shift(x, back, att["x_v"])
        v = F.linear(xv, att["value.weight"])
        xw = lerp_shift(x, back, att["x_w"])
        w = F.linear(np.tanh(F.linear(xw, att["w1"])), att["w2"])    # (B, T, C): the decay's LoRA
        w = np.exp(-DECAY_SCALE * F.sigmoid(w + att["w0"]))           # decay factor in (0.545, 1)
        a = F.sigmoid(F.linear(F.linear(lerp_shift(x, back, att["x_a"]), att["a1"]), att["a2"]) + att["a0"])
        xg = lerp_shift(x, back, att["x_g"])

        kk = F.l2_normalize(self.heads(k * att["k_k"]))              # (B, T, H, N) unit key per head
        k = k * (1 + (a - 1) * att["k_a"])                            # (B, T, C)
        if i == 0:
            v_first = v
        else:                                                         # value residual to block 0
            mix = F.sigmoid(F.linear(F.linear(xv, att["v1"]), att["v2"]) + att["v0"])
            v = v + (v_first - v) * mix

        r4, k4, v4 = self.heads(r), self.heads(k), self.heads(v)      # (B, T, H, N)
        y, S = self.wkv_run(r4, self.heads(w), k4, v4, -kk, kk * self.heads(a), S, T=x.shape[1])
        if keep:                                                      # only the last positions are read
            xg, y, r4, k4, v4 = xg[:, -keep:], y[:, -keep:], r4[:, -keep:], k4[:, -keep:], v4[:, -keep:]
        g = F.linear(F.sigmoid(F.linear(xg, att["g1"])), att["g2"])   # (B, T, C) output gate
        B, T = y.shape[:2]
        y = F.group_norm(y.reshape(B, T, -1), self.config.n_head, att["ln_x.weight"], att["ln_x.bias"],
                         self.config.group_norm_epsilon)             # (B, T, C)
        bonus = np.sum(r4 * k4 * att["r_k"], axis=-1, keepdims=True) * v4      # (B, T, H, N)
        y += bonus.reshape(B, T, -1)
        y *= g
        return F.linear(y, att["output.weight"]), S, v_first

    def channel_mix(self, x, x_prev, ffn):
        """RWKV-7 ChannelMix: W_v relu(W_k (x + back * x_k))^2. Returns (out (B, T, C), the new x_prev)."""
        back = token_shift(x, x_prev) - x
        k = F.linear(lerp_shift(x, back, ffn["x_k"]), ffn["key.weight"])   # (B, T, F)
        return F.linear(F.squared_relu(k, out=k), ffn["value.weight"]), x[:, -1]
