"""The checks of lesson 13 (the roofline) catch plausible mistakes, and say which; the formulas behind
them agree with real models' parameters. (test_exercises.py proves solutions pass and blanks fail.)"""
import numpy as np

from exercise_checks import fails_with, load_solutions
from tinyrwkv.exercises import check
from tinyrwkv.experiments import roofline
from tinyrwkv.models.rwkv import RWKVConfig, init_params

S = load_solutions("13")


def test_formulas_agree_with_a_model_in_every_format():
    config = RWKVConfig(n_layer=2, n_embd=32, vocab_size=50, ffn_dim=128)
    params = init_params(config)
    assert roofline.weights_per_token(2, 32, 128, 50) == roofline.matrix_weights(params)
    vectors = sum(v.nbytes for v in params.values() if v.ndim == 1)
    for fmt, b in (("fp32", 4), ("bf16", 2)):
        stored = roofline.compact_params(params, fmt)
        assert roofline.decode_bytes(stored) == roofline.bytes_per_token(2, 32, 128, 50, b) + vectors
    int8 = roofline.compact_params(params, "int8")               # + a float32 scale per row
    assert roofline.bytes_per_token(2, 32, 128, 50, 1) < roofline.decode_bytes(int8) - vectors < \
        roofline.bytes_per_token(2, 32, 128, 50, 1.2)


def test_bytes_per_token_catches_mistakes():
    def variant(head=True, emb="row", ffn_f=True, ffn_r=True, times=1.0):
        def fn(L, C, F, V, b):
            ff = F if ffn_f else C
            per_layer = 4 * C * C + 2 * ff * C + (C * C if ffn_r else 0)
            return (L * per_layer + (V * C if head else 0) + {"row": C, "table": V * C, "none": 0}[emb]) * b * times
        return fn
    assert check.bytes_per_token(variant(), verbose=False).ok
    fails_with(check.bytes_per_token, variant(head=False), "head")
    fails_with(check.bytes_per_token, variant(emb="table"), "one row")
    fails_with(check.bytes_per_token, variant(emb="none"), "its row is still read")
    fails_with(check.bytes_per_token, variant(ffn_f=False), "ffn_dim")
    fails_with(check.bytes_per_token, variant(ffn_r=False), "receptance")
    fails_with(check.bytes_per_token, variant(times=8), "bits")
    fails_with(check.bytes_per_token, lambda *a: "big", "return a number")


def test_predict_and_intensity_catch_mistakes():
    fails_with(check.predict_tokens_per_second, lambda bw, n: n / (bw * 1e9), "other way")
    fails_with(check.predict_tokens_per_second, lambda bw, n: bw * 2**30 / n, "1e9")
    fails_with(check.predict_tokens_per_second, lambda bw, n: bw / n, "multiply by 1e9")
    fails_with(check.arithmetic_intensity, lambda b, T: T / b, "multiply and an add")
    fails_with(check.arithmetic_intensity, lambda b, T: 2.0 / b, "serves all t tokens")
    fails_with(check.arithmetic_intensity, lambda b, T: b / (2.0 * T), "flops on top")
    fails_with(check.arithmetic_intensity, lambda b, T: 2.0 * T, "divide by the bytes")


def test_quantize_int8_catches_mistakes():
    def variant(reduce=lambda w: np.abs(w).max(axis=1), levels=127, rounding=np.rint, dtype=np.int8):
        def fn(w):
            s = reduce(w) / levels
            return rounding(w / np.reshape(s, (-1, 1)) if np.ndim(s) else w / s).astype(dtype), s
        return fn
    assert check.quantize_int8(S.quantize_int8, verbose=False).ok
    fails_with(check.quantize_int8, variant(reduce=lambda w: np.abs(w).max()), "per row")
    fails_with(check.quantize_int8, variant(reduce=lambda w: np.full(len(w), np.abs(w).max())), "per row")
    fails_with(check.quantize_int8, variant(reduce=lambda w: w.max(axis=1)), "max(|w|)")
    fails_with(check.quantize_int8, variant(levels=128), "127")
    fails_with(check.quantize_int8, variant(rounding=np.trunc), "round to the nearest")
    fails_with(check.quantize_int8, variant(dtype=np.int16), "int8")


def test_handing_over_the_library_fails():
    fails_with(check.bytes_per_token, roofline.bytes_per_token, "tinyrwkv")
    fails_with(check.arithmetic_intensity, roofline.arithmetic_intensity, "tinyrwkv")
    from tinyrwkv.nn.compact import Int8Weight
    fails_with(check.quantize_int8, lambda w: Int8Weight.quantize(w), "tinyrwkv")
