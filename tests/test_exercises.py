"""Every exercise's check is tested both ways: the solution passes, the blank fails.

Blanks are taken from the lessons themselves: cells tagged ``exercise`` in ``lessons/NN_*.py``
(the jupytext source of each notebook) define the learner's function with
``raise NotImplementedError``; solutions sit in ``lessons/solutions/NN_*.py`` under the same name.
"""
import re

import pytest

from exercise_checks import LESSONS, load_solutions
from tinyrwkv.exercises import EXERCISES


def lesson_sources():
    return sorted(p for p in LESSONS.glob("[0-9][0-9]_*.py"))


def exercise_cells(path):
    """Source of the cells tagged 'exercise' in a jupytext percent-format lesson."""
    text = path.read_text()
    cells = re.split(r"^# %%", text, flags=re.M)[1:]
    return [c.split("\n", 1)[1] for c in cells if re.match(r'[^\n]*tags=\[[^\]]*"exercise"', c)]


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes(name):
    lesson, check = EXERCISES[name]
    fn = getattr(load_solutions(lesson), name, None)
    assert fn is not None, f"lessons/solutions/{lesson}_*.py has no function {name!r}"
    result = check(fn, verbose=False)
    assert result.ok, str(result)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_not_implemented_fails_with_a_hint(name):
    def blank(*args, **kwargs):
        raise NotImplementedError

    result = EXERCISES[name][1](blank, verbose=False)
    assert not result.ok and "not implemented" in result.message


@pytest.mark.parametrize("path", lesson_sources(), ids=lambda p: p.stem)
def test_blanks_in_the_lesson_fail_their_checks(path):
    """Runs each exercise cell of the lesson with a recording ``check`` and re-checks what it defined."""
    lesson = path.name[:2]
    names = [n for n, (lsn, _) in EXERCISES.items() if lsn == lesson]
    assert len(names) >= 3, f"lesson {path.name} has {len(names)} registered exercises; the course promises 3+"
    calls = []

    class Recorder:
        def __getattr__(self, attr):
            return lambda fn, *a, **k: calls.append((attr, fn))

    for src in exercise_cells(path):
        ns = {"check": Recorder()}
        exec(compile("import numpy as np\n" + src, str(path), "exec"), ns)
    checked = {n for n, _ in calls}
    assert set(names) <= checked, f"{path.name}: exercises never called in an 'exercise' cell: {sorted(set(names) - checked)}"
    for attr, fn in calls:
        result = EXERCISES[attr][1](fn, verbose=False)
        assert not result.ok, f"{path.name}: the blank for {attr} already passes its check"
