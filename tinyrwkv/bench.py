"""``tinyrwkv bench``: how fast tinyrwkv runs RWKV-4 169M on this CPU, beside its peers.

Two figures per implementation, float32, random weights at the real 169M shapes:

    decode   serial RNN-mode steps, one token at a time (tokens/s): a chain of matrix-vector
             products, bound by memory bandwidth (~0.5 GB of weights read per token)
    prompt   a 512-token prompt in one call, logits of the last position only, as generation
             needs them (tokens/s): matrix-matrix products, bound by arithmetic

Peers, measured in the same run when installed: the ``rwkv`` pip package (``strategy='cpu fp32'``,
reading a BlinkDL .pth written with torch.save) and transformers' ``RwkvForCausalLM`` (reading the
same weights from model.safetensors). Each implementation runs in its own subprocess (no shared
thread pools), ``--rounds`` times in turn; each figure is the best over rounds and repeats, the
usual way to see through a busy machine. Speed is measured here, never in tests.

    tinyrwkv bench                       # full size, with peers
    tinyrwkv bench --no-peers --tiny     # seconds: a smoke test of the machinery
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
REAL_169M = dict(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
TINY = dict(n_layer=2, n_embd=64, vocab_size=1000, ffn_dim=256)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decode-tokens", type=int, default=64, help="RNN-mode steps per repeat (default 64)")
    p.add_argument("--prompt-length", type=int, default=512, help="tokens in the prompt (default 512)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per round (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="times each implementation is run in turn (default 2)")
    p.add_argument("--no-peers", action="store_true", help="measure tinyrwkv only")
    p.add_argument("--only", choices=IMPLEMENTATIONS, action="append", help="measure only these (repeatable)")
    p.add_argument("--backend", default="numba", help="tinyrwkv's WKV backend (default numba)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model instead of 169M (smoke test)")
    p.add_argument("--workdir", default=None, help="where to write the random checkpoints (default: a temp dir)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every implementation (BLAS, OpenMP, Numba, torch); default: all cores")
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


# --------------------------------------------------------------------------- workers (one per subprocess)


def _timeit(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def worker(name: str, path: str, prompt_length: int, decode_tokens: int, repeats: int, backend: str,
           vocab_size: int) -> dict:
    """Loads ``name``'s model from ``path`` and returns {"decode": tok/s, "prompt": tok/s, "version"}."""
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, vocab_size, prompt_length).tolist()
    decode = rng.integers(0, vocab_size, decode_tokens).tolist()

    if name == "tinyrwkv":
        from . import __version__
        from .loading import load
        model = load(path, backend=backend, progress=False)
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
        import contextlib
        import io

        import rwkv
        import torch
        from rwkv.model import RWKV as RwkvPackageModel
        with contextlib.redirect_stdout(io.StringIO()):              # it prints every tensor it loads
            model = RwkvPackageModel(model=str(path)[:-len(".pth")], strategy="cpu fp32")
        model.forward(prompt[:8], None)

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
    return {"prompt": prompt_length / t_prompt, "decode": decode_tokens / t_decode, "version": version}


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


def _run_worker_subprocess(name, path, args, vocab_size) -> dict:
    cmd = [sys.executable, "-m", "tinyrwkv.bench", "--worker", name, "--path", str(path),
           "--prompt-length", str(args.prompt_length), "--decode-tokens", str(args.decode_tokens),
           "--repeats", str(args.repeats), "--backend", args.backend, "--vocab-size", str(vocab_size)]
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


def run(args) -> dict:
    """Writes the checkpoints, runs every implementation ``rounds`` times in turn, keeps the best."""
    for name in ("decode_tokens", "prompt_length", "repeats", "rounds", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workdir is not None and not pathlib.Path(args.workdir).is_dir():
        raise ParameterError(f"--workdir {args.workdir}: no such folder")
    config = TINY if args.tiny else REAL_169M
    names = list(args.only) if args.only else (["tinyrwkv"] if args.no_peers else list(IMPLEMENTATIONS))
    names = [n for n in dict.fromkeys(names)]
    skipped = {n: INSTALL_HINT[n] for n in names if not _available(n)}
    names = [n for n in names if n not in skipped]

    with tempfile.TemporaryDirectory(prefix="tinyrwkv-bench-", dir=args.workdir) as tmp:
        print(f"writing random weights ({config['n_layer']} layers x {config['n_embd']}, "
              f"vocab {config['vocab_size']}) to {tmp} ...", file=sys.stderr)
        files = write_checkpoints(pathlib.Path(tmp), config, want_pth="rwkv" in names)
        path_of = {"tinyrwkv": files["hf"], "transformers": files["hf"], "rwkv": files["pth"]}
        results = {n: {} for n in names}
        for r in range(args.rounds):
            for n in names:
                print(f"round {r + 1}/{args.rounds}: {n} ...", file=sys.stderr)
                got = _run_worker_subprocess(n, path_of[n], args, config["vocab_size"])
                if "error" in got:
                    results[n] = got
                    continue
                best = results[n]
                if "error" not in best:
                    for k in ("decode", "prompt"):
                        best[k] = max(best.get(k, 0.0), got[k])
                    best["version"] = got["version"]
    return {"config": config, "prompt_length": args.prompt_length, "decode_tokens": args.decode_tokens,
            "threads": args.threads or os.cpu_count(), "results": results, "skipped": skipped}


def format_table(report: dict) -> str:
    c, res = report["config"], report["results"]
    ours = res.get("tinyrwkv", {})
    lines = [f"RWKV-4 {c['n_layer']} layers x {c['n_embd']}, vocab {c['vocab_size']}, random weights, float32, "
             f"{report['threads']} threads; best of rounds x repeats",
             f"{'':24s}{'decode tok/s':>14s}{str(report['prompt_length']) + '-token prompt tok/s':>26s}"]
    for name, r in res.items():
        label = f"{name} {r.get('version', '')}".strip()
        if "error" in r:
            lines.append(f"{label:24s}  failed: {r['error']}")
            continue
        line = f"{label:24s}{r['decode']:14.1f}{r['prompt']:26.0f}"
        if name != "tinyrwkv" and "decode" in ours:
            line += f"    tinyrwkv is {ours['decode'] / r['decode']:.2f}x / {ours['prompt'] / r['prompt']:.2f}x"
        lines.append(line)
    lines += [f"{name:24s}  skipped: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines)


def run_from_args(args) -> int:
    report = run(args)
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinyrwkv.bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--vocab-size", type=int, default=REAL_169M["vocab_size"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.prompt_length, args.decode_tokens,
                                args.repeats, args.backend, args.vocab_size)))
        return 0
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
