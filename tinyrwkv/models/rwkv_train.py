"""Training RWKV-4: what training needs *in addition* to the inference model.

``tinyrwkv/models/rwkv.py`` is the one place where RWKV-4's equations live (read its docstring
first). Inference only ever runs them forward. Training in parallel ("GPT") mode needs three
more things, and this file is exactly those three:

1. **Caches and backward passes.** Every forward piece here is rwkv.py's equation, line for line
   (``token_shift``, x_{t-1} + mu (x_t - x_{t-1}), the same ``F.linear`` / ``F.sigmoid`` /
   ``F.squared_relu`` calls), but
   it also returns what its backward needs; its backward sits right beside it:

       time_mix_forward    / time_mix_backward      (the WKV part via the kernel's wkv_backward)
       channel_mix_forward / channel_mix_backward
       RWKVLanguageModel.forward / .backward         (embedding, ln0, blocks, ln_out, head)

   Training always starts from the empty state (no past), so token shift puts zeros before the
   first token and the WKV sum starts empty; that is what ``wkv_backward`` assumes.

2. **The RWKV-4 initialisation** (``init_rwkv4_params``), which matters far more for RWKV than
   for a Transformer: the decay, bonus and token-shift curves start spread over channels and
   layers, and several matrices start at zero so that each block begins as (nearly) the identity.

3. **The ``LanguageModel`` interface** (``RWKVLanguageModel``), so ``tinyrwkv.training.train``
   (Adam, clipping, the loss logged per step) fits RWKV like every other model of the lineage.

Parameters are ONE dict of arrays under rwkv.py's names and shapes (``param_shapes``), so a trained
model is a checkpoint the inference ``RWKV`` runs as is (``model.inference_model()``), in serial
(RNN) mode for generation, and ``tinyrwkv.load`` reads it back once written as a checkpoint
(``scripts/train_tiny_rwkv.py`` writes config.json + model.safetensors).

The backward of one block, read bottom-up (x is the residual stream, h = ln(x)):

    x_mid = x + TimeMix(ln1(x))        =>   dx    = dx_mid + ln1_backward(TimeMix_backward(dx_mid))
    x_out = x_mid + ChannelMix(ln2(x_mid))  dx_mid = dx_out + ln2_backward(ChannelMix_backward(dx_out))

The residual stream carries the gradient straight through (the "+ dx" terms); each branch adds
its own contribution. Inside a branch, token shift means that x_t feeds both position t (through
mu) and position t+1 (through 1 - mu), so the two gradients are added (``token_shift_backward``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..kernels import get_wkv
from ..nn import check_tokens
from ..nn import functional as F
from .base import LanguageModel
from .rwkv import (RWKV, ParamScope, RWKVConfig, RWKVState, check_params, param_shapes, token_mix,
                   token_shift)

# --------------------------------------------------------------------------- the two small pieces


def token_shift_backward(dx_shifted):
    """Gradient of ``token_shift(x, zeros)`` w.r.t. x: position t's x fed position t+1's x_{t-1}.

    dx_shifted: (B, T, C) -> dx (B, T, C). The zeros in front (the empty state) get no gradient.
    """
    dx = np.zeros_like(dx_shifted)
    dx[:, :-1] = dx_shifted[:, 1:]
    return dx


def mix_backward(dm, x_diff, mu):
    """Gradients of the token-shift mix m = xx + mu (x - xx) = mu x + (1 - mu) xx.

    dm: dL/dm (B, T, C); x_diff: the forward's x - xx (B, T, C); mu: (C,). Returns
    (dL/dx, dL/dxx, dL/dmu (C,)): x gets mu of the gradient, the previous token's xx the rest,
    and mu learns from how x and xx differ.
    """
    d_now = dm * mu
    dmu = np.sum(dm * x_diff, axis=(0, 1))
    return d_now, dm - d_now, dmu


def _empty_shift(x):
    """x_prev for training from the empty state: zeros (B, C), as RWKVState.zeros holds."""
    return np.zeros((x.shape[0], x.shape[2]), x.dtype)


# --------------------------------------------------------------------------- time mix


def time_mix_forward(x, att, wkv):
    """rwkv.time_mix from the empty state, keeping what the backward needs.

    x: (B, T, C) ln1's output; att: the block's ``att.*`` parameters; wkv: a kernel backend.
    Returns (out (B, T, C), cache).
    """
    xx = token_shift(x, _empty_shift(x))                              # x_{t-1}: (B, T, C)
    # mu x_t + (1 - mu) x_{t-1} = x_{t-1} + mu (x_t - x_{t-1}); kept, as linear_backward needs them
    dx = x - xx
    xk = token_mix(xx, dx, att["time_mix_k"])
    xv = token_mix(xx, dx, att["time_mix_v"])
    xr = token_mix(xx, dx, att["time_mix_r"])
    k = F.linear(xk, att["key.weight"])                               # (B, T, C)
    v = F.linear(xv, att["value.weight"])                             # (B, T, C)
    w = -np.exp(att["time_decay"])                                    # (C,) decay per step, < 0
    u = att["time_first"]                                             # (C,) bonus of the current token
    y, _ = wkv.wkv_forward(w, u, k, v)                                # (B, T, C)
    r = F.linear(xr, att["receptance.weight"])                        # (B, T, C)
    sr = F.sigmoid(r)
    ry = sr * y                                                       # the receptance gates the WKV
    out = F.linear(ry, att["output.weight"])                          # (B, T, C)
    return out, (dx, xk, xv, xr, k, v, w, y, sr, ry)


def time_mix_backward(dout, cache, att, wkv):
    """Backward of ``time_mix_forward``. dout: (B, T, C).

    Returns (dx (B, T, C), grads) with grads keyed by the short names of ``att`` (e.g.
    "key.weight", "time_decay"). The WKV recurrence is differentiated by the kernel's
    ``wkv_backward``; it returns dL/dw, and w = -exp(time_decay) gives dw/dtime_decay = w.
    """
    x_diff, xk, xv, xr, k, v, w, y, sr, ry = cache                     # x_diff: the forward's dx = x - xx
    grads = {}
    dry, grads["output.weight"], _ = F.linear_backward(dout, ry, att["output.weight"])
    dy = dry * sr
    dr = F.sigmoid_backward(dry * y, sr)
    gw, gu, dk, dv = wkv.wkv_backward(w, att["time_first"], k, v, dy)
    grads["time_decay"] = gw * w
    grads["time_first"] = gu

    dx, dxx = np.zeros_like(x_diff), np.zeros_like(x_diff)
    for name, proj, x_mixed, dproj in (("k", "key", xk, dk), ("v", "value", xv, dv), ("r", "receptance", xr, dr)):
        dx_mixed, grads[f"{proj}.weight"], _ = F.linear_backward(dproj, x_mixed, att[f"{proj}.weight"])
        d_now, d_before, grads[f"time_mix_{name}"] = mix_backward(dx_mixed, x_diff, att[f"time_mix_{name}"])
        dx += d_now
        dxx += d_before
    return dx + token_shift_backward(dxx), grads


# --------------------------------------------------------------------------- channel mix


def channel_mix_forward(x, ffn):
    """rwkv.channel_mix from the empty state, keeping what the backward needs.

    x: (B, T, C) ln2's output; ffn: the block's ``ffn.*`` parameters. Returns (out (B, T, C), cache).
    """
    xx = token_shift(x, _empty_shift(x))                              # (B, T, C)
    dx = x - xx
    xk = token_mix(xx, dx, ffn["time_mix_k"])
    xr = token_mix(xx, dx, ffn["time_mix_r"])
    k = F.linear(xk, ffn["key.weight"])                               # (B, T, F)
    r = F.linear(xr, ffn["receptance.weight"])                        # (B, T, C)
    k2 = F.squared_relu(k)                                            # (B, T, F)
    kv = F.linear(k2, ffn["value.weight"])                            # (B, T, C)
    sr = F.sigmoid(r)
    return sr * kv, (dx, xk, xr, k, k2, kv, sr)


def channel_mix_backward(dout, cache, ffn):
    """Backward of ``channel_mix_forward``. dout: (B, T, C). Returns (dx (B, T, C), grads by short name)."""
    x_diff, xk, xr, k, k2, kv, sr = cache                              # x_diff: the forward's dx = x - xx
    grads = {}
    dkv = dout * sr
    dr = F.sigmoid_backward(dout * kv, sr)
    dk2, grads["value.weight"], _ = F.linear_backward(dkv, k2, ffn["value.weight"])
    dk = F.squared_relu_backward(dk2, k)                              # (B, T, F)
    dxk, grads["key.weight"], _ = F.linear_backward(dk, xk, ffn["key.weight"])
    dxr, grads["receptance.weight"], _ = F.linear_backward(dr, xr, ffn["receptance.weight"])
    dx_k, dxx_k, grads["time_mix_k"] = mix_backward(dxk, x_diff, ffn["time_mix_k"])
    dx_r, dxx_r, grads["time_mix_r"] = mix_backward(dxr, x_diff, ffn["time_mix_r"])
    return dx_k + dx_r + token_shift_backward(dxx_k + dxx_r), grads


# --------------------------------------------------------------------------- initialisation


def orthogonal(rng, shape, gain=1.0):
    """A (rows, cols) matrix with orthonormal rows or columns (whichever are fewer), times ``gain``.

    The Q of a QR decomposition of a Gaussian matrix, with the signs fixed by R's diagonal so the
    result is uniformly distributed (torch.nn.init.orthogonal_ does the same).
    """
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)                                            # q: (max, min), orthonormal columns
    q *= np.sign(np.diag(r))
    return gain * (q if rows >= cols else q.T)


def init_rwkv4_params(config: RWKVConfig, seed: int = 0, emb_scale: float = 1e-4) -> dict[str, np.ndarray]:
    """RWKV-4's own initialisation, as float32 arrays under rwkv.py's names.

    From BlinkDL's RWKV-LM (RWKV-v4/src/model.py ``RWKV_TimeMix``/``RWKV_ChannelMix``/``RWKV_Init``
    and RWKV-v4neo/src/model.py ``generate_init_weight``; the RWKV paper, Peng et al. 2023, App. E).
    For layer l of L and channel i of C, with r01 = l / (L - 1) (0 -> 1 over the layers) and
    r10 = 1 - l / L (1 -> almost 0):

        time_decay[i] = -5 + 8 (i / (C-1))^(0.7 + 1.3 r01)    slow (w ~ -e^-5) ... fast (w ~ -e^3)
        time_first[i] = log(0.3) + 0.5 * ((i+1) % 3 - 1)      a zigzag around log 0.3
        att.time_mix_k = (i/C)^r10,  time_mix_v = (i/C)^r10 + 0.3 r01,  time_mix_r = (i/C)^(0.5 r10)
        ffn.time_mix_k = ffn.time_mix_r = (i/C)^r10

    so low channels look mostly at the previous token and high channels at the current one, and
    deeper layers mix in less of the past. Matrices:

        emb.weight                          uniform(-emb_scale, emb_scale): tiny; ln0 rescales it
        att.key, att.receptance, att.output, ffn.receptance, ffn.value      zero
        att.value, ffn.key                  orthogonal, gain sqrt(rows/cols) when rows > cols
        head.weight                         orthogonal, gain 0.5 (x sqrt(V/C) when V > C)
        LayerNorms                          weight 1, bias 0

    The zero output matrices (att.output, ffn.value) make every block start as the identity on the
    residual stream, so the untrained network is just emb -> ln -> head and the gradient reaches
    every layer undiminished. (A zero att.key still learns: its gradient is not zero.)
    ``seed`` fixes the random matrices. n_layer = 1 takes r01 = 0 (RWKV-LM divides by L - 1).
    """
    rng = np.random.default_rng(seed)
    L, C = config.n_layer, config.n_embd
    channel = np.arange(C, dtype=np.float64)
    position = channel / C                                            # i / C: 0 .. (C-1)/C
    params = {}
    for name, shape in param_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        kind = name.split(".")[-2]                                    # "ln1", "att", "key", "head" ...
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
        r01 = layer / (L - 1) if L > 1 else 0.0
        r10 = 1.0 - layer / L
        if kind.startswith("ln"):
            value = np.ones(shape) if leaf == "weight" else np.zeros(shape)
        elif leaf == "time_decay":
            value = -5.0 + 8.0 * (channel / max(C - 1, 1)) ** (0.7 + 1.3 * r01)
        elif leaf == "time_first":
            value = math.log(0.3) + 0.5 * ((channel + 1) % 3 - 1)
        elif leaf in ("time_mix_k", "time_mix_v", "time_mix_r"):
            exponent = 0.5 * r10 if (leaf == "time_mix_r" and ".att." in name) else r10
            value = position ** exponent
            if leaf == "time_mix_v":
                value = value + 0.3 * r01
        elif name == "emb.weight":
            value = rng.uniform(-emb_scale, emb_scale, shape)
        elif any(name.endswith(s) for s in ("att.key.weight", "att.receptance.weight", "att.output.weight",
                                            "ffn.receptance.weight", "ffn.value.weight")):
            value = np.zeros(shape)
        else:                                                         # att.value, ffn.key, head
            gain = math.sqrt(shape[0] / shape[1]) if shape[0] > shape[1] else 1.0
            value = orthogonal(rng, shape, gain * (0.5 if name == "head.weight" else 1.0))
        params[name] = np.ascontiguousarray(value, dtype=np.float32)
    return params


# --------------------------------------------------------------------------- the trainable model


class BlockwiseTrainable(LanguageModel):
    """What the trainable RWKVs (this file's RWKV-4, rwkv7_train's RWKV-7) share: per-layer windows on
    the parameter dict, and adding a block's gradients under its prefix."""

    def _blocks(self):
        """(att, ffn) parameter windows per layer, on the *current* dict (astype replaces it)."""
        return [(ParamScope(self.params, f"blocks.{i}.att."), ParamScope(self.params, f"blocks.{i}.ffn."))
                for i in range(self.config.n_layer)]

    def _add_grads(self, prefix: str, grads: Mapping):
        for name, g in grads.items():
            self.grads[prefix + name] += g


class RWKVLanguageModel(BlockwiseTrainable):
    """RWKV-4 as a trainable ``LanguageModel``: parallel-mode forward with caches, hand-written backward.

        model = RWKVLanguageModel(RWKVConfig(n_layer=4, n_embd=64, vocab_size=61, ffn_dim=256))
        logits, cache = model.forward(ids)      # ids (B, T) -> (B, T, V), from the empty state
        model.backward(dlogits, cache)          # ADDS every gradient into model.grads
        train(model, corpus.batches(16, 128), steps=500)          # tinyrwkv.training
        rnn = model.inference_model()           # the inference RWKV on the same arrays (serial mode)

    ``params`` (default: ``init_rwkv4_params(config, seed)``) is one dict of float32 arrays under
    rwkv.py's names; the model keeps the dict given. ``backend`` picks the WKV kernels
    ("numba" | "numpy" | "cuda" | "auto"); every backend returns the same gradients.
    """

    def __init__(self, config: RWKVConfig, params: Mapping | None = None, backend: str = "auto", seed: int = 0):
        super().__init__()
        if not isinstance(config, RWKVConfig):
            config = RWKVConfig.from_dict(config)
        params = init_rwkv4_params(config, seed) if params is None else dict(params)
        check_params(config, params)
        self.config = config
        self.vocab_size = config.vocab_size
        self.backend = backend
        self.wkv = get_wkv(backend)
        for name, value in params.items():
            value = np.asarray(value)
            self.add_param(name, np.ascontiguousarray(value, value.dtype if value.dtype == np.float64 else np.float32))
        self._inference = None                                        # (params dict, RWKV) built on demand

    @classmethod
    def from_inference(cls, model: RWKV, backend: str | None = None) -> "RWKVLanguageModel":
        """A trainable model on a copy of an inference model's weights (e.g. ``tinyrwkv.load(...)``)."""
        return cls(model.config, {k: v.copy() for k, v in model.params.items()}, backend or model.backend)

    def __repr__(self):
        c = self.config
        return (f"RWKVLanguageModel(n_layer={c.n_layer}, n_embd={c.n_embd}, ffn_dim={c.ffn_dim}, "
                f"vocab_size={c.vocab_size}, params={self.num_parameters():,}, backend={self.backend!r})")

    # -- parallel mode, with caches --------------------------------------------------------------

    def forward(self, ids):
        """ids (B, T) ints -> (logits (B, T, V), cache), from the empty state: rwkv.RWKV._run's
        equations, each piece keeping its cache."""
        ids = check_tokens("RWKVLanguageModel.forward ids", ids, self.vocab_size, "(B, T)")
        p, eps = self.params, self.config.layer_norm_epsilon
        x = p["emb.weight"][ids]                                      # (B, T, C)
        x, ln0_cache = F.layer_norm(x, p["ln0.weight"], p["ln0.bias"], eps)
        block_caches = []
        for i, (att, ffn) in enumerate(self._blocks()):
            b = f"blocks.{i}."
            h, ln1_cache = F.layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], eps)
            dx, att_cache = time_mix_forward(h, att, self.wkv)
            x = x + dx
            h, ln2_cache = F.layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], eps)
            dx, ffn_cache = channel_mix_forward(h, ffn)
            x = x + dx
            block_caches.append((ln1_cache, att_cache, ln2_cache, ffn_cache))
        h, ln_out_cache = F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], eps)
        logits = F.linear(h, p["head.weight"])                        # (B, T, V)
        return logits, (ids, ln0_cache, block_caches, ln_out_cache, h)

    def backward(self, dlogits, cache):
        """dlogits (B, T, V) -> ADDS the gradient of every parameter into ``self.grads``."""
        ids, ln0_cache, block_caches, ln_out_cache, h = cache
        p, g = self.params, self.grads
        dh, dhead, _ = F.linear_backward(dlogits, h, p["head.weight"])
        g["head.weight"] += dhead
        dx, dw, db = F.layer_norm_backward(dh, ln_out_cache)          # dx: dL/d(residual stream)
        g["ln_out.weight"] += dw
        g["ln_out.bias"] += db
        for i, (att, ffn) in reversed(list(enumerate(self._blocks()))):
            b = f"blocks.{i}."
            ln1_cache, att_cache, ln2_cache, ffn_cache = block_caches[i]
            # x_out = x_mid + ChannelMix(ln2(x_mid)): the residual passes dx through, the branch adds
            dh, grads = channel_mix_backward(dx, ffn_cache, ffn)
            self._add_grads(b + "ffn.", grads)
            dh, dw, db = F.layer_norm_backward(dh, ln2_cache)
            g[b + "ln2.weight"] += dw
            g[b + "ln2.bias"] += db
            dx = dx + dh
            # x_mid = x + TimeMix(ln1(x))
            dh, grads = time_mix_backward(dx, att_cache, att, self.wkv)
            self._add_grads(b + "att.", grads)
            dh, dw, db = F.layer_norm_backward(dh, ln1_cache)
            g[b + "ln1.weight"] += dw
            g[b + "ln1.bias"] += db
            dx = dx + dh
        demb, dw, db = F.layer_norm_backward(dx, ln0_cache)
        g["ln0.weight"] += dw
        g["ln0.bias"] += db
        # np.add.at, not +=: a token that appears twice must receive both gradients
        np.add.at(g["emb.weight"], ids.reshape(-1), demb.reshape(-1, demb.shape[-1]))

    # -- serial (RNN) mode: the inference model's equations ----------------------------------------

    def inference_model(self) -> RWKV:
        """The inference ``RWKV`` on this model's arrays (shared, not copied, while they are float32),
        rebuilt only when the parameter dict was replaced (e.g. by ``astype``)."""
        if self._inference is None or self._inference[0] is not self.params:
            self._inference = (self.params, RWKV(self.config, self.params, backend=self.backend))
        return self._inference[1]

    def init_state(self, batch_size: int = 1) -> RWKVState:
        return RWKVState.zeros(self.config.n_layer, self.config.n_embd, batch_size)

    def step(self, ids, state):
        """ids (B,) -> (logits (B, V), new state): one RNN-mode step of the inference model."""
        ids = check_tokens("RWKVLanguageModel.step ids", ids, self.vocab_size, "(B,)")
        return self.inference_model().step(ids, state)

    def state_size(self, context_length: int = 0) -> int:
        """Floats carried per sequence: 5 n_layer n_embd, whatever the context length."""
        return 5 * self.config.n_layer * self.config.n_embd
