"""The fused RWKV-4 path (models/rwkv_fused.py, kernels/fused_numba.py) equals the readable reference
(models/rwkv.py with fused=False: nn.functional's layer norm, token_mix, sigmoid) to rtol 1e-5."""
import numpy as np
import pytest

from factories import random_internal_params, tiny_config
from tinyrwkv.kernels import fused_numba as K
from tinyrwkv.models.rwkv import RWKV, token_mix, token_shift
from tinyrwkv.nn import functional as F


@pytest.mark.parametrize("B, T", [(1, 1), (2, 3), (1, K.PARALLEL_MIN_ROWS + 3)])   # serial and parallel
def test_ln_shift_mix_equals_layer_norm_then_token_mix(B, T):
    rng = np.random.default_rng(0)
    C = 40
    x = (3 * rng.standard_normal((B, T, C)) + 1).astype(np.float32)
    x_prev = rng.standard_normal((B, C)).astype(np.float32)
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    mus = rng.uniform(0, 1, (3, C)).astype(np.float32)
    mixed, h_last = K.ln_shift_mix(x, x_prev, w, b, 1e-5, mus)
    h = F.layer_norm(x, w, b, 1e-5)[0]
    xx = token_shift(h, x_prev)
    for m in range(3):
        np.testing.assert_allclose(mixed[m], token_mix(xx, h - xx, mus[m]), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(h_last, h[:, -1], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("rows", [2, K.PARALLEL_MIN_ROWS + 1])
def test_gates_equal_the_functional_ops(rows):
    rng = np.random.default_rng(1)
    r = (20 * rng.standard_normal((rows, 33))).astype(np.float32)        # saturating both ways
    y = rng.standard_normal((rows, 33)).astype(np.float32)
    want = y * F.sigmoid(r)
    np.testing.assert_allclose(K.sigmoid_gate(r, y.copy()), want, rtol=1e-6, atol=1e-7)
    k = rng.standard_normal((rows, 17)).astype(np.float32)
    np.testing.assert_allclose(K.squared_relu_(k.copy()), F.squared_relu(k), rtol=1e-6)


def _pair(config, seed=0):
    params = random_internal_params(config, seed=seed)
    return RWKV(config, params, backend="numba", fused=True), RWKV(config, params, backend="numba", fused=False)


def test_fused_model_equals_reference_in_every_mode():
    config = tiny_config(n_layer=3, n_embd=48, vocab_size=70)
    fused, ref = _pair(config)
    assert fused.fused and not ref.fused
    tokens = np.random.default_rng(2).integers(0, 70, (2, 20))
    a, sa = fused.forward(tokens)                                      # full logits, (B, T, V)
    b, sb = ref.forward(tokens)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for f in ("att_x", "aa", "bb", "pp", "ffn_x"):
        np.testing.assert_allclose(getattr(sa, f), getattr(sb, f), rtol=1e-5, atol=1e-5)
    a, _ = fused.forward(tokens, sa, full_output=False)                # last logits only, from a state
    b, _ = ref.forward(tokens, sb, full_output=False)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    a, _ = fused.step(tokens[:, 0], sa)                                # RNN mode, a batch of 2
    b, _ = ref.step(tokens[:, 0], sb)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fused_equals_reference_on_the_shipped_model():
    from tinyrwkv.loading import load
    fused, ref = load("tiny", progress=False), load("tiny", progress=False)
    ref.fused = False
    tokens = np.arange(64) % fused.config.vocab_size
    np.testing.assert_allclose(fused.forward(tokens)[0], ref.forward(tokens)[0], rtol=1e-5, atol=1e-5)


def test_vectorisable_exp_matches_numpy_over_its_whole_range():
    """exp_numba.exp_nonpositive (the sigmoid gates' and float32 WKV's exponential) against np.exp
    in float64, from the clamp at -87.3 to 0: relative error below 3e-7, and e^0 = 1 exactly."""
    from numba import njit

    from tinyrwkv.kernels.exp_numba import SMALLEST, exp_nonpositive

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = exp_nonpositive(x[i])

    x = np.concatenate([np.linspace(SMALLEST, 0, 200_001, dtype=np.float32), [0, -1e-30, -1e-7]]).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - want) / want) < 3e-7
    assert out[-3] == 1.0
    below = np.array([-200.0, -np.inf], np.float32)
    apply(below, out[:2])
    assert np.all(out[:2] == np.float32(np.exp(np.float64(SMALLEST)))), out[:2]     # clamped, not denormal
