"""Helpers shared by the exercise tests (``test_exercises*.py``).

* ``load_solutions(lesson)``: the module ``lessons/solutions/NN_*.py`` of lesson "NN".
* ``fails_with(check_fn, fn, *needles)``: ``check_fn`` rejects ``fn`` with a message that contains
  every needle (case-insensitive), i.e. it names the mistake ``fn`` makes.
* ``own_copy(f)``: a new function object running ``f``'s code, for tests that build wrong answers with a
  check's own helper (the helper itself is poisoned while a learner's function runs; a copy is not).
"""
import importlib.util
import pathlib
import types

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"
SOLUTIONS = LESSONS / "solutions"


def load_module(path: pathlib.Path):
    """Executes a Python file outside any package and returns it as a module."""
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_solutions(lesson: str):
    """The solutions of lesson ``lesson`` ("01"): ``lessons/solutions/01_*.py``, loaded as a module."""
    found = sorted(SOLUTIONS.glob(f"{lesson}_*.py"))
    assert found, f"no solutions file lessons/solutions/{lesson}_*.py for lesson {lesson}"
    return load_module(found[0])


def fails_with(check_fn, fn, *needles):
    """Runs ``check_fn(fn)`` quietly; it must fail, and its message must contain every needle."""
    result = check_fn(fn, verbose=False)
    assert not result.ok, f"{result.name} accepted a wrong answer"
    for needle in needles:
        assert needle.lower() in result.message.lower(), f"{result.name}: {needle!r} not in {result.message!r}"
    return result


def own_copy(f):
    """A distinct function object (with a distinct code object) running ``f``'s code, globals, defaults
    and closure: what a learner who retyped ``f`` would have."""
    code = f.__code__.replace(co_name=f.__code__.co_name)       # a new code object: not the library's
    assert code is not f.__code__
    g = types.FunctionType(code, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    return g
