"""The RWKV figure sets run in fast mode, write their PNGs, and return sane numbers.

rwkv_wkv_maps     WKV's implied attention matrix == the recurrence; decays order the maps
cost_and_memory   state sizes counted from the models == the formulas; memory, not time, is asserted
kernel_ladder     every CPU rung runs and is timed; no numba.cuda row without a real GPU

Times are never asserted (they belong to benchmarks); only that they were measured.
"""
import math

import numpy as np
import pytest

from tinyrwkv.experiments import cost_and_memory, kernel_ladder, rwkv_wkv_maps
from tinyrwkv.kernels import wkv_numpy


def test_wkv_attention_matrix_reproduces_the_recurrence():
    rng = np.random.default_rng(0)
    T, C = 9, 4
    w, u = -np.exp(rng.normal(size=C)), rng.normal(size=C)
    k, v = rng.normal(size=(2, 1, T, C)) * 3
    y, _ = wkv_numpy.wkv_forward(w, u, k, v)
    for c in range(C):
        A = rwkv_wkv_maps.wkv_attention_matrix(w[c], u[c], k[0, :, c])
        assert A.shape == (T, T)
        np.testing.assert_allclose(A.sum(axis=1), 1, atol=1e-12)
        assert np.all(np.triu(A, 1) == 0), "WKV must not look at the future"
        np.testing.assert_allclose(A @ v[0, :, c], y[0, :, c], atol=1e-12)


def test_position_bias_is_rwkvs():
    bias = rwkv_wkv_maps.rwkv_position_bias(w=-0.5, u=0.25, T=4)
    assert bias[3, 0] == pytest.approx(-1.0) and bias[3, 2] == 0 and bias[2, 2] == 0.25
    assert np.isneginf(bias[0, 1])


def test_wkv_maps_figure(tmp_path):
    numbers = rwkv_wkv_maps.make_figures(tmp_path, fast=True)
    assert (tmp_path / "wkv_attention_maps.png").stat().st_size > 10_000
    assert max(numbers["max_abs_diff_matrix_vs_wkv_forward"].values()) < 1e-12
    last = numbers["last_query"]
    slow, medium, fast = (last[f"{s} channel"] for s in ("slow", "medium", "fast"))
    assert slow["mean_distance_looked_back"] > medium["mean_distance_looked_back"] > fast["mean_distance_looked_back"]
    assert fast["weight_on_current_token"] > slow["weight_on_current_token"]


def test_state_floats_counted_from_the_models_equal_the_formulas():
    models = cost_and_memory.small_models(seed=0)
    L, C = cost_and_memory.LAYERS, cost_and_memory.WIDTH
    for T in (1, 5):
        assert cost_and_memory.state_floats(models["rwkv"], T) == models["rwkv"].state_size(T) \
            == cost_and_memory.rwkv_state_floats(L, C) == 5 * L * C
        assert cost_and_memory.state_floats(models["gpt"], T) == models["gpt"].state_size(T) \
            == cost_and_memory.kv_cache_floats(L, C, T)
        assert cost_and_memory.state_floats(models["rnn"], T) == models["rnn"].state_size(T) \
            == cost_and_memory.rnn_state_floats(L, C)


def test_cost_and_memory_figures(tmp_path):
    numbers = cost_and_memory.make_figures(tmp_path, fast=True)
    for name in ("cost_vs_length.png", "state_size_vs_length.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    gen, prompt = numbers["generation"], numbers["prompt"]
    L, C = gen["layers"], gen["width"]
    assert gen["rwkv_serial"]["carried_floats"] == [5 * L * C] * len(gen["lengths"])
    assert gen["gpt_kv_cache"]["carried_floats"] == [2 * L * T * C for T in gen["lengths"]]
    assert len(set(gen["rnn"]["carried_floats"])) == 1
    for series in [gen[n] for n in ("rnn", "gpt_kv_cache", "gpt_no_cache", "rwkv_serial")] + \
                  [prompt[n] for n in ("gpt_parallel", "rwkv_parallel", "rnn_parallel")]:
        assert all(math.isfinite(ms) and ms > 0 for ms in series["ms_per_token"])
    # Memory is deterministic: reading a prompt, GPT (T x T attention weights, caches for its
    # backward) allocates more than RWKV at every length, and both grow with T.
    gpt, rwkv = prompt["gpt_parallel"]["peak_mib"], prompt["rwkv_parallel"]["peak_mib"]
    assert all(g > r for g, r in zip(gpt, rwkv)), (gpt, rwkv)
    assert gpt[-1] > gpt[0] and rwkv[-1] > rwkv[0]
    assert numbers["real_sizes_mib"]["rwkv_169m_state"] == pytest.approx(5 * 12 * 768 * 4 / 2**20)


def test_kernel_ladder_figure(tmp_path):
    numbers = kernel_ladder.make_figures(tmp_path, fast=True)
    assert (tmp_path / "kernel_ladder.png").stat().st_size > 10_000
    assert not numbers["real_gpu"], "the tests run on the CUDA simulator, which is never timed"
    for shape, rows in numbers["ladder"].items():
        assert "numpy" in rows and any(name.startswith("@njit") for name in rows), shape
        assert not any("cuda" in name for name in rows)
        for row in rows.values():
            assert row["forward_ms"] > 0 and row["backward_ms"] > 0
            assert math.isfinite(row["forward_speedup"]) and math.isfinite(row["backward_speedup"])
        assert rows["numpy"]["forward_speedup"] == 1.0


def test_flop_formulas_equal_two_flops_per_matrix_weight():
    """Per token, every matrix weight of the blocks is one multiply-add; GPT adds 2 T C per layer of attention."""
    from tinyrwkv.models.rwkv import RWKVConfig, param_shapes
    from tinyrwkv.models.transformer import GPT

    L, C = 3, 32
    config = RWKVConfig(n_layer=L, n_embd=C, vocab_size=50, ffn_dim=4 * C)
    rwkv_weights = sum(int(np.prod(s)) for n, s in param_shapes(config).items()
                       if n.startswith("blocks.") and len(s) == 2)
    assert cost_and_memory.rwkv_flops_per_token(L, C) == 2 * rwkv_weights
    gpt = GPT(50, dim=C, n_heads=4, n_layers=L, rng=np.random.default_rng(0))
    gpt_weights = sum(p.size for n, p in gpt.parameters().items() if n.startswith("layers.") and p.ndim == 2)
    for T in (1, 100):
        assert cost_and_memory.gpt_flops_per_token(L, C, T) == 2 * gpt_weights + 2 * L * 2 * T * C
    assert cost_and_memory.kv_cache_bytes(L, C, 10, batch=4, bytes_per_float=2) == 2 * L * 10 * C * 4 * 2


def test_gpu_rows_run_on_the_simulator():
    """The numba.cuda rows of the ladder only run on a real GPU; their code path is exercised here, untimed."""
    from tinyrwkv.kernels import cuda_usable

    if not cuda_usable():
        pytest.skip("numba.cuda is neither a real GPU nor the simulator here")
    rows = kernel_ladder.gpu_ladder(1, 8, 4, repeats=1)
    assert list(rows) == ["numba.cuda v1", "numba.cuda v2", "numba.cuda v3"]
    assert all(r["forward_ms"] > 0 for r in rows.values()) and rows["numba.cuda v1"]["backward_ms"] > 0
