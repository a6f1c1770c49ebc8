"""``tinyrwkv bench``: how fast tinyrwkv runs RWKV-4 169M on this CPU, beside its peers.

Two figures per implementation, random weights at the real 169M shapes:

    decode   serial RNN-mode steps, one token at a time (tokens/s): a chain of matrix-vector
             products, bound by memory bandwidth (~0.5 GB of weights read per token)
    prompt   a 512-token prompt in one call, logits of the last position only, as generation
             needs them (tokens/s): matrix-matrix products, bound by arithmetic

tinyrwkv runs once per weight format in ``--weights`` (fp32, bf16, int8: ``tinyrwkv.nn.compact``).
Peers, measured in the same run when installed: the ``rwkv`` pip package (``strategy='cpu fp32'``,
and ``'cpu fp32i8'`` when int8 is asked for, reading a BlinkDL .pth written with torch.save) and
transformers' ``RwkvForCausalLM`` (reading the same weights from model.safetensors). Each
implementation runs in its own subprocess (no shared thread pools), ``--rounds`` times in turn; in
each round a figure is the best of ``--repeats``; the table gives the MEDIAN over rounds, and ratios
are taken within a round (so both sides saw the same machine load), then their median.

The roofline beside them, measured in the same run (``tinyrwkv.roofline``):

    bandwidth    GB/s of a large parallel read: the faster of a Numba prange sum over 512 MB with and
                 without software prefetch (a numpy copy too)
    decode bound bytes read per token (every weight matrix but the embedding, which gives one row)
                 / the read bandwidth *at that many bytes*, measured in the format's own worker right
                 after its timing: the fastest decoding that format can do on this machine. (A 131 MB
                 int8 model can sit partly in a large L3 where 523 MB of fp32 cannot: each format is
                 held to the bandwidth of its own working set, not to the slower 512 MB figure.)
    GEMM         GFLOP/s of float32 sgemm at the prompt's shapes; "prompt GFLOP/s" is the prompt's
                 flops / time (``roofline.prompt_flops``: every layer matrix per token, the head once, as
                 only the last logits are computed), so prompt / GEMM says how close to arithmetic-bound it runs

    tinyrwkv bench --weights fp32,bf16,int8     # full size, with peers
    tinyrwkv bench --no-peers --tiny            # seconds: a smoke test of the machinery
    tinyrwkv bench --version 7                  # RWKV-7 at the shapes of RWKV-x070-Pile-168M (peer: the rwkv
                                                # package with RWKV_V7_ON=1; transformers has no RWKV-5/6/7)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from .errors import ParameterError

IMPLEMENTATIONS = ("tinyrwkv", "rwkv", "transformers")
WEIGHT_FORMATS = ("fp32", "bf16", "int8")
# the rwkv package's CPU strategy for each of our formats (it has no CPU bf16 strategy worth timing)
RWKV_STRATEGY = {"fp32": "cpu fp32", "int8": "cpu fp32i8"}
# the rwkv package's int8 dequantises every matrix at every call (~1 tok/s): fewer decode steps for it
SLOW_DECODE_SHARE = 8
REAL_169M = dict(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
TINY = dict(n_layer=2, n_embd=64, vocab_size=1000, ffn_dim=256)
# the newer versions at real shapes: RWKV-x070-Pile-168M (LoRA ranks from RWKV-7's formulas at C = 768),
# and RWKV-5/6 at the same 12 x 768 with head size 64 (v6's LoRA ranks as in its 0.1B-1.6B models)
VERSION_SHAPES = {
    5.2: dict(REAL_169M, version=5.2, head_size=64),
    6: dict(REAL_169M, version=6, head_size=64, ffn_dim=2688, decay_lora=64, mix_lora=32),
    7: dict(REAL_169M, version=7, head_size=64, decay_lora=64, a_lora=64, v_lora=32, gate_lora=128),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decode-tokens", type=int, default=64, help="RNN-mode steps per repeat (default 64)")
    p.add_argument("--prompt-length", type=int, default=512, help="tokens in the prompt (default 512)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per round (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="times each implementation is run in turn (default 2)")
    p.add_argument("--no-peers", action="store_true", help="measure tinyrwkv only")
    p.add_argument("--only", choices=IMPLEMENTATIONS, action="append", help="measure only these (repeatable)")
    p.add_argument("--backend", default="numba", help="tinyrwkv's WKV backend (default numba)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model instead of 169M (smoke test)")
    p.add_argument("--version", choices=["4", "5.2", "6", "7"], default="4",
                   help="RWKV version (default 4; 7: the shapes of RWKV-x070-Pile-168M)")
    p.add_argument("--workdir", default=None, help="where to write the random checkpoints (default: a temp dir)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every implementation (BLAS, OpenMP, Numba, torch); default: all cores")
    p.add_argument("--weights", default="fp32",
                   help="tinyrwkv weight formats to measure, comma-separated: fp32,bf16,int8 (default fp32)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


# --------------------------------------------------------------------------- checkpoints


def write_checkpoints(folder: pathlib.Path, config: dict, want_pth: bool, seed: int = 0) -> dict:
    """Random weights written as an HF folder (config.json + model.safetensors) and, if asked,
    as a BlinkDL .pth (needs torch). Returns {"hf": folder, "pth": path or None}."""
    from safetensors.numpy import save_file

    from .checkpoints import to_file_layout
    from .models.rwkv import RWKVConfig, init_params

    params = init_params(RWKVConfig(**config), seed=seed)
    hf_dir = folder / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    (hf_dir / "config.json").write_text(json.dumps({
        "architectures": ["RwkvForCausalLM"], "model_type": "rwkv", "vocab_size": config["vocab_size"],
        "hidden_size": config["n_embd"], "num_hidden_layers": config["n_layer"],
        "intermediate_size": config["ffn_dim"], "attention_hidden_size": config["n_embd"],
        "context_length": 1024, "layer_norm_epsilon": 1e-5, "rescale_every": 6,
        "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0}, indent=1))
    pth = None
    if want_pth:
        import torch
        pth = folder / "RWKV-4-random-169M-shapes.pth"
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
                    for k, v in to_file_layout(params, "blinkdl").items()}, pth)
    return {"hf": hf_dir, "pth": pth}


def write_checkpoints_v567(folder: pathlib.Path, config: dict, want_pth: bool, seed: int = 0) -> dict:
    """Random RWKV-5.2/6/7 weights in BlinkDL's names: a .safetensors for tinyrwkv and, if asked, the
    same tensors as a .pth for the rwkv package (needs torch). Returns {"blinkdl": path, "pth": path or None}."""
    from safetensors.numpy import save_file

    from .checkpoints import to_file_layout
    from .models.rwkv import RWKVConfig
    from .models.rwkv5 import init_matrix_params

    params = to_file_layout(init_matrix_params(RWKVConfig(**config), seed=seed), "blinkdl")
    folder.mkdir(parents=True, exist_ok=True)
    st = folder / f"RWKV-{config['version']}-random.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, str(st))
    pth = None
    if want_pth:
        import torch
        pth = folder / f"RWKV-{config['version']}-random.pth"
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}, pth)
    return {"blinkdl": st, "pth": pth}


def shapes_for(version, tiny: bool) -> dict:
    """The config ``bench`` measures: 169M shapes (v4), 168M shapes (v5.2/6/7), or a tiny smoke-test size."""
    if version == 4:
        return TINY if tiny else REAL_169M
    config = dict(VERSION_SHAPES[version])
    if tiny:
        config.update(TINY, head_size=32, ffn_dim=224)
        config.update({k: 16 for k in ("decay_lora", "mix_lora", "a_lora", "v_lora", "gate_lora") if k in config})
    return config


# --------------------------------------------------------------------------- workers (one per subprocess)


def _timeit(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def worker(name: str, path: str, prompt_length: int, decode_tokens: int, repeats: int, backend: str,
           vocab_size: int, weights: str = "fp32", model_version: float = 4) -> dict:
    """Loads ``name``'s model from ``path`` (tinyrwkv: with ``weights``; rwkv: its strategy for
    ``weights``) and returns {"decode": tok/s, "prompt": tok/s, "version", "decode_bytes"}.

    decode_bytes: bytes of weights one decoding step reads (tinyrwkv only)."""
    if name == "bandwidth":
        from .roofline import measure_bandwidth, measure_gemm
        tiny = vocab_size == TINY["vocab_size"]
        gemm = measure_gemm(prompt_length, (TINY if tiny else REAL_169M)["n_embd"], repeats=repeats)
        return {**measure_bandwidth(megabytes=64 if tiny else 512, repeats=max(repeats, 3)), "gemm_gflops": gemm}
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, vocab_size, prompt_length).tolist()
    decode = rng.integers(0, vocab_size, decode_tokens).tolist()

    if name == "tinyrwkv":
        from . import __version__
        from .loading import load
        from .roofline import decode_bytes, prompt_flops
        model = load(path, backend=backend, weights=weights, progress=False)
        extra = {"decode_bytes": decode_bytes(model.params), "prompt_flops": prompt_flops(model.params, prompt_length)}
        model.forward(prompt[:8], full_output=False)                 # compile / warm up
        model.step(0)

        def run_prompt():
            model.forward(prompt, full_output=False)

        def run_decode():
            _, state = model.step(decode[0])
            for t in decode[1:]:
                _, state = model.step(t, state)
        version = __version__

    elif name == "rwkv":
        os.environ["RWKV_JIT_ON"] = "1"
        os.environ["RWKV_CUDA_ON"] = "0"
        if model_version == 7:              # read by rwkv.model when it is imported: RWKV_x070 then
            os.environ["RWKV_V7_ON"] = "1"
        import contextlib
        import io

        import rwkv
        import torch
        from rwkv.model import RWKV as RwkvPackageModel
        with contextlib.redirect_stdout(io.StringIO()):              # it prints every tensor it loads
            model = RwkvPackageModel(model=str(path)[:-len(".pth")], strategy=RWKV_STRATEGY[weights])
        for _ in range(2):                  # TorchScript specialises on its first calls: warm both paths
            model.forward(prompt[:8], None)
            model.forward([decode[0]], None)
        if weights != "fp32":
            decode = decode[:max(2, decode_tokens // SLOW_DECODE_SHARE)]

        def run_prompt():
            model.forward(prompt, None)

        def run_decode():
            _, state = model.forward([decode[0]], None)
            for t in decode[1:]:
                _, state = model.forward([t], state)
        version = getattr(rwkv, "__version__", None) or _dist_version("rwkv")

    elif name == "transformers":
        import torch
        import transformers
        from transformers import RwkvForCausalLM
        model = RwkvForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        torch.set_grad_enabled(False)
        prompt_t = torch.tensor([prompt])
        model(torch.tensor([prompt[:8]]), use_cache=True, logits_to_keep=1)

        def run_prompt():
            model(prompt_t, use_cache=True, logits_to_keep=1)

        def run_decode():
            out = model(torch.tensor([[decode[0]]]), use_cache=True)
            for t in decode[1:]:
                out = model(torch.tensor([[t]]), state=out.state, use_cache=True)
        version = transformers.__version__
    else:
        raise ParameterError(f"unknown implementation {name!r}; choose one of {IMPLEMENTATIONS}")

    t_prompt = _timeit(run_prompt, repeats)
    t_decode = _timeit(run_decode, repeats)
    if name == "tinyrwkv":                # the bound at this format's own working set, in this process
        from .roofline import measure_bandwidth
        extra["read_gbs"] = measure_bandwidth(megabytes=extra["decode_bytes"] / 2**20,
                                              repeats=max(repeats, 3))["bandwidth_gbs"]
    return {"prompt": prompt_length / t_prompt, "decode": len(decode) / t_decode, "version": version,
            **(extra if name == "tinyrwkv" else {})}



def _dist_version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "?"


# what to install for a missing peer (both need torch; the bench extra brings all three)
INSTALL_HINT = {"rwkv": 'not installed: pip install -e ".[bench]"  (or: pip install torch rwkv)',
                "transformers": 'not installed: pip install -e ".[bench]"  (or: pip install torch transformers)'}


def _available(name: str) -> bool:
    import importlib.util
    if name == "tinyrwkv":
        return True
    if importlib.util.find_spec("torch") is None:
        return False
    return importlib.util.find_spec("rwkv" if name == "rwkv" else "transformers") is not None


def _run_worker_subprocess(name, path, args, vocab_size, weights="fp32") -> dict:
    cmd = [sys.executable, "-m", "tinyrwkv.bench", "--worker", name, "--path", str(path),
           "--prompt-length", str(args.prompt_length), "--decode-tokens", str(args.decode_tokens),
           "--repeats", str(args.repeats), "--backend", args.backend, "--vocab-size", str(vocab_size),
           "--weights", weights, "--version", args.version]
    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(args.threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the whole benchmark


def parse_weights(text: str) -> list:
    """"fp32,int8" -> ["fp32", "int8"]; ValueError naming a format that is not one."""
    formats = [w.strip() for w in str(text).split(",") if w.strip()]
    bad = [w for w in formats if w not in WEIGHT_FORMATS]
    if bad or not formats:
        raise ParameterError(f"--weights {text!r}: choose among {', '.join(WEIGHT_FORMATS)} (comma-separated)")
    return list(dict.fromkeys(formats))


def entries(names, formats) -> list:
    """(label, implementation, weights) for everything measured, tinyrwkv first."""
    out = []
    for n in names:
        if n == "tinyrwkv":
            out += [(f"tinyrwkv {w}", n, w) for w in formats]
        elif n == "rwkv":
            out += [(f"rwkv {RWKV_STRATEGY[w]}", n, w) for w in ("fp32", "int8") if w == "fp32" or w in formats]
        else:
            out.append((f"{n} fp32", n, "fp32"))
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _version(args):
    v = getattr(args, "version", "4") or "4"
    return 5.2 if v == "5.2" else int(v)


def run(args) -> dict:
    """Writes the checkpoints, runs every implementation ``rounds`` times in turn (with a bandwidth
    and GEMM measurement in each round), and summarises: medians over rounds, per-round ratios."""
    for name in ("decode_tokens", "prompt_length", "repeats", "rounds", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workdir is not None and not pathlib.Path(args.workdir).is_dir():
        raise ParameterError(f"--workdir {args.workdir}: no such folder")
    formats = parse_weights(getattr(args, "weights", "fp32"))
    version = _version(args)
    config = shapes_for(version, args.tiny)
    names = list(args.only) if args.only else (["tinyrwkv"] if args.no_peers else list(IMPLEMENTATIONS))
    names = [n for n in dict.fromkeys(names)]
    skipped = {n: INSTALL_HINT[n] for n in names if not _available(n)}
    if version != 4 and "transformers" in names:
        skipped["transformers"] = "has no RWKV-5/6/7 model class (only trust_remote_code repos)"
    names = [n for n in names if n not in skipped]
    todo = entries(names, formats)
    if version == 7 and any(label == "rwkv cpu fp32i8" for label, _, _ in todo):
        todo = [t for t in todo if t[0] != "rwkv cpu fp32i8"]
        skipped["rwkv cpu fp32i8"] = "the rwkv package runs RWKV-7 only as fp16/fp32/bf16 (no i8 strategy)"

    rounds = []                                   # per round: {label: worker result}, "bandwidth": {...}
    with tempfile.TemporaryDirectory(prefix="tinyrwkv-bench-", dir=args.workdir) as tmp:
        print(f"writing random weights ({config['n_layer']} layers x {config['n_embd']}, "
              f"vocab {config['vocab_size']}) to {tmp} ...", file=sys.stderr)
        if version == 4:
            files = write_checkpoints(pathlib.Path(tmp), config, want_pth="rwkv" in names)
            path_of = {"tinyrwkv": files["hf"], "transformers": files["hf"], "rwkv": files["pth"]}
        else:
            files = write_checkpoints_v567(pathlib.Path(tmp), config, want_pth="rwkv" in names)
            path_of = {"tinyrwkv": files["blinkdl"], "rwkv": files["pth"]}
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        for r in range(args.rounds):
            got = {}
            print(f"round {r + 1}/{args.rounds}: bandwidth and GEMM ...", file=sys.stderr)
            got["bandwidth"] = _run_worker_subprocess("bandwidth", "-", args, config["vocab_size"])
            for label, n, w in todo:
                print(f"round {r + 1}/{args.rounds}: {label} ...", file=sys.stderr)
                got[label] = _run_worker_subprocess(n, path_of[n], args, config["vocab_size"], w)
            rounds.append(got)
        load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return summarise(rounds, todo, config, args, skipped, (load_before, load_after))


def summarise(rounds, todo, config, args, skipped, load) -> dict:
    """Medians over rounds; ratios to the rwkv package's cpu fp32 and fractions of the decode bound
    taken within each round."""
    peer = "rwkv cpu fp32"
    bw = [r["bandwidth"] for r in rounds if "error" not in r["bandwidth"]]
    machine = {"bandwidth_gbs": _median(b["bandwidth_gbs"] for b in bw),
               "numpy_copy_gbs": _median(b["numpy_copy_gbs"] for b in bw),
               "gemm_gflops": _median(b["gemm_gflops"] for b in bw),
               "megabytes": bw[0]["megabytes"] if bw else None,
               "bandwidth_error": None if bw else rounds[0]["bandwidth"].get("error")}
    results = {}
    for label, n, w in todo:
        ok = [r for r in rounds if "error" not in r[label]]
        if not ok:
            results[label] = {"error": rounds[0][label]["error"]}
            continue
        res = {k: _median(r[label][k] for r in ok) for k in ("decode", "prompt")}
        res["version"], res["weights"] = ok[-1][label]["version"], w
        if peer in ok[0] and label != peer:
            both = [r for r in ok if "error" not in r[peer]]
            res["decode_x_peer"] = _median(r[label]["decode"] / r[peer]["decode"] for r in both)
            res["prompt_x_peer"] = _median(r[label]["prompt"] / r[peer]["prompt"] for r in both)
        if "decode_bytes" in ok[0][label]:
            res["decode_bytes"] = ok[0][label]["decode_bytes"]
            # bytes per token / the read bandwidth at that working set, measured in the same worker
            res["read_gbs"] = _median(r[label]["read_gbs"] for r in ok)
            res["decode_bound"] = _median(r[label]["read_gbs"] * 1e9 / res["decode_bytes"] for r in ok)
            res["of_bound"] = _median(r[label]["decode"] * res["decode_bytes"] / (r[label]["read_gbs"] * 1e9)
                                      for r in ok)
            # tokens/s x flops per token of this prompt (the head counted once: last logits only)
            res["prompt_gflops"] = res["prompt"] * ok[0][label]["prompt_flops"] / args.prompt_length / 1e9
        results[label] = res
    return {"config": config, "prompt_length": args.prompt_length, "decode_tokens": args.decode_tokens,
            "threads": args.threads or os.cpu_count(), "rounds": len(rounds), "machine": machine,
            "load_average": load, "results": results, "skipped": skipped, "per_round": rounds}


def format_table(report: dict) -> str:
    c, res, m = report["config"], report["results"], report["machine"]
    load = report.get("load_average") or (None, None)
    heads = f", head size {c['head_size']}" if c.get("head_size") else ""
    lines = [f"RWKV-{c.get('version', 4)} {c['n_layer']} layers x {c['n_embd']}{heads}, vocab {c['vocab_size']}, "
             f"random weights, "
             f"{report['threads']} threads; median of {report['rounds']} rounds (best of repeats in each); "
             f"ratios taken within a round",
             f"{'':24s}{'decode tok/s':>13s}{'x rwkv fp32':>12s}{'bound tok/s':>12s}{'of bound':>9s}"
             f"{str(report['prompt_length']) + '-tok prompt tok/s':>24s}{'x rwkv fp32':>12s}{'GFLOP/s':>9s}"]
    for label, r in res.items():
        label_v = label if label.startswith("tinyrwkv") else f"{label} ({r.get('version', '')})"
        if "error" in r:
            lines.append(f"{label_v:24s}  failed: {r['error']}")
            continue
        def fmt(v, spec, unit=""):        # a blank of the same width when there is no figure
            return format(v, spec) + unit if v is not None else " " * (len(format(0.0, spec)) + len(unit))
        of_bound = None if r.get("of_bound") is None else 100 * r["of_bound"]
        lines.append(f"{label_v:24s}{r['decode']:13.1f}{fmt(r.get('decode_x_peer'), '11.2f', 'x')}"
                     f"{fmt(r.get('decode_bound'), '12.1f')}{fmt(of_bound, '8.0f', '%')}"
                     f"{r['prompt']:24.0f}{fmt(r.get('prompt_x_peer'), '11.2f', 'x')}{fmt(r.get('prompt_gflops'), '9.1f')}")
    if m["bandwidth_gbs"] is not None:
        lines.append(f"machine: read bandwidth {m['bandwidth_gbs']:.1f} GB/s over {m['megabytes']:.0f} MB (the faster of a parallel "
                     f"sum with and without prefetching; numpy copy {m['numpy_copy_gbs']:.1f} GB/s), "
                     f"float32 GEMM {m['gemm_gflops']:.1f} GFLOP/s")
        at = ", ".join(f"{r['weights']} {r['read_gbs']:.1f}" for label, r in res.items() if r.get("read_gbs"))
        lines.append(f"decode bound = bytes read per token / read bandwidth at that many bytes (GB/s: {at}), "
                     f"measured in each format's own worker after its timing")
    else:
        lines.append(f"machine: bandwidth not measured ({m['bandwidth_error']})")
    if load[0] is not None:
        lines.append(f"load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, on {os.cpu_count()} cores")
    lines += [f"{name:24s}  skipped: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines)


def run_from_args(args) -> int:
    report = run(args)
    print(json.dumps(report, indent=1, default=float) if args.json else format_table(report))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinyrwkv.bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--worker", choices=IMPLEMENTATIONS + ("bandwidth",), help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--vocab-size", type=int, default=REAL_169M["vocab_size"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.prompt_length, args.decode_tokens,
                                args.repeats, args.backend, args.vocab_size, args.weights, float(args.version))))
        return 0
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
