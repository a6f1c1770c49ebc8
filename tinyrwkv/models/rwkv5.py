"""RWKV-5.2 ("Eagle"): RWKV-4 with a matrix-valued state per head.

RWKV-4 keeps, per channel, a decayed sum of values weighted by e^k: one number (plus a
denominator). RWKV-5 cuts the C channels into H heads of N = C / H channels and keeps, per head,
an N x N matrix: the decayed sum of outer products k v^T, read with the receptance r, like linear
attention with a decay. The whole model (x: (B, T, C)):

    x = ln0(emb[tokens])
    for each block:  x = x + TimeMix(ln1(x));  x = x + ChannelMix(ln2(x))
    logits = head(ln_out(x))

TimeMix, per token t, with x_{t-1} the previous token's input (token shift) and the same
mu x_t + (1 - mu) x_{t-1} mixes as RWKV-4 (``token_mix``):

    r, k, v = W_r xr_t, W_k xk_t, W_v xv_t            each cut into H heads: (H, N)
    g = SiLU(W_g xg_t)                                 an output gate, new in v5
    w = exp(-exp(time_decay))                          (H, N) decay FACTOR in (0, 1), per key channel
    y_t[j] = sum_i r_t[i] (S[i, j] + u[i] k_t[i] v_t[j])      per head; u = time_faaaa (H, N)
    S[i, j] <- w[i] S[i, j] + k_t[i] v_t[j]                   S: (N, N) per head, [key i, value j]
    out_t = W_o (GroupNorm_H(y_t) * g)                 ln_x: a LayerNorm per head, eps 64e-5

ChannelMix is RWKV-4's unchanged (``rwkv.channel_mix``). The recurrence runs in the WKV-5/6
kernels (``tinyrwkv.kernels.wkv6_*``, the same kernels as RWKV-6: v5 is v6 with a decay constant
in time). There is no denominator and no running max: with 0 < w < 1 and the GroupNorm the sums
stay bounded, and the state is a plain matrix (``MatrixState``).

Parameters (internal names; table in ``tinyrwkv.layouts``): RWKV-4's, plus per block
att.time_mix_g (C,), att.gate.weight (C, C), att.ln_x.weight/bias (C,), and
att.time_decay, att.time_faaaa (H, N) instead of time_decay, time_first (C,).

This file also holds what RWKV-5, -6 and -7 share: ``MatrixRWKV`` (the block loop over a
``MatrixState``) and ``init_matrix_params`` (random weights of the right structure).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..kernels import get_wkv
from ..nn import functional as F
from .rwkv import ParamScope, RWKVBase, RWKVConfig, channel_mix, param_shapes, token_mix, token_shift
from .state import MatrixState


def init_matrix_params(config: RWKVConfig, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random float32 parameters with the structure of a trained RWKV-5/6/7 (tests, benchmarks).

    Matrices ~ N(0, 1/fan_in) (LoRA "up" matrices scaled by 0.1), the embedding ~ N(0, scale^2);
    LayerNorm gains near 1, biases near 0; mixing coefficients in [0, 1]; decays such that the
    per-step factor w lies well inside (0, 1); the v7 constants (k_k, k_a, v0, a0) near their
    initial values. Values are random so that every parameter matters in a parity test.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        leaf = name.split(".", 2)[-1] if name.startswith("blocks.") else name
        normal = lambda s=1.0: s * rng.standard_normal(shape)  # noqa: E731
        if name == "emb.weight":
            value = normal(scale)
        elif leaf in ("ln0.weight", "ln1.weight", "ln2.weight", "att.ln_x.weight", "ln_out.weight"):
            value = 1.0 + normal(0.1)
        elif leaf.endswith(".bias"):
            value = normal(0.1)
        elif leaf.split(".")[-1].startswith(("time_mix_", "time_maa_", "x_")) and len(shape) == 1:
            value = rng.uniform(0.0, 1.0, shape)
        elif leaf == "att.time_decay":                    # v5 (H, N), v6 (H, N) before the LoRA
            value = rng.uniform(-5.0, 0.5, shape)
        elif leaf == "att.time_faaaa":
            value = rng.uniform(-0.5, 0.5, shape)
        elif leaf == "att.w0":
            value = rng.uniform(-4.0, 1.0, shape)
        elif leaf in ("att.a0", "att.r_k"):
            value = normal(0.3)
        elif leaf == "att.v0":
            value = 1.0 + normal(0.3)
        elif leaf == "att.k_k":
            value = 0.85 + normal(0.1)
        elif leaf == "att.k_a":
            value = 1.0 + normal(0.1)
        elif leaf == "att.time_maa_w2":                   # (5, Dm, C)
            value = normal(0.1 / np.sqrt(shape[1]))
        elif len(shape) == 2:                             # (out, in), LoRA ones included
            value = normal(1.0 / np.sqrt(shape[1]))
            if leaf.endswith(("w2", "a2", "v2", "g2")):   # LoRA up-projections: small, as trained ones are
                value *= 0.1
        else:
            raise AssertionError(f"init_matrix_params: no rule for {name} {shape}")
        params[name] = np.ascontiguousarray(value, np.float32)
    return params


class MatrixRWKV(RWKVBase):
    """The block loop shared by RWKV-5, -6 and -7 over a ``MatrixState``.

    A version sets VERSION and implements ``time_mix(i, h (B, T, C), att_x (B, C), S (B, H, N, N),
    carry, keep) -> (out (B, T or keep, C), S, carry)`` and ``channel_mix(h, ffn_x, ffn) -> (out, new
    ffn_x)``; ``carry`` is what one block hands to the next inside a forward (v7's first-layer values);
    ``keep``: when not None, only the last ``keep`` positions' outputs are computed (the state still
    sees every token).
    """

    STATE = MatrixState
    init_params = staticmethod(init_matrix_params)

    def __init__(self, config: RWKVConfig, params: Mapping, backend: str = "auto", wkv_threads="auto"):
        self.wkv = get_wkv(backend, version=int(self.VERSION))      # the version's WKV kernels
        self._setup(config, params, backend, wkv_threads, self.wkv.__name__.endswith("_numba"))
        self.blocks = [(ParamScope(self.params, f"blocks.{i}.att."), ParamScope(self.params, f"blocks.{i}.ffn."))
                       for i in range(self.config.n_layer)]

    def init_state(self, batch_size: int = 1) -> MatrixState:
        """The empty state for ``batch_size`` sequences (all zeros)."""
        c = self.config
        return MatrixState.zeros(c.n_layer, c.n_embd, c.head_size, batch_size)

    def heads(self, x):
        """(B, T, C) -> (B, T, H, N): the channels cut into heads (a view)."""
        return x.reshape(*x.shape[:-1], self.config.n_head, self.config.head_size)

    def wkv_run(self, *args, T: int):
        """The recurrence over T tokens (the kernels' forward), or one step when T == 1.
        Inputs (B, T, H, N); returns (y (B, T, H, N), S)."""
        if T == 1:           # one token: the step kernel (no thread pool for so little work)
            step_args = [a[:, 0] if a.ndim == 4 else a for a in args[:-1]]
            y, S = self.wkv.step(*step_args, args[-1])
            return y[:, None], S
        return self.wkv.forward(*args)

    def _run(self, tokens, state: MatrixState, last_only: bool):
        """The network on token ids (B, T) from ``state``. Returns (logits (B, T, V) or (B, V), new state)."""
        p, eps = self.params, self.config.layer_norm_epsilon
        new = MatrixState.empty_like(state)
        x = p["emb.weight"][tokens]                                   # (B, T, C)
        x = F.layer_norm(x, p["ln0.weight"], p["ln0.bias"], eps)[0]
        carry = None
        for i, (att, ffn) in enumerate(self.blocks):
            b = f"blocks.{i}."
            # When only the last logits are read, the last block's outputs are needed at the last
            # position, and channel-mix's token shift there needs the one before it: 2 positions
            # instead of T after the WKV (as RWKV-4 does; ~6% of a 512-token prompt at 168M).
            keep = 2 if last_only and i == len(self.blocks) - 1 and tokens.shape[1] > 2 else None
            h = F.layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], eps)[0]
            branch, new.wkv[i], carry = self.time_mix(i, h, state.att_x[i], state.wkv[i], carry, keep)
            new.att_x[i] = h[:, -1]
            if keep:
                x = x[:, -keep:] + branch                             # (B, 2, C)
            else:
                x += branch                                           # the residual stream
            # (with keep = 2, h[:, 0]'s own token shift below is wrong, but its output is dropped)
            h = F.layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], eps)[0]
            branch, new.ffn_x[i] = self.channel_mix(h, state.ffn_x[i], ffn)
            x += branch
        if last_only:
            x = x[:, -1]                                              # (B, C): the head only where needed
        x = F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], eps)[0]
        return F.linear(x, p["head.weight"]), new                     # (B, [T,] V)

    def output(self, y, g, att):
        """W_o (GroupNorm_H(y) * g): y (B, T, H, N) the WKV output, g (B, T, C) the gate -> (B, T, C)."""
        B, T = y.shape[:2]
        y = F.group_norm(y.reshape(B, T, -1), self.config.n_head, att["ln_x.weight"], att["ln_x.bias"],
                         self.config.group_norm_epsilon)
        y *= g
        return F.linear(y, att["output.weight"])


class RWKV5(MatrixRWKV):
    """RWKV-5.2 "Eagle" in NumPy: same API as ``RWKV`` (forward, step, generate, the CLI)."""

    VERSION = 5.2

    def time_mix(self, i, x, x_prev, S, carry, keep=None):
        """RWKV-5.2 TimeMix on ln1's output x (B, T, C), from x_prev (B, C) and S (B, H, N, N)."""
        att = self.blocks[i][0]
        xx = token_shift(x, x_prev)                                   # x_{t-1}: (B, T, C)
        dx = x - xx                                                   # x_t - x_{t-1}
        r = F.linear(token_mix(xx, dx, att["time_mix_r"]), att["receptance.weight"])   # (B, T, C)
        k = F.linear(token_mix(xx, dx, att["time_mix_k"]), att["key.weight"])
        v = F.linear(token_mix(xx, dx, att["time_mix_v"]), att["value.weight"])
        w = np.exp(-np.exp(att["time_decay"]))                       # (H, N) in (0, 1), constant in time
        u = att["time_faaaa"]                                         # (H, N)
        y, S = self.wkv_run(self.heads(r), self.heads(k), self.heads(v), w, u, S, T=x.shape[1])
        if keep:                                                      # only the last positions are read
            xx, dx, y = xx[:, -keep:], dx[:, -keep:], y[:, -keep:]
        g = F.silu(F.linear(token_mix(xx, dx, att["time_mix_g"]), att["gate.weight"]))
        return self.output(y, g, att), S, carry

    def channel_mix(self, x, x_prev, ffn):
        return channel_mix(x, x_prev, ffn)                            # RWKV-4's, unchanged
