"""Elman RNN: torch.nn.RNN parity, finite differences, step == forward, bad input, and it learns."""
import numpy as np
import pytest
from recurrent_checks import (gradcheck_cell, gradcheck_language_model, gradcheck_layer, gradcheck_stack,
                              learns_char_lm, learns_copy_task, step_matches_forward, torch_parity)

from tinyrwkv.models.rnn import RNN, RNNLanguageModel, RNNLayer


@pytest.mark.parametrize("num_layers,bidirectional,seed", [(1, False, 0), (2, False, 1), (2, True, 2)])
def test_matches_torch_float64(num_layers, bidirectional, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    B, T, D, H = (int(v) for v in rng.integers(1, 7, size=4))
    diffs = torch_parity(RNN, torch.nn.RNN, D=D, H=H, num_layers=num_layers, bidirectional=bidirectional,
                         B=B, T=T, seed=seed)
    assert max(diffs.values()) < 1e-12, diffs


def test_matches_torch_float32():
    torch = pytest.importorskip("torch")
    diffs = torch_parity(RNN, torch.nn.RNN, D=8, H=16, num_layers=2, bidirectional=False, B=3, T=12, seed=5,
                         dtype=np.float32)
    assert max(diffs.values()) < 1e-4, diffs


def test_gradcheck_cell():
    gradcheck_cell(RNNLayer)


@pytest.mark.parametrize("reverse,masked", [(False, False), (True, True)])
def test_gradcheck_layer(reverse, masked):
    gradcheck_layer(RNNLayer, reverse=reverse, masked=masked)


def test_gradcheck_stack_and_language_model():
    gradcheck_stack(RNN)
    gradcheck_language_model(RNNLanguageModel)


def test_step_matches_forward():
    model = step_matches_forward(RNNLanguageModel)
    assert model.state_size(10) == model.state_size(1000) == 2 * 8     # 2 layers x H, whatever the length


def test_bad_input_names_expected_shapes():
    layer = RNNLayer(3, 4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"RNNLayer input \(B, T, D\): expected shape \(\*, \*, 3\), got \(2, 5, 2\)"):
        layer.forward(np.zeros((2, 5, 2), np.float32))
    with pytest.raises(TypeError, match="RNNLayer input: expected a float array, got dtype int64"):
        layer.forward(np.zeros((2, 5, 3), np.int64))
    with pytest.raises(ValueError, match=r"RNNLayer.cell input: expected shape \(\*, 3\), got \(2, 1, 3\)"):
        layer.cell(np.zeros((2, 1, 3), np.float32), layer.zero_state(2))
    with pytest.raises(ValueError, match=r"state h: expected shape \(2, 4\), got \(3, 4\)"):
        layer.cell(np.zeros((2, 3), np.float32), (np.zeros((3, 4), np.float32),))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 5, 4\)"):
        _, _, cache = layer.forward(np.zeros((2, 5, 3), np.float32))
        layer.backward(np.zeros((2, 5, 3), np.float32), cache)
    with pytest.raises(ValueError, match="bidirectional stack cannot run one step"):
        bi = RNN(3, 4, bidirectional=True, rng=np.random.default_rng(0))
        bi.step(np.zeros((1, 3), np.float32), bi.init_state(1))
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        RNN(3, 4, num_layers=0)
    lm = RNNLanguageModel(5, hidden_size=4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"step ids \(B,\): expected shape \(\*\), got \(1, 1\)"):
        lm.step(np.array([[1]]), lm.init_state(1))


def test_learns_the_char_corpus():
    """200 steps (~4 s): validation loss below the bigram baseline (~2.33 nats/char), itself below unigram (~3.07)."""
    val, unigram, bigram = learns_char_lm(RNNLanguageModel)
    assert val < bigram < unigram, (val, bigram, unigram)
