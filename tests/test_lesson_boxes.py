"""Every lesson opens with the same Objectives / Prerequisites / Time box, and lessons 00-11 each show
a diagram that exists. (The Time lines come from scripts/lesson_times.py --write.)"""
import pathlib
import re

import pytest

from tinyrwkv.diagrams import NAMES

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_opens_with_objectives_prerequisites_and_time(path):
    head = "\n".join(path.read_text().splitlines()[:60])
    for field in ("**Objectives.**", "**Prerequisites.**", "**Time.**"):
        assert field in head, f"{path.name}: no {field} in its first 60 lines"
    assert "TIME_" not in path.read_text(), f"{path.name}: an unfilled time placeholder"


@pytest.mark.parametrize("path", [p for p in LESSONS if int(p.name[:2]) <= 11], ids=lambda p: p.stem)
def test_lesson_draws_a_diagram_that_exists(path):
    names = re.findall(r"""^draw\(['"](\w+)['"]\)""", path.read_text(), flags=re.M)
    assert names, f"{path.name} draws no diagram"
    assert set(names) <= set(NAMES), f"{path.name} draws unknown diagrams {set(names) - set(NAMES)}"
