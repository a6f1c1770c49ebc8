"""Checks and times the numba.cuda WKV kernels on a real GPU, and writes everything as one JSON.

    python scripts/gpu_check.py --out gpu_check.json            # on a machine with an NVIDIA GPU
    NUMBA_ENABLE_CUDASIM=1 python scripts/gpu_check.py --tiny    # rehearsal on the CUDA simulator

Sections (each one is caught on its own: an error is recorded in the JSON and the next section
runs; the JSON is rewritten after every section, so even a killed run leaves what it measured):

    environment   GPU, driver, numba, numpy, CPU threads; whether this is the simulator
    parity        every forward version, the backward and the step against wkv_numpy (max abs diff)
    timing        forward (each version) and backward at B=8, T=1024, C=768: device-resident
                  (inputs already on the GPU, warm-up excluded, cuda.synchronize() around each
                  run, plus CUDA-event time) and host-to-host (NumPy in, NumPy out); the @njit
                  CPU kernels at the same shape as the peer
    launch_sweep  threads per block for v2, chunk length for v3
    model         RWKV-4 169M shapes (random weights, tinyrwkv.models.rwkv): decode tokens/s
                  (model.step) and 512-token prompt tokens/s, per WKV backend

``--tiny`` shrinks every shape so the whole script runs on the simulator in a few seconds; its
timings mean nothing there (the simulator runs each CUDA thread as a Python thread).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from tinyrwkv.kernels import cuda_simulator_on, real_gpu_present, wkv_numpy  # noqa: E402

FULL = dict(parity=(4, 256, 128), timing=[(8, 1024, 768), (1, 512, 768)], repeats=20, sweep_repeats=10,
            tpb=(32, 64, 128, 256, 768), chunks=(16, 32, 64, 128),
            model=dict(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072),
            decode_tokens=64, decode_batches=(1, 8), prompt_len=512)
TINY = dict(parity=(2, 8, 8), timing=[(1, 8, 8)], repeats=1, sweep_repeats=1,
            tpb=(8, 32), chunks=(2, 4),
            model=dict(n_layer=2, n_embd=8, vocab_size=50, ffn_dim=32),
            decode_tokens=2, decode_batches=(1, 2), prompt_len=4)


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


def parity(cfg):
    from tinyrwkv.kernels import wkv_cuda

    B, T, C = cfg["parity"]
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


def timing(cfg):
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


def model(cfg):
    try:
        from tinyrwkv.models.rwkv import RWKV, RWKVConfig, init_params
    except Exception as e:                                             # the model is another issue's work
        return {"skipped": f"tinyrwkv.models.rwkv is not importable here: {type(e).__name__}: {e}"}
    config = RWKVConfig(**cfg["model"])
    params = init_params(config, seed=0)
    backends = ["numba"] + (["cuda"] if real_gpu_present() or cuda_simulator_on() else [])
    out = {"config": cfg["model"], "note": "random weights; tokens/s of one timed run after a warm-up; "
           "the matrix products run in NumPy on the CPU whatever the WKV backend"}
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, config.vocab_size, cfg["prompt_len"])
    for backend in backends:
        m = RWKV(config, params, backend=backend)
        res = {}
        for batch in cfg["decode_batches"]:
            token = 0 if batch == 1 else np.zeros(batch, np.int64)
            _, state = m.step(token)                                   # warm-up (compiles)
            t0 = time.perf_counter()
            for _ in range(cfg["decode_tokens"]):
                _, state = m.step(token, state)
            res[f"decode_B{batch}_tokens_per_s"] = batch * cfg["decode_tokens"] / (time.perf_counter() - t0)
        m.forward(prompt[:8], full_output=False)                       # warm-up
        t0 = time.perf_counter()
        m.forward(prompt, full_output=False)
        res[f"prompt{cfg['prompt_len']}_tokens_per_s"] = cfg["prompt_len"] / (time.perf_counter() - t0)
        out[backend] = res
    return out


SECTIONS = {"environment": environment, "parity": parity, "timing": timing,
            "launch_sweep": launch_sweep, "model": model}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="where to write the JSON (default: %(default)s)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes: a rehearsal on the CUDA simulator")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default: all: {','.join(SECTIONS)})")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"--only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    cfg = TINY if args.tiny else FULL
    warnings.filterwarnings("ignore", message="Simulator timings are bogus")
    out_path = Path(args.out)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": args.tiny,
               "NUMBA_ENABLE_CUDASIM": os.environ.get("NUMBA_ENABLE_CUDASIM", ""), "sections": {}}
    usable = cuda_simulator_on() or real_gpu_present()
    for name in only:
        t0 = time.perf_counter()
        if name != "environment" and name != "model" and not usable:
            results["sections"][name] = {"skipped": "no CUDA GPU here, and the simulator is off "
                                         "(set NUMBA_ENABLE_CUDASIM=1 to rehearse)"}
        else:
            try:
                results["sections"][name] = SECTIONS[name](cfg)
            except Exception as e:                                     # record it, go on
                results["sections"][name] = {"error": f"{type(e).__name__}: {e}",
                                             "traceback": traceback.format_exc()[-4000:]}
        results["sections"][name]["seconds"] = round(time.perf_counter() - t0, 3)
        print(f"[gpu_check] {name}: {'error' if 'error' in results['sections'][name] else 'done'} "
              f"in {results['sections'][name]['seconds']:.1f} s", flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"[gpu_check] wrote {out_path}")
    errors = [n for n, r in results["sections"].items() if "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
