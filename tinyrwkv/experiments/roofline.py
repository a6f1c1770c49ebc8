"""The roofline of RWKV on this CPU: decoding is bound by memory bandwidth, a prompt by arithmetic.

The bytes and flops per token of decoding and of a prompt, and the bounds they give, are derived
once in ``tinyrwkv.roofline`` (library code ``bench`` reads too). In short: a CPU core does tens
of flops in the time it reads one byte from memory (this machine: GEMM GFLOP/s / read GB/s,
measured below), so decoding, at 2 / b flops per byte (b bytes per weight), waits on memory, and a
512-token prompt, at ~2 T / b, waits on arithmetic.

Fewer bytes per weight raise the decode bound in proportion (int8 reads 1/4 of fp32) and cost
accuracy: ``quality`` measures the logit error and top-1 agreement of each format against fp32.

Figures (``make_figures``): ``roofline.png`` (attainable GFLOP/s against flops per byte, with
decode and prompt of each format placed on it) and ``quantisation_tradeoff.png`` (decode tokens/s
against bytes per weight, measured and bound; logit error against bytes per weight).

    python -m tinyrwkv.experiments.roofline --out figures/ [--fast]
"""
from __future__ import annotations

import time

import numpy as np

from ..models.rwkv import RWKV, RWKVConfig, init_params
from ..nn.compact import FORMATS
from ..roofline import (arithmetic_intensity, bytes_per_token, bytes_per_weight,  # noqa: F401  (the lesson reads them here too)
                        compact_params, decode_bytes, matrix_weights, measure_bandwidth, measure_gemm, prompt_flops,
                        predicted_tokens_per_second, weights_per_token)
from ._cli import experiment_main
from ._plotting import figure, finish, output_folder

REAL_169M = RWKVConfig(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
FAST = RWKVConfig(n_layer=2, n_embd=256, vocab_size=2000, ffn_dim=1024)


# --------------------------------------------------------------------------- measurements


def decode_speed(model, tokens: int = 16, repeats: int = 3) -> float:
    """Tokens/s of RNN-mode decoding (one ``step`` per token), best of ``repeats``."""
    model.step(0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = None
        for t in range(tokens):
            _, state = model.step(t % model.config.vocab_size, state)
        best = min(best, time.perf_counter() - t0)
    return tokens / best


def prompt_speed(model, length: int = 512, repeats: int = 2) -> float:
    """Tokens/s of a ``length``-token prompt in parallel mode (last logits only), best of ``repeats``."""
    prompt = np.arange(length) % model.config.vocab_size
    model.forward(prompt[:8], full_output=False)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.forward(prompt, full_output=False)
        best = min(best, time.perf_counter() - t0)
    return length / best


def prompt_profile(model, length: int = 512, repeats: int = 3) -> dict:
    """Where a ``length``-token prompt's time goes (last logits only): seconds in the matrix products
    (every ``F.linear``), in the WKV recurrence, and in everything else (layer norms, mixes, gates,
    the embedding), from the best of ``repeats`` calls, timed by wrapping those two functions."""
    import contextlib

    from ..nn import functional as F
    spent = {"linear": 0.0, "wkv": 0.0}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    prompt = np.arange(length) % model.config.vocab_size
    model.forward(prompt[:8], full_output=False)
    best = None
    linear, wkv_forward = F.linear, model.wkv.wkv_forward
    with contextlib.ExitStack() as undo:
        F.linear = timed(linear, "linear")
        model.wkv.wkv_forward = timed(wkv_forward, "wkv")
        undo.callback(setattr, F, "linear", linear)
        undo.callback(setattr, model.wkv, "wkv_forward", wkv_forward)
        for _ in range(repeats):
            spent.update(linear=0.0, wkv=0.0)
            t0 = time.perf_counter()
            model.forward(prompt, full_output=False)
            total = time.perf_counter() - t0
            if best is None or total < best["total"]:
                best = {"total": total, **spent}
    best["other"] = best["total"] - best["linear"] - best["wkv"]
    return best


def _logits(model, tokens, mode):
    """(T, V) logits of ``tokens``: one parallel-mode pass ("prompt": compact weights dequantised by
    blocks into BLAS) or T RNN-mode steps ("decode": the compact kernels, e.g. int8's integer sums)."""
    if mode == "prompt":
        return model.forward(tokens)[0]
    state, rows = None, []
    for t in tokens:
        logits, state = model.step(int(t), state)
        rows.append(logits)
    return np.stack(rows)


def quality(reference, model, tokens, mode: str = "prompt") -> dict:
    """How far ``model``'s logits are from ``reference``'s (same weights, other format) over ``tokens``,
    run as a prompt or decoded step by step (``mode``): {"top1_agreement", "max_abs_logit_diff",
    "mean_abs_logit_diff", "logit_scale" (mean |logit| of the reference, to read the differences against)}."""
    if mode not in ("prompt", "decode"):
        raise ValueError(f"mode={mode!r}: choose 'prompt' or 'decode'")
    a = _logits(reference, tokens, mode)                          # (T, V)
    b = _logits(model, tokens, mode)
    diff = np.abs(a - b)
    return {"top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
            "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "logit_scale": float(np.abs(a).mean())}


def text_tokens(n: int, vocab_size: int) -> np.ndarray:
    """``n`` token ids of real text (the shipped corpus through the GPT-NeoX tokenizer when it is here:
    $TINYRWKV_TOKENIZER or ../shared/data/20B_tokenizer.json; else the corpus's character codes),
    folded into ``vocab_size``."""
    from ..data.corpus import CORPORA
    text = CORPORA["small_tales"].read_text(encoding="ascii")
    ids = None
    try:
        import os
        import pathlib
        path = pathlib.Path(os.environ.get("TINYRWKV_TOKENIZER") or
                            pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "20B_tokenizer.json")
        if path.is_file() and vocab_size > 50000:
            from ..tokenizer import load_tokenizer
            ids = np.asarray(load_tokenizer(path).encode(text))
    except Exception:                                               # no tokenizer: characters will do
        ids = None
    if ids is None:
        ids = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int64)
    return ids[:n] % vocab_size


def measure(config: RWKVConfig = REAL_169M, quality_tokens: int = 1000, decode_tokens: int = 16,
            prompt_length: int = 512, repeats: int = 3, seed: int = 0) -> dict:
    """Every format on the same random weights at ``config``'s shapes: decode and prompt speed, bytes,
    bounds from this machine's bandwidth and GEMM speed, and quality against fp32."""
    params = init_params(config, seed=seed)
    machine = measure_bandwidth(megabytes=512 if config.n_embd >= 512 else 128, repeats=repeats)
    machine["gemm_gflops"] = measure_gemm(prompt_length, config.n_embd, repeats)
    tokens = text_tokens(quality_tokens, config.vocab_size)
    models = {fmt: RWKV(config, compact_params(params, fmt), backend="numba") for fmt in FORMATS}
    out = {"config": config.to_dict(), "machine": machine, "formats": {}}
    P = matrix_weights(params)
    for fmt, model in models.items():
        nbytes = decode_bytes(model.params)
        row = {"bytes_per_weight": bytes_per_weight(model.params), "decode_bytes": nbytes,
               "decode_bound": machine["bandwidth_gbs"] * 1e9 / nbytes,
               "decode": decode_speed(model, decode_tokens, repeats),
               "prompt": prompt_speed(model, prompt_length, max(1, repeats - 1)),
               "prompt_bound": machine["gemm_gflops"] * 1e9 * prompt_length / prompt_flops(params, prompt_length)}
        row["of_bound"] = row["decode"] / row["decode_bound"]
        if fmt != "fp32":
            row.update(quality(models["fp32"], model, tokens))
        out["formats"][fmt] = row
    out["flops_per_token"] = 2 * P
    out["prompt_flops"] = prompt_flops(params, prompt_length)
    return out


# --------------------------------------------------------------------------- figures


def plot_roofline(numbers: dict, path=None, fig=None):
    """Attainable GFLOP/s = min(GEMM peak, intensity x bandwidth), with each format's decode and
    prompt placed at their arithmetic intensity (flops per byte of weights read)."""
    m = numbers["machine"]
    flops = numbers["flops_per_token"]
    fig = figure(fig, (6.4, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    intensity = np.logspace(-1, 3, 200)
    ax.loglog(intensity, np.minimum(m["gemm_gflops"], intensity * m["bandwidth_gbs"]), "k-",
              label=f"roofline: {m['bandwidth_gbs']:.0f} GB/s, {m['gemm_gflops']:.0f} GFLOP/s")
    T = numbers.get("prompt_length", 512)
    per_prompt = numbers.get("prompt_flops", flops * T)          # the head once: last logits only
    for (fmt, row), colour in zip(numbers["formats"].items(), ("C0", "C1", "C2")):
        ai = flops / row["decode_bytes"]
        ax.plot(ai, row["decode"] * flops / 1e9, "o", color=colour, label=f"{fmt} decode")
        ax.plot(per_prompt / row["decode_bytes"], row["prompt"] / T * per_prompt / 1e9, "s", color=colour,
                label=f"{fmt} {T}-token prompt")
    ax.set_xlabel("flops per byte of weights read")
    ax.set_ylabel("GFLOP/s achieved")
    ax.set_title("decode sits on the bandwidth slope, the prompt under the flat roof")
    ax.legend(fontsize=7, loc="lower right")
    return finish(fig, path)


def plot_tradeoff(numbers: dict, path=None, fig=None):
    """Left: decode tokens/s (measured, and the bound) against bytes per weight. Right: the logit
    error against fp32 (mean and max |difference|) and top-1 disagreement, against bytes per weight."""
    rows = numbers["formats"]
    b = np.array([r["bytes_per_weight"] for r in rows.values()])
    fig = figure(fig, (10, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.plot(b, [r["decode"] for r in rows.values()], "o-", label="measured")
    ax1.plot(b, [r["decode_bound"] for r in rows.values()], "k--", label="bound: bandwidth / bytes per token")
    for fmt, r in rows.items():
        ax1.annotate(fmt, (r["bytes_per_weight"], r["decode"]), textcoords="offset points", xytext=(5, 5))
    ax1.set_xlabel("bytes per weight")
    ax1.set_ylabel("decode tokens/s")
    ax1.legend(fontsize=8)
    q = {f: r for f, r in rows.items() if "max_abs_logit_diff" in r}
    qb = [r["bytes_per_weight"] for r in q.values()]
    ax2.semilogy(qb, [r["max_abs_logit_diff"] for r in q.values()], "o-", label="max |logit diff|")
    ax2.semilogy(qb, [r["mean_abs_logit_diff"] for r in q.values()], "s-", label="mean |logit diff|")
    ax2.semilogy(qb, [max(1 - r["top1_agreement"], 1e-4) for r in q.values()], "^-", label="top-1 disagreement")
    for fmt, r in q.items():
        ax2.annotate(fmt, (r["bytes_per_weight"], r["max_abs_logit_diff"]), textcoords="offset points",
                     xytext=(5, 5))
    ax2.set_xlabel("bytes per weight")
    ax2.set_title("what the fewer bytes cost, against fp32")
    ax2.legend(fontsize=8)
    return finish(fig, path)


def make_figures(outdir, fast=False) -> dict:
    """Writes roofline.png and quantisation_tradeoff.png to ``outdir``; returns the numbers."""
    outdir = output_folder(outdir)
    if fast:
        numbers = measure(FAST, quality_tokens=200, decode_tokens=8, prompt_length=128, repeats=2)
        numbers["prompt_length"] = 128
    else:
        numbers = measure(REAL_169M)
        numbers["prompt_length"] = 512
    plot_roofline(numbers, outdir / "roofline.png")
    plot_tradeoff(numbers, outdir / "quantisation_tradeoff.png")
    numbers["files"] = ["roofline.png", "quantisation_tradeoff.png"]
    return numbers


def main(argv=None):
    experiment_main(make_figures, "The roofline: decode is memory-bound, the prompt compute-bound; what "
                                  "bf16 and int8 weights buy and cost.",
                    fast_help="a small model, few tokens", argv=argv)


if __name__ == "__main__":
    main()
