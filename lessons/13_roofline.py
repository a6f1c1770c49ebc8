# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 13 · The roofline: why decoding waits on memory, and what int8 buys
#
# > **Objectives.** After this lesson you can
# > 1. count the bytes a decoding step reads and the flops it does, and compare them with a prompt's;
# > 2. measure this machine's memory bandwidth and matrix-multiply speed, and draw its roofline;
# > 3. predict decode tokens/s from bandwidth and model size, then measure it;
# > 4. say what bf16 and int8 weights buy (speed, memory) and what they cost (logit error), with numbers.
# >
# > **Prerequisites.** Lessons 07 (the real RWKV-4 and its parameters), 08 (kernels) and 09 (flops per token).
# >
# > **Time.** about 60 minutes: reading 15, running 3 (full mode, measured), exercises 40 (4 x 10).
# > How these are estimated: lesson 00.
#
# A computer does two things to run a model: it **moves bytes** (weights from memory to the cores)
# and it **does arithmetic** on them. Whichever takes longer sets the speed. The *roofline* says which:
#
# $$\text{attainable flops/s} = \min\big(\text{peak flops/s},\ \text{intensity} \times \text{bandwidth}\big),
# \qquad \text{intensity} = \frac{\text{flops}}{\text{bytes moved}}.$$
#
# Every weight of a matrix product gives 2 flops (a multiply and an add) per token that uses it. In
# **decoding** one token at a time, each weight is read from memory for *one* token: with $b$ bytes
# per weight the intensity is $2/b$ flops per byte, far below what a core can do per byte it reads, so
# the cores wait for memory. In a **prompt** of $T$ tokens read together, one read of a weight serves all
# $T$ tokens: $2T/b$ flops per byte, and the cores are the limit. Fewer bytes per weight (bf16: 2,
# int8: 1) therefore speed up decoding almost in proportion, and leave a long prompt nearly unchanged.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from tinyrwkv.exercises import check
from tinyrwkv.experiments.roofline import (FAST as FAST_CONFIG, REAL_169M, bytes_per_weight, compact_params,
                                           decode_bytes, decode_speed, matrix_weights, measure_bandwidth,
                                           measure_gemm, plot_roofline, plot_tradeoff, prompt_flops, prompt_speed,
                                           quality, text_tokens)
from tinyrwkv.kernels import matmul_numba as M
from tinyrwkv.models.rwkv import RWKV, init_params
from tinyrwkv.nn.compact import FORMATS, Int8Weight

FAST = os.environ.get("TINYRWKV_FAST") == "1"
CONFIG = FAST_CONFIG if FAST else REAL_169M       # full mode: the real RWKV-4 169M shapes
PROMPT = 128 if FAST else 512
REPEATS = 2 if FAST else 3
print(f"FAST={FAST}: {CONFIG.n_layer} layers x {CONFIG.n_embd}, vocabulary {CONFIG.vocab_size}, "
      f"{PROMPT}-token prompts; {os.cpu_count()} cores")

# %% [markdown]
# ## 1. Bytes and flops per token
#
# The matrices a token multiplies (lesson 09 counted them): per layer time-mix's key, value,
# receptance and output ($4C^2$) and channel-mix's key ($F \times C$), value ($C \times F$) and
# receptance ($C^2$); then the head ($V \times C$). The embedding is a lookup: one row. We build a
# model with random weights at these shapes (speed does not depend on the values) and count.

# %%
params = init_params(CONFIG, seed=0)
P = matrix_weights(params)                        # weights in a token's matrix products
fp32_bytes = decode_bytes(params)                 # what one decoding step reads, float32
print(f"P = {P:,} matrix weights; {2 * P / 1e9:.2f} GFLOP per token; "
      f"decode reads {fp32_bytes / 1e6:.0f} MB per token in float32")
assert fp32_bytes >= 4 * P                        # every weight once, 4 bytes (+ vectors, one embedding row)
assert fp32_bytes < 4 * P * 1.01                  # ... and the vectors are < 1% of it

# %% [markdown]
# ## 2. This machine: bandwidth and GEMM speed
#
# Bandwidth: the time to read an array far larger than any cache (the faster of two parallel sums
# on all cores: a plain one, and one that asks for the bytes 32 KiB ahead, as the decoding kernels do).
# Compute: a float32 matrix product (BLAS sgemm) at a prompt's shapes. Their ratio is the
# intensity at which this machine turns from memory-bound to compute-bound (the roofline's "ridge").
# On a shared machine both vary from run to run: read them as rough, and compare within one run.

# %%
machine = measure_bandwidth(megabytes=128 if FAST else 512, repeats=REPEATS)
machine["gemm_gflops"] = measure_gemm(PROMPT, CONFIG.n_embd, REPEATS)
ridge = machine["gemm_gflops"] / machine["bandwidth_gbs"]
print(f"read bandwidth {machine['bandwidth_gbs']:.1f} GB/s, float32 GEMM {machine['gemm_gflops']:.1f} GFLOP/s: "
      f"ridge at {ridge:.1f} flops per byte")
print(f"decode intensity (fp32): {2 * P / fp32_bytes:.2f} flops/byte; "
      f"{PROMPT}-token prompt: {prompt_flops(params, PROMPT) / fp32_bytes:.0f} flops/byte (the head once)")

# %% [markdown]
# ## 3. Three ways to store a weight
#
# `tinyrwkv.nn.compact` keeps each weight matrix in one of three formats; the model calls
# `F.linear(x, W)` and never asks which (`tinyrwkv.load(src, weights="int8")` does the same with a
# checkpoint, converting as it reads):
#
# | format | bytes per weight | stored as | rebuilt as |
# |---|---|---|---|
# | fp32 | 4 | float32 | itself |
# | bf16 | 2 | the high 16 bits of the float32 | exact float32 with those bits (8 bits of mantissa) |
# | int8 | 1 (+ a float32 scale per row) | $q = \mathrm{round}(w / s)$, $s = \max_k\lvert w_k\rvert / 127$ | $q \cdot s$ |

# %%
models = {fmt: RWKV(CONFIG, compact_params(params, fmt), backend="numba") for fmt in FORMATS}
W = models["int8"].params["blocks.0.att.key.weight"]
print(W, "q:", W.q.dtype, W.q.shape, "scales:", W.scales.shape)
assert W.q.shape == (CONFIG.n_embd, CONFIG.n_embd) and W.scales.shape == (CONFIG.n_embd, 1)
for fmt, model in models.items():
    print(f"{fmt}: {bytes_per_weight(model.params):.3f} bytes per weight, "
          f"{decode_bytes(model.params) / 1e6:.0f} MB read per token")

# %% [markdown]
# ## 4. Experiment: predict, then measure
#
# The decode bound of each format is bandwidth / bytes per token. Decoding runs the compact
# kernels of `tinyrwkv/kernels/matmul_numba.py`, each weight read once: a bf16 weight is widened to
# float32 in a register and multiply-added; for int8, x is rounded once per product to int16 steps
# and each row becomes an integer dot product (exact in int32, one float multiply per row, the CPU's
# `vpmaddwd` doing 16 multiply-adds per instruction). The prompt turns blocks of weights back into
# float32 and calls BLAS.
#
# What does rounding x cost? Compare, on one real-shaped matrix, the error of rounding the *weights*
# to int8 with the extra error of also rounding x to int16 steps:

# %%
x = np.random.default_rng(1).standard_normal(CONFIG.n_embd).astype(np.float32)
exact = params["blocks.0.att.key.weight"].astype(np.float64) @ x     # float32 weights, float x
dequantised = W.to_float32().astype(np.float64) @ x                   # int8 weights, float x
integer = W.linear(x[None])[0]                                        # int8 weights, x in int16 steps
x16, step = M.quantize_x16(x, CONFIG.n_embd)
weight_error, x_error = np.abs(dequantised - exact).max(), np.abs(integer - dequantised).max()
print(f"x in steps of {step:.2e} (largest |x| = {M.xq_max(CONFIG.n_embd)} steps); max |error| from int8 "
      f"weights {weight_error:.2e}, added by int16 x {x_error:.2e} ({weight_error / x_error:.0f}x smaller)")
assert x_error < weight_error / 10

# %%
numbers = {"machine": machine, "flops_per_token": 2 * P, "prompt_length": PROMPT, "formats": {},
           "prompt_flops": prompt_flops(params, PROMPT)}   # the head once: a prompt keeps only its last logits
tokens = text_tokens(200 if FAST else 1000, CONFIG.vocab_size)
for fmt, model in models.items():
    nbytes = decode_bytes(model.params)
    row = {"bytes_per_weight": bytes_per_weight(model.params), "decode_bytes": nbytes,
           "decode_bound": machine["bandwidth_gbs"] * 1e9 / nbytes,
           "decode": decode_speed(model, 8 if FAST else 16, REPEATS),
           "prompt": prompt_speed(model, PROMPT, REPEATS - 1)}
    if fmt != "fp32":
        row.update(quality(models["fp32"], model, tokens))
    numbers["formats"][fmt] = row
    print(f"{fmt}: decode {row['decode']:.1f} tok/s (bound {row['decode_bound']:.1f}: "
          f"{100 * row['decode'] / row['decode_bound']:.0f}%), prompt {row['prompt']:.0f} tok/s")

# %% [markdown]
# ## 5. Figures
#
# Left of the ridge the points sit under the slanted line (memory-bound): int8's decode point lies
# further right (more flops per byte) and higher. The prompts sit under the flat roof, whatever the
# format; the printout gives each one's share of the GEMM speed (a prompt's flops count every layer
# matrix per token and the head once, as only the last logits are computed). The rest of a prompt's
# time is the WKV recurrence and the elementwise passes, which multiply no matrices. (At the small
# sizes of fast mode, fixed per-call costs blur the picture: run the full mode for the real shapes.)

# %%
plot_roofline(numbers, fig=plt.figure())
plt.show()
for fmt, row in numbers["formats"].items():
    gflops = row["prompt"] / PROMPT * numbers["prompt_flops"] / 1e9
    print(f"{fmt} prompt: {gflops:.0f} GFLOP/s, {gflops / machine['gemm_gflops']:.0%} of this machine's GEMM")

# %% [markdown]
# What the fewer bytes cost, measured on the same weights over real text tokens: the logits'
# difference from fp32 and how often the most likely next token changes. Random weights are a weak
# proxy for a trained model (trained weights have outlier rows and columns that quantisation feels
# more); the tests also measure perplexity with the shipped trained tiny model, where int8 moved it
# by about 0.01% and bf16 by less.

# %%
plot_tradeoff(numbers, fig=plt.figure())
plt.show()
for fmt in ("bf16", "int8"):
    r = numbers["formats"][fmt]
    print(f"{fmt}: top-1 agreement {100 * r['top1_agreement']:.1f}%, max |logit diff| "
          f"{r['max_abs_logit_diff']:.4f}, mean {r['mean_abs_logit_diff']:.5f} (mean |logit| {r['logit_scale']:.3f})")

# %% [markdown]
# ## Summary
#
# * A decoding step reads every weight once for 2 flops per weight: $2/b$ flops per byte, far left
#   of the ridge. Its speed is at most bandwidth / bytes per token: the **decode bound**.
# * A $T$-token prompt reuses every weight $T$ times: $2T/b$ flops per byte, right of the ridge:
#   bound by the matrix-multiply speed, so storage format hardly matters there.
# * bf16 halves the bytes with a relative rounding error of at most $2^{-9}$ per weight; int8 quarters
#   them with one scale per output row. Decoding speeds up almost in proportion; the logits move
#   little (measure it: section 5).
#
# ## Exercises

# %% tags=["exercise"]
def bytes_per_token(n_layer, n_embd, ffn_dim, vocab_size, bytes_per_weight):
    """Bytes of weight MATRICES one RWKV-4 decoding step reads (leave out vectors and int8 scales).

    Count every weight of the matrices a token multiplies once, at `bytes_per_weight` bytes each,
    and the one row of the embedding table the token looks up.
    """
    raise NotImplementedError


check.bytes_per_token(bytes_per_token)


# %% tags=["exercise"]
def predict_tokens_per_second(bandwidth_gbs, bytes_per_token):
    """The fastest decoding possible when every token must read `bytes_per_token` bytes at
    `bandwidth_gbs` GB/s. Then compare your prediction with `numbers["formats"][...]["decode"]` above."""
    raise NotImplementedError


check.predict_tokens_per_second(predict_tokens_per_second)


# %% tags=["exercise"]
def arithmetic_intensity(bytes_per_weight, tokens_per_call):
    """Flops per byte of weights read, when one read of each weight serves `tokens_per_call` tokens
    (1 when decoding, T for a T-token prompt)."""
    raise NotImplementedError


check.arithmetic_intensity(arithmetic_intensity)


# %% tags=["exercise"]
def quantize_int8(w):
    """Symmetric per-row int8 quantisation of w (n, k) float32.

    Return (q, scales): q (n, k) int8 and scales (n,) float32 such that w ~= q * scales[:, None],
    each row's largest |w| mapping to 127.
    """
    raise NotImplementedError


check.quantize_int8(quantize_int8)

# %% [markdown]
# **Going further:** (1) Quantise with one scale per group of 32 inputs
# (`Int8Weight.from_float32(w, group=32)`) and measure both the logit error and decode speed: is the
# extra 4 bytes per 32 weights worth it? (2) `tinyrwkv bench --weights fp32,bf16,int8` measures the
# formats against the `rwkv` package at 169M shapes, with each decode figure as a fraction of its
# bound. (3) `M.asm_summary(M.int8_matvec, ...)` in `tinyrwkv.kernels.matmul_numba` shows the vector
# instructions the int8 kernel for a few rows compiled to: find the widening load and the fused
# multiply-add. Then `M.asm_summary(M.int8_matvec1, ...)`, decoding's one-token kernel: find
# `vpmaddwd` (integer multiply-adds) and `prefetcht2` (asking for bytes 32 KiB ahead).
#
# Back to the start: [00 · Tour](00_tour.ipynb).
