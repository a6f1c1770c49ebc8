"""Scaled dot-product and multi-head attention: against torch and finite differences."""
import numpy as np
import pytest

from tinyrwkv.nn import gradcheck
from tinyrwkv.nn.attention import (MultiHeadAttention, causal_mask, padding_mask,
                                   scaled_dot_product_attention, scaled_dot_product_attention_backward)
from tinyrwkv.nn.gradcheck import numerical_gradient, relative_error


def test_causal_mask_shapes():
    assert np.array_equal(causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    # the last query of a 4-long sequence sees every key (a KV-cache step)
    assert np.array_equal(causal_mask(1, 4), [[1, 1, 1, 1]])


def test_sdpa_gradients_finite_differences():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 6))
    dy = rng.normal(size=(2, 3, 6))
    mask = causal_mask(3, 5) & padding_mask(np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]), 0)
    y, w = scaled_dot_product_attention(q, k, v, mask)
    assert np.all(w[~np.broadcast_to(mask, w.shape)] == 0)       # blocked keys get weight 0
    grads = scaled_dot_product_attention_backward(dy, q, k, v, w)
    for x, g in zip((q, k, v), grads):
        num = numerical_gradient(lambda: float(np.sum(scaled_dot_product_attention(q, k, v, mask)[0] * dy)), x)
        assert relative_error(g, num) < 1e-8


def test_sdpa_rejects_fully_masked_row():
    x = np.ones((1, 2, 3))
    with pytest.raises(ValueError, match="at least one key"):
        scaled_dot_product_attention(x, x, x, np.array([[True, False], [False, False]]))


def test_multihead_gradcheck_float64():
    rng = np.random.default_rng(1)
    mha = MultiHeadAttention(8, 2, rng=rng).astype(np.float64)
    mha.params["in_proj_bias"] += rng.normal(size=24) * 0.1
    mha.out_proj.params["bias"] += rng.normal(size=8) * 0.1
    xq, xkv = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 4, 8))
    dy = rng.normal(size=(2, 3, 8))
    mask = padding_mask(np.array([[5, 5, 5, 0], [5, 5, 0, 0]]), 0)

    def loss():
        return float(np.sum(mha.forward(xq, xkv, xkv, mask)[0] * dy))

    mha.zero_grad()
    _, cache = mha.forward(xq, xkv, xkv, mask)
    dq, dk, dv = mha.backward(dy, cache)
    gradcheck(loss, mha.parameters(), mha.gradients(), tol=1e-7)
    assert relative_error(dq, numerical_gradient(loss, xq)) < 1e-7
    assert relative_error(dk + dv, numerical_gradient(loss, xkv)) < 1e-7


@pytest.mark.parametrize("masks", ["none", "causal", "padding", "both"])
def test_multihead_matches_torch(masks):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    B, T, E, H = 3, 5, 12, 3
    mha = MultiHeadAttention(E, H, rng=rng)
    mha.params["in_proj_bias"] += rng.normal(size=3 * E).astype(np.float32) * 0.1
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ref.load_state_dict({k: torch.tensor(v) for k, v in mha.parameters().items()})

    x = rng.normal(size=(B, T, E)).astype(np.float32)
    dy = rng.normal(size=(B, T, E)).astype(np.float32)
    ids = np.array([[1] * T, [1] * (T - 2) + [0] * 2, [1] * (T - 1) + [0]])
    mask, attn_mask, kpm = None, None, None
    if masks in ("causal", "both"):
        mask = causal_mask(T)
        attn_mask = torch.tensor(~causal_mask(T))                # torch: True = blocked
    if masks in ("padding", "both"):
        mask = padding_mask(ids, 0) if mask is None else mask & padding_mask(ids, 0)
        kpm = torch.tensor(ids == 0)

    tx = torch.tensor(x, requires_grad=True)
    ty, tw = ref(tx, tx, tx, attn_mask=attn_mask, key_padding_mask=kpm, average_attn_weights=False)
    ty.backward(torch.tensor(dy))
    y, cache = mha.forward(x, x, x, mask)
    dx = sum(mha.backward(dy, cache))

    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(cache.weights, tw.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-5)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(mha.gradients()[name], p.grad.numpy(), atol=1e-4, err_msg=name)


def test_multihead_bad_shapes_name_the_expected_shape():
    mha = MultiHeadAttention(8, 2, rng=np.random.default_rng(0))
    x = np.zeros((2, 3, 8), np.float32)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        mha.forward(np.zeros((2, 3, 7), np.float32), x, x)
    with pytest.raises(ValueError, match=r"\(Tq, Tk\) = \(3, 3\)"):
        mha.forward(x, x, x, np.ones((4, 4), bool))
    with pytest.raises(TypeError, match="float"):
        mha.forward(x.astype(np.int64), x, x)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_attention_keeps_float32():
    """A float64 numpy scalar in attention once turned every later layer float64 (31x slower)."""
    q = np.ones((1, 2, 4), np.float32)
    y, w = scaled_dot_product_attention(q, q, q)
    assert y.dtype == np.float32 and w.dtype == np.float32
