"""RWKV-4: a language model that trains like a Transformer and runs like an RNN.

The whole model, for tokens t = 1..T (x are (B, T, C) activations, C = n_embd):

    x = ln0(emb[tokens])
    for each of the n_layer blocks:
        x = x + TimeMix(ln1(x))          # mixes information *across time* (replaces attention)
        x = x + ChannelMix(ln2(x))       # mixes information *across channels* (the MLP)
    logits = head(ln_out(x))             # (B, T, V)

TimeMix (``time_mix`` below), for each token t, with x_{t-1} the previous token's input
("token shift") and mu_k, mu_v, mu_r learned per-channel mixing weights in [0, 1]:

    k_t = W_k (mu_k * x_t + (1 - mu_k) * x_{t-1})
    v_t = W_v (mu_v * x_t + (1 - mu_v) * x_{t-1})
    r_t = W_r (mu_r * x_t + (1 - mu_r) * x_{t-1})
    wkv_t = ( sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t )
          / ( sum_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t}     )     (per channel)
    out_t = W_o (sigmoid(r_t) * wkv_t)

    with the decay written in the checkpoint as ``time_decay`` and used as w = -exp(time_decay) < 0
    (so the sum above reads e^{(t-1-i) w + k_i}), and the bonus u = ``time_first``.

ChannelMix (``channel_mix`` below):

    k_t = W_k (mu_k * x_t + (1 - mu_k) * x_{t-1})                       (F,), F = ffn_dim = 4C
    r_t = W_r (mu_r * x_t + (1 - mu_r) * x_{t-1})                       (C,)
    out_t = sigmoid(r_t) * (W_v relu(k_t)^2)

Two ways to run the same equations:

* parallel ("GPT") mode, ``RWKV.forward(tokens)``: all T tokens at once. Every projection is one
  (T, C) @ (C, C)^T matrix product; only the WKV sum runs over time (in a compiled kernel).
* serial (RNN) mode, ``RWKV.step(token, state)``: one token, O(1) work and memory per token. The
  WKV sum is carried as a running numerator ``aa``, denominator ``bb`` and max exponent ``pp``
  (see ``tinyrwkv/kernels/wkv_numpy.py``), and token shift needs only the previous x.

Both modes read and return the same ``RWKVState``, so a prompt runs in parallel mode and
generation continues in RNN mode from where it left off.

Parameters live in ONE dict of float32 arrays (``model.params``) under these names
(C = n_embd, F = ffn_dim, V = vocab_size; matrices in torch's (out, in) layout):

    emb.weight (V, C)   ln0.weight, ln0.bias (C,)
    blocks.{i}.ln1.weight/.bias, blocks.{i}.ln2.weight/.bias (C,)
    blocks.{i}.att.time_decay (C,)   raw: w = -exp(time_decay)
    blocks.{i}.att.time_first (C,)   u
    blocks.{i}.att.time_mix_k/_v/_r (C,)
    blocks.{i}.att.key/value/receptance/output.weight (C, C)
    blocks.{i}.ffn.time_mix_k/_r (C,)
    blocks.{i}.ffn.key.weight (F, C)   ffn.receptance.weight (C, C)   ffn.value.weight (C, F)
    ln_out.weight, ln_out.bias (C,)   head.weight (V, C)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import layouts
from ..kernels import get_wkv
from ..nn import functional as F
from ..nn.module import check_tokens, compare_shapes
from .state import NEG_INF, MatrixState, RWKVState  # noqa: F401  (re-exported: RWKVState's old home)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RWKVConfig:
    """The sizes of an RWKV model of any version; every field can be read off the weight shapes.

    n_layer: blocks; n_embd: C, the width of the residual stream; vocab_size: V;
    ffn_dim: F, the channel-mix hidden width (4 C in the released models);
    layer_norm_epsilon: the eps of every LayerNorm (1e-5 in the released models);
    version: 4, 5.2, 6 or 7 (``tinyrwkv.layouts.VERSIONS``);
    head_size: N, the width of one head (v5-v7; 0 for v4, which has no heads); n_head = C / N;
    decay_lora, mix_lora, a_lora, v_lora, gate_lora: the low-rank sizes (v6: decay and mix; v7:
    decay, a, v and gate; 0 where a version has none);
    group_norm_epsilon: the eps of the per-head GroupNorm after the WKV (v5-v7);
    source, dtype: where the weights came from and how they were stored (informational).
    """

    n_layer: int
    n_embd: int
    vocab_size: int
    ffn_dim: int
    layer_norm_epsilon: float = 1e-5
    source: str = ""
    dtype: str = "float32"
    version: float = 4
    head_size: int = 0
    decay_lora: int = 0
    mix_lora: int = 0
    a_lora: int = 0
    v_lora: int = 0
    gate_lora: int = 0
    group_norm_epsilon: float = layouts.GROUP_NORM_EPSILON

    def __post_init__(self):
        for name in ("n_layer", "n_embd", "vocab_size", "ffn_dim"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"RWKVConfig: {name} must be a positive integer, got {value!r}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"RWKVConfig: layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        if self.version not in layouts.VERSIONS:
            raise ValueError(f"RWKVConfig: version must be one of {layouts.VERSIONS}, got {self.version!r}")
        if self.version != 4:
            N = self.head_size
            if not isinstance(N, (int, np.integer)) or N < 1 or self.n_embd % N:
                raise ValueError(f"RWKVConfig: head_size must be a positive divisor of n_embd = {self.n_embd} "
                                 f"for RWKV-{self.version}, got {N!r}")
        needed = {6: ("decay_lora", "mix_lora"), 7: ("decay_lora", "a_lora", "v_lora", "gate_lora")}
        for name in needed.get(self.version, ()):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                if not (name == "v_lora" and self.n_layer == 1):      # block 0 never uses v's LoRA
                    raise ValueError(f"RWKVConfig: {name} must be a positive integer for RWKV-{self.version}, "
                                     f"got {value!r}")

    @property
    def n_head(self) -> int:
        """H = n_embd / head_size (0 for RWKV-4, which has no heads)."""
        return self.n_embd // self.head_size if self.head_size else 0

    @classmethod
    def from_dict(cls, d: Mapping) -> "RWKVConfig":
        """Builds a config from a dict (e.g. the checkpoint reader's); unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"RWKVConfig: the config dict lacks {missing}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_params(cls, params: Mapping, **extra) -> "RWKVConfig":
        """Reads n_layer, n_embd, vocab_size and ffn_dim off the shapes of RWKV-4 ``params``."""
        try:
            V, C = params["emb.weight"].shape
            ffn_dim = params["blocks.0.ffn.key.weight"].shape[0]
        except KeyError as e:
            raise ValueError(f"RWKVConfig.from_params: parameter {e.args[0]!r} is missing") from None
        n_layer = 1 + max(int(k.split(".")[1]) for k in params if k.startswith("blocks."))
        return cls(n_layer=n_layer, n_embd=C, vocab_size=V, ffn_dim=ffn_dim, **extra)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def param_shapes(config: RWKVConfig) -> dict[str, tuple]:
    """Internal parameter name -> shape, for every parameter of a model with this config
    (the version's table in ``tinyrwkv.layouts``; optional ones included)."""
    return layouts.param_shapes(config.to_dict())


def count_parameters(config: RWKVConfig) -> int:
    """Number of floats in a model with this config (169M for RWKV-4 169M: 12 x 768, V 50277)."""
    return int(sum(np.prod(s) for s in param_shapes(config).values()))


def _draw_order(name: str, n_layer: int):
    """The order init_params draws in (block by block: its vectors, its (C, C) matrices, then
    ffn.key and ffn.value), kept so that a seeded model stays the same model."""
    parts = name.split(".")
    block = int(parts[1]) if parts[0] == "blocks" else (-1 if parts[0] in ("emb", "ln0") else n_layer)
    return block, name.endswith(".weight") and ("att." in name or "ffn." in name), \
        name.endswith(("ffn.key.weight", "ffn.value.weight"))


def init_params(config: RWKVConfig, seed: int = 0, scale: float = 0.02) -> dict[str, np.ndarray]:
    """Random float32 parameters with the real model's structure (for tests, benchmarks, training).

    Matrices ~ N(0, scale); LayerNorms (1, 0); time_mix in [0, 1] rising with the channel index;
    time_decay spread from slow to fast channels (w from -e^{-5} to -e^{3}), time_first ~ log 0.3,
    roughly as RWKV-4's own initialisation does.
    """
    rng = np.random.default_rng(seed)
    C = config.n_embd
    ramp = np.arange(C, dtype=np.float64) / max(C - 1, 1)             # 0 .. 1 across channels
    params = {}
    shapes = param_shapes(config)
    for name in sorted(shapes, key=lambda n: _draw_order(n, config.n_layer)):   # stable sort
        shape = shapes[name]
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("ln0.weight") or (name.split(".")[-2].startswith("ln") and leaf == "weight"):
            value = np.ones(shape)
        elif leaf == "bias":
            value = np.zeros(shape)
        elif leaf == "time_decay":
            value = -5.0 + 8.0 * ramp ** 0.7 + 0.1 * rng.standard_normal(C)
        elif leaf == "time_first":
            value = np.log(0.3) + 0.5 * rng.standard_normal(C)
        elif leaf.startswith("time_mix"):
            value = np.clip(ramp ** 0.5 + 0.1 * rng.standard_normal(C), 0.0, 1.0)
        else:
            value = rng.standard_normal(shape, dtype=np.float32)
            value *= np.float32(scale)
        params[name] = value.astype(np.float32, copy=False)
    return {name: params[name] for name in shapes}


def check_params(config: RWKVConfig, params: Mapping) -> None:
    """Raises ValueError listing every missing key, unexpected key and wrong shape."""
    shapes = param_shapes(config)
    optional = set(shapes) - set(layouts.param_shapes(config.to_dict(), required_only=True))
    missing, unexpected, mismatched = compare_shapes(shapes, params)
    missing = [k for k in missing if k not in optional]
    wrong = [f"{k}: expected {want}, got {got}" for k, want, got in mismatched]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if wrong:
            parts.append(f"wrong shapes {wrong}")
        raise ValueError(f"RWKV-{config.version} parameters do not match the config ({config.n_layer} layers, "
                         f"n_embd {config.n_embd}, ffn_dim {config.ffn_dim}, vocab {config.vocab_size}): "
                         + "; ".join(parts))


class ParamScope(Mapping):
    """A read-only window on ``params`` under a name prefix: ``ParamScope(p, "blocks.3.att.")["key.weight"]``
    is ``p["blocks.3.att.key.weight"]``. It holds no arrays, so it always sees the current ones."""

    def __init__(self, params: Mapping, prefix: str):
        self.params, self.prefix = params, prefix

    def __getitem__(self, name):
        return self.params[self.prefix + name]

    def __iter__(self):
        n = len(self.prefix)
        return (k[n:] for k in self.params if k.startswith(self.prefix))

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return f"ParamScope({self.prefix!r}: {sorted(self)})"


# --------------------------------------------------------------------------- the two blocks


def token_shift(x, x_prev):
    """x_{t-1} for every t: x (B, T, C) shifted one step right, with x_prev (B, C) in front."""
    if x.shape[1] == 1:
        return x_prev[:, None, :]                                    # (B, 1, C), no copy
    return np.concatenate([x_prev[:, None, :], x[:, :-1]], axis=1)   # (B, T, C)


def token_mix(xx, dx, mu):
    """mu x_t + (1 - mu) x_{t-1}, written x_{t-1} + mu (x_t - x_{t-1}) with xx = x_{t-1}, dx = x_t - x_{t-1}.

    xx, dx: (B, T, C); mu: (C,) in [0, 1]. Returns a new (B, T, C) array.
    """
    mixed = np.multiply(dx, mu)                                      # speed: one temporary, not two
    mixed += xx
    return mixed


def time_mix(x, x_prev, wkv_state, att, wkv, keep_last=None):
    """RWKV-4 TimeMix on ln1's output.

    x: (B, T, C); x_prev: (B, C) the ln1 output of the token before x[:, 0];
    wkv_state: (aa, bb, pp), each (B, C); att: the block's ``att.*`` parameters (a ParamScope);
    wkv: a WKV backend module from ``tinyrwkv.kernels.get_wkv`` (its ``wkv_forward`` runs the
    recurrence over T tokens, its ``wkv_step`` one token).
    keep_last: if given, the output is computed for the last ``keep_last`` positions only
    (the WKV state still sees every token); the model uses it when only the last logits are read.
    Returns (out (B, T, C), the new x_prev = x[:, -1], the new wkv_state).
    """
    xx = token_shift(x, x_prev)                                       # x_{t-1}: (B, T, C)
    # mu x_t + (1 - mu) x_{t-1} = x_{t-1} + mu (x_t - x_{t-1}): the difference is shared by k, v, r
    dx = x - xx
    k = F.linear(token_mix(xx, dx, att["time_mix_k"]), att["key.weight"])     # (B, T, C)
    v = F.linear(token_mix(xx, dx, att["time_mix_v"]), att["value.weight"])   # (B, T, C)
    w = -np.exp(att["time_decay"])                                    # (C,) decay per step, < 0
    u = att["time_first"]                                             # (C,) bonus of the current token
    if x.shape[1] == 1:      # RNN mode: a single step has no time loop worth a thread pool
        y, wkv_state = wkv.wkv_step(w, u, k[:, 0], v[:, 0], wkv_state)
        y = y[:, None]                                                # (B, 1, C)
    else:
        y, wkv_state = wkv.wkv_forward(w, u, k, v, wkv_state)         # (B, T, C)
    if keep_last is not None:                                         # r and the output: per position
        xx, dx, y = xx[:, -keep_last:], dx[:, -keep_last:], y[:, -keep_last:]
    r = F.linear(token_mix(xx, dx, att["time_mix_r"]), att["receptance.weight"])  # (B, T, C)
    y *= F.sigmoid(r, out=r)                                          # gate: sigmoid(r) * wkv (in place: speed)
    out = F.linear(y, att["output.weight"])                           # (B, T, C)
    return out, x[:, -1], wkv_state


def channel_mix(x, x_prev, ffn):
    """RWKV-4 ChannelMix on ln2's output.

    x: (B, T, C); x_prev: (B, C) the ln2 output of the token before x[:, 0];
    ffn: the block's ``ffn.*`` parameters. Returns (out (B, T, C), the new x_prev = x[:, -1]).
    """
    xx = token_shift(x, x_prev)                                       # (B, T, C)
    dx = x - xx
    out = gated_ffn(token_mix(xx, dx, ffn["time_mix_k"]), token_mix(xx, dx, ffn["time_mix_r"]), ffn)
    return out, x[:, -1]


def gated_ffn(k_in, r_in, ffn):
    """sigmoid(W_r r_in) * (W_v relu(W_k k_in)^2): channel-mix after its token shift (RWKV-4/5/6).

    k_in, r_in: (B, T, C) token-shifted inputs; ffn: the block's ``ffn.*`` parameters. Returns (B, T, C)."""
    k = F.linear(k_in, ffn["key.weight"])                             # (B, T, F)
    r = F.linear(r_in, ffn["receptance.weight"])                      # (B, T, C)
    kv = F.linear(F.squared_relu(k, out=k), ffn["value.weight"])     # (B, T, C); relu(k)^2 in place: speed
    kv *= F.sigmoid(r, out=r)                                         # gate, in place
    return kv


# --------------------------------------------------------------------------- the model


class RWKVBase:
    """What every RWKV version shares: the public API around a version's ``_run``.

        logits, state = model.forward(tokens, state=None, full_output=True)   # parallel ("GPT") mode
        logits, state = model.step(token, state)                               # serial (RNN) mode
        model.init_state(batch_size), model.state_size(), model.num_parameters()

    A version sets ``STATE`` (its state class), implements ``_run(tokens (B, T), state, last_only)
    -> (logits, new state)`` and ``init_state``; the checks, the batching rules and the Numba
    thread setting live here once.
    """

    STATE = RWKVState

    def _setup(self, config, params, backend, wkv_threads, uses_numba: bool):
        """Checks and stores config and params (float32, C-contiguous unless a compact weight)."""
        if not isinstance(config, RWKVConfig):
            config = RWKVConfig.from_dict(config)
        if config.version != self.VERSION:
            raise ValueError(f"{type(self).__name__} runs RWKV-{self.VERSION}, but the config says "
                             f"version {config.version}; tinyrwkv.load picks the right class")
        check_params(config, params)
        self.config = config
        self.params = {k: np.ascontiguousarray(v, dtype=np.float32) if isinstance(v, np.ndarray) or np.isscalar(v)
                       else v for k, v in params.items()}
        self.backend = backend
        if uses_numba:
            from ..kernels.wkv_numba import default_wkv_threads
            self.wkv_threads = default_wkv_threads() if wkv_threads == "auto" else wkv_threads
        else:
            self.wkv_threads = None

    @classmethod
    def random(cls, config: RWKVConfig, seed: int = 0, scale: float = 0.02, backend: str = "auto"):
        """A model with ``init_params`` weights."""
        return cls(config, cls.init_params(config, seed, scale), backend)

    def __repr__(self):
        c = self.config
        heads = f", n_head={c.n_head}, head_size={c.head_size}" if c.head_size else ""
        return (f"{type(self).__name__}(version={c.version}, n_layer={c.n_layer}, n_embd={c.n_embd}{heads}, "
                f"ffn_dim={c.ffn_dim}, vocab_size={c.vocab_size}, params={self.num_parameters():,}, "
                f"backend={self.backend!r})")

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(np.shape(p))) for p in self.params.values()))

    # -- state ---------------------------------------------------------------------------------

    def state_size(self, context_length: int = 0) -> int:
        """Floats carried per sequence, whatever the context length."""
        return self.init_state(1).size()

    def _state_for(self, state, batch_size):
        if state is None:
            return self.init_state(batch_size)
        if not isinstance(state, self.STATE):
            name = self.STATE.__name__
            article = "an" if name[0] in "AEIOUR" else "a"       # "an RWKVState", "a MatrixState"
            raise ValueError(f"state must be {article} {name} (or None) for RWKV-{self.config.version}, "
                             f"got {type(state).__name__}")
        state.check(self.config, batch_size)
        return state

    def _threads(self):
        """The Numba thread setting for parallel mode (a no-op unless the backend is numba)."""
        if self.wkv_threads is None:
            import contextlib
            return contextlib.nullcontext()
        from ..kernels.wkv_numba import numba_threads
        return numba_threads(self.wkv_threads)

    # -- running -------------------------------------------------------------------------------

    def forward(self, tokens, state=None, full_output: bool = True):
        """Parallel ("GPT") mode: all tokens at once, continuing from ``state``.

        tokens: (T,) ints -> logits (T, V) float32, or (V,) for the last token when
        ``full_output=False``; (B, T) -> (B, T, V) or (B, V). Also returns the state after the
        last token (``state`` itself is not modified). ``state=None`` means no past.
        """
        tokens = check_tokens(f"{type(self).__name__}.forward tokens", tokens, self.config.vocab_size,
                              ("(T,)", "(B, T)"))
        batched = tokens.ndim == 2
        tokens2 = tokens if batched else tokens[None]                 # (B, T)
        state = self._state_for(state, tokens2.shape[0])
        with self._threads():
            logits, state = self._run(tokens2, state, last_only=not full_output)
        return (logits if batched else logits[0]), state

    __call__ = forward

    def step(self, token, state=None):
        """Serial (RNN) mode: one token per sequence, O(1) work, continuing from ``state``.

        token: an int -> logits (V,); or (B,) ints (B sequences side by side; their matrix-vector
        products become one matrix-matrix product) -> logits (B, V). Returns (logits, new state).
        """
        tokens = check_tokens(f"{type(self).__name__}.step token", token, self.config.vocab_size, ("int", "(B,)"))
        batched = tokens.ndim == 1
        tokens2 = tokens.reshape(-1, 1)                               # (B, 1)
        state = self._state_for(state, tokens2.shape[0])
        logits, state = self._run(tokens2, state, last_only=True)     # (B, V)
        return (logits if batched else logits[0]), state


class RWKV(RWKVBase):
    """The RWKV-4 language model in NumPy, its WKV recurrence in a chosen kernel backend.

        model = RWKV(config, params, backend="auto")   # or tinyrwkv.load(...)
        logits, state = model.forward(tokens)           # (T,) -> (T, V); (B, T) -> (B, T, V)
        logits, state = model.step(token, state)        # int -> (V,); (B,) -> (B, V)

    ``params`` is the one dict of float32 arrays described in the module docstring; the model
    keeps it (no copies when the arrays already are float32 and contiguous) as ``model.params``.
    ``wkv_threads``: Numba threads for the WKV in parallel mode ("auto": the numba backend's
    ``default_wkv_threads()``, None: Numba's own setting); it matters only for the "numba" backend.
    """

    VERSION = 4
    STATE = RWKVState
    init_params = staticmethod(init_params)

    def __init__(self, config: RWKVConfig, params: Mapping, backend: str = "auto", wkv_threads="auto",
                 fused: bool = True):
        self.wkv = get_wkv(backend)                                   # the WKV kernels' module
        self._setup(config, params, backend, wkv_threads, self.wkv.__name__.endswith("wkv_numba"))
        self.blocks = [(ParamScope(self.params, f"blocks.{i}.att."), ParamScope(self.params, f"blocks.{i}.ffn."))
                       for i in range(self.config.n_layer)]
        # fused: layer norm + token-shift mixes and the gates as one-pass Numba kernels (models/rwkv_fused.py);
        # False: the readable NumPy path below, which is the reference the fused one is tested against
        self.fused = fused

    def init_state(self, batch_size: int = 1) -> RWKVState:
        """The empty state for ``batch_size`` sequences."""
        return RWKVState.zeros(self.config.n_layer, self.config.n_embd, batch_size)

    def state_size(self, context_length: int = 0) -> int:
        """Floats carried per sequence: 5 n_layer n_embd, whatever the context length."""
        return 5 * self.config.n_layer * self.config.n_embd

    def _run(self, tokens, state: RWKVState, last_only: bool):
        """The network on token ids (B, T) from ``state``. Returns (logits, new state);
        logits (B, T, V), or (B, V) for the last position when ``last_only``."""
        if self.fused:
            from .rwkv_fused import run_fused
            return run_fused(self, tokens, state, last_only)
        p, eps = self.params, self.config.layer_norm_epsilon
        new = RWKVState.empty_like(state)
        x = p["emb.weight"][tokens]                                   # (B, T, C)
        x = F.layer_norm(x, p["ln0.weight"], p["ln0.bias"], eps)[0]
        for i, (att, ffn) in enumerate(self.blocks):
            b = f"blocks.{i}."
            # When only the last logits are read, the last block needs its outputs at the last
            # position only, and channel-mix's token shift there needs the position before it:
            # two positions instead of T (saves ~7% of a 512-token prompt's matrix products).
            keep = 2 if last_only and i == len(self.blocks) - 1 else None
            h = F.layer_norm(x, p[b + "ln1.weight"], p[b + "ln1.bias"], eps)[0]
            branch, new.att_x[i], (new.aa[i], new.bb[i], new.pp[i]) = time_mix(
                h, state.att_x[i], (state.aa[i], state.bb[i], state.pp[i]), att, self.wkv, keep)
            if keep:
                x = x[:, -keep:] + branch                             # (B, 2, C)
            else:
                x += branch                                           # the residual stream
            h = F.layer_norm(x, p[b + "ln2.weight"], p[b + "ln2.bias"], eps)[0]
            # (with keep = 2 and T >= 2, h[:, 0]'s own shift is wrong but its output is dropped)
            branch, new.ffn_x[i] = channel_mix(h, state.ffn_x[i], ffn)
            x += branch
        if last_only:
            x = x[:, -1]                                              # (B, C): the head only where needed
        x = F.layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], eps)[0]
        return F.linear(x, p["head.weight"]), new                     # (B, [T,] V)
