"""LSTM: torch.nn.LSTM parity (stacked, bidirectional), finite differences, masks, step, bad input."""
import numpy as np
import pytest
from recurrent_checks import (bad_input_names_expected_shapes, gradcheck_cell, gradcheck_language_model,
                              gradcheck_layer, gradcheck_stack, learns_char_lm, learns_copy_task,
                              step_matches_forward, torch_parity, torch_parity_random_sizes)

from tinyrwkv.errors import ParameterError
from tinyrwkv.models.lstm import LSTM, LSTMLanguageModel, LSTMLayer


@pytest.mark.parametrize("num_layers,bidirectional,seed", [(1, False, 0), (3, False, 1), (2, True, 2)])
def test_matches_torch_float64(num_layers, bidirectional, seed):
    torch = pytest.importorskip("torch")
    diffs = torch_parity_random_sizes(LSTM, torch.nn.LSTM, num_layers=num_layers, bidirectional=bidirectional,
                                      seed=seed)
    assert max(diffs.values()) < 1e-12, diffs
    assert "grad weight_hh_l0" in diffs and "d initial c" in diffs


def test_matches_torch_float32():
    torch = pytest.importorskip("torch")
    diffs = torch_parity(LSTM, torch.nn.LSTM, D=8, H=16, num_layers=2, bidirectional=True, B=3, T=12, seed=5,
                         dtype=np.float32)
    assert max(diffs.values()) < 1e-4, diffs


def test_torch_state_dict_round_trip():
    torch = pytest.importorskip("torch")
    ours = LSTM(3, 4, num_layers=2, bidirectional=True, rng=np.random.default_rng(0))
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.torch_state_dict().items()})
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        ty, _ = ref(torch.tensor(x))
    assert np.allclose(ours.forward(x)[0], ty.numpy(), atol=1e-6)
    assert ours.torch_names()["layers.3.w_hh"] == "weight_hh_l1_reverse"


def test_gradcheck_cell():
    gradcheck_cell(LSTMLayer)


@pytest.mark.parametrize("reverse,masked", [(False, False), (True, False), (False, True), (True, True)])
def test_gradcheck_layer(reverse, masked):
    gradcheck_layer(LSTMLayer, reverse=reverse, masked=masked)


def test_gradcheck_stack_and_language_model():
    gradcheck_stack(LSTM)
    gradcheck_language_model(LSTMLanguageModel)


def test_step_matches_forward():
    step_matches_forward(LSTMLanguageModel)


def test_mask_equals_running_each_sequence_at_its_true_length():
    """Right padding + mask = the unpadded sequence: what GNMT's encoder needs for a padded batch."""
    rng = np.random.default_rng(7)
    fwd, bwd = LSTMLayer(3, 4, rng=rng), LSTMLayer(3, 4, reverse=True, rng=rng)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    lengths = [4, 6]
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]           # (B, T)
    y_f, (h_f, c_f), _ = fwd.forward(x, mask=mask)
    y_b, (h_b, _), _ = bwd.forward(x, mask=mask)
    for b, n in enumerate(lengths):
        ref_f, (ref_h, ref_c), _ = fwd.forward(x[b:b + 1, :n])
        ref_b, (ref_hb, _), _ = bwd.forward(x[b:b + 1, :n])
        assert np.allclose(y_f[b, :n], ref_f[0], atol=1e-6) and np.allclose(h_f[b], ref_h[0], atol=1e-6)
        assert np.allclose(c_f[b], ref_c[0], atol=1e-6)
        assert np.allclose(y_b[b, :n], ref_b[0], atol=1e-6) and np.allclose(h_b[b], ref_hb[0], atol=1e-6)


def test_gradient_reaches_the_initial_state_without_outputs():
    """An encoder-decoder uses only the final state: dy=None, dstate given; dstate0 must come back."""
    rng = np.random.default_rng(8)
    layer = LSTMLayer(2, 3, rng=rng, dtype=np.float64)
    x = rng.normal(size=(1, 4, 2))
    h0, c0 = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
    _, _, cache = layer.forward(x, (h0, c0))
    _, (dh0, dc0) = layer.backward(None, cache, (np.ones((1, 3)), np.zeros((1, 3))))

    def loss():
        return float(layer.forward(x, (h0, c0))[1][0].sum())
    from tinyrwkv.nn import numerical_gradient
    assert np.allclose(dh0, numerical_gradient(loss, h0), atol=1e-8)
    assert np.allclose(dc0, numerical_gradient(loss, c0), atol=1e-8)


def test_bad_input_names_expected_shapes():
    bad_input_names_expected_shapes(LSTMLayer, LSTM, LSTMLanguageModel)
    layer = LSTMLayer(3, 4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expected shape \(\*, \*, 3\), got \(2, 5, 4\)"):
        layer.forward(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(\*, \*, 3\), got \(5, 3\)"):
        layer.forward(np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError, match="float"):
        layer.forward(np.zeros((2, 5, 3), np.int64))
    with pytest.raises(ValueError, match=r"state c: expected shape \(2, 4\), got \(2, 5\)"):
        layer.forward(np.zeros((2, 5, 3), np.float32), (np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"tuple \(h, c\)"):
        layer.forward(np.zeros((2, 5, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"mask \(B, T\): expected shape \(2, 5\)"):
        layer.forward(np.zeros((2, 5, 3), np.float32), mask=np.ones((2, 4)))
    stack = LSTM(3, 4, num_layers=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="list of 2 state tuples"):
        stack.forward(np.zeros((2, 5, 3), np.float32), [(np.zeros((2, 4)), np.zeros((2, 4)))])
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1'"):
        sd = stack.torch_state_dict()
        del sd["bias_hh_l1"]
        stack.load_torch_state_dict(sd)
    lm = LSTMLanguageModel(5, hidden_size=4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"forward ids must be \(B, T\) integer token ids in \[0, 5\), got shape \(3,\)"):
        lm.forward(np.array([1, 2, 3]))
    with pytest.raises(ParameterError, match="integer token ids"):
        lm.forward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        lm.forward(np.array([[1, 7]]))


def test_learns_the_char_corpus():
    """200 steps (~4 s): validation loss below the bigram baseline (~2.33 nats/char), itself below unigram (~3.07)."""
    val, unigram, bigram = learns_char_lm(LSTMLanguageModel)
    assert val < bigram < unigram, (val, bigram, unigram)


def test_learns_the_copy_task():
    """Recall 3 of 8 symbols after 10 blanks: > 90% of symbols right within 700 steps; chance is 12.5%."""
    acc = learns_copy_task(LSTMLanguageModel)
    assert acc["symbol"] > 0.9 and acc["chance"] == 0.125, acc
