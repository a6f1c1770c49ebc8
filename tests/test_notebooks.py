"""Every lesson notebook runs top to bottom in fast mode, and stays in sync with its source.

The diff-friendly source of each lesson is ``lessons/NN_topic.py`` (jupytext percent format); the
``.ipynb`` beside it is generated from it (``python scripts/sync_lessons.py``) with outputs
stripped, so learners can open it directly. Fast mode (TINYRWKV_FAST=1) shrinks sizes and steps.
"""
import os
import re
import pathlib
import time

import pytest

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
BUDGET_S = 180           # per notebook in fast mode on a 2-core machine


def test_every_lesson_source_has_its_notebook():
    sources = {p.stem for p in LESSONS.glob("[0-9][0-9]_*.py")}
    notebooks = {p.stem for p in NOTEBOOKS}
    assert sources == notebooks, f"unpaired lessons: {sorted(sources ^ notebooks)} (run scripts/sync_lessons.py)"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(nb_path):
    jupytext = pytest.importorskip("jupytext")
    src = jupytext.read(nb_path.with_suffix(".py"))
    nb = jupytext.read(nb_path)
    strip = lambda book: [(c.cell_type, c.source.strip()) for c in book.cells]  # noqa: E731
    assert strip(nb) == strip(src), f"{nb_path.name} is out of date: run python scripts/sync_lessons.py"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{nb_path.name} has outputs committed"


@pytest.mark.slow
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(nb_path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(nb_path, as_version=4)
    env_before = dict(os.environ)
    os.environ["TINYRWKV_FAST"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["TINYRWKV_FIGURES_DIR"] = str(tmp_path)       # lessons never overwrite figures/ in tests
    try:
        client = nbclient.NotebookClient(nb, timeout=BUDGET_S, kernel_name="python3",
                                         resources={"metadata": {"path": str(LESSONS)}})
        t0 = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    print(f"{nb_path.name}: {elapsed:.1f} s")
    assert elapsed < BUDGET_S


def test_links_between_lessons_point_to_real_notebooks():
    missing = []
    for src in LESSONS.glob("[0-9][0-9]_*.py"):
        for target in set(re.findall(r"\(([0-9][0-9]_[A-Za-z0-9_]+\.ipynb)\)", src.read_text())):
            if not (LESSONS / target).exists():
                missing.append(f"{src.name} -> {target}")
    assert not missing, f"links to lessons that do not exist: {missing}"

