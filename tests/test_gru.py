"""GRU: torch.nn.GRU parity (stacked, bidirectional), finite differences, step == forward, bad input, learning."""
import numpy as np
import pytest
from recurrent_checks import (bad_input_names_expected_shapes, gradcheck_cell, gradcheck_language_model,
                              gradcheck_layer, gradcheck_stack, learns_char_lm, learns_copy_task,
                              step_matches_forward, torch_parity, torch_parity_random_sizes)

from tinyrwkv.models.gru import GRU, GRULanguageModel, GRULayer


@pytest.mark.parametrize("num_layers,bidirectional,seed", [(1, False, 0), (2, False, 1), (2, True, 2)])
def test_matches_torch_float64(num_layers, bidirectional, seed):
    torch = pytest.importorskip("torch")
    diffs = torch_parity_random_sizes(GRU, torch.nn.GRU, num_layers=num_layers, bidirectional=bidirectional,
                                      seed=seed)
    assert max(diffs.values()) < 1e-12, diffs


def test_matches_torch_float32():
    torch = pytest.importorskip("torch")
    diffs = torch_parity(GRU, torch.nn.GRU, D=8, H=16, num_layers=2, bidirectional=False, B=3, T=12, seed=5,
                         dtype=np.float32)
    assert max(diffs.values()) < 1e-4, diffs


def test_gradcheck_cell():
    gradcheck_cell(GRULayer)


@pytest.mark.parametrize("reverse,masked", [(False, False), (True, True)])
def test_gradcheck_layer(reverse, masked):
    gradcheck_layer(GRULayer, reverse=reverse, masked=masked)


def test_gradcheck_stack_and_language_model():
    gradcheck_stack(GRU)
    gradcheck_language_model(GRULanguageModel)


def test_step_matches_forward():
    model = step_matches_forward(GRULanguageModel)
    assert model.state_size(10) == model.state_size(1000) == 2 * 8     # 2 layers x H, whatever the length


def test_bad_input_names_expected_shapes():
    bad_input_names_expected_shapes(GRULayer, GRU, GRULanguageModel)


def test_learns_the_char_corpus():
    """200 steps (~4 s): validation loss below the bigram baseline (~2.33 nats/char), itself below unigram (~3.07)."""
    val, unigram, bigram = learns_char_lm(GRULanguageModel)
    assert val < bigram < unigram, (val, bigram, unigram)


def test_learns_the_copy_task():
    """Recall 3 of 8 symbols after 10 blanks: > 90% of symbols right within 700 steps; chance is 12.5%."""
    acc = learns_copy_task(GRULanguageModel)
    assert acc["symbol"] > 0.9 and acc["chance"] == 0.125, acc
