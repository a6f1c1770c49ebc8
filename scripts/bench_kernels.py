"""The WKV kernel ladder: NumPy loop -> @njit (1 thread, all threads) -> numba.cuda v1, v2, v3.

    python scripts/bench_kernels.py                      # default shapes, forward and backward
    python scripts/bench_kernels.py --shapes 1x512x768 --repeats 5
    python scripts/bench_kernels.py --prompt             # also RWKV-4 169M prompt tokens/s per backend

Prints one table per shape: milliseconds (median of --repeats runs after a warm-up that also
compiles) and the speedup over the NumPy reference measured in the same run. The NumPy reference
is the stable recurrence vectorised over (B, C) with a Python loop over T.

The numba.cuda rows run only on a real GPU, timed with the inputs already on the device
(``forward_on_device``, cuda.synchronize() after each run). Numba's CUDA simulator is never
timed: it runs every CUDA thread as a Python thread, so its figures mean nothing.
On a shared machine the figures are noisy: compare ratios within one run, not across runs.

The measuring is ``tinyrwkv.experiments.kernel_ladder`` (the ladder behind figures/kernel_ladder.png
and lesson 08); this script adds the table, any shape, a numba.cuda row with NumPy arrays in and out
(the host <-> device copies included) and the prompt benchmark.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from tinyrwkv.experiments.kernel_ladder import measure_ladder, median_ms, random_wkv_inputs  # noqa: E402
from tinyrwkv.kernels import real_gpu_present  # noqa: E402


def label(name):
    """The ladder's row names, spelled out for a table read without lesson 08."""
    if name == "numpy":
        return "numpy (Python loop over T)"
    if name.startswith("@njit"):
        return f"numba {name}"
    return f"{name} (on device)"


def host_copy_row(shape, repeats):
    """numba.cuda with NumPy arrays in and out: what a caller of get_wkv("cuda") sees, copies included."""
    from tinyrwkv.kernels import wkv_cuda

    w, u, k, v, gy = random_wkv_inputs(*shape)
    return ("numba.cuda v2, NumPy in/out", median_ms(lambda: wkv_cuda.wkv_forward(w, u, k, v), repeats),
            median_ms(lambda: wkv_cuda.wkv_backward(w, u, k, v, gy), repeats))


def print_table(shape, rows):
    """rows: (name, forward ms, backward ms or None), the NumPy reference first."""
    base_f, base_b = rows[0][1], rows[0][2]
    print(f"\nWKV  B={shape[0]}  T={shape[1]}  C={shape[2]}  (float32; ms = median wall time)")
    print(f"  {'kernel':<34}{'forward ms':>12}{'x numpy':>9}{'backward ms':>13}{'x numpy':>9}")
    for name, f, b in rows:
        fb = f"{b:>13.2f}{base_b / b:>9.1f}" if b is not None else f"{'(same)':>13}{'':>9}"
        print(f"  {name:<34}{f:>12.2f}{base_f / f:>9.1f}{fb}")


def prompt_rows(prompt_len, repeats):
    """RWKV-4 169M shapes, random weights: prompt tokens/s (last logits only) with each WKV backend."""
    try:
        from tinyrwkv.models.rwkv import RWKV, RWKVConfig, init_params
    except Exception as e:
        print(f"\n(prompt benchmark skipped: tinyrwkv.models.rwkv is not importable: {type(e).__name__}: {e})")
        return
    config = RWKVConfig(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
    params = init_params(config, seed=0)
    prompt = np.random.default_rng(0).integers(0, config.vocab_size, prompt_len)
    backends = ["numpy", "numba"] + (["cuda"] if real_gpu_present() else [])
    print(f"\nRWKV-4 169M shapes (random weights), {prompt_len}-token prompt, last logits only")
    for backend in backends:
        model = RWKV(config, params, backend=backend)
        ms = median_ms(lambda: model.forward(prompt, full_output=False), repeats)
        print(f"  WKV backend {backend:<8}{prompt_len / ms * 1e3:>10.0f} tokens/s   ({ms:.0f} ms)")


def parse_shape(text):
    try:
        B, T, C = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is BxTxC, e.g. 8x1024x768; got {text!r}") from None
    return B, T, C


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", type=parse_shape, default=[(1, 512, 768), (8, 1024, 768)],
                    help="BxTxC shapes (default: 1x512x768 8x1024x768)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (default: %(default)s)")
    ap.add_argument("--prompt", action="store_true", help="also time a 169M-shaped RWKV prompt per WKV backend")
    ap.add_argument("--prompt-len", type=int, default=512)
    args = ap.parse_args(argv)

    import numba
    gpu = real_gpu_present()
    print(f"numba {numba.__version__}, {numba.get_num_threads()} CPU threads; "
          + ("timing numba.cuda on the real GPU" if gpu else
             "no real GPU: numba.cuda rows skipped (the CUDA simulator is never timed)"))
    for shape in args.shapes:
        ladder = measure_ladder([shape], args.repeats, with_gpu=gpu)["x".join(map(str, shape))]
        rows = [(label(name), row["forward_ms"], row["backward_ms"]) for name, row in ladder.items()]
        if gpu:
            rows.append(host_copy_row(shape, args.repeats))
        print_table(shape, rows)
    if args.prompt:
        prompt_rows(args.prompt_len, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
