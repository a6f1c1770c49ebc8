"""tinyrwkv.experiments.recall: the task is what it says, fast mode runs and is labelled, the saved run is complete."""
import numpy as np
import pytest

from tinyrwkv.experiments import recall
from tinyrwkv.models.base import IGNORE_INDEX


def test_recall_batch_asks_for_the_value_paired_with_each_key():
    inputs, targets = recall.recall_batch(np.random.default_rng(0), 5, n_pairs=3, distract=4)
    seq = np.concatenate([inputs, targets[:, -1:]], axis=1)        # targets are inputs shifted by one
    assert inputs.shape == targets.shape == (5, 4 * 3 + 4 - 1)
    for b in range(5):
        pairs = dict(zip(seq[b, 0:6:2], seq[b, 1:6:2]))            # key -> value, as written first
        assert len(pairs) == 3 and all(k < recall.N_KEYS <= v < 2 * recall.N_KEYS for k, v in pairs.items())
        assert np.all(seq[b, 6:10] >= 2 * recall.N_KEYS)           # the distractors: their own alphabet
        scored = np.flatnonzero(targets[b] != IGNORE_INDEX)
        assert list(scored) == [10, 12, 14]                        # after each query key, nowhere else
        assert [targets[b, t] for t in scored] == [pairs[inputs[b, t]] for t in scored]
        assert sorted(inputs[b, scored]) == sorted(pairs)          # every key is asked once


def test_recall_batch_rejects_impossible_sizes_by_name():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_pairs"):
        recall.recall_batch(rng, 2, n_pairs=recall.N_KEYS + 1, distract=0)
    with pytest.raises(ValueError, match="distract"):
        recall.recall_batch(rng, 2, n_pairs=2, distract=-1)


def test_fast_mode_draws_the_figure_and_says_it_means_nothing(tmp_path):
    numbers = recall.make_figures(tmp_path, fast=True)
    assert (tmp_path / "recall.png").stat().st_size > 10_000
    assert numbers["fast"] is True
    for label in ("RWKV-4", "GPT"):
        grid = numbers[label]["accuracy"]
        assert set(grid) == {str(p) for p in recall.FAST["eval_pairs"]}
        assert all(0.0 <= acc <= 1.0 for row in grid.values() for acc in row.values())
    # equal size: the GPT is matched to the RWKV's parameter count within 1 %
    assert abs(numbers["GPT"]["params"] - numbers["RWKV-4"]["params"]) < 0.01 * numbers["RWKV-4"]["params"]


def test_the_shipped_full_run_is_complete_and_matches_its_configuration():
    results = recall.load_results()
    config = results["config"]
    assert config["steps"] == recall.FULL["steps"] and config["width"] == recall.FULL["width"]
    for label, res in results["models"].items():
        assert set(res["accuracy"]) == {str(p) for p in config["eval_pairs"]}, label
        assert all(set(row) == {str(d) for d in config["eval_distract"]} for row in res["accuracy"].values())
    # One pair after a distractor is the easy end of the task: both models, trained fully, solve it at
    # every distance (the saved run: 1.0 everywhere). Which model is better at P > 1 is NOT robust at
    # this size (it flips between P = 4 and P = 8), so no direction is asserted for it.
    assert all(acc > 0.9 for res in results["models"].values() for acc in res["accuracy"]["1"].values())
    rwkv, gpt = results["models"]["RWKV-4"]["params"], results["models"]["GPT"]["params"]
    assert abs(gpt - rwkv) < 0.01 * rwkv                           # equal size
