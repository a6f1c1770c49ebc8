"""Elman RNN: torch.nn.RNN parity, finite differences, step == forward, bad input, and it learns."""
import numpy as np
import pytest
from recurrent_checks import (bad_input_names_expected_shapes, gradcheck_cell, gradcheck_language_model,
                              gradcheck_layer, gradcheck_stack, learns_char_lm, step_matches_forward, torch_parity,
                              torch_parity_random_sizes)

from tinyrwkv.models.rnn import RNN, RNNLanguageModel, RNNLayer


@pytest.mark.parametrize("num_layers,bidirectional,seed", [(1, False, 0), (2, False, 1), (2, True, 2)])
def test_matches_torch_float64(num_layers, bidirectional, seed):
    torch = pytest.importorskip("torch")
    diffs = torch_parity_random_sizes(RNN, torch.nn.RNN, num_layers=num_layers, bidirectional=bidirectional,
                                      seed=seed)
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
    bad_input_names_expected_shapes(RNNLayer, RNN, RNNLanguageModel)


def test_learns_the_char_corpus():
    """200 steps (~4 s): validation loss below the bigram baseline (~2.33 nats/char), itself below unigram (~3.07)."""
    val, unigram, bigram = learns_char_lm(RNNLanguageModel)
    assert val < bigram < unigram, (val, bigram, unigram)
