"""Self-checks for the lessons' exercises.

    from tinyrwkv.exercises import check
    check.lstm_cell(my_lstm_cell)       # prints PASS/FAIL and what is wrong; returns a CheckResult

Each lesson's checks live in ``lessonNN_topic.py`` beside this file and register themselves with
``@exercise("NN")``; ``check`` collects them all by name. Solutions are kept apart, in
``lessons/solutions/``.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

from ._checker import EXERCISES, CheckFailed, CheckResult, exercise  # noqa: F401


def _load_all():
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("lesson"):
            importlib.import_module(f"{__name__}.{info.name}")
    return SimpleNamespace(**{name: run for name, (_, run) in EXERCISES.items()})


check = _load_all()
