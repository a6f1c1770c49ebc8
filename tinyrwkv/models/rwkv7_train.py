"""Training RWKV-7: what training adds to the RWKV-7 equations (as ``rwkv_train`` does for RWKV-4).

The RWKV-7 ("Goose", x070) block, in parallel mode from the empty state (x: (B, T, C), h = ln1(x),
prev = h shifted one step with zeros in front, xx = prev - h):

    x_r, x_w, x_k, x_v, x_a, x_g = h + xx * mu_*                    six token-shift mixes
    r = W_r x_r    k = W_k x_k    v = W_v x_v                       (B, T, C)
    w = exp(-e^{-1/2} sigmoid(w0 + w2 tanh(w1 x_w)))                 decay factor in (0.545, 1)
    a = sigmoid(a0 + a2 a1 x_a)                                      in-context learning rate ("iclr")
    g = g2 sigmoid(g1 x_g)                                           output gate
    kk = normalize_per_head(k * k_k)                                 unit key for the removal
    k = k * (1 + (a - 1) * k_a)                                      the written key, scaled by the rate
    v = v + (v_first - v) * sigmoid(v0 + v2 v1 x_v)                  value residual (layers > 0;
                                                                     layer 0 sets v_first = v)
    y = WKV7(r, w, k, v, -kk, kk * a)                                 per head: the delta rule
    y = GroupNorm_H(y) + (sum_head r * k * r_k) v                    normalise; a "now" bonus
    out = W_o (y * g)

    ChannelMix:  out = W_v relu(W_k (h + xx * mu_k))^2

and the model x = ln0(emb); for each block x += TimeMix(ln1 x); x += ChannelMix(ln2 x); logits =
head(ln_out x). These are the equations of BlinkDL's RWKV_x070 (the ``rwkv`` pip package,
rwkv/model.py; RWKV-LM's RWKV-v7 train code), where the low-rank matrices are applied as x @ w1;
here every matrix is used as ``F.linear(x, W)`` in torch's (out, in) layout (w1: (Dw, C),
w2: (C, Dw) ...), as in ``tinyrwkv.layouts``.

This file holds exactly what training needs in addition:

1. **Caches and backward passes**: ``time_mix_forward / time_mix_backward`` (the WKV part through
   the kernels' ``backward``, derived in ``kernels/wkv7_numpy.py``), ``channel_mix_forward /
   channel_mix_backward``, and ``RWKV7LanguageModel.forward / .backward``. The one new wrinkle
   against RWKV-4 is the value residual: every layer's v leans on layer 0's, so the gradient of
   v_first is summed over the layers on the way down and added to layer 0's v.
2. **The RWKV-7 initialisation** (``init_rwkv7_params``), after RWKV-LM's x070 train code.
3. **The ``LanguageModel`` interface** (``RWKV7LanguageModel``), so ``tinyrwkv.training.train``
   fits it like every other model.

Parameters are ONE dict of arrays under ``tinyrwkv.layouts``' v7 names (BlinkDL's, with ``ln0``
at the top and the low-rank matrices as (out, in)); block 0 has no v0/v1/v2 (it has no value
residual). ``scripts/train_tiny_rwkv7.py`` writes a trained model as a checkpoint
``tinyrwkv.load`` reads.
"""
from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from .. import layouts
from ..kernels import get_wkv
from ..nn import check_tokens
from ..nn import functional as F
from .rwkv import RWKVConfig, check_params, token_mix
from .rwkv_train import BlockwiseTrainable, orthogonal, token_shift_backward

# The decay factor is w = exp(-DECAY_SCALE * sigmoid(.)): DECAY_SCALE = e^{-1/2} (BlinkDL writes
# it as w = -softplus(-z) - 0.5 for the log-log decay; exp(-exp(that)) is the same number).
DECAY_SCALE = math.exp(-0.5)
L2_EPSILON = 1e-12                # torch.nn.functional.normalize's eps
TIME_MIXES = ("r", "w", "k", "v", "a", "g")

# What time_mix_forward keeps for its backward (a tuple with names: cache.w is the decay factor).
TimeMixCache = namedtuple("TimeMixCache", "xx mixes r w_hidden w_sig w k_raw v_raw a_hidden a g_hidden g "
                                          "kk kk_norm k v v_hidden v_sig v_first y_hat gn_cache rk z zg")


def trainable_shapes(config: RWKVConfig) -> dict[str, tuple]:
    """name -> shape of every trainable parameter: ``tinyrwkv.layouts``' v7 table without the
    optional rows (block 0's v0, v1, v2: layer 0 sets v_first, it has no value residual to learn)."""
    return layouts.param_shapes(config.to_dict(), required_only=True)


def rwkv7_config(n_layer, n_embd, vocab_size, ffn_dim, head_size, decay_lora=32, a_lora=32, v_lora=32,
                 gate_lora=32) -> RWKVConfig:
    """An RWKV-7 ``RWKVConfig`` (version 7) with BlinkDL's minimum LoRA size 32 unless told."""
    return RWKVConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=vocab_size, ffn_dim=ffn_dim, version=7,
                      head_size=head_size, decay_lora=decay_lora, a_lora=a_lora, v_lora=v_lora,
                      gate_lora=gate_lora)


# --------------------------------------------------------------------------- small pieces


def _shift(h):
    """xx = prev - h for training from the empty state: prev = h one step later, zeros in front. (B, T, C)."""
    prev = np.zeros_like(h)
    prev[:, 1:] = h[:, :-1]
    return prev - h


def _shift_backward(dxx):
    """Gradient w.r.t. h of xx = prev - h, given dL/dxx (B, T, C)."""
    return token_shift_backward(dxx) - dxx


def _mix_backward(dm, xx, mu):
    """m = h + xx * mu with xx = prev - h: (dL/dh through xx excluded) -> (dh_direct, dxx, dmu (C,))."""
    return dm, dm * mu, np.sum(dm * xx, axis=(0, 1))


def _heads(x, H):
    """(B, T, C) -> (B, T, H, N), a view."""
    return x.reshape(x.shape[0], x.shape[1], H, -1)


# --------------------------------------------------------------------------- time mix


def time_mix_forward(h, att, v_first, H, wkv):
    """RWKV-7 TimeMix on ln1's output from the empty state, keeping what the backward needs.

    h: (B, T, C); att: the block's ``att.*`` parameters; v_first: None in layer 0 (which sets it),
    else layer 0's v (B, T, C); wkv: a WKV-7 backend. Returns (out (B, T, C), v_first, cache).
    """
    B, T, C = h.shape
    xx = _shift(h)                                                    # x_{t-1} - x_t
    xr, xw, xk, xv, xa, xg = (token_mix(h, xx, att["x_" + m]) for m in TIME_MIXES)
    r = F.linear(xr, att["receptance.weight"])                        # (B, T, C)
    w_hidden = np.tanh(F.linear(xw, att["w1"]))                       # (B, T, Dw)
    w_sig = F.sigmoid(att["w0"] + F.linear(w_hidden, att["w2"]))
    w = np.exp(-DECAY_SCALE * w_sig)                                  # (B, T, C) decay factor
    k_raw = F.linear(xk, att["key.weight"])
    v_raw = F.linear(xv, att["value.weight"])
    a_hidden = F.linear(xa, att["a1"])                                # (B, T, Da)
    a = F.sigmoid(att["a0"] + F.linear(a_hidden, att["a2"]))          # (B, T, C) in (0, 1)
    g_hidden = F.sigmoid(F.linear(xg, att["g1"]))                     # (B, T, Dg)
    g = F.linear(g_hidden, att["g2"])                                 # (B, T, C)

    kk_raw = _heads(k_raw * att["k_k"], H)                            # (B, T, H, N)
    kk_norm = np.maximum(np.sqrt(np.einsum("bthn,bthn->bth", kk_raw, kk_raw))[..., None], L2_EPSILON)
    kk = kk_raw / kk_norm                                             # unit length per head
    k = k_raw * (1 + (a - 1) * att["k_a"])
    if v_first is None:                                               # layer 0
        v, v_first, v_hidden, v_sig = v_raw, v_raw, None, None
    else:
        v_hidden = F.linear(xv, att["v1"])                            # (B, T, Dv)
        v_sig = F.sigmoid(att["v0"] + F.linear(v_hidden, att["v2"]))
        v = v_raw + (v_first - v_raw) * v_sig

    a4 = _heads(a, H)
    y, _ = wkv.forward(*(_heads(x, H) for x in (r, w, k, v)), -kk, kk * a4)   # (B, T, H, N)
    y_hat, gn_cache = F.layer_norm(y, np.ones(C // H, y.dtype), np.zeros(C // H, y.dtype),
                                   layouts.GROUP_NORM_EPSILON)
    y_hat = y_hat.reshape(B, T, C)
    rk = np.sum(_heads(r * k, H) * att["r_k"], axis=-1, keepdims=True)          # (B, T, H, 1)
    z = y_hat * att["ln_x.weight"] + att["ln_x.bias"] + (rk * _heads(v, H)).reshape(B, T, C)
    zg = z * g
    out = F.linear(zg, att["output.weight"])
    cache = TimeMixCache(xx, (xr, xw, xk, xv, xa, xg), r, w_hidden, w_sig, w, k_raw, v_raw, a_hidden, a, g_hidden, g,
             kk, kk_norm, k, v, v_hidden, v_sig, v_first, y_hat, gn_cache, rk, z, zg)
    return out, v_first, cache


def time_mix_backward(dout, cache, att, H, wkv, dv_first=None):
    """Backward of ``time_mix_forward``. dout: (B, T, C).

    dv_first: layer 0 only: dL/dv_first summed over the later layers (layer 0's v IS v_first, so
    it joins the gradient of its v). Returns (dh (B, T, C), the gradient this layer sends to
    v_first (B, T, C), None in layer 0, grads by short name).
    """
    (xx, mixes, r, w_hidden, w_sig, w, k_raw, v_raw, a_hidden, a, g_hidden, g,
     kk, kk_norm, k, v, v_hidden, v_sig, v_first, y_hat, gn_cache, rk, z, zg) = cache
    B, T, C = r.shape
    grads = {}
    dzg, grads["output.weight"], _ = F.linear_backward(dout, zg, att["output.weight"])
    dz, dg = dzg * g, dzg * z
    # z = GroupNorm(y) + rk * v
    grads["ln_x.weight"] = np.sum(dz * y_hat, axis=(0, 1))
    grads["ln_x.bias"] = np.sum(dz, axis=(0, 1))
    dz4 = _heads(dz, H)
    drk = np.sum(dz4 * _heads(v, H), axis=-1, keepdims=True)          # (B, T, H, 1)
    dv = (rk * dz4).reshape(B, T, C)
    rk_term = drk * att["r_k"]                                        # d(r * k) per channel
    dr = (rk_term * _heads(k, H)).reshape(B, T, C)
    dk = (rk_term * _heads(r, H)).reshape(B, T, C)
    grads["r_k"] = np.sum(drk * _heads(r * k, H), axis=(0, 1))
    dy, _, _ = F.layer_norm_backward(_heads(dz * att["ln_x.weight"], H), gn_cache)
    # y = WKV7(r, w, k, v, -kk, kk * a)
    a4 = _heads(a, H)
    gr, gw, gk, gv, ga, gb = wkv.backward(*(_heads(x, H) for x in (r, w, k, v)), -kk, kk * a4, dy)
    dr += gr.reshape(B, T, C)
    dk += gk.reshape(B, T, C)
    dv += gv.reshape(B, T, C)
    dkk = gb * a4 - ga                                                # (B, T, H, N)
    da = (gb * kk).reshape(B, T, C)

    # v: the value residual (layers > 0) or v_first itself (layer 0: the caller adds dv_first)
    if v_sig is None:
        dv_raw, dv_first = dv + (0 if dv_first is None else dv_first), None
    else:
        dv_raw, dv_first = dv * (1 - v_sig), dv * v_sig
        dpre = F.sigmoid_backward(dv * (v_first - v_raw), v_sig)
        grads["v0"] = np.sum(dpre, axis=(0, 1))
        dv_hidden, grads["v2"], _ = F.linear_backward(dpre, v_hidden, att["v2"])
        dxv_lora, grads["v1"], _ = F.linear_backward(dv_hidden, mixes[3], att["v1"])
    # k = k_raw (1 + (a - 1) k_a);  kk = normalize(k_raw * k_k)
    scale = 1 + (a - 1) * att["k_a"]
    dk_raw = dk * scale
    da += dk * k_raw * att["k_a"]
    grads["k_a"] = np.sum(dk * k_raw * (a - 1), axis=(0, 1))
    dkk_raw = (dkk - kk * np.sum(dkk * kk, axis=-1, keepdims=True)) / kk_norm   # through x / ||x||
    dkk_raw = dkk_raw.reshape(B, T, C)
    dk_raw += dkk_raw * att["k_k"]
    grads["k_k"] = np.sum(dkk_raw * k_raw, axis=(0, 1))
    # w = exp(-DECAY_SCALE * sigmoid(w0 + w2 tanh(w1 x_w)))
    dpre = F.sigmoid_backward(gw.reshape(B, T, C) * w * -DECAY_SCALE, w_sig)
    grads["w0"] = np.sum(dpre, axis=(0, 1))
    dw_hidden, grads["w2"], _ = F.linear_backward(dpre, w_hidden, att["w2"])
    dxw, grads["w1"], _ = F.linear_backward(F.tanh_backward(dw_hidden, w_hidden), mixes[1], att["w1"])
    # a = sigmoid(a0 + a2 a1 x_a)
    dpre = F.sigmoid_backward(da, a)
    grads["a0"] = np.sum(dpre, axis=(0, 1))
    da_hidden, grads["a2"], _ = F.linear_backward(dpre, a_hidden, att["a2"])
    dxa, grads["a1"], _ = F.linear_backward(da_hidden, mixes[4], att["a1"])
    # g = g2 sigmoid(g1 x_g)
    dg_hidden, grads["g2"], _ = F.linear_backward(dg, g_hidden, att["g2"])
    dxg, grads["g1"], _ = F.linear_backward(F.sigmoid_backward(dg_hidden, g_hidden), mixes[5], att["g1"])
    # the three square projections
    dxr, grads["receptance.weight"], _ = F.linear_backward(dr, mixes[0], att["receptance.weight"])
    dxk, grads["key.weight"], _ = F.linear_backward(dk_raw, mixes[2], att["key.weight"])
    dxv, grads["value.weight"], _ = F.linear_backward(dv_raw, mixes[3], att["value.weight"])
    if v_sig is not None:
        dxv += dxv_lora
    # the six mixes m = h + xx * mu
    dh, dxx = np.zeros_like(xx), np.zeros_like(xx)
    for m, dmix in zip(TIME_MIXES, (dxr, dxw, dxk, dxv, dxa, dxg)):
        d_h, d_xx, grads["x_" + m] = _mix_backward(dmix, xx, att["x_" + m])
        dh += d_h
        dxx += d_xx
    return dh + _shift_backward(dxx), dv_first, grads


# --------------------------------------------------------------------------- channel mix


def channel_mix_forward(h, ffn):
    """RWKV-7 ChannelMix on ln2's output from the empty state. h: (B, T, C) -> (out (B, T, C), cache)."""
    xx = _shift(h)
    xk = token_mix(h, xx, ffn["x_k"])
    k = F.linear(xk, ffn["key.weight"])                               # (B, T, F)
    k2 = F.squared_relu(k)
    return F.linear(k2, ffn["value.weight"]), (xx, xk, k, k2)


def channel_mix_backward(dout, cache, ffn):
    """Backward of ``channel_mix_forward``. Returns (dh (B, T, C), grads by short name)."""
    xx, xk, k, k2 = cache
    grads = {}
    dk2, grads["value.weight"], _ = F.linear_backward(dout, k2, ffn["value.weight"])
    dxk, grads["key.weight"], _ = F.linear_backward(F.squared_relu_backward(dk2, k), xk, ffn["key.weight"])
    dh, dxx, grads["x_k"] = _mix_backward(dxk, xx, ffn["x_k"])
    return dh + _shift_backward(dxx), grads


# --------------------------------------------------------------------------- initialisation


def init_rwkv7_params(config: RWKVConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """RWKV-7's own initialisation, as float32 arrays under ``trainable_shapes``' names.

    After RWKV-LM's RWKV-v7 train code (``RWKV_Tmix_x070`` / ``RWKV_CMix_x070`` /
    ``generate_init_weight``). For layer l of L and channel i of C, with r01 = l / (L - 1),
    r10 = 1 - l / L, p = i / C, lin = i / (C - 1) - 1/2 and zig a zigzag over each head
    (-1 .. 1, squared with its sign):

        x_r, x_g = 1 - p^(0.2 r10)    x_w, x_a = 1 - p^(0.9 r10)    x_k, x_v = 1 - p^(0.7 r10)
        ffn.x_k = 1 - p^(r10^4)                   (mixes: how much of the PREVIOUS token)
        w0 = -6 + 6 lin'^(1 + r01^0.3) + 0.5 + 2.5 zig     with lin' = i / (C - 1): slow .. fast decay
        a0 = -0.19 + 0.3 zig + 0.4 lin     v0 = 0.73 - 0.4 lin     k_k = 0.71 - 0.1 lin
        k_a = 1.02    r_k = -0.04    ln_x.weight = ((l + 1) / L)^0.7
        w1, a1, v1, g1 = 0;  w2, a2, v2, g2 orthogonal x 0.1    (the low-rank paths start silent)
        receptance, value ~ U(+-0.5 / sqrt C)   key ~ U(+-0.05 / sqrt C)   output = 0
        ffn.key ~ U(+-0.5 / sqrt C)   ffn.value = 0   emb ~ U(+-1e-4)
        head orthogonal, gain 0.5 sqrt(V / C) when V > C      LayerNorms 1, 0

    The zero output matrices make every block start as the identity on the residual stream.
    n_layer = 1 takes r01 = 0 (RWKV-LM divides by L - 1).
    """
    rng = np.random.default_rng(seed)
    L, C, N = config.n_layer, config.n_embd, config.head_size
    i = np.arange(C, dtype=np.float64)
    p, lin = i / C, i / max(C - 1, 1) - 0.5
    zig = ((i % N) - (N - 1) / 2) / max((N - 1) / 2, 1)
    zig = zig * np.abs(zig)
    mix_power = {"r": 0.2, "w": 0.9, "k": 0.7, "v": 0.7, "a": 0.9, "g": 0.2}
    params = {}
    for name, shape in trainable_shapes(config).items():
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
        r01 = layer / (L - 1) if L > 1 else 0.0
        r10 = 1.0 - layer / L
        leaf = name.split(".", 2)[-1] if name.startswith("blocks.") else name
        bound = lambda scale: rng.uniform(-scale / math.sqrt(C), scale / math.sqrt(C), shape)  # noqa: E731
        if leaf.startswith(("ln1", "ln2")) or name.startswith(("ln0", "ln_out")):
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif leaf.startswith("att.x_"):
            value = 1.0 - p ** (mix_power[leaf[-1]] * r10)
        elif leaf == "ffn.x_k":
            value = 1.0 - p ** (r10 ** 4)
        elif leaf == "att.w0":
            value = -6 + 6 * (i / max(C - 1, 1)) ** (1 + r01 ** 0.3) + 0.5 + 2.5 * zig
        elif leaf == "att.a0":
            value = -0.19 + 0.3 * zig + 0.4 * lin
        elif leaf == "att.v0":
            value = 0.73 - 0.4 * lin
        elif leaf == "att.k_k":
            value = 0.71 - 0.1 * lin
        elif leaf == "att.k_a":
            value = np.full(shape, 1.02)
        elif leaf == "att.r_k":
            value = np.full(shape, -0.04)
        elif leaf == "att.ln_x.weight":
            value = np.full(shape, ((layer + 1) / L) ** 0.7)
        elif leaf == "att.ln_x.bias":
            value = np.zeros(shape)
        elif leaf in ("att.w1", "att.a1", "att.v1", "att.g1", "att.output.weight", "ffn.value.weight"):
            value = np.zeros(shape)
        elif leaf in ("att.w2", "att.a2", "att.v2", "att.g2"):
            value = orthogonal(rng, shape, 0.1 * (math.sqrt(shape[0] / shape[1]) if shape[0] > shape[1] else 1.0))
        elif leaf in ("att.receptance.weight", "att.value.weight", "ffn.key.weight"):
            value = bound(0.5)
        elif leaf == "att.key.weight":
            value = bound(0.05)
        elif name == "emb.weight":
            value = rng.uniform(-1e-4, 1e-4, shape)
        elif name == "head.weight":
            value = orthogonal(rng, shape, 0.5 * (math.sqrt(shape[0] / shape[1]) if shape[0] > shape[1] else 1.0))
        else:                                                          # pragma: no cover - a new name
            raise KeyError(f"init_rwkv7_params: no rule for {name}")
        params[name] = np.ascontiguousarray(value, dtype=np.float32)
    return params


# --------------------------------------------------------------------------- the trainable model


class RWKV7LanguageModel(BlockwiseTrainable):
    """RWKV-7 as a trainable ``LanguageModel``: parallel-mode forward with caches, hand-written backward.

        model = RWKV7LanguageModel(rwkv7_config(n_layer=4, n_embd=64, vocab_size=61, ffn_dim=256, head_size=16))
        logits, cache = model.forward(ids)      # ids (B, T) -> (B, T, V), from the empty state
        model.backward(dlogits, cache)          # ADDS every gradient into model.grads
        train(model, corpus.batches(16, 128), steps=500)          # tinyrwkv.training

    ``config``: an RWKVConfig of version 7 (or its dict). ``params`` (default:
    ``init_rwkv7_params(config, seed)``) is one dict of arrays under ``trainable_shapes``' names. ``backend`` picks the WKV-7 kernels ("numba" | "numpy" | "cuda" | "auto").
    Serial (RNN) mode (``init_state``, ``step``, ``generate``) is the inference ``RWKV7`` of
    models/rwkv7.py on the same arrays (``inference_model()``); a test holds its logits equal to ``forward``'s.
    """

    def __init__(self, config: RWKVConfig, params: Mapping | None = None, backend: str = "auto", seed: int = 0):
        super().__init__()
        if not isinstance(config, RWKVConfig):
            config = RWKVConfig.from_dict(config)
        if config.version != 7:
            raise ValueError(f"RWKV7LanguageModel: the config is RWKV-{config.version}, not RWKV-7")
        params = init_rwkv7_params(config, seed) if params is None else dict(params)
        check_params(config, params)
        self.config = config
        self.vocab_size = config.vocab_size
        self.backend = backend
        self.wkv = get_wkv(backend, version=7)
        self._inference = None                                        # (params dict, RWKV7) built on demand
        for name, value in params.items():
            value = np.asarray(value)
            self.add_param(name, np.ascontiguousarray(value, value.dtype if value.dtype == np.float64 else np.float32))

    def __repr__(self):
        s = self.config
        return (f"RWKV7LanguageModel(n_layer={s.n_layer}, n_embd={s.n_embd}, head_size={s.head_size}, "
                f"ffn_dim={s.ffn_dim}, vocab_size={s.vocab_size}, params={self.num_parameters():,}, "
                f"backend={self.backend!r})")

    # -- parallel mode, with caches --------------------------------------------------------------

    def forward(self, ids):
        """ids (B, T) ints -> (logits (B, T, V), cache), from the empty state."""
        ids = check_tokens("RWKV7LanguageModel.forward ids", ids, self.vocab_size, "(B, T)")
        p, H = self.params, self.config.n_head
        x, ln0_cache = F.layer_norm(p["emb.weight"][ids], p["ln0.weight"], p["ln0.bias"], self.config.layer_norm_epsilon)
        v_first, block_caches = None, []
        for i, (att, ffn) in enumerate(self._blocks()):
            b = f"blocks.{i}."
            h, ln1_cache = F.layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], self.config.layer_norm_epsilon)
            out, v_first, att_cache = time_mix_forward(h, att, v_first, H, self.wkv)
            x = x + out
            h, ln2_cache = F.layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], self.config.layer_norm_epsilon)
            out, ffn_cache = channel_mix_forward(h, ffn)
            x = x + out
            block_caches.append((ln1_cache, att_cache, ln2_cache, ffn_cache))
        h, ln_out_cache = F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], self.config.layer_norm_epsilon)
        return F.linear(h, p["head.weight"]), (ids, ln0_cache, block_caches, ln_out_cache, h)

    def decays(self, ids):
        """The decay factor w every layer applied while reading ids (B, T): (n_layer, B, T, C).

        RWKV-7 chooses it per token from the input (RWKV-4's is one constant per channel)."""
        _, cache = self.forward(ids)
        return np.stack([att_cache.w for _, att_cache, _, _ in cache[2]])

    def backward(self, dlogits, cache):
        """dlogits (B, T, V) -> ADDS the gradient of every parameter into ``self.grads``."""
        ids, ln0_cache, block_caches, ln_out_cache, h = cache
        p, g, H = self.params, self.grads, self.config.n_head
        dh, dhead, _ = F.linear_backward(dlogits, h, p["head.weight"])
        g["head.weight"] += dhead
        dx, dw, db = F.layer_norm_backward(dh, ln_out_cache)
        g["ln_out.weight"] += dw
        g["ln_out.bias"] += db
        dv_first = None                                   # dL/dv_first, summed over layers 1..L-1
        for i, (att, ffn) in reversed(list(enumerate(self._blocks()))):
            b = f"blocks.{i}."
            ln1_cache, att_cache, ln2_cache, ffn_cache = block_caches[i]
            dh, grads = channel_mix_backward(dx, ffn_cache, ffn)
            self._add_grads(b + "ffn.", grads)
            dh, dw, db = F.layer_norm_backward(dh, ln2_cache)
            g[b + "ln2.weight"] += dw
            g[b + "ln2.bias"] += db
            dx = dx + dh
            if i == 0:     # layer 0's v IS v_first: the later layers' gradient joins its own
                dh, _, grads = time_mix_backward(dx, att_cache, att, H, self.wkv, dv_first)
            else:
                dh, dvf, grads = time_mix_backward(dx, att_cache, att, H, self.wkv)
                dv_first = dvf if dv_first is None else dv_first + dvf
            self._add_grads(b + "att.", grads)
            dh, dw, db = F.layer_norm_backward(dh, ln1_cache)
            g[b + "ln1.weight"] += dw
            g[b + "ln1.bias"] += db
            dx = dx + dh
        demb, dw, db = F.layer_norm_backward(dx, ln0_cache)
        g["ln0.weight"] += dw
        g["ln0.bias"] += db
        np.add.at(g["emb.weight"], ids.reshape(-1), demb.reshape(-1, demb.shape[-1]))

    # -- serial (RNN) mode: the inference model's equations ----------------------------------------

    def inference_model(self):
        """The inference ``RWKV7`` (models/rwkv7.py) on this model's arrays (shared, not copied, while
        they are float32), rebuilt only when the parameter dict was replaced (e.g. by ``astype``)."""
        from .rwkv7 import RWKV7

        if self._inference is None or self._inference[0] is not self.params:
            self._inference = (self.params, RWKV7(self.config, self.params, backend=self.backend))
        return self._inference[1]

    def init_state(self, batch_size: int = 1):
        """The empty ``MatrixState``: per layer two token-shift vectors and one (N, N) matrix per head."""
        return self.inference_model().init_state(batch_size)

    def step(self, ids, state):
        """ids (B,) -> (logits (B, V), new state): one RNN-mode step of the inference model."""
        ids = check_tokens("RWKV7LanguageModel.step ids", ids, self.vocab_size, "(B,)")
        return self.inference_model().step(ids, state)

    def state_size(self, context_length: int = 0) -> int:
        """Floats carried per sequence: per layer 2 C (token shift) + H N^2 (the WKV state)."""
        s = self.config
        return s.n_layer * (2 * s.n_embd + s.n_head * s.head_size ** 2)
