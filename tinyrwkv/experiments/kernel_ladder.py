"""The WKV kernel ladder, measured: NumPy loop -> @njit on one thread -> @njit on every thread
(-> numba.cuda v1, v2, v3 when a real GPU is present).

Every rung computes the same stable recurrence (``tinyrwkv/kernels/wkv_numpy.py``); what changes
is who runs the loop over time:

    numpy           a Python loop over T; each step is a few NumPy calls over all (B, C) pairs
    @njit, 1 thread the whole loop compiled to machine code, one (b, c) pair after another
    @njit, N threads the (b, c) pairs shared among the cores with prange
    numba.cuda vN   one GPU thread per (b, c) pair (v3: per (b, chunk, c)), inputs already on the GPU

Numba's CUDA simulator is never timed: it runs each CUDA thread as a Python thread, so its times
mean nothing (the lessons use it to *step through* the kernels, not to race them).
``scripts/bench_kernels.py`` prints the same ladder as a table, at any shape.

    kernel_ladder.png   forward and backward milliseconds per kernel at a few (B, T, C) shapes,
                        log scale, with the speed-up over NumPy written on each bar

    python -m tinyrwkv.experiments.kernel_ladder --out figures/ [--fast]
"""
from __future__ import annotations

import time

import numpy as np

from ..kernels import real_gpu_present, wkv_numba, wkv_numpy
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder


def random_wkv_inputs(B: int, T: int, C: int, seed: int = 0, dtype=np.float32):
    """w (C,) < 0, u (C,), k, v, gy (B, T, C): the inputs of one forward and backward."""
    rng = np.random.default_rng(seed)
    w = -np.exp(rng.normal(size=C)).astype(dtype)
    u = rng.normal(size=C).astype(dtype)
    k, v, gy = (rng.normal(size=(B, T, C)).astype(dtype) for _ in range(3))
    return w, u, k, v, gy


def median_ms(fn, repeats: int = 3, sync=lambda: None) -> float:
    """Median wall time of fn() in milliseconds over ``repeats`` runs, after one untimed warm-up."""
    fn()
    sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(runs))


def cpu_ladder(B: int, T: int, C: int, repeats: int = 3) -> dict:
    """kernel name -> {"forward_ms", "backward_ms"} for NumPy and @njit (one thread, all threads)."""
    import numba

    w, u, k, v, gy = random_wkv_inputs(B, T, C)
    rows = {"numpy": {"forward_ms": median_ms(lambda: wkv_numpy.wkv_forward(w, u, k, v), repeats),
                      "backward_ms": median_ms(lambda: wkv_numpy.wkv_backward(w, u, k, v, gy), repeats)}}
    all_threads = numba.get_num_threads()
    try:
        for threads in sorted({1, all_threads}):
            numba.set_num_threads(threads)
            rows[f"@njit, {threads} thread{'s' if threads > 1 else ''}"] = {
                "forward_ms": median_ms(lambda: wkv_numba.wkv_forward(w, u, k, v), repeats),
                "backward_ms": median_ms(lambda: wkv_numba.wkv_backward(w, u, k, v, gy), repeats)}
    finally:
        numba.set_num_threads(all_threads)
    return rows


def gpu_ladder(B: int, T: int, C: int, repeats: int = 3) -> dict:
    """kernel name -> {"forward_ms", "backward_ms"} for each numba.cuda version, inputs on the GPU.

    Only on a real GPU (the caller checks ``real_gpu_present()``). The backward has one version;
    it is reported on v1's row.
    """
    from numba import cuda

    from ..kernels import wkv_cuda

    w, u, k, v, gy = random_wkv_inputs(B, T, C)
    d_w, d_u, d_k, d_v, d_gy = (cuda.to_device(a) for a in (w, u, k, v, gy))
    aa, bb, pp = (cuda.to_device(s) for s in wkv_numpy.initial_state(B, C))
    y, gk, gv = (cuda.device_array((B, T, C), np.float32) for _ in range(3))
    gw, gu = cuda.device_array((B, C), np.float32), cuda.device_array((B, C), np.float32)
    back_scratch = wkv_cuda.backward_scratch(B, T, C)
    backward = median_ms(lambda: wkv_cuda.backward_on_device(d_w, d_u, d_k, d_v, d_gy, gw, gu, gk, gv,
                                                             scratch=back_scratch), repeats, cuda.synchronize)
    rows = {}
    for version in wkv_cuda.FORWARD_VERSIONS:
        scratch = wkv_cuda.forward_scratch(B, T, C, np.float32, version)
        forward = median_ms(lambda: wkv_cuda.forward_on_device(d_w, d_u, d_k, d_v, aa, bb, pp, y,
                                                               version=version, scratch=scratch),
                            repeats, cuda.synchronize)
        rows[f"numba.cuda v{version}"] = {"forward_ms": forward, "backward_ms": backward if version == 1 else None}
    return rows


def measure_ladder(shapes, repeats: int = 3, with_gpu=None) -> dict:
    """"BxTxC" -> kernel -> {"forward_ms", "backward_ms", "forward_speedup", "backward_speedup"}.

    Speed-ups are over the NumPy reference measured in the same run. ``with_gpu`` None means
    "when a real GPU is present".
    """
    with_gpu = real_gpu_present() if with_gpu is None else with_gpu
    out = {}
    for B, T, C in shapes:
        rows = cpu_ladder(B, T, C, repeats)
        if with_gpu:
            rows.update(gpu_ladder(B, T, C, repeats))
        base = rows["numpy"]
        for row in rows.values():
            for what in ("forward", "backward"):
                ms = row[f"{what}_ms"]
                row[f"{what}_speedup"] = None if ms is None else base[f"{what}_ms"] / ms
        out[f"{B}x{T}x{C}"] = rows
    return out


def plot_ladder(ladder: dict, path=None, fig=None):
    """Grouped bars: one group per shape, one bar per kernel; forward (left) and backward (right)."""
    shapes = list(ladder)
    kernels = list(next(iter(ladder.values())))
    fig = figure(fig, (6.5 * 2, 4.8))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(kernels)
    for ax, what in zip(axes, ("forward", "backward")):
        for j, name in enumerate(kernels):
            xs, hs, speed = [], [], []
            for i, shape in enumerate(shapes):
                row = ladder[shape].get(name)
                if row and row[f"{what}_ms"] is not None:
                    xs.append(i + (j - (len(kernels) - 1) / 2) * width)
                    hs.append(row[f"{what}_ms"])
                    speed.append(row[f"{what}_speedup"])
            bars = ax.bar(xs, hs, width, label=name)
            for bar, s in zip(bars, speed):
                ax.annotate(f"{s:.0f}x" if s >= 10 else f"{s:.1f}x", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(shapes)), [f"B={s.split('x')[0]}, T={s.split('x')[1]}, C={s.split('x')[2]}"
                                           for s in shapes])
        ax.set_xlabel("input shape (batch B, time T, channels C)")
        ax.set_ylabel("wall time (ms, median, log scale)")
        ax.set_title(f"WKV {what} (label: speed-up over NumPy)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    gpu = "" if any("cuda" in k for k in kernels) else "; no real GPU here, so no numba.cuda rows"
    fig.suptitle(f"The WKV kernel ladder, float32 (this machine{gpu})")
    return finish(fig, path)


def make_figures(outdir, fast=False) -> dict:
    """Writes kernel_ladder.png to ``outdir``; returns the measured milliseconds and speed-ups."""
    outdir = output_folder(outdir)
    shapes = [(1, 128, 16), (2, 128, 128)] if fast else [(1, 1024, 64), (1, 1024, 768), (8, 1024, 768)]
    ladder = measure_ladder(shapes, repeats=3 if fast else 5)
    plot_ladder(ladder, outdir / "kernel_ladder.png")
    return {"shapes": [list(s) for s in shapes], "real_gpu": real_gpu_present(), "ladder": ladder,
            "files": ["kernel_ladder.png"]}


def main(argv=None):
    experiment_main(make_figures, "The WKV kernel ladder (NumPy, @njit, numba.cuda on a real GPU).",
                    fast_help="small shapes, one repeat", argv=argv)


if __name__ == "__main__":
    main()
