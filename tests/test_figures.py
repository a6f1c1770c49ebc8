"""The one command that regenerates every figure runs, in fast mode, into a temporary folder."""
import json

import pytest

from tinyrwkv import cli
from tinyrwkv.figures import FIGURES

EXPECTED_SETS = {"gradient_flow", "attention_cost", "cost_and_memory", "rwkv_wkv_maps", "kernel_ladder",
                 "decay_spectrum", "information_flow", "training_curves", "diagrams", "recall", "roofline",
                 "after_rwkv4"}


def test_every_experiment_module_is_a_figure_set():
    assert set(FIGURES) == EXPECTED_SETS


@pytest.mark.slow
def test_tinyrwkv_figures_fast_writes_every_png(tmp_path, capsys):
    numbers = tmp_path / "numbers.json"
    assert cli.main(["figures", "--fast", "--out", str(tmp_path), "--json", str(numbers)]) == 0
    results = json.loads(numbers.read_text())
    assert set(results) == EXPECTED_SETS
    pngs = {p.name for p in tmp_path.glob("*.png")}
    for name in ("gradient_flow.png", "attention_cost.png", "attention_heatmaps.png", "cost_vs_length.png",
                 "state_size_vs_length.png", "wkv_attention_maps.png", "kernel_ladder.png",
                 "decay_spectrum.png", "time_mix.png", "information_flow.png", "training_curves.png",
                 "recall.png", "roofline.png", "quantisation_tradeoff.png"):
        assert name in pngs, f"{name} was not written (got {sorted(pngs)})"
        assert (tmp_path / name).stat().st_size > 10_000


def test_unknown_figure_set_exits_2_with_one_line(capsys):
    assert cli.main(["figures", "--only", "nope", "--out", "/tmp/unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown figure set(s) ['nope']" in err[0]
