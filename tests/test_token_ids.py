"""One token-id check for every language model: the same ParameterError, the same message style,
for empty, ragged, non-integer, boolean, negative and too-large ids, in forward and in step."""
import numpy as np
import pytest

from tinyrwkv.errors import ParameterError
from tinyrwkv.models.gru import GRULanguageModel
from tinyrwkv.models.lstm import LSTMLanguageModel
from tinyrwkv.models.rnn import RNNLanguageModel
from tinyrwkv.models.rwkv import RWKV, RWKVConfig
from tinyrwkv.models.rwkv_train import RWKVLanguageModel
from tinyrwkv.models.transformer import GPT
from tinyrwkv.nn import check_tokens

V = 7
CONFIG = RWKVConfig(n_layer=1, n_embd=8, vocab_size=V, ffn_dim=16)


def models():
    rng = np.random.default_rng(0)
    return {
        "RWKV": RWKV.random(CONFIG, backend="numpy"),
        "RWKVLanguageModel": RWKVLanguageModel(CONFIG, backend="numpy"),
        "RNNLanguageModel": RNNLanguageModel(V, hidden_size=4, rng=rng),
        "LSTMLanguageModel": LSTMLanguageModel(V, hidden_size=4, rng=rng),
        "GRULanguageModel": GRULanguageModel(V, hidden_size=4, rng=rng),
        "GPT": GPT(V, dim=8, n_heads=2, n_layers=1, rng=rng),
        **_rwkv7(),
    }


def _rwkv7():
    """RWKV-7's trainable model, where this checkout has it."""
    try:
        from tinyrwkv.models.rwkv7_train import RWKV7LanguageModel, rwkv7_config
    except ImportError:
        return {}
    config = rwkv7_config(n_layer=1, n_embd=8, vocab_size=V, ffn_dim=16, head_size=4)
    return {"RWKV7LanguageModel": RWKV7LanguageModel(config, backend="numpy")}


MODELS = models()

# (what, forward input (B, T), step input (B,), the message fragment)
BAD = [
    ("empty", np.zeros((1, 0), np.int64), [], "is empty: give at least one token id"),
    ("ragged", [[1, 2], [3]], [[1], [2, 3]], "is ragged"),
    ("float", [[1.0, 2.0]], [1.0], "must be integer token ids in \\[0, 7\\), got float"),
    ("float array", np.ones((1, 2)), np.ones(1), "must be integer token ids in \\[0, 7\\), got float"),
    ("string", [["a", "b"]], ["a"], "must be integer token ids in \\[0, 7\\), got str"),
    ("None", [[1, None]], [None], "must be integer token ids in \\[0, 7\\), got NoneType"),
    ("object", [[1, object()]], [object()], "must be integer token ids in \\[0, 7\\), got object"),
    ("bool", [[True, False]], [True], "must be integer token ids in \\[0, 7\\), got bool"),
    ("negative", [[1, -1]], [-1], "token id -1 is out of range \\[0, 7\\)"),
    ("too large", [[1, V]], [V], "token id 7 is out of range \\[0, 7\\)"),
    ("beyond int64", [[1, 2 ** 70]], [2 ** 70], f"token id {2 ** 70} is out of range"),
    ("beyond int64, mixed", [[1, 2 ** 63]], [2 ** 63], f"token id {2 ** 63} is out of range"),
]


def _step(name, model, ids):
    return model.step(ids, model.init_state(1))        # the ids are checked before the state


@pytest.mark.parametrize("what, forward_ids, step_ids, fragment", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_refuses_bad_ids_alike(name, what, forward_ids, step_ids, fragment):
    model = MODELS[name]
    with pytest.raises(ParameterError, match=f"^{name}.forward (ids|tokens) {fragment}|"
                                             f"^{name}.forward (ids|tokens): {fragment}"):
        model.forward(forward_ids)
    with pytest.raises(ParameterError, match=f"^{name}.step (ids|token) {fragment}|"
                                             f"^{name}.step (ids|token): {fragment}"):
        _step(name, model, step_ids)


@pytest.mark.parametrize("name", list(MODELS))
def test_wrong_shapes_name_the_layout(name):
    model = MODELS[name]
    with pytest.raises(ParameterError, match=r"forward (ids|tokens) must be .*\(B, T\) integer token ids.*got shape"):
        model.forward(np.zeros((1, 2, 3), np.int64))
    with pytest.raises(ParameterError, match=r"step (ids|token) must be .*\(B,\) integer token ids.*got shape"):
        model.step(np.zeros((1, 1), np.int64), model.init_state(1))


@pytest.mark.parametrize("name", list(MODELS))
def test_good_ids_in_every_integer_form_run(name):
    model = MODELS[name]
    for ids in ([[0, V - 1]], np.array([[0, V - 1]], np.uint8), np.array([[0, V - 1]], np.int32), ((0, V - 1),)):
        logits = model.forward(ids)[0]
        assert np.asarray(logits).shape[-1] == V and np.isfinite(logits).all()
    logits, _ = model.step(np.array([V - 1], np.uint64), model.init_state(1))
    assert logits.shape == (1, V)


def test_the_check_itself():
    np.testing.assert_array_equal(check_tokens("x", [[1, 2]], 3), [[1, 2]])
    assert check_tokens("x", np.uint64(2), 3).dtype == np.int64
    assert check_tokens("x", 2, 3, "int").shape == ()
    with pytest.raises(ParameterError, match=r"^x must be \(T,\) or \(B, T\) integer token ids in \[0, 3\), got shape \(\)"):
        check_tokens("x", 2, 3, ("(T,)", "(B, T)"))
    assert issubclass(ParameterError, ValueError)           # callers catching ValueError still do
