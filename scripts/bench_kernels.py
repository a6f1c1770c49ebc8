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
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from tinyrwkv.kernels import real_gpu_present, wkv_numba, wkv_numpy  # noqa: E402


def rand_inputs(B, T, C, seed=0):
    rng = np.random.default_rng(seed)
    w = -np.exp(rng.normal(size=C)).astype(np.float32)
    u = rng.normal(size=C).astype(np.float32)
    k, v, gy = (rng.normal(size=(B, T, C)).astype(np.float32) for _ in range(3))
    return w, u, k, v, gy


def median_ms(fn, repeats, sync=lambda: None):
    """Median wall time of fn() in ms over ``repeats`` runs, after one untimed warm-up run."""
    fn()
    sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(runs))


def cpu_rows(w, u, k, v, gy, repeats):
    """(name, forward ms, backward ms) for NumPy, @njit on 1 thread and on all threads."""
    import numba

    rows = [("numpy (Python loop over T)",
             median_ms(lambda: wkv_numpy.wkv_forward(w, u, k, v), repeats),
             median_ms(lambda: wkv_numpy.wkv_backward(w, u, k, v, gy), repeats))]
    all_threads = numba.get_num_threads()
    for threads in sorted({1, all_threads}):
        numba.set_num_threads(threads)
        rows.append((f"numba @njit, {threads} thread{'s' if threads > 1 else ''}",
                     median_ms(lambda: wkv_numba.wkv_forward(w, u, k, v), repeats),
                     median_ms(lambda: wkv_numba.wkv_backward(w, u, k, v, gy), repeats)))
    numba.set_num_threads(all_threads)
    return rows


def gpu_rows(w, u, k, v, gy, repeats):
    """(name, forward ms, backward ms) for each numba.cuda version, inputs resident on the GPU."""
    from numba import cuda

    from tinyrwkv.kernels import wkv_cuda

    B, T, C = k.shape
    d_w, d_u, d_k, d_v, d_gy = (cuda.to_device(a) for a in (w, u, k, v, gy))
    aa, bb, pp = (cuda.to_device(s) for s in wkv_numpy.initial_state(B, C))
    y, gk, gv = (cuda.device_array((B, T, C), np.float32) for _ in range(3))
    gw, gu = cuda.device_array((B, C), np.float32), cuda.device_array((B, C), np.float32)
    back_scratch = wkv_cuda.backward_scratch(B, T, C)
    backward = median_ms(lambda: wkv_cuda.backward_on_device(d_w, d_u, d_k, d_v, d_gy, gw, gu, gk, gv,
                                                             scratch=back_scratch), repeats, cuda.synchronize)
    rows = []
    for version in wkv_cuda.FORWARD_VERSIONS:
        scratch = wkv_cuda.forward_scratch(B, T, C, np.float32, version)
        forward = median_ms(lambda: wkv_cuda.forward_on_device(d_w, d_u, d_k, d_v, aa, bb, pp, y,
                                                               version=version, scratch=scratch),
                            repeats, cuda.synchronize)
        rows.append((f"numba.cuda v{version} (on device)", forward, backward if version == 1 else None))
    rows.append(("numba.cuda v2, NumPy in/out", median_ms(lambda: wkv_cuda.wkv_forward(w, u, k, v), repeats),
                 median_ms(lambda: wkv_cuda.wkv_backward(w, u, k, v, gy), repeats)))
    return rows


def print_table(shape, rows):
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
        w, u, k, v, gy = rand_inputs(*shape)
        rows = cpu_rows(w, u, k, v, gy, args.repeats)
        if gpu:
            rows += gpu_rows(w, u, k, v, gy, args.repeats)
        print_table(shape, rows)
    if args.prompt:
        prompt_rows(args.prompt_len, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
