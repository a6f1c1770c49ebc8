"""Self-checks for lesson 13 (the roofline: bytes, flops, and what quantisation buys).

    check.bytes_per_token(fn)          bytes of weights one RWKV-4 decoding step reads, in a given format
    check.predict_tokens_per_second(fn) the decode bound: bandwidth / bytes per token
    check.arithmetic_intensity(fn)     flops per byte when one read of the weights serves T tokens
    check.quantize_int8(fn)            per-row int8 quantisation: q and the scales

Each check compares the learner's answer with ``tinyrwkv.roofline`` / ``tinyrwkv.nn.compact``
(whose formulas the tests hold against real models' parameters) at a few sizes; when the answer
matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

import numpy as np

from ..roofline import (arithmetic_intensity as _intensity, bytes_per_token as _bytes,
                        predicted_tokens_per_second, weights_per_token)
from ..nn.compact import Int8Weight
from ._checker import CheckFailed, exercise, expect_close, expect_tuple

SIZES = [(12, 768, 3072, 50277), (2, 64, 256, 1000), (24, 1024, 4096, 50277)]   # 169M, tiny, 430M


def _number(out, what):
    try:
        return float(out)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: return a number, got {type(out).__name__}.") from None


def _compare(where, got, want, mistakes):
    if np.isclose(got, want, rtol=1e-9):
        return
    for message, wrong in mistakes.items():
        if np.isclose(got, wrong, rtol=1e-9):
            raise CheckFailed(f"{where}: {message}")
    raise CheckFailed(f"{where}: you have {got:.6g}, expected {want:.6g}.")


@exercise("13", library=(
    "tinyrwkv.roofline:bytes_per_token",
    "tinyrwkv.roofline:weights_per_token",
    "tinyrwkv.roofline:decode_bytes",
))
def bytes_per_token(fn):
    """fn(n_layer, n_embd, ffn_dim, vocab_size, bytes_per_weight) -> bytes of weight matrices read per token."""
    for L, C, F_, V in SIZES:
        for b in (4, 2, 1):
            got = _number(fn(L, C, F_, V, b), "bytes_per_token")
            want = _bytes(L, C, F_, V, b)
            head, emb = V * C * b, C * b
            _compare(f"for L={L}, C={C}, F={F_}, V={V}, {b} bytes per weight", got, want, {
                "the head (V x C) is read for every token too: it is the biggest matrix": want - head,
                "of the embedding a token reads ONE row (C weights), not the whole V x C table":
                    want - emb + V * C * b,
                "the embedding is a lookup, but its row is still read: add C weights": want - emb,
                "channel-mix's key is F x C and its value C x F (F = ffn_dim), not C x C":
                    (L * 7 * C * C + V * C + C) * b,
                "channel-mix has a receptance matrix (C x C) too: 5 C^2 + 2 C F per layer":
                    want - L * C * C * b,
                "multiply by bytes_per_weight: the count of weights is not yet bytes": want / b,
                "that is bits: a byte is 8 bits": want * 8,
            })


@exercise("13", library=("tinyrwkv.roofline:predicted_tokens_per_second",))
def predict_tokens_per_second(fn):
    """fn(bandwidth_gbs, bytes_per_token) -> the fastest possible decoding, tokens/s."""
    for bw, nbytes in ((20.0, 522_504_192), (12.5, 130_626_048), (50.0, 1e6)):
        got = _number(fn(bw, nbytes), "predict_tokens_per_second")
        want = predicted_tokens_per_second(bw, nbytes)
        _compare(f"for {bw} GB/s and {nbytes:.0f} bytes per token", got, want, {
            "tokens per second = (bytes per second) / (bytes per token): you divided the other way":
                nbytes / (bw * 1e9),
            "GB/s means 1e9 bytes per second (not 2**30)": bw * 2**30 / nbytes,
            "bandwidth is in GB/s: multiply by 1e9 to get bytes per second": bw / nbytes,
        })


@exercise("13", library=("tinyrwkv.roofline:arithmetic_intensity",))
def arithmetic_intensity(fn):
    """fn(bytes_per_weight, tokens_per_call) -> flops per byte of weights read."""
    for b, T in ((4, 8), (1, 1), (2, 512), (4, 1)):
        got = _number(fn(b, T), "arithmetic_intensity")
        want = _intensity(b, T)
        _compare(f"for {b} bytes per weight and {T} tokens per call", got, want, {
            "count 2 flops per weight and token: a multiply AND an add": want / 2,
            "one read of a weight serves all T tokens of the call: multiply by T": 2.0 / b if T > 1 else -1,
            "flops per byte: flops on top, bytes below": b / (2.0 * T),
            "divide by the bytes per weight: int8 moves fewer bytes for the same flops": 2.0 * T,
        })


@exercise("13", library=("tinyrwkv.nn.compact:Int8Weight.quantize", "tinyrwkv.nn.compact:Int8Weight.from_float32",
                         "tinyrwkv.nn.compact:compact", "tinyrwkv.nn.compact:from_row_blocks"))
def quantize_int8(fn):
    """fn(w (n, k) float32) -> (q (n, k) int8, scales (n,) float32) with w ~= q * scales[:, None]."""
    rng = np.random.default_rng(13)
    w = rng.standard_normal((6, 40)).astype(np.float32)
    w[1] *= 20.0                                       # a row with big weights: per-row scales matter
    w[2, 5] = -9.0                                     # the largest |w| of a row is negative
    want_q, want_s = Int8Weight.quantize(w)
    want_s = want_s[:, 0]
    out = fn(w.copy())
    expect_tuple(out, 2, "q, scales")
    q, scales = out
    q, scales = np.asarray(q), np.asarray(scales)
    if q.dtype != np.int8:
        raise CheckFailed(f"q must be int8 (1 byte per weight), got {q.dtype}.")
    absmax = np.abs(w).max(axis=1)
    per_row = "one scale PER ROW: a row of small weights would waste most of the 255 levels on a shared scale"
    if scales.size == 1:
        raise CheckFailed(f"scales is wrong: {per_row}.")
    expect_close("scales", scales.reshape(-1) if scales.size == 6 else scales, want_s, rtol=1e-6, atol=0, mistakes={
        per_row: np.full(6, np.abs(w).max() / 127, np.float32),
        "the scale maps the largest |w| to 127: use max(|w|), not max(w) (the extreme may be negative)":
            w.max(axis=1) / 127,
        "divide by 127 (the int8 range is -127..127 for symmetric rounding), not 128 or 255":
            [absmax / 128, absmax / 255],
    })
    expect_close("q", q.astype(np.float64), want_q.astype(np.float64), rtol=0, atol=0, mistakes={
        "round to the nearest integer (np.rint), do not truncate or floor":
            [np.trunc(w / want_s[:, None]), np.floor(w / want_s[:, None])],
    })
