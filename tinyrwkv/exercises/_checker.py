"""The machinery behind every self-check a lesson calls, e.g. ``check.lstm_cell(my_lstm_cell)``.

A check runs the learner's function on fixed inputs, compares with the reference in tinyrwkv,
and says in one line what is wrong (a shape, a value, an exception). It never raises, so a
notebook keeps running; it returns a ``CheckResult`` that is truthy when the answer is right.

Writing a check (one per exercise, in ``tinyrwkv/exercises/lessonNN_topic.py``):

    @exercise("02")
    def lstm_cell(fn):
        h, c = fn(x, h0, c0, ...)
        expect_shape("h", h, (2, 4))
        expect_close("h", h, reference_h, mistakes={
            "h = o * tanh(c): squash the cell before the output gate.": h_without_tanh,
        })

The decorator registers the check under its function name (``EXERCISES``) together with its
lesson number; solutions live in ``lessons/solutions/NN_*.py`` under the same name.

The helpers a check raises through (each fails with a ``CheckFailed`` the learner reads):

    expect_shape(what, got, shape)              exactly this shape
    expect_close(what, got, want, mistakes=...) this value; a wrong answer equal to a known mistake's
                                                result fails with that mistake's message instead
    expect_tuple(out, n, names)                 a tuple (or list) of n values, named in the message
    expect_true(cond, message)                  anything else
    matches(got, want)                          the test behind expect_close, as a bool, for a check
                                                that spots a mistake in its own way
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# name -> (lesson number "NN", the wrapped check)
EXERCISES: dict[str, tuple[str, object]] = {}


class CheckFailed(Exception):
    """Raised inside a check with a message for the learner."""


@dataclass
class CheckResult:
    name: str
    ok: bool
    message: str
    printed: bool = False      # already printed by a verbose check: Jupyter need not show it again

    def __bool__(self):
        return self.ok

    def __str__(self):
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.message}"

    def __repr__(self):
        return str(self)

    def _ipython_display_(self):
        """Jupyter shows a cell's last value; a verbose check has already printed its line."""
        if not self.printed:
            print(self)


def exercise(lesson: str):
    """Registers a check for lesson ``lesson`` and turns every failure into a CheckResult."""

    def wrap(check):
        @functools.wraps(check)
        def run(fn, *args, verbose=True, **kwargs):
            name = check.__name__
            try:
                check(fn, *args, **kwargs)
                result = CheckResult(name, True, "correct, well done.")
            except NotImplementedError:
                result = CheckResult(name, False, "not implemented yet: replace `raise NotImplementedError` with your code.")
            except CheckFailed as e:
                result = CheckResult(name, False, str(e))
            except Exception as e:  # the learner's code crashed: say where, briefly
                result = CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
            if verbose:
                print(result)
                result.printed = True
            return result

        if check.__name__ in EXERCISES:
            raise RuntimeError(f"exercise {check.__name__!r} is registered twice")
        EXERCISES[check.__name__] = (lesson, run)
        return run

    return wrap


def expect_shape(what: str, got, shape: tuple):
    """Fails unless ``got`` is an array of exactly ``shape``."""
    got_shape = np.shape(got)
    if tuple(got_shape) != tuple(shape):
        raise CheckFailed(f"{what} should have shape {tuple(shape)}, but has shape {tuple(got_shape)}.")


def matches(got, want, atol=1e-6, rtol=1e-5) -> bool:
    """True when ``got`` has ``want``'s shape, is finite, and is close to it (np.allclose)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return (got.shape == want.shape and bool(np.all(np.isfinite(got)))
            and bool(np.allclose(got, want, atol=atol, rtol=rtol)))


def expect_close(what: str, got, want, atol=1e-6, rtol=1e-5, mistakes: dict | None = None):
    """Fails unless arrays match in shape and value; the message shows where they differ most.

    mistakes: message -> the answer a typical mistake gives, or a list of such answers that share
    the message. When ``got`` is wrong but matches one of them, the failure names that mistake
    (``"{what} is wrong: {message}"``) instead of pointing at an index.
    """
    if mistakes and not matches(got, want, atol, rtol):
        for message, wrong in mistakes.items():
            for candidate in (wrong if isinstance(wrong, list) else [wrong]):
                if matches(got, candidate, atol, rtol):
                    raise CheckFailed(f"{what} is wrong: {message}")
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    expect_shape(what, got, want.shape)
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{what} contains NaN or inf (an overflow? a division by zero?).")
    err = np.abs(got - want)
    if not np.all(err <= atol + rtol * np.abs(want)):
        i = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        raise CheckFailed(f"{what} is wrong: at index {tuple(int(j) for j in i)} you have {got[i]:.6g}, "
                          f"expected {want[i]:.6g} (max abs error {err.max():.3g}).")


def expect_tuple(out, n: int, names: str):
    """Fails unless ``out`` is a tuple (or list) of ``n`` values; ``names`` lists them for the message."""
    expect_true(isinstance(out, (tuple, list)) and len(out) == n,
                f"return a tuple of {n} arrays ({names}), got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))


def expect_true(cond: bool, message: str):
    """Fails with ``message`` unless ``cond``."""
    if not cond:
        raise CheckFailed(message)
