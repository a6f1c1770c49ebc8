"""Parity with transformers without torch: logits stored by tests/make_golden.py (transformers'
RwkvForCausalLM on seeded tiny weights) against tinyrwkv on the same weights."""
import pathlib

import numpy as np
import pytest

from tinyrwkv.models.rwkv import RWKV, RWKVConfig

GOLDEN = pathlib.Path(__file__).resolve().parent / "data" / "golden_rwkv.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def model_from(golden, backend):
    n_layer, n_embd, vocab_size, ffn_dim = (int(x) for x in golden["config"])
    params = {k[len("param/"):]: v for k, v in golden.items() if k.startswith("param/")}
    return RWKV(RWKVConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=vocab_size, ffn_dim=ffn_dim), params, backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_logits_equal_the_stored_transformers_logits(golden, backend):
    model = model_from(golden, backend)
    tokens, n = golden["tokens"], int(golden["prompt_length"])
    logits, _ = model.forward(tokens)
    assert np.abs(logits - golden["logits"]).max() <= 1e-4
    _, state = model.forward(tokens[:n])                # prompt in parallel mode, then RNN mode
    steps = []
    for t in tokens[n:]:
        out, state = model.step(int(t), state)
        steps.append(out)
    assert np.abs(np.array(steps) - golden["step_logits"]).max() <= 1e-4
    assert np.abs(golden["logits"]).max() > 1.0         # the logits are not all near zero


def test_golden_file_is_small():
    assert GOLDEN.stat().st_size < 200 * 1024
