"""Lesson 12's experiments (tinyrwkv/experiments/after_rwkv4.py): the state formula equals what the
models carry, the decay maps come from the shipped models, the delta rule replaces what a decayed
sum piles up, the recall task is well formed, and the shipped recall results show RWKV-7 ahead."""
import json

import numpy as np
import pytest

from tinyrwkv.experiments import after_rwkv4 as ex
from tinyrwkv.models.rwkv import RWKVConfig
from tinyrwkv.models.rwkv7_train import RWKV7LanguageModel, rwkv7_config
from tinyrwkv.models.rwkv_train import RWKVLanguageModel


def test_state_floats_equal_what_the_models_carry():
    v4 = RWKVLanguageModel(RWKVConfig(n_layer=3, n_embd=16, vocab_size=7, ffn_dim=32), backend="numpy")
    v7 = RWKV7LanguageModel(rwkv7_config(3, 16, 7, 32, head_size=4, decay_lora=2, a_lora=2, v_lora=2, gate_lora=2),
                            backend="numpy")
    assert ex.state_floats(4, 3, 16, 4) == v4.state_size() == 5 * 3 * 16
    assert ex.state_floats(7, 3, 16, 4) == v7.state_size() == v7.init_state(1).size()
    assert ex.state_floats(7, 12, 768, 64) == 608256 and ex.state_floats("gpt", 12, 768, 64, 33) == 608256
    with pytest.raises(ValueError, match="version must be"):
        ex.state_floats(8, 1, 1)


def test_decay_maps_fixed_for_rwkv4_and_per_token_for_rwkv7():
    maps = ex.decay_maps("the fox, ran")
    assert maps["v4"].shape == maps["v7"].shape == (12, 64)
    assert np.ptp(maps["v4"], axis=0).max() == 0
    assert maps["v7"].std(axis=0).max() > 0.01
    assert 0.54 < maps["v7"].min() and maps["v7"].max() < 1


@pytest.mark.parametrize("writes", [4, 9])
def test_delta_rule_replaces_and_sum_piles_up(writes):
    delta, total = ex.write_and_read("delta", 4, writes), ex.write_and_read("sum", 4, writes)
    assert delta["error"] < 1e-9
    if writes > 4:                       # a key written twice: the sum returns old + new
        assert total["error"] > 0.3
    with pytest.raises(ValueError, match="rule must be"):
        ex.write_and_read("product")


def test_recall_batch_is_well_formed():
    inputs, targets = ex.recall_batch(np.random.default_rng(0), 32, n_keys=16, n_values=16, n_pairs=6)
    assert inputs.shape == targets.shape == (32, 14)
    assert (targets[:, :-1] == -1).all() and (inputs[:, -2] == 32).all()
    for seq, answer in zip(inputs, targets[:, -1]):
        keys, values = seq[0:12:2], seq[1:12:2]
        assert len(set(keys)) == 6 and (keys < 16).all() and (values >= 16).all() and (values < 32).all()
        assert answer == values[list(keys).index(seq[-1])]


def test_shipped_recall_results_show_rwkv7_ahead_at_equal_size():
    results = json.loads(ex.RECALL_RESULTS.read_text())
    m4, m7 = results["models"]["RWKV-4"], results["models"]["RWKV-7"]
    assert results["settings"]["steps"] == ex.RECALL["steps"] and m4["accuracy"][-1][0] == ex.RECALL["steps"]
    assert abs(m4["params"] - m7["params"]) < 0.02 * m4["params"]
    assert m7["accuracy"][-1][1] > 0.9 > 0.5 > m4["accuracy"][-1][1]


def test_models_for_the_recall_task_match_in_size():
    models = ex.recall_models()
    p4, p7 = (m.num_parameters() for m in models.values())
    assert abs(p4 - p7) < 0.02 * p4
