"""RWKV-4 with everything on the GPU: weights uploaded once, the state kept on the device.

``tinyrwkv.models.rwkv.RWKV`` is the readable reference: NumPy arrays on the host, and (with
``backend="cuda"``) only the WKV recurrence on the device, its inputs and outputs copied across
at every layer of every token. ``DeviceRWKV`` runs the same equations with every op a kernel of
``tinyrwkv.kernels.cuda_ops`` / ``wkv_cuda``, on arrays that never leave the GPU:

    model = DeviceRWKV(config, params, dtype="float16")    # or tinyrwkv.load(src, device="cuda")
    logits, state = model.forward(tokens)                   # (T,) -> (T, V); (B, T) -> (B, T, V)
    logits, state = model.step(token, state)                # int -> (V,); (B,) -> (B, V)
    host_state = state.to_host()                            # an RWKVState (NumPy)

Per call, the host sends the token ids (one small copy) and receives the logits (one copy);
everything else stays on the device (``model.transfers`` counts the copies). The logits come
back as NumPy float32, and the methods, arguments and state semantics are the reference
model's (the input state is never modified), so ``tinyrwkv.generate`` runs unchanged on top.

Storage: ``dtype="float32"``, or ``"float16"``: the matrices (the seven per block, the embedding
and the head, 99.9% of the bytes) are stored in half precision, half the memory traffic per token,
and every kernel converts as it loads and accumulates in float32. Vectors stay float32.

One forward, per block (M = B T rows; "mv" = matvec when T = 1, matmul otherwise):

    h = layernorm(x)                   ln1
    xk, xv, xr = shift_mix3(h, att_x)  token shift + three mixes, one kernel; att_x <- h[:, -1]
                                       (inside the mix when T = 1, by save_last after it otherwise)
    k, v, r = mv(xk, Wk), mv(xv, Wv), mv(xr, Wr)
    y = wkv(k, v; aa, bb, pp)           wkv_cuda's kernels, the state updated in place
    y *= sigmoid(r);  x += mv(y, Wo)   the add fused into the product (accumulate)
    h = layernorm(x)                   ln2
    xk, xr = shift_mix2(h, ffn_x)       ffn_x <- h[:, -1]
    k = relu(mv(xk, Fk))^2;  r = mv(xr, Fr);  kv = mv(k, Fv);  x += sigmoid(r) * kv   (gate_add)

Kernel versions are chosen per model (``matvec_version`` ...), so the lesson and
``scripts/gpu_check.py`` can time each rung of the ladder inside the whole model.
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..kernels import NO_GPU_MESSAGE, cuda_usable
from ..models.rwkv import RWKVBase, RWKVConfig, RWKVState, check_params

STORAGE_DTYPES = ("float32", "float16")
MATRICES = ("att.key.weight", "att.value.weight", "att.receptance.weight", "att.output.weight",
            "ffn.key.weight", "ffn.receptance.weight", "ffn.value.weight")


@contextlib.contextmanager
def count_copies():
    """Counts host <-> device copies made through ``numba.cuda`` inside the block:

        with count_copies() as n:
            model.step(0, state)
        n == {"to_device": ..., "to_host": ...}

    It wraps ``cuda.to_device`` and the device arrays' ``copy_to_host`` for the duration (what every
    module of this package uses), so it counts any model's copies, not only DeviceRWKV's own tally.
    """
    from numba import cuda
    counts = {"to_device": 0, "to_host": 0}
    to_device, array_type = cuda.to_device, type(cuda.device_array(1, np.float32))
    copy_to_host = array_type.copy_to_host

    def counted_to_device(*args, **kwargs):
        counts["to_device"] += 1
        return to_device(*args, **kwargs)

    def counted_copy_to_host(self, *args, **kwargs):
        counts["to_host"] += 1
        return copy_to_host(self, *args, **kwargs)

    cuda.to_device, array_type.copy_to_host = counted_to_device, counted_copy_to_host
    try:
        yield counts
    finally:
        cuda.to_device, array_type.copy_to_host = to_device, copy_to_host


def default_versions() -> dict:
    """The kernel versions a DeviceRWKV uses unless told otherwise.

    On a GPU: the fastest rungs (matvec v3, which is v2 for one sequence and reads each weight once
    per 4 sequences in a batch; tiled matmul v2; block layer norm v2; WKV v2). On the CUDA simulator:
    every v1, because the simulator's cost is per *thread* (each one is a Python thread) and per
    barrier, which the faster GPU versions multiply. Every version computes the same numbers.
    """
    from ..kernels import cuda_simulator_on
    if cuda_simulator_on():
        return dict(matvec=1, matmul=1, layernorm=1, wkv=2)
    return dict(matvec=3, matmul=2, layernorm=2, wkv=2)


class DeviceRWKVState:
    """The RWKV-4 state on the device: the five (L, B, C) float32 fields of ``RWKVState``, in one
    (5, L, B, C) device buffer (one allocation, one copy to duplicate it).

    ``to_host()`` gives an ``RWKVState``; ``DeviceRWKVState.from_host(state)`` uploads one.
    ``stack``, ``select``, ``copy`` and the size properties behave as ``RWKVState``'s.
    """

    FIELDS = RWKVState.FIELDS

    def __init__(self, buffer):
        if not hasattr(buffer, "copy_to_host") or len(buffer.shape) != 4 or buffer.shape[0] != 5:
            raise ValueError(f"DeviceRWKVState: expected a (5, L, B, C) device array, got {getattr(buffer, 'shape', buffer)}")
        self.buffer = buffer
        # Per-field, per-layer views made once: (B, C) device arrays the kernels take directly.
        self.layers = [[buffer[f, i] for i in range(buffer.shape[1])] for f in range(5)]

    @classmethod
    def from_host(cls, state: RWKVState) -> "DeviceRWKVState":
        """Uploads an RWKVState (one copy)."""
        from numba import cuda
        return cls(cuda.to_device(np.stack([getattr(state, f) for f in cls.FIELDS]).astype(np.float32)))

    def to_host(self) -> RWKVState:
        """The state as NumPy arrays (one copy from the device)."""
        return RWKVState(*self.buffer.copy_to_host())

    def __getattr__(self, name):             # state.aa etc.: the (L, B, C) device view of a field
        if name in RWKVState.FIELDS:
            return self.buffer[RWKVState.FIELDS.index(name)]
        raise AttributeError(name)

    @property
    def n_layer(self) -> int:
        return self.buffer.shape[1]

    @property
    def batch_size(self) -> int:
        return self.buffer.shape[2]

    @property
    def n_embd(self) -> int:
        return self.buffer.shape[3]

    def copy(self) -> "DeviceRWKVState":
        """A new state with the same values (a copy on the device)."""
        from numba import cuda
        new = cuda.device_array(self.buffer.shape, np.float32)
        new.copy_to_device(self.buffer)
        return DeviceRWKVState(new)

    @classmethod
    def stack(cls, states) -> "DeviceRWKVState":
        """Joins states along the batch axis (through the host: done once per generate call)."""
        states = list(states)
        if not states:
            raise ValueError("DeviceRWKVState.stack: no states given")
        return cls.from_host(RWKVState.stack([s.to_host() if isinstance(s, cls) else s for s in states]))

    def select(self, index) -> "DeviceRWKVState":
        return DeviceRWKVState.from_host(self.to_host().select(index))

    def check(self, config: RWKVConfig, batch_size: int) -> None:
        want = (config.n_layer, batch_size, config.n_embd)
        if tuple(self.buffer.shape[1:]) != want:
            raise ValueError(f"state has shape (n_layer, batch, n_embd) = {tuple(self.buffer.shape[1:])}, "
                             f"but this model and input need {want}")


class DeviceRWKV(RWKVBase):
    """RWKV-4 on the GPU (or the CUDA simulator): the API of ``tinyrwkv.models.rwkv.RWKV``
    (forward, step and their checks are RWKVBase's; only ``_run`` and where arrays live differ).

    config, params: as for ``RWKV`` (float32 arrays under the internal names); they are checked,
    converted to ``dtype`` storage and uploaded once. ``matvec_version`` (1-3), ``matmul_version``
    (1-2), ``layernorm_version`` (1-2) and ``wkv_version`` (wkv_cuda's forward, 1-3) pick kernels;
    None means ``default_versions()``. ``keep_host_params`` keeps a reference to ``params`` as
    ``model.params`` (off by default: the device copy is the one that runs).
    """

    VERSION = 4
    STATE = DeviceRWKVState

    def __init__(self, config: RWKVConfig, params: Mapping, dtype: str = "float32",
                 matvec_version=None, matmul_version=None, layernorm_version=None,
                 wkv_version=None, keep_host_params: bool = False):
        if not cuda_usable():
            raise RuntimeError("device='cuda': " + NO_GPU_MESSAGE)
        from numba import cuda

        from ..kernels import cuda_ops, wkv_cuda
        defaults = default_versions()
        matvec_version = defaults["matvec"] if matvec_version is None else matvec_version
        matmul_version = defaults["matmul"] if matmul_version is None else matmul_version
        layernorm_version = defaults["layernorm"] if layernorm_version is None else layernorm_version
        wkv_version = defaults["wkv"] if wkv_version is None else wkv_version
        if not isinstance(config, RWKVConfig):
            config = RWKVConfig.from_dict(config)
        if config.version != 4:
            raise ValueError(f"DeviceRWKV runs RWKV-4, but the config says version {config.version}")
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"DeviceRWKV: dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
        for name, value, allowed in (("matvec_version", matvec_version, cuda_ops.MATVEC_VERSIONS),
                                     ("matmul_version", matmul_version, cuda_ops.MATMUL_VERSIONS),
                                     ("layernorm_version", layernorm_version, cuda_ops.LAYERNORM_VERSIONS),
                                     ("wkv_version", wkv_version, wkv_cuda.FORWARD_VERSIONS)):
            if value not in allowed:
                raise ValueError(f"DeviceRWKV: {name} must be one of {allowed}, got {value!r}")
        check_params(config, params)
        self.config, self.dtype, self.backend, self.device = config, dtype, "cuda", "cuda"
        self.wkv_threads = None                                  # RWKVBase's Numba thread setting: unused
        self.versions = dict(matvec=matvec_version, matmul=matmul_version, layernorm=layernorm_version,
                             wkv=wkv_version)
        self._ops, self._wkv, self._cuda = cuda_ops, wkv_cuda, cuda
        self.params = params if keep_host_params else None
        self.transfers = {"to_device": 0, "to_host": 0}       # host <-> device copies made so far
        self.profile = None                                     # a list while profile_step records
        store = np.dtype(dtype)

        def up(name, matrix=False):
            w = params[name]                      # a float32 array, or a compact weight (bf16 / int8 words)
            a = w.to_float32() if hasattr(w, "to_float32") else np.asarray(w, np.float32)
            return cuda.to_device(np.ascontiguousarray(a.astype(store) if matrix else a))

        self.emb = up("emb.weight", True)                                   # (V, C)
        self.ln0 = (up("ln0.weight"), up("ln0.bias"))
        self.ln_out = (up("ln_out.weight"), up("ln_out.bias"))
        self.head = up("head.weight", True)                                 # (V, C)
        self.blocks = []
        for i in range(config.n_layer):
            b = f"blocks.{i}."
            blk = {m: up(b + m, True) for m in MATRICES}
            for v in ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_first",
                      "att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"):
                blk[v] = up(b + v)
            # w = -exp(time_decay), computed once on the host exactly as the reference model does
            blk["att.w"] = cuda.to_device(-np.exp(np.asarray(params[b + "att.time_decay"], np.float32)))
            self.blocks.append(blk)
        self._buffers = OrderedDict()                                        # (B, T) -> scratch

    @classmethod
    def from_model(cls, model, **kwargs) -> "DeviceRWKV":
        """The device twin of a reference ``RWKV`` (same config and weights)."""
        return cls(model.config, model.params, **kwargs)

    def __repr__(self):
        c = self.config
        return (f"DeviceRWKV(n_layer={c.n_layer}, n_embd={c.n_embd}, ffn_dim={c.ffn_dim}, "
                f"vocab_size={c.vocab_size}, dtype={self.dtype!r}, versions={self.versions})")

    def num_parameters(self) -> int:
        from ..models.rwkv import count_parameters
        return count_parameters(self.config)

    def weight_bytes(self) -> int:
        """Bytes of weights on the device."""
        arrays = [self.emb, self.head, *self.ln0, *self.ln_out] + [a for blk in self.blocks for a in blk.values()]
        return int(sum(a.size * a.dtype.itemsize for a in arrays))

    def bytes_per_token(self) -> int:
        """Weight bytes one decoding step reads: every matrix once, one row of the embedding (and
        the vectors). What bounds the decoding speed of a memory-bound GPU."""
        C = self.config.n_embd
        return self.weight_bytes() - (self.emb.size - C) * self.emb.dtype.itemsize

    # -- state ---------------------------------------------------------------------------------

    def init_state(self, batch_size: int = 1) -> DeviceRWKVState:
        """The empty state for ``batch_size`` sequences, on the device (one upload)."""
        self.transfers["to_device"] += 1
        return DeviceRWKVState.from_host(RWKVState.zeros(self.config.n_layer, self.config.n_embd, batch_size))

    def state_size(self, context_length: int = 0) -> int:
        return 5 * self.config.n_layer * self.config.n_embd

    def _state_for(self, state, batch_size) -> DeviceRWKVState:
        """A fresh device state to update in place: a device copy of ``state`` (never modified)."""
        if state is None:
            return self.init_state(batch_size)
        if isinstance(state, RWKVState):
            state.check(self.config, batch_size)
            self.transfers["to_device"] += 1
            return DeviceRWKVState.from_host(state)
        if not isinstance(state, DeviceRWKVState):
            raise ValueError(f"state must be an RWKVState, a DeviceRWKVState or None, got {type(state).__name__}")
        state.check(self.config, batch_size)
        return state.copy()

    # -- scratch -------------------------------------------------------------------------------

    def _scratch(self, B, T):
        """Device work arrays for a (B, T) call, allocated once per shape (a few shapes are kept):
        cudaMalloc costs more than a whole decoding step at small sizes."""
        key = (B, T)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        cuda, c = self._cuda, self.config
        C, F, V, M = c.n_embd, c.ffn_dim, c.vocab_size, B * T
        s = {name: cuda.device_array((B, T, C), np.float32) for name in ("x", "h", "xk", "xv", "xr", "k", "v", "r", "y")}
        s["fk"] = cuda.device_array((M, F), np.float32)
        s["last"] = cuda.device_array((B, C), np.float32)
        s["last_ln"] = cuda.device_array((B, C), np.float32)
        s["flat"] = {name: s[name].reshape(M, C) for name in ("x", "h", "xk", "xv", "xr", "k", "v", "r", "y")}
        s["wkv_scratch"] = self._wkv.forward_scratch(B, T, C, np.float32, self.versions["wkv"]) if T > 1 else ()
        self._buffers[key] = s
        if len(self._buffers) > 4:
            self._buffers.popitem(last=False)
        return s

    # -- running -------------------------------------------------------------------------------

    def _k(self, name, launch, *args, **kwargs):
        """Runs ``launch(*args, **kwargs)`` (one kernel or a few); when ``self.profile`` is a list,
        records (name, start event, end event) around it so ``profile_step`` can add up the GPU time."""
        if self.profile is None:
            launch(*args, **kwargs)
            return
        start, end = self._cuda.event(), self._cuda.event()
        start.record()
        launch(*args, **kwargs)
        end.record()
        self.profile.append((name, start, end))

    def _linear(self, name, x, W, y, accumulate=False):
        """y (+)= x W^T: matvec when x has one row per sequence (decoding), else matmul."""
        if self._decoding:
            self._k(name, self._ops.matvec, W, x, y, accumulate, self.versions["matvec"])
        else:
            self._k(name, self._ops.matmul, x, W, y, accumulate, self.versions["matmul"])

    def _run(self, tokens, state: DeviceRWKVState, last_only: bool):
        """The network on token ids (B, T) from ``state`` (a fresh copy from _state_for, updated in
        place). Returns (logits as NumPy: (B, T, V), or (B, V) when ``last_only``; the state)."""
        logits = self._run_on_device(tokens, state, last_only)
        self.transfers["to_host"] += 1
        logits = logits.copy_to_host()                                   # the one download
        if not last_only:
            logits = logits.reshape(tokens.shape[0], tokens.shape[1], -1)
        return logits, state

    def _run_on_device(self, tokens, state: DeviceRWKVState, last_only: bool):
        """The kernels, in order. Returns the logits on the device: (B T, V), or (B, V) when ``last_only``."""
        ops, wkv, cuda, k = self._ops, self._wkv, self._cuda, self._k
        B, T = tokens.shape
        M, C, eps = B * T, self.config.n_embd, self.config.layer_norm_epsilon
        ln = functools.partial(ops.layernorm, version=self.versions["layernorm"])
        ew = ops.elementwise
        self._decoding = T == 1
        s = self._scratch(B, T)
        f = s["flat"]                                                    # (M, C) views
        ids = cuda.to_device(np.ascontiguousarray(tokens.reshape(M), np.int64))     # the one upload
        self.transfers["to_device"] += 1
        k("embedding", ew, ops.embedding_gather, M * C, self.emb, ids, f["h"])
        k("layernorm", ln, f["h"], *self.ln0, eps, f["x"])              # x = ln0(emb[tokens])
        att_x, aa, bb, pp, ffn_x = state.layers
        for i, blk in enumerate(self.blocks):
            # time mix
            k("layernorm", ln, f["x"], blk["ln1.weight"], blk["ln1.bias"], eps, f["h"])
            k("shift+mix", ew, ops.shift_mix3, M * C, s["h"], att_x[i], blk["att.time_mix_k"],
              blk["att.time_mix_v"], blk["att.time_mix_r"], s["xk"], s["xv"], s["xr"])
            if T > 1:                                                    # (T = 1: the mix did it)
                k("shift+mix", ew, ops.save_last, B * C, s["h"], att_x[i])
            self._linear("att k,v,r", f["xk"], blk["att.key.weight"], f["k"])
            self._linear("att k,v,r", f["xv"], blk["att.value.weight"], f["v"])
            self._linear("att k,v,r", f["xr"], blk["att.receptance.weight"], f["r"])
            if T == 1:
                k("wkv", wkv.step_on_device, blk["att.w"], blk["att.time_first"], f["k"], f["v"],
                  aa[i], bb[i], pp[i], f["y"])
            else:
                k("wkv", wkv.forward_on_device, blk["att.w"], blk["att.time_first"], s["k"], s["v"],
                  aa[i], bb[i], pp[i], s["y"], version=self.versions["wkv"], scratch=s["wkv_scratch"])
            k("gates", ew, ops.sigmoid_mul, M * C, f["r"], f["y"])
            self._linear("att output", f["y"], blk["att.output.weight"], f["x"], accumulate=True)  # x += out
            # channel mix
            k("layernorm", ln, f["x"], blk["ln2.weight"], blk["ln2.bias"], eps, f["h"])
            k("shift+mix", ew, ops.shift_mix2, M * C, s["h"], ffn_x[i], blk["ffn.time_mix_k"],
              blk["ffn.time_mix_r"], s["xk"], s["xr"])
            if T > 1:
                k("shift+mix", ew, ops.save_last, B * C, s["h"], ffn_x[i])
            self._linear("ffn key", f["xk"], blk["ffn.key.weight"], s["fk"])
            k("gates", ew, ops.squared_relu, M * self.config.ffn_dim, s["fk"])
            self._linear("ffn receptance", f["xr"], blk["ffn.receptance.weight"], f["r"])
            self._linear("ffn value", s["fk"], blk["ffn.value.weight"], f["k"])   # kv, in k's buffer
            k("gates", ew, ops.gate_add, M * C, f["x"], f["r"], f["k"])
        if last_only:
            k("shift+mix", ew, ops.take_last, B * C, s["x"], s["last"])  # (B, C): the head where needed
            x_in, x_out, rows = s["last"], s["last_ln"], B
        else:
            x_in, x_out, rows = f["x"], f["h"], M
        k("layernorm", ln, x_in, *self.ln_out, eps, x_out)
        self._decoding = rows == B and (T == 1 or last_only)
        logits = cuda.device_array((rows, self.config.vocab_size), np.float32)
        self._linear("head", x_out, self.head, logits)
        return logits

    def profile_step(self, token=0, state=None, repeats=3) -> dict:
        """GPU milliseconds per kernel family for one decoding step: {name: median ms}, plus "total".

        Timed with CUDA events around each launch (on the simulator: zeros; it has no clock).
        """
        runs = []
        for _ in range(repeats):
            self.profile = []
            try:
                self.step(token, state)
                self._cuda.synchronize()
                times = {}
                for name, start, end in self.profile:
                    times[name] = times.get(name, 0.0) + start.elapsed_time(end)
            finally:
                self.profile = None
            runs.append(times)
        out = {name: float(np.median([r[name] for r in runs])) for name in runs[0]}
        out["total"] = float(sum(out.values()))
        return out
