"""Compact weights (tinyrwkv.nn.compact, kernels/matmul_numba): bf16 words and int8 + scales.

Each format is held to (a) its own definition (the kernels equal float32 products with the dequantised
matrix), (b) the bounds of its rounding, and (c) what it costs a real model: perplexity of the shipped
tiny model on its corpus, and top-1 agreement with float32. Peak memory of an int8 169M load is
measured in a subprocess (slow)."""
import json
import platform
import subprocess
import sys

import numpy as np
import pytest

from factories import random_internal_params, round_bfloat16, tiny_config, write_hf_safetensors
from tinyrwkv.checkpoints import CheckpointError
from tinyrwkv.kernels import matmul_numba as M
from tinyrwkv.loading import load
from tinyrwkv.models.rwkv import RWKV
from tinyrwkv.nn import functional as F
from tinyrwkv.nn.compact import (BF16Weight, CompactWeight, Int8Weight, compact, float32_to_bf16_bits,
                                 from_row_blocks)

FORMATS = ("bf16", "int8")


def random_matrix(n, k, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[::7] *= 10.0                                     # rows of different sizes: per-row scales matter
    return w


# --------------------------------------------------------------------------- the formats themselves


def test_bf16_words_round_like_torch_and_keep_specials():
    w = random_matrix(33, 40)
    w[0, :6] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 3.0e38]
    words = float32_to_bf16_bits(w)
    np.testing.assert_array_equal(BF16Weight(words).to_float32()[1:], round_bfloat16(w)[1:])
    back = BF16Weight(words).to_float32()[0, :6]
    assert back[0] == np.inf and back[1] == -np.inf and np.isnan(back[2]) and back[3] == 0
    assert np.signbit(back[4])
    torch = pytest.importorskip("torch")
    want = torch.from_numpy(w[1:]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(words[1:], want)


@pytest.mark.parametrize("group", [None, 8])
def test_int8_rounding_error_is_at_most_half_a_step(group):
    w = random_matrix(29, 48)
    W = Int8Weight.from_float32(w, group)
    assert W.q.dtype == np.int8 and W.scales.shape == (29, 1 if group is None else 48 // 8)
    step = np.repeat(W.scales, W.group, axis=1)                       # (29, 48): scale of each weight
    err = np.abs(W.to_float32() - w)
    assert np.all(err <= step / 2 * (1 + 1e-6) + 1e-30)
    assert np.abs(W.q).max() == 127                                    # every row uses the full range


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rows", [1, 3, 8, M.BLAS_MIN_ROWS + 5])      # kernels, and dequantise + BLAS
def test_linear_equals_float32_product_with_the_dequantised_matrix(fmt, rows):
    w = random_matrix(37, 48)                                          # odd sizes: no lane multiple
    W = compact(w, fmt)
    x = np.random.default_rng(1).standard_normal((rows, 48)).astype(np.float32)
    want = x.astype(np.float64) @ W.to_float32().T.astype(np.float64)
    got = F.linear(x, W)
    assert got.dtype == np.float32 and got.shape == (rows, 37)
    if fmt == "int8" and rows == 1:            # the integer kernel: x rounded to int16 steps first
        x16, step = M.quantize_x16(x[0], 48)
        assert np.abs(x16).max() == M.xq_max(48)
        np.testing.assert_array_less(np.abs(x16 * np.float64(step) - x[0]), 0.5 * step * (1 + 1e-6))
        bound = 0.5 * step * np.abs(W.to_float32()).sum(axis=1)        # sum_k |w| |x16 step - x|
        assert np.all(np.abs(got[0] - want[0]) <= bound + 1e-5 * np.abs(want[0]) + 1e-6)
        want = (x16 * np.float64(step) @ W.to_float32().T.astype(np.float64))[None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(F.linear(x.reshape(1, rows, 48), W)[0], got, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 5])
def test_parallel_and_one_thread_kernels_agree(rows):
    """Small matrices take the one-thread twins; both variants compute the same products."""
    w = random_matrix(70, 64)
    x = np.random.default_rng(2).standard_normal((rows, 64)).astype(np.float32)
    W8, W16 = Int8Weight.from_float32(w), BF16Weight.from_float32(w)
    outs = [np.empty((rows, 70), np.float32) for _ in range(4)]
    M.int8_matvec(W8.q, W8.scales, x, outs[0])
    M.int8_matvec_serial(W8.q, W8.scales, x, outs[1])
    M.bf16_matvec(W16.words, x, outs[2])
    M.bf16_matvec_serial(W16.words, x, outs[3])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0], x @ W8.to_float32().T, rtol=1e-5, atol=1e-4)
    if rows == 1:                                                      # the 1-d kernels of decoding
        for k8, k16 in ((M.int8_matvec1, M.bf16_matvec1), (M.int8_matvec1_serial, M.bf16_matvec1_serial)):
            y8, y16 = np.empty(70, np.float32), np.empty(70, np.float32)
            k8(W8.q, W8.scales, x[0], y8)
            k16(W16.pairs, x[0], y16)
            x16, step = M.quantize_x16(x[0], 64)               # int8: integer sums of x in int16 steps
            np.testing.assert_allclose(y8, x16 * step @ W8.to_float32().T, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(y16, outs[2][0], rtol=1e-5, atol=1e-5)
    G8 = Int8Weight.from_float32(w, group=16)
    M.int8_matvec_grouped(G8.q, G8.scales, x, outs[0])
    M.int8_matvec_grouped_serial(G8.q, G8.scales, x, outs[1])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0], x @ G8.to_float32().T, rtol=1e-5, atol=1e-4)


def test_int8_groups_multiply_right_in_kernel_and_blas_paths():
    w = random_matrix(20, 64)
    W = Int8Weight.from_float32(w, group=16)
    for rows in (2, 40):
        x = np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)
        np.testing.assert_allclose(F.linear(x, W), x @ W.to_float32().T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_embedding_rows_and_block_building(fmt):
    w = random_matrix(50, 24)
    W = compact(w, fmt)
    ids = np.array([[3, 0], [49, 3]])
    np.testing.assert_array_equal(W[ids], W.to_float32()[ids])
    blocks = ((n0, w[n0:n0 + 7]) for n0 in range(0, 50, 7))           # as a checkpoint reader yields
    built = from_row_blocks(fmt, w.shape, blocks)
    np.testing.assert_array_equal(built.to_float32(), W.to_float32())
    assert W.nbytes == (2 * w.size if fmt == "bf16" else w.size + 4 * 50)   # int8: + a scale per row


def test_bad_formats_and_inputs_are_named():
    with pytest.raises(ValueError, match="fp16.*fp32, bf16, int8"):
        compact(np.zeros((2, 2), np.float32), "fp16")
    with pytest.raises(ValueError, match="inf or NaN"):
        Int8Weight.from_float32(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="does not divide"):
        Int8Weight.from_float32(np.ones((2, 6), np.float32), group=4)
    with pytest.raises(ValueError, match="3 features.*\\(4, 2\\)"):
        F.linear(np.ones((1, 3), np.float32), compact(np.ones((4, 2), np.float32), "int8"))
    with pytest.raises(TypeError, match="inference"):
        F.linear_backward(np.ones((1, 4)), np.ones((1, 2)), compact(np.ones((4, 2), np.float32), "bf16"))
    assert not hasattr(CompactWeight, "__array__")          # no silent 4x copies


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 vector mnemonics")
def test_kernels_inner_loops_are_vectorised():
    q, s = np.zeros((4, 64), np.int8), np.ones((4, 1), np.float32)
    x, out = np.zeros((1, 64), np.float32), np.zeros((1, 4), np.float32)
    asm = M.asm_summary(M.int8_matvec, q, s, x, out)
    assert asm["vcvtdq2ps"] > 0 and asm["vfmadd231ps"] + asm["vfmadd213ps"] > 0, asm
    asm = M.asm_summary(M.bf16_matvec, np.zeros((4, 64), np.uint16), x, out)
    assert asm["vpslld"] > 0 and asm["vfmadd231ps"] + asm["vfmadd213ps"] > 0, asm
    # decoding's one-row kernels: integer multiply-adds of int16 pairs; bf16 pairs split by shift and
    # mask; both ask for the bytes ahead (prefetcht2)
    asm = M.asm_summary(M.int8_matvec1, q, s, x[0], out[0])
    assert asm["vpmaddwd"] + asm["vpdpwssd"] > 0, asm        # (vcvtdq2ps: the inf/NaN fallback loop)
    assert asm["prefetcht2"] > 0, asm
    asm = M.asm_summary(M.bf16_matvec1, np.zeros((4, 32), np.uint32), x[0], out[0])
    assert asm["vpslld"] > 0 and asm["vpand"] + asm["vpblendw"] > 0 and asm["prefetcht2"] > 0, asm


def test_int8_one_row_kernel_edge_inputs():
    """The integer kernel's corners: x all zeros (step 0), x holding inf / NaN (the float32 loop, so
    they propagate as in float32), and K past the int32 limit (the float kernel)."""
    W = Int8Weight.from_float32(random_matrix(5, 8))
    y = np.empty(5, np.float32)
    M.int8_matvec1(W.q, W.scales, np.zeros(8, np.float32), y)
    np.testing.assert_array_equal(y, 0)
    x = np.ones(8, np.float32)
    x[3] = np.inf
    M.int8_matvec1(W.q, W.scales, x, y)
    want = x @ W.to_float32().T
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(y[~np.isnan(y)], want[~np.isnan(want)])
    assert M.xq_max(768) == 21845 and M.xq_max(3072) == 5461 and M.xq_max(M.INT8_INTEGER_MAX_K) >= 255
    wide = Int8Weight.from_float32(random_matrix(2, M.INT8_INTEGER_MAX_K + 2))
    x = np.random.default_rng(0).standard_normal((1, wide.shape[1])).astype(np.float32)
    np.testing.assert_allclose(F.linear(x, wide), x @ wide.to_float32().T, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- loading


def test_load_reads_bf16_checkpoints_straight_into_words(tmp_path):
    pytest.importorskip("torch")
    config = tiny_config(n_layer=2, n_embd=16, vocab_size=40)
    params = random_internal_params(config, seed=3)
    write_hf_safetensors(tmp_path / "bf16", params, config, dtype="bfloat16")
    write_hf_safetensors(tmp_path / "fp32", params, config, dtype="float32")
    m16 = load(tmp_path / "bf16", weights="bf16", progress=False)
    m32 = load(tmp_path / "fp32", weights="fp32", progress=False)
    from_fp32 = load(tmp_path / "fp32", weights="bf16", progress=False)
    for name, value in m16.params.items():
        if isinstance(value, BF16Weight):      # words of the bf16 file == fp32 rounded by us == by torch
            np.testing.assert_array_equal(value.words, from_fp32.params[name].words)
            np.testing.assert_array_equal(value.to_float32(), round_bfloat16(m32.params[name]))
        else:
            assert isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 1
    assert isinstance(m16.params["emb.weight"], BF16Weight) and isinstance(m16.params["head.weight"], BF16Weight)


def test_int8_load_names_the_tensor_holding_nan(tmp_path):
    config = tiny_config(n_layer=2, n_embd=8, vocab_size=12)
    params = random_internal_params(config, seed=4)
    params["blocks.0.att.key.weight"][2, 3] = np.nan
    pytest.importorskip("torch")
    write_hf_safetensors(tmp_path, params, config)
    with pytest.raises(CheckpointError, match=r"model.safetensors: .*key.weight: 1 non-finite value\(s\) "
                                              r"\(first at index \(2, 3\): NaN\)"):
        load(tmp_path, weights="int8", progress=False)            # refused by the loader's check ...
    with pytest.raises(CheckpointError, match="model.safetensors.*key.weight.*inf or NaN"):
        load(tmp_path, weights="int8", progress=False, allow_nonfinite=True)   # ... and int8 cannot hold it
    with pytest.raises(ValueError, match="weights='int4'"):
        load(tmp_path, weights="int4", progress=False)


# --------------------------------------------------------------------------- what it costs a model


def _perplexity(model, ids, chunk=2048):
    """exp(mean next-token cross-entropy) over ``ids``, run as one stream in chunks (state carried)."""
    state, total, n = None, 0.0, 0
    for i in range(0, len(ids) - 1, chunk):
        x, y = ids[i:i + chunk], ids[i + 1:i + chunk + 1]
        logits, state = model.forward(x[:len(y)], state)
        loss, _ = F.cross_entropy(logits, y)
        total, n = total + loss * len(y), n + len(y)
    return float(np.exp(total / n))


@pytest.fixture(scope="module")
def tiny_corpus_ids():
    from tinyrwkv.data.corpus import CORPORA
    from tinyrwkv.tokenizer import load_tokenizer
    return np.asarray(load_tokenizer("tiny").encode(CORPORA["small_tales"].read_text(encoding="ascii")))


@pytest.mark.parametrize("fmt, bound", [("bf16", 1e-3), ("int8", 1e-2)])
def test_tiny_model_perplexity_and_agreement(tiny_corpus_ids, fmt, bound):
    m32 = load("tiny", progress=False)
    m = load("tiny", weights=fmt, progress=False)
    assert all(isinstance(m.params[k], CompactWeight) for k in m.params if k.endswith(".weight") and m.params[k].ndim == 2)
    p32, p = _perplexity(m32, tiny_corpus_ids), _perplexity(m, tiny_corpus_ids)
    assert abs(p / p32 - 1) < bound, (fmt, p, p32)
    a, _ = m32.forward(tiny_corpus_ids[:1000])
    b, _ = m.forward(tiny_corpus_ids[:1000])
    assert (a.argmax(-1) == b.argmax(-1)).mean() > (0.99 if fmt == "bf16" else 0.97)


@pytest.mark.parametrize("fmt, bound", [("bf16", 1e-3), ("int8", 1e-2)])
def test_tiny_model_decoding_perplexity_and_agreement(tiny_corpus_ids, fmt, bound):
    """The same bounds for RNN-mode decoding, which runs the one-token kernels (int8: integer sums
    against x rounded to int16 steps) instead of the prompt's dequantise-then-BLAS."""
    from tinyrwkv.experiments.roofline import _logits
    ids = tiny_corpus_ids[:601]
    m32, m = load("tiny", progress=False), load("tiny", weights=fmt, progress=False)
    a, b = _logits(m32, ids[:-1], "decode"), _logits(m, ids[:-1], "decode")
    p32, p = (float(np.exp(F.cross_entropy(z, ids[1:])[0])) for z in (a, b))
    assert abs(p / p32 - 1) < bound, (fmt, p, p32)
    assert (a.argmax(-1) == b.argmax(-1)).mean() > (0.99 if fmt == "bf16" else 0.97)


@pytest.mark.parametrize("fmt", FORMATS)
def test_serial_equals_parallel_and_batched_decoding(fmt):
    """RNN-mode steps (the kernels) and parallel mode (dequantise + BLAS) compute the same model."""
    config = tiny_config(n_layer=2, n_embd=32, vocab_size=50)
    p = random_internal_params(config, seed=5)
    m = RWKV(config, {k: compact(v, fmt) if k.endswith(".weight") and v.ndim == 2 else v for k, v in p.items()},
             backend="numba")
    tokens = np.random.default_rng(0).integers(0, 50, (3, M.BLAS_MIN_ROWS + 4))
    full, _ = m.forward(tokens)                                        # (3, T, V)
    state, steps = None, []
    for t in range(tokens.shape[1]):
        logits, state = m.step(tokens[:, t], state)                    # (3, V): a 3-row batch
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- memory at 169M


CHILD = r"""
import json, sys
import numpy as np
from tinyrwkv.loading import load

def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

load("tiny", weights=sys.argv[2], progress=False)     # imports (numba, tqdm ...) before the baseline
base = peak()
model = load(sys.argv[1], weights=sys.argv[2], progress=False)
print(json.dumps({"over_baseline": peak() - base,
                  "resident": sum(v.nbytes for v in model.params.values())}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_169m_int8_loads_in_a_third_of_the_fp32_memory(tmp_path):
    """A float32 169M safetensors file loads as int8 with a peak of <= 0.35x its float32 size: the
    float32 model is never held whole (tensors are quantised block by block as they are read)."""
    from safetensors.numpy import save_file

    from tinyrwkv.checkpoints import to_file_layout
    from tinyrwkv.models.rwkv import RWKVConfig, param_shapes
    config = RWKVConfig(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(s, dtype=np.float32) for k, s in param_shapes(config).items()}
    fp32_bytes = sum(v.nbytes for v in params.values())
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(tmp_path / "model.safetensors"))
    del params
    got = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "model.safetensors"), "int8"],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert report["resident"] <= 0.26 * fp32_bytes, report
    assert report["over_baseline"] <= 0.35 * fp32_bytes, (report, fp32_bytes)


@pytest.mark.parametrize("version", [5.2, 6, 7])
@pytest.mark.parametrize("fmt", FORMATS)
def test_rwkv5_6_7_run_on_compact_weights(version, fmt):
    """The v5-v7 models call linear(x, W) for every matrix: compact weights work unchanged, serial ==
    parallel, and the logits stay near fp32 on the same weights."""
    from factories import random_rwkv567_params, rwkv567_config
    from tinyrwkv.experiments.roofline import compact_params
    from tinyrwkv.loading import model_class
    from tinyrwkv.models.rwkv import RWKVConfig
    cfg = rwkv567_config(version, n_layer=2, n_embd=32, head_size=8, vocab_size=41, ffn_dim=64)
    config, params = RWKVConfig.from_dict(cfg), random_rwkv567_params(cfg, seed=1)
    m32 = model_class(version)(config, params, backend="numba")
    m = model_class(version)(config, compact_params(params, fmt), backend="numba")
    assert any(isinstance(v, CompactWeight) for v in m.params.values())
    tokens = np.random.default_rng(2).integers(0, 41, (2, M.BLAS_MIN_ROWS + 2))
    full, _ = m.forward(tokens)
    state, steps = None, []
    for t in range(tokens.shape[1]):
        logits, state = m.step(tokens[:, t], state)
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-4, atol=1e-4)
    ref, _ = m32.forward(tokens)
    scale = np.abs(ref).mean()
    assert np.abs(full - ref).mean() < (0.01 if fmt == "bf16" else 0.03) * scale


@pytest.mark.parametrize("fmt", FORMATS)
def test_pack_matrices_moves_bytes_not_values(fmt):
    """Packing puts every matrix of a format in one buffer (views of it) and changes no number."""
    from tinyrwkv.nn.compact import pack_matrices
    config = tiny_config(n_layer=2, n_embd=32, vocab_size=50)
    p = random_internal_params(config, seed=6)
    params = {k: compact(v, fmt) if k.endswith(".weight") and v.ndim == 2 else v for k, v in p.items()}
    before = RWKV(config, dict(params), backend="numba").forward(np.arange(7))[0]
    packed = pack_matrices(dict(params))
    storage = [v.q if fmt == "int8" else v.words if fmt == "bf16" else v
               for v in packed.values() if np.ndim(v) == 2]
    assert len(storage) == 2 + 2 * 7 and len({id(a.base) for a in storage}) == 1     # one arena
    for key, value in packed.items():
        want = params[key].to_float32() if np.ndim(value) == 2 and fmt != "fp32" else params[key]
        got = value.to_float32() if np.ndim(value) == 2 and fmt != "fp32" else value
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(RWKV(config, packed, backend="numba").forward(np.arange(7))[0], before)
