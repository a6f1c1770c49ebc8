"""Checks and times tinyrwkv's numba.cuda code on a real GPU, with its peers, and writes one JSON.

    PYTHONPATH=. python3 scripts/gpu_check.py --out gpu_check.json   # on a machine with an NVIDIA GPU
    NUMBA_ENABLE_CUDASIM=1 python scripts/gpu_check.py --tiny          # rehearsal on the CUDA simulator

Sections, in order. Each one runs under its own time budget (a SIGALRM stops it), is caught on
its own (an error or a timeout is recorded with what it had measured so far, and the next section
runs), and the JSON is rewritten after every section, so even a killed run leaves its results.
A short table is printed LAST.

    environment     GPU, driver, numba / numba-cuda / torch / rwkv / transformers versions
    compile         first call of every kernel (JIT compile + launch) against its second call
    runner_parity   DeviceRWKV (weights and state on the GPU) against the NumPy model at RWKV-4 169M
                    shapes (random weights with trained-like scales): logits and state, fp32 and fp16
                    storage (fp16 against the NumPy model on the same fp16-rounded weights), every
                    kernel version inside the model, a batch
    bandwidth       device copy bandwidth (the roofline), then the ladders: matvec v1/v2/v3 at the
                    model's matrix shapes (GB/s of weights read), matmul v1/v2 at T=512 (GFLOP/s),
                    layer norm v1/v2
    runner_speed    decode tokens/s (B=1 and B=8) per matvec version and storage; 512-token prompt
                    tokens/s per matmul version; GPU time per kernel family for one decoding step
    rwkv_pip        the `rwkv` pip package on the same GPU and weights (a BlinkDL .pth written with
                    torch.save): strategy "cuda fp16" and "cuda fp32", RWKV_JIT_ON=1, RWKV_CUDA_ON=0
    transformers    RwkvForCausalLM on cuda, float32 and float16, same weights
    wkv_parity, wkv_timing, launch_sweep   the WKV kernels alone (wkv_cuda.py)
    cpu_model       the NumPy model on this machine's CPU (WKV in @njit, and WKV on the GPU with
                    host copies at every layer: the design DeviceRWKV replaces)

Timing: warm-up first, cuda.synchronize() (torch.cuda.synchronize() for torch peers) around
every timed run, medians. ``--tiny`` shrinks every shape so the whole script runs on the
simulator (torch peers on the CPU) in a few minutes; its timings mean nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

# numba-cuda 0.30 registers an overload for np.row_stack, which numpy 2.5 removed, so
# `from numba import cuda` fails there (seen on an H200 with numpy 2.5.2): restore the alias first.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from tinyrwkv.kernels import cuda_simulator_on, real_gpu_present, wkv_numpy  # noqa: E402

MODEL_169M = dict(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
FULL = dict(wkv_parity=(4, 256, 128), timing=[(8, 1024, 768), (1, 512, 768)], repeats=20, sweep_repeats=10,
            tpb=(32, 64, 128, 256, 768), chunks=(16, 32, 64, 128),
            model=MODEL_169M, decode_tokens=64, decode_batches=(1, 8), prompt_len=512,
            cpu_decode_tokens=16, parity_prompt=16, parity_steps=3, copy_mb=512, kernel_repeats=20,
            speed_batch=8, compile_model=dict(n_embd=64, vocab_size=96), ladder_all_shapes=True,
            speed_configs=[(d, mv, 2) for d in ("float16", "float32") for mv in (3, 2, 1)] + [("float16", 3, 1)])
TINY = dict(wkv_parity=(2, 8, 8), timing=[(1, 8, 8)], repeats=1, sweep_repeats=1,
            tpb=(8, 32), chunks=(2, 4),
            model=dict(n_layer=2, n_embd=8, vocab_size=16, ffn_dim=16), decode_tokens=2, decode_batches=(1, 2),
            prompt_len=4, cpu_decode_tokens=2, parity_prompt=3, parity_steps=1, copy_mb=0.01, kernel_repeats=1,
            speed_batch=2, compile_model=dict(n_embd=8, vocab_size=16), ladder_all_shapes=False,
            speed_configs=[("float16", 3, 2), ("float32", 1, 1)])
# Seconds each section may run (a whole run stays well under 8 minutes on a large GPU; see --budget).
BUDGET_S = dict(environment=20, compile=75, runner_parity=60, bandwidth=45, runner_speed=80, rwkv_pip=60,
                transformers=50, wkv_parity=15, wkv_timing=30, launch_sweep=15, cpu_model=30)


class SectionTimeout(Exception):
    """Raised by SIGALRM when a section has used its time budget."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raises SectionTimeout in the main thread after ``seconds`` (at the next Python bytecode)."""
    if seconds is None or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise SectionTimeout(f"stopped after its budget of {seconds:.0f} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def torch_device():
    """'cuda' when torch sees a GPU, else 'cpu' (the rehearsal runs the torch peers on the CPU)."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def realistic_params(config, seed=0):
    """Random RWKV-4 weights with trained-like scales: init_params' structure, matrices rescaled to
    N(0, 1/fan_in) and the embedding to N(0, 1), so logits are O(1-10) as in a real model."""
    from tinyrwkv.models.rwkv import init_params
    params = init_params(config, seed=seed)
    for name, a in params.items():
        if a.ndim == 2:
            a *= np.float32(1.0 / (0.02 * (1.0 if name == "emb.weight" else np.sqrt(a.shape[1]))))
    return params


_SHARED = {}


def shared_model(cfg):
    """(config, params, the NumPy reference model): built once, shared by the sections."""
    if "model" not in _SHARED:
        from tinyrwkv.models.rwkv import RWKV, RWKVConfig
        config = RWKVConfig(**cfg["model"])
        params = realistic_params(config)
        _SHARED["model"] = (config, params, RWKV(config, params, backend="numba"))
    return _SHARED["model"]


def sync():
    from numba import cuda
    cuda.synchronize()


def median_ms(fn, repeats, warmup=1, synchronize=sync):
    """Median wall milliseconds of fn() over ``repeats`` runs after ``warmup`` runs, synchronised."""
    for _ in range(warmup):
        fn()
    synchronize()
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        synchronize()
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs) * 1e3)


def rand_inputs(B, T, C, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    w = -np.exp(rng.normal(size=C)).astype(dtype)
    u = rng.normal(size=C).astype(dtype)
    k, v, gy = (rng.normal(size=(B, T, C)).astype(dtype) for _ in range(3))
    return w, u, k, v, gy


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def summarize(seconds):
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "runs": int(ms.size)}


# --------------------------------------------------------------------------- sections


def environment(cfg):
    import numba
    from numba import cuda

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
            "platform": platform.platform(), "cpu_threads": numba.get_num_threads(),
            "simulator": cuda_simulator_on(), "real_gpu": real_gpu_present()}
    if info["real_gpu"]:
        dev = cuda.get_current_device()
        name = dev.name
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["compute_capability"] = list(dev.compute_capability)
        for key, get in (("multiprocessors", lambda: dev.MULTIPROCESSOR_COUNT),
                         ("driver_version", lambda: cuda.cudadrv.driver.driver.get_version()),
                         ("runtime_version", lambda: cuda.runtime.get_version()),
                         ("nvvm_version", lambda: cuda.cudadrv.nvvm.NVVM().get_version())):
            try:                       # diagnostics only: a missing one must not stop the check
                info[key] = get()
            except Exception as e:
                info[key] = f"unavailable: {type(e).__name__}: {e}"
    return info


def wkv_parity(cfg):
    from tinyrwkv.kernels import wkv_cuda

    B, T, C = cfg["wkv_parity"]
    w, u, k, v, gy = rand_inputs(B, T, C, seed=1)
    _, state = wkv_numpy.wkv_forward(w, u, k[:, :3], v[:, :3])
    y0, s0 = wkv_numpy.wkv_forward(w, u, k, v, state)
    out = {"shape": [B, T, C], "dtype": "float32"}
    for version in wkv_cuda.FORWARD_VERSIONS:
        y1, s1 = wkv_cuda.wkv_forward(w, u, k, v, state, version=version)
        out[f"forward_v{version}"] = {"y": max_abs_diff(y1, y0),
                                      "state": max(max_abs_diff(a, b) for a, b in zip(s1, s0))}
    ref = wkv_numpy.wkv_backward(w, u, k, v, gy)
    ours = wkv_cuda.wkv_backward(w, u, k, v, gy)
    out["backward_v1"] = {name: max_abs_diff(a, b) for name, a, b in zip(("gw", "gu", "gk", "gv"), ours, ref)}
    out["backward_v1"]["gw_scale"] = float(np.max(np.abs(ref[0])))      # gw sums B*T terms
    y0, s0 = wkv_numpy.wkv_step(w, u, k[:, 0], v[:, 0], state)
    y1, s1 = wkv_cuda.wkv_step(w, u, k[:, 0], v[:, 0], state)
    out["step_v1"] = {"y": max_abs_diff(y1, y0), "state": max(max_abs_diff(a, b) for a, b in zip(s1, s0))}
    k_big = k.copy()
    k_big[:, ::3] = 200.0                                              # e^200 overflows float32
    y_big, _ = wkv_cuda.wkv_forward(w, u, k_big, v, version=2)
    out["large_keys_finite"] = bool(np.all(np.isfinite(y_big)))
    out["ok"] = bool(all(d["y"] < 1e-4 for key, d in out.items() if key.startswith(("forward", "step")))
                     and out["large_keys_finite"])
    return out


def _timer(repeats):
    """Returns time_it(fn) -> {wall: ..., gpu_events: ...}: one warm-up call, then ``repeats`` timed ones."""
    from numba import cuda

    def time_it(fn):
        fn()                                                           # warm-up: compiles, allocates
        cuda.synchronize()
        wall, events = [], []
        for _ in range(repeats):
            start, end = cuda.event(), cuda.event()
            t0 = time.perf_counter()
            start.record()
            fn()
            end.record()
            cuda.synchronize()
            wall.append(time.perf_counter() - t0)
            events.append(start.elapsed_time(end) / 1e3)             # milliseconds on the GPU clock
        return {"wall": summarize(wall), "gpu_events": summarize(events)}
    return time_it


def wkv_timing(cfg):
    return {"x".join(map(str, shape)): _timing_at(cfg, *shape) for shape in cfg["timing"]}


def _timing_at(cfg, B, T, C):
    from numba import cuda

    from tinyrwkv.kernels import wkv_cuda, wkv_numba

    time_it = _timer(cfg["repeats"])
    w, u, k, v, gy = rand_inputs(B, T, C, seed=2)
    d_w, d_u, d_k, d_v, d_gy = (cuda.to_device(a) for a in (w, u, k, v, gy))
    aa, bb, pp = (cuda.to_device(s) for s in wkv_numpy.initial_state(B, C))
    y = cuda.device_array((B, T, C), np.float32)
    out = {"shape": [B, T, C], "note": "device: inputs resident on the GPU, state updated in place; "
           "host: NumPy in, NumPy out (transfers and allocation included)"}
    for version in wkv_cuda.FORWARD_VERSIONS:
        scratch = wkv_cuda.forward_scratch(B, T, C, np.float32, version)
        out[f"forward_v{version}"] = {
            "device": time_it(lambda: wkv_cuda.forward_on_device(d_w, d_u, d_k, d_v, aa, bb, pp, y,
                                                                 version=version, scratch=scratch)),
            "host": time_it(lambda: wkv_cuda.wkv_forward(w, u, k, v, version=version)),
        }
    gw, gu = cuda.device_array((B, C), np.float32), cuda.device_array((B, C), np.float32)
    gk, gv = cuda.device_array((B, T, C), np.float32), cuda.device_array((B, T, C), np.float32)
    scratch = wkv_cuda.backward_scratch(B, T, C, np.float32)
    out["backward_v1"] = {
        "device": time_it(lambda: wkv_cuda.backward_on_device(d_w, d_u, d_k, d_v, d_gy, gw, gu, gk, gv,
                                                              scratch=scratch)),
        "host": time_it(lambda: wkv_cuda.wkv_backward(w, u, k, v, gy)),
    }
    # The CPU peer in the same run: @njit over all CPU threads.
    cpu = {}
    for name, fn in (("forward", lambda: wkv_numba.wkv_forward(w, u, k, v)),
                     ("backward", lambda: wkv_numba.wkv_backward(w, u, k, v, gy))):
        fn()
        runs = []
        for _ in range(max(1, cfg["repeats"] // 4)):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        cpu[name] = summarize(runs)
    out["numba_cpu"] = cpu
    best = min(wkv_cuda.FORWARD_VERSIONS, key=lambda ver: out[f"forward_v{ver}"]["device"]["wall"]["median_ms"])
    out["fastest_forward_version"] = best
    out["speedup_vs_numba_cpu"] = {
        "forward": cpu["forward"]["median_ms"] / out[f"forward_v{best}"]["device"]["wall"]["median_ms"],
        "backward": cpu["backward"]["median_ms"] / out["backward_v1"]["device"]["wall"]["median_ms"],
        "forward_host_to_host": cpu["forward"]["median_ms"] / out[f"forward_v{best}"]["host"]["wall"]["median_ms"],
    }
    return out


def launch_sweep(cfg):
    from numba import cuda

    from tinyrwkv.kernels import wkv_cuda

    B, T, C = cfg["timing"][0]
    time_it = _timer(cfg["sweep_repeats"])
    w, u, k, v, _ = rand_inputs(B, T, C, seed=3)
    d_w, d_u, d_k, d_v = (cuda.to_device(a) for a in (w, u, k, v))
    aa, bb, pp = (cuda.to_device(s) for s in wkv_numpy.initial_state(B, C))
    y = cuda.device_array((B, T, C), np.float32)
    out = {"shape": [B, T, C], "v2_threads_per_block": {}, "v3_chunk_len": {}}
    for tpb in cfg["tpb"]:
        out["v2_threads_per_block"][str(tpb)] = time_it(
            lambda: wkv_cuda.forward_on_device(d_w, d_u, d_k, d_v, aa, bb, pp, y, version=2,
                                               threads_per_block=tpb))["wall"]["median_ms"]
    for chunk_len in cfg["chunks"]:
        scratch = wkv_cuda.forward_scratch(B, T, C, np.float32, 3, chunk_len)
        out["v3_chunk_len"][str(chunk_len)] = time_it(
            lambda: wkv_cuda.forward_on_device(d_w, d_u, d_k, d_v, aa, bb, pp, y, version=3,
                                               chunk_len=chunk_len, scratch=scratch))["wall"]["median_ms"]
    return out


def cpu_model(cfg):
    """The NumPy model on the CPU, two ways: the WKV in @njit, and the WKV on the GPU through the
    host wrappers (copies at every layer of every token: what the device runner removes)."""
    from tinyrwkv.models.rwkv import RWKV
    config, params, _ = shared_model(cfg)
    backends = ["numba"] + (["cuda"] if real_gpu_present() or cuda_simulator_on() else [])
    out = {"config": cfg["model"], "note": "tokens/s of one timed run after a warm-up; the matrix products "
           "run in NumPy on the CPU whatever the WKV backend"}
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, config.vocab_size, cfg["prompt_len"])
    for backend in backends:
        m = RWKV(config, params, backend=backend)
        res = {}
        _, state = m.step(0)                                           # warm-up (compiles)
        t0 = time.perf_counter()
        for _ in range(cfg["cpu_decode_tokens"]):
            _, state = m.step(0, state)
        res["decode_B1_tokens_per_s"] = cfg["cpu_decode_tokens"] / (time.perf_counter() - t0)
        m.forward(prompt[:8], full_output=False)                       # warm-up
        t0 = time.perf_counter()
        m.forward(prompt, full_output=False)
        res[f"prompt{cfg['prompt_len']}_tokens_per_s"] = cfg["prompt_len"] / (time.perf_counter() - t0)
        out[backend] = res
    return out


# --------------------------------------------------------------------------- environment


def environment(cfg, out):
    import importlib.metadata as md

    import numba
    from numba import cuda

    out.update({"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
                "platform": platform.platform(), "cpu_threads": numba.get_num_threads(),
                "simulator": cuda_simulator_on(), "real_gpu": real_gpu_present()})
    for dist in ("numba-cuda", "torch", "rwkv", "transformers"):
        try:
            out[dist] = md.version(dist)
        except Exception:
            out[dist] = None
    if out["real_gpu"]:
        dev = cuda.get_current_device()
        name = dev.name
        out["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        out["compute_capability"] = list(dev.compute_capability)
        for key, get in (("multiprocessors", lambda: dev.MULTIPROCESSOR_COUNT),
                         ("driver_version", lambda: cuda.cudadrv.driver.driver.get_version()),
                         ("runtime_version", lambda: cuda.runtime.get_version())):
            try:                       # diagnostics only: a missing one must not stop the check
                out[key] = get()
            except Exception as e:
                out[key] = f"unavailable: {type(e).__name__}: {e}"
    try:
        import torch
        out["torch_cuda"] = torch.cuda.is_available()
        if out["torch_cuda"]:
            out["torch_gpu"] = torch.cuda.get_device_name(0)
    except Exception as e:
        out["torch_cuda"] = f"unavailable: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------- compile


def compile_times(cfg, out):
    """The first call of each kernel compiles it (Numba JIT, once per argument types); this times
    the first and the second call of each, at tiny shapes, before anything else launched them."""
    from numba import cuda

    from tinyrwkv.kernels import cuda_ops as O
    from tinyrwkv.kernels import wkv_cuda

    rng = np.random.default_rng(0)
    d = lambda *shape, dtype=np.float32: cuda.to_device(rng.standard_normal(shape).astype(dtype))  # noqa: E731
    m = cfg["compile_model"]
    B, T, C, V = 2, 3, m["n_embd"], m["vocab_size"]
    x2, y2, w, u = d(B, C), d(B, C), d(C), d(C)
    x3, xk, xv, xr = d(B, T, C), d(B, T, C), d(B, T, C), d(B, T, C)
    X, Y = d(B * T, C), d(B * T, C)
    st = [d(B, C) for _ in range(3)]
    ids = cuda.to_device(np.array([1, 2, 3, 4, 5, 6], np.int64))
    launches = {}
    for dt in (np.float32, np.float16):
        name = np.dtype(dt).name
        W, E = d(C, C, dtype=dt), d(V, C, dtype=dt)
        for v in O.MATVEC_VERSIONS:
            launches[f"matvec_v{v}[{name}]"] = lambda W=W, v=v: O.matvec(W, x2, y2, False, v)
        for v in O.MATMUL_VERSIONS:
            launches[f"matmul_v{v}[{name}]"] = lambda W=W, v=v: O.matmul(X, W, Y, False, v)
        launches[f"embedding_gather[{name}]"] = lambda E=E: O.elementwise(O.embedding_gather, B * T * C, E, ids, Y)
    for v in O.LAYERNORM_VERSIONS:
        launches[f"layernorm_v{v}"] = lambda v=v: O.layernorm(X, w, u, 1e-5, Y, v)
    launches.update({
        "shift_mix3": lambda: O.elementwise(O.shift_mix3, B * T * C, x3, x2, w, u, w, xk, xv, xr),
        "shift_mix2": lambda: O.elementwise(O.shift_mix2, B * T * C, x3, x2, w, u, xk, xr),
        "save_last": lambda: O.elementwise(O.save_last, B * C, x3, y2),
        "take_last": lambda: O.elementwise(O.take_last, B * C, x3, y2),
        "sigmoid_mul": lambda: O.elementwise(O.sigmoid_mul, B * T * C, X, Y),
        "squared_relu": lambda: O.elementwise(O.squared_relu, B * T * C, Y),
        "gate_add": lambda: O.elementwise(O.gate_add, B * T * C, Y, X, X),
        "copy_kernel": lambda: O.elementwise(O.copy_kernel, C, w, u),
        "wkv_step_v1": lambda: wkv_cuda.step_on_device(w, u, x2, x2, *st, y2),
    })
    for v in wkv_cuda.FORWARD_VERSIONS:
        launches[f"wkv_forward_v{v}"] = lambda v=v: wkv_cuda.forward_on_device(w, u, x3, x3, *st, xk, version=v)
    per = {}
    for name, fn in launches.items():
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn()
        sync()
        per[name] = {"first_call_s": round(first, 4), "second_call_s": round(time.perf_counter() - t0, 6)}
        out["kernels"] = per
    out["total_first_calls_s"] = round(sum(p["first_call_s"] for p in per.values()), 2)
    out["note"] = "first call = JIT compile (typing, LLVM, PTX, cubin) + launch; the runner pays it once per process"


# --------------------------------------------------------------------------- the device runner


def _diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {"max_abs": float(np.max(np.abs(a - b))), "max_rel": float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))}


def _state_diff(dev_state, ref_state):
    host = dev_state.to_host()
    return max(float(np.max(np.abs(getattr(host, f) - getattr(ref_state, f)))) for f in ("att_x", "aa", "bb", "ffn_x"))


def runner_parity(cfg, out):
    from tinyrwkv.models.rwkv import RWKV
    from tinyrwkv.runners.cuda_rwkv4 import DeviceRWKV

    config, params, ref = shared_model(cfg)
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, config.vocab_size, cfg["parity_prompt"])
    steps = rng.integers(0, config.vocab_size, cfg["parity_steps"])
    ref_logits, ref_state = ref.forward(prompt)
    ref_steps, s = [], ref_state
    for t in steps:
        lg, s = ref.step(int(t), s)
        ref_steps.append(lg)
    out["logit_scale"] = float(np.max(np.abs(ref_logits)))
    out["shapes"] = dict(cfg["model"], prompt=len(prompt), steps=len(steps))

    def check(model, rlogits, rstate, rsteps, label):
        logits, state = model.forward(prompt)
        res = {"forward_logits": _diff(logits, rlogits), "forward_state_max_abs": _state_diff(state, rstate)}
        worst = 0.0
        for t, want in zip(steps, rsteps):
            lg, state = model.step(int(t), state)
            worst = max(worst, _diff(lg, want)["max_abs"])
        res["step_logits_max_abs"] = worst
        out[label] = res
        return res

    for dtype in ("float32", "float16"):
        if dtype == "float16":      # the NumPy model on the same fp16-rounded weights
            rounded = {k: (v.astype(np.float16).astype(np.float32) if v.ndim == 2 else v) for k, v in params.items()}
            ref16 = RWKV(config, rounded, backend="numba")
            rl, rs = ref16.forward(prompt)
            rsteps, s2 = [], rs
            for t in steps:
                lg, s2 = ref16.step(int(t), s2)
                rsteps.append(lg)
            model = DeviceRWKV(config, params, dtype="float16")
            check(model, rl, rs, rsteps, "float16_vs_numpy_fp16_weights")
            out["float16_vs_numpy_fp32_weights"] = {"forward_logits": _diff(model.forward(prompt)[0], ref_logits)}
            del ref16, rounded
        else:
            model = DeviceRWKV(config, params, dtype="float32")
            check(model, ref_logits, ref_state, ref_steps, "float32")
        del model
        gc.collect()
    # every kernel version inside the model (fp32): matvec in the steps, matmul and layer norm in the prompt
    versions = {}
    for mv in (1, 2, 3):
        m = DeviceRWKV(config, params, matvec_version=mv)
        lg, _ = m.step(int(steps[0]), m.forward(prompt)[1])
        versions[f"matvec_v{mv}_step"] = _diff(lg, ref_steps[0])["max_abs"]
        del m
    for mm in (1, 2):
        for ln in (1, 2):
            m = DeviceRWKV(config, params, matmul_version=mm, layernorm_version=ln)
            versions[f"matmul_v{mm}_layernorm_v{ln}_forward"] = _diff(m.forward(prompt)[0], ref_logits)["max_abs"]
            del m
    out["versions_max_abs"] = versions
    # a batch of 5 sequences (two groups of matvec v3's 4) decoding together
    B = 5
    m = DeviceRWKV(config, params)
    toks = rng.integers(0, config.vocab_size, (B, 2))
    lg_dev, st_dev = m.forward(toks)
    lg_ref, st_ref = ref.forward(toks)
    lg2_dev, _ = m.step(toks[:, 0], st_dev)
    lg2_ref, _ = ref.step(toks[:, 0], st_ref)
    out["batch5"] = {"forward": _diff(lg_dev, lg_ref)["max_abs"], "step": _diff(lg2_dev, lg2_ref)["max_abs"]}
    tol = 1e-4 * max(out["logit_scale"], 1.0)
    out["tolerance_fp32"] = tol
    out["ok"] = bool(out["float32"]["forward_logits"]["max_abs"] < tol and out["float32"]["step_logits_max_abs"] < tol
                     and max(versions.values()) < tol and max(out["batch5"].values()) < tol
                     and out["float16_vs_numpy_fp16_weights"]["forward_logits"]["max_abs"] < 10 * tol)


def bandwidth(cfg, out):
    """The device copy bandwidth (what a memory-bound kernel can hope for), then each kernel ladder."""
    from numba import cuda

    from tinyrwkv.kernels import cuda_ops as O

    reps = cfg["kernel_repeats"]
    n = int(cfg["copy_mb"] * 2**20 / 4)
    src, dst = cuda.to_device(np.ones(n, np.float32)), cuda.device_array(n, np.float32)
    ms = median_ms(lambda: dst.copy_to_device(src), reps)
    out["copy"] = {"bytes": 4 * n, "device_to_device_GBps": 2 * 4 * n / ms / 1e6}
    ms = median_ms(lambda: O.elementwise(O.copy_kernel, n, src, dst), reps)
    out["copy"]["copy_kernel_GBps"] = 2 * 4 * n / ms / 1e6
    del src, dst
    m = cfg["model"]
    C, F, V = m["n_embd"], m["ffn_dim"], m["vocab_size"]
    rng = np.random.default_rng(2)
    mv = {}
    for dt in (np.float32, np.float16):
        for (N, K) in ((C, C), (F, C), (C, F), (V, C)) if cfg["ladder_all_shapes"] else ((V, C),):
            W = cuda.to_device(rng.standard_normal((N, K)).astype(dt))
            for B in (1, cfg["speed_batch"]):
                x = cuda.to_device(rng.standard_normal((B, K)).astype(np.float32))
                y = cuda.device_array((B, N), np.float32)
                for v in O.MATVEC_VERSIONS:
                    if B > 1 and v == 1:
                        continue
                    ms = median_ms(lambda: O.matvec(W, x, y, False, v), reps)
                    mv[f"{np.dtype(dt).name} {N}x{K} B={B} v{v}"] = {
                        "ms": ms, "weight_GBps": W.size * W.dtype.itemsize / ms / 1e6}
                out["matvec"] = mv
            del W
    mm = {}
    M = cfg["prompt_len"]
    X = cuda.to_device(rng.standard_normal((M, C)).astype(np.float32))
    for dt in (np.float32, np.float16):
        for N in (C, F) if cfg["ladder_all_shapes"] else (C,):
            W = cuda.to_device(rng.standard_normal((N, C)).astype(dt))
            Y = cuda.device_array((M, N), np.float32)
            for v in O.MATMUL_VERSIONS:
                ms = median_ms(lambda: O.matmul(X, W, Y, False, v), max(1, reps // 4))
                mm[f"{np.dtype(dt).name} ({M}x{C}) x ({N}x{C})^T v{v}"] = {"ms": ms, "GFLOPs": 2 * M * N * C / ms / 1e6}
            out["matmul"] = mm
    ln = {}
    w, b = cuda.to_device(np.ones(C, np.float32)), cuda.to_device(np.zeros(C, np.float32))
    for rows in (1, M):
        x = cuda.to_device(rng.standard_normal((rows, C)).astype(np.float32))
        y = cuda.device_array((rows, C), np.float32)
        for v in O.LAYERNORM_VERSIONS:
            ln[f"({rows}x{C}) v{v}"] = {"ms": median_ms(lambda: O.layernorm(x, w, b, 1e-5, y, v), reps)}
    out["layernorm"] = ln


def runner_speed(cfg, out):
    from tinyrwkv.runners.cuda_rwkv4 import DeviceRWKV

    config, params, _ = shared_model(cfg)
    rng = np.random.default_rng(3)
    prompt = rng.integers(0, config.vocab_size, cfg["prompt_len"])
    n_tok = cfg["decode_tokens"]
    Bb = cfg["speed_batch"]

    def decode(model, B):
        token = 0 if B == 1 else np.zeros(B, np.int64)
        _, state = model.step(token)                           # warm-up (compiles, allocates)
        t0 = time.perf_counter()
        for _ in range(n_tok):
            _, state = model.step(token, state)                # each step copies the logits back: synchronous
        return B * n_tok / (time.perf_counter() - t0)

    for dtype, mv, ln in cfg["speed_configs"]:
        model = DeviceRWKV(config, params, dtype=dtype, matvec_version=mv, layernorm_version=ln)
        res = {"decode_B1_tokens_per_s": decode(model, 1)}
        if ln != 2:                                            # the layer-norm rung, end to end
            out[f"{dtype} matvec_v{mv} layernorm_v{ln}"] = res
            del model
            continue
        if mv > 1:
            res[f"decode_B{Bb}_tokens_per_s"] = decode(model, Bb)
        res["weight_bytes_per_token"] = model.bytes_per_token()
        res["achieved_weight_GBps_B1"] = model.bytes_per_token() * res["decode_B1_tokens_per_s"] / 1e9
        out[f"{dtype} matvec_v{mv}"] = res
        if mv == 3:
            out[f"{dtype} profile_step_ms"] = model.profile_step(0, repeats=3)
            out[f"{dtype} kernel_launches_per_token"] = len(_launches_of_one_step(model))
            for mm in (2, 1):
                m2 = DeviceRWKV(config, params, dtype=dtype, matmul_version=mm) if mm != 2 else model
                ms = median_ms(lambda: m2.forward(prompt, full_output=False), 3 if mm == 2 else 1)
                out[f"{dtype} prompt{len(prompt)} matmul_v{mm}"] = {"tokens_per_s": len(prompt) / ms * 1e3}
                del m2
        del model
        gc.collect()


def _launches_of_one_step(model):
    model.profile = []
    try:
        model.step(0)
        return list(model.profile)     # one entry per launch of _k (a few launch two kernels)
    finally:
        model.profile = None


# --------------------------------------------------------------------------- peers


def _write_blinkdl_pth(params, directory):
    """torch.save of the BlinkDL-named state dict (what the rwkv package loads), float32."""
    import torch

    from tinyrwkv.checkpoints.naming import to_file_layout
    path = Path(directory) / "rwkv4_random.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_file_layout(params, "blinkdl").items()},
               path)
    return path


def rwkv_pip(cfg, out):
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    import torch
    from rwkv.model import RWKV as PipRWKV

    config, params, ref = shared_model(cfg)
    dev = torch_device()
    out["device"] = dev
    rng = np.random.default_rng(4)
    prompt = [int(t) for t in rng.integers(0, config.vocab_size, cfg["prompt_len"])]
    short = prompt[:cfg["parity_prompt"]]
    ref_last = ref.forward(np.array(short), full_output=False)[0]
    tsync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_blinkdl_pth(params, tmp)
        strategies = ("cuda fp16", "cuda fp32") if dev == "cuda" else ("cpu fp32",)
        for strategy in strategies:
            model = PipRWKV(model=str(path)[:-4], strategy=strategy, verbose=False)
            logits, _ = model.forward(short, None)
            res = {"parity_last_logits": _diff(logits.float().cpu().numpy(), ref_last)}
            _, state = model.forward([0], None)
            tsync()
            t0 = time.perf_counter()
            for _ in range(cfg["decode_tokens"]):
                logits, state = model.forward([0], state)
                logits.float().cpu()                               # the logits on the host, as ours
            tsync()
            res["decode_B1_tokens_per_s"] = cfg["decode_tokens"] / (time.perf_counter() - t0)
            ms = median_ms(lambda: model.forward(prompt, None)[0].float().cpu(), 3, synchronize=tsync)
            res[f"prompt{len(prompt)}_tokens_per_s"] = len(prompt) / ms * 1e3
            out[strategy] = res
            del model
            gc.collect()
            if dev == "cuda":
                torch.cuda.empty_cache()


def transformers_peer(cfg, out):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers.models.rwkv.modeling_rwkv as modeling
    from transformers import RwkvConfig, RwkvForCausalLM

    from tinyrwkv.checkpoints.naming import to_file_layout
    # No hub download and no CUDA-extension build of transformers' WKV kernel (it would try when
    # ninja is installed): its plain PyTorch WKV runs instead.
    if hasattr(modeling, "is_ninja_available"):
        modeling.is_ninja_available = lambda: False
    config, params, ref = shared_model(cfg)
    dev = torch_device()
    out["device"] = dev
    hf_config = RwkvConfig(vocab_size=config.vocab_size, hidden_size=config.n_embd, num_hidden_layers=config.n_layer,
                           intermediate_size=config.ffn_dim, attention_hidden_size=config.n_embd,
                           context_length=1024, layer_norm_epsilon=config.layer_norm_epsilon, rescale_every=0,
                           tie_word_embeddings=False)
    state_dict = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_file_layout(params, "hf").items()}
    rng = np.random.default_rng(5)
    prompt = torch.tensor(rng.integers(0, config.vocab_size, cfg["prompt_len"]))[None]
    short = prompt[:, :cfg["parity_prompt"]]
    ref_last = ref.forward(short[0].numpy(), full_output=False)[0]
    tsync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    for dtype in ((torch.float32, torch.float16) if dev == "cuda" else (torch.float32,)):
        model = RwkvForCausalLM(hf_config)
        model.load_state_dict(state_dict, strict=True)
        model = model.eval().to(device=dev, dtype=dtype)
        name = str(dtype).replace("torch.", "")
        with torch.no_grad():
            res = {"parity_last_logits": _diff(model(short.to(dev)).logits[0, -1].float().cpu().numpy(), ref_last)}
            o = model(prompt[:, :1].to(dev), use_cache=True)
            state = o.state
            token = prompt[:, :1].to(dev)
            tsync()
            t0 = time.perf_counter()
            for _ in range(cfg["decode_tokens"]):
                o = model(token, state=state, use_cache=True)
                state = o.state
                o.logits[0, -1].float().cpu()
            tsync()
            res["decode_B1_tokens_per_s"] = cfg["decode_tokens"] / (time.perf_counter() - t0)
            ms = median_ms(lambda: model(prompt.to(dev)).logits[0, -1].float().cpu(), 3, synchronize=tsync)
            res[f"prompt{prompt.shape[1]}_tokens_per_s"] = prompt.shape[1] / ms * 1e3
        out[name] = res
        del model
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- the run


def _returning(fn):
    """Adapts a section that returns its dict to the fill-``out`` form of the others."""
    def run(cfg, out):
        out.update(fn(cfg))
    return run


SECTIONS = {"environment": environment, "compile": compile_times, "runner_parity": runner_parity,
            "bandwidth": bandwidth, "runner_speed": runner_speed, "rwkv_pip": rwkv_pip,
            "transformers": transformers_peer, "wkv_parity": _returning(wkv_parity),
            "wkv_timing": _returning(wkv_timing), "launch_sweep": _returning(launch_sweep),
            "cpu_model": _returning(cpu_model)}
NEEDS_CUDA = {"compile", "runner_parity", "bandwidth", "runner_speed", "wkv_parity", "wkv_timing", "launch_sweep"}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summary_rows(results):
    """(what, decode tok/s B=1, prompt tok/s, parity) rows for the table, from whatever ran."""
    S = results["sections"]
    rs, rows = S.get("runner_speed", {}), []
    P = results.get("prompt_len")
    for dtype in ("float16", "float32"):
        for mv in (3, 2, 1):
            r = rs.get(f"{dtype} matvec_v{mv}")
            if r:
                prompt = _get(rs, f"{dtype} prompt{P} matmul_v2", "tokens_per_s") if mv == 3 else None
                par = _get(S, "runner_parity", "float32" if dtype == "float32" else "float16_vs_numpy_fp16_weights",
                           "forward_logits", "max_abs") if mv == 3 else None
                rows.append((f"tinyrwkv DeviceRWKV {dtype} matvec v{mv}", r.get("decode_B1_tokens_per_s"), prompt, par))
        for mv in (3, 2, 1):
            r = rs.get(f"{dtype} matvec_v{mv} layernorm_v1")
            if r:
                rows.append((f"tinyrwkv DeviceRWKV {dtype} matvec v{mv} layernorm v1", r.get("decode_B1_tokens_per_s"),
                             None, None))
        r = rs.get(f"{dtype} prompt{P} matmul_v1")
        if r:
            rows.append((f"tinyrwkv DeviceRWKV {dtype} matmul v1 (prompt)", None, r.get("tokens_per_s"), None))
    for strategy in ("cuda fp16", "cuda fp32", "cpu fp32"):
        r = _get(S, "rwkv_pip", strategy)
        if r:
            rows.append((f"rwkv pip {strategy}", r.get("decode_B1_tokens_per_s"), r.get(f"prompt{P}_tokens_per_s"),
                         _get(r, "parity_last_logits", "max_abs")))
    for dtype in ("float32", "float16"):
        r = _get(S, "transformers", dtype)
        if r:
            rows.append((f"transformers {_get(S, 'transformers', 'device')} {dtype}", r.get("decode_B1_tokens_per_s"),
                         r.get(f"prompt{P}_tokens_per_s"), _get(r, "parity_last_logits", "max_abs")))
    for backend, label in (("numba", "tinyrwkv NumPy model, CPU (WKV @njit)"),
                           ("cuda", "tinyrwkv NumPy model, WKV on GPU via host copies")):
        r = _get(S, "cpu_model", backend)
        if r:
            rows.append((label, r.get("decode_B1_tokens_per_s"), r.get(f"prompt{P}_tokens_per_s"), None))
    return rows


def print_table(results):
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    S = results["sections"]
    print()
    print("section          seconds  status")
    for name, r in S.items():
        status = "ERROR " + r["error"][:70] if "error" in r else ("skipped" if "skipped" in r else "ok")
        print(f"{name:16s} {r.get('seconds', 0):7.1f}  {status}")
    print()
    print(f"{'what':52s} {'decode tok/s':>12s} {'prompt tok/s':>13s} {'max|dlogit|':>12s}")
    for what, dec, pro, par in summary_rows(results):
        print(f"{what:52s} {fmt(dec, '12.1f')} {fmt(pro, '13.1f')} {fmt(par, '12.2e')}")
    copy = _get(S, "bandwidth", "copy", "device_to_device_GBps")
    if copy:
        print(f"\ndevice copy bandwidth {copy:.0f} GB/s; matvec (weights read) at the head's shape:")
        for k, v in (_get(S, "bandwidth", "matvec") or {}).items():
            if k.split()[1].startswith(str(results.get("vocab_size"))) and "B=1" in k:
                print(f"  {k:40s} {v['ms']:8.3f} ms {v['weight_GBps']:8.1f} GB/s")
    par = S.get("runner_parity", {})
    if "ok" in par:
        print(f"\nparity ok: {par['ok']} (fp32 tolerance {par.get('tolerance_fp32', 0):.1e} on logits of scale "
              f"{par.get('logit_scale', 0):.1f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="where to write the JSON (default: %(default)s)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes: a rehearsal on the CUDA simulator")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default: all: {','.join(SECTIONS)})")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run (default 420; none with --tiny); each section also has "
                         "its own budget (BUDGET_S; not applied with --tiny)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"--only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    cfg = TINY if args.tiny else FULL
    if args.budget is None:
        args.budget = float("inf") if args.tiny else 420.0
    warnings.filterwarnings("ignore", message="Simulator timings are bogus")
    warnings.filterwarnings("ignore", category=Warning, module="numba")
    for message in (".*under-utilization.*", ".*Host array used in CUDA kernel.*", ".*Simulator timings.*"):
        warnings.filterwarnings("ignore", message=message)      # numba(-cuda) performance notes at small launches
    out_path = Path(args.out)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": args.tiny, "prompt_len": cfg["prompt_len"],
               "vocab_size": cfg["model"]["vocab_size"],
               "NUMBA_ENABLE_CUDASIM": os.environ.get("NUMBA_ENABLE_CUDASIM", ""), "sections": {}}
    usable = cuda_simulator_on() or real_gpu_present()
    t_start = time.perf_counter()
    for name in only:
        t0 = time.perf_counter()
        section = results["sections"][name] = {}
        left = args.budget - (t0 - t_start)
        if name in NEEDS_CUDA and not usable:
            section["skipped"] = "no CUDA GPU here, and the simulator is off (set NUMBA_ENABLE_CUDASIM=1 to rehearse)"
        elif left < 5:
            section["skipped"] = f"the run's budget of {args.budget:.0f} s is spent"      # (an inf budget never is)
        else:
            budget = None if args.tiny else min(BUDGET_S[name], left)
            section["budget_s"] = budget
            try:
                with time_limit(budget):
                    SECTIONS[name](cfg, section)
            except Exception as e:                                     # record it (and what was measured), go on
                section["error"] = f"{type(e).__name__}: {e}"
                section["traceback"] = traceback.format_exc()[-4000:]
        section["seconds"] = round(time.perf_counter() - t0, 3)
        print(f"[gpu_check] {name}: {'error' if 'error' in section else 'done'} in {section['seconds']:.1f} s",
              flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=str))
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"[gpu_check] wrote {out_path} after {results['total_seconds']:.0f} s")
    try:
        print_table(results)
    except Exception as e:                                             # the JSON has everything anyway
        print(f"[gpu_check] could not print the table: {type(e).__name__}: {e}")
    errors = [n for n, r in results["sections"].items() if "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
