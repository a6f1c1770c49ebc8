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

Answers that merely hand back tinyrwkv's own code fail. ``@exercise("06", library=(...))`` names the
library functions whose result the exercise asks for ("tinyrwkv.kernels.wkv_numpy:stable_step",
"tinyrwkv.models.rnn:RecurrentLayer.cell"). A learner's function that IS one of them (directly, through
functools.wraps / partial, as a bound method, or as a copy sharing its code object) fails at once; while the learner's function runs,
every place it could reach them through (the attribute of every loaded tinyrwkv module or class that
holds them, and the function's own globals, closure cells and default arguments) holds a poisoned stand-in,
so calling through fails with "this calls tinyrwkv's own X; write it yourself".

Every result is also written, as one JSON line {"exercise", "lesson", "ok", "message"}, to the file
named by $TINYRWKV_CHECK_LOG when it is set: that is how ``tinyrwkv grade`` collects a notebook's
results from the kernel that ran it.

The helpers a check raises through (each fails with a ``CheckFailed`` the learner reads):

    expect_shape(what, got, shape)              exactly this shape
    expect_close(what, got, want, mistakes=...) this value; a wrong answer equal to a known mistake's
                                                result fails with that mistake's message instead, any
                                                other wrong answer with the property it breaks (sign,
                                                scale, normalisation, a shift in time, transposed axes,
                                                order, dtype, overflow ...: see ``diagnose``)
    expect_tuple(out, n, names)                 a tuple (or list) of n values, named in the message
    expect_true(cond, message)                  anything else
    matches(got, want)                          the test behind expect_close, as a bool, for a check
                                                that spots a mistake in its own way
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

# name -> (lesson number "NN", the wrapped check)
EXERCISES: dict[str, tuple[str, object]] = {}


class CheckFailed(Exception):
    """Raised inside a check with a message for the learner."""


class LibraryCalled(BaseException):
    """Raised by a poisoned stand-in when the learner's function calls the library's answer. A
    BaseException, so that a learner's ``except Exception`` cannot swallow it."""


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


LOG_ENV = "TINYRWKV_CHECK_LOG"


def _log(result: CheckResult, lesson: str):
    """Appends the result as a JSON line to $TINYRWKV_CHECK_LOG (for ``tinyrwkv grade``), if set."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"exercise": result.name, "lesson": lesson, "ok": result.ok,
                                "message": result.message}) + "\n")
    except OSError:
        pass            # the check's printed line is still there; grading then reports the missing record


def exercise(lesson: str, library: tuple = ()):
    """Registers a check for lesson ``lesson`` and turns every failure into a CheckResult.

    library: "module:attribute" paths (attribute may be "Class.method") of the tinyrwkv code that
    computes this exercise's answer; handing it over, or calling it, fails (see the module docstring).
    """

    def wrap(check):
        @functools.wraps(check)
        def run(fn, *args, verbose=True, **kwargs):
            name = check.__name__
            calls = []
            try:
                own = _library_identity(fn, library)
                if own:
                    raise CheckFailed(f"this is tinyrwkv's own {own}; write it yourself.")
                check(_guarded(fn, library, calls) if library else fn, *args, **kwargs)
                if calls:
                    raise LibraryCalled(calls[0])
                result = CheckResult(name, True, "correct, well done.")
            except LibraryCalled as e:
                result = CheckResult(name, False, f"this calls tinyrwkv's own {e.args[0]}; write it yourself.")
            except NotImplementedError:
                result = CheckResult(name, False, "not implemented yet: replace `raise NotImplementedError` with your code.")
            except CheckFailed as e:
                result = CheckResult(name, False, str(e))
            except Exception as e:  # the learner's code crashed: say where, briefly
                result = CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
            if calls and result.ok is False and "tinyrwkv's own" not in result.message:
                result = CheckResult(name, False, f"this calls tinyrwkv's own {calls[0]}; write it yourself.")
            _log(result, lesson)
            if verbose:
                print(result)
                result.printed = True
            return result

        if check.__name__ in EXERCISES:
            raise RuntimeError(f"exercise {check.__name__!r} is registered twice")
        run.library = tuple(library)
        EXERCISES[check.__name__] = (lesson, run)
        return run

    return wrap


# --------------------------------------------------------------------------- the library's own answer


def _resolve(path: str):
    """"module:Attr.attr" -> (owner, name, object), or None while the module is not imported yet (a
    learner's function cannot have reached a module nobody imported; lazy ones like wkv_cuda are
    resolved at each call of the learner's function, by which time the check has imported them)."""
    module_name, _, attr = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    *owners, name = attr.split(".")
    owner = module
    for part in owners:
        owner = getattr(owner, part)
    obj = vars(owner).get(name) if isinstance(owner, type) else getattr(owner, name, None)
    return None if obj is None else (owner, name, obj)


def _targets(library):
    """[(label, owner, name, object)] of the library paths resolvable now."""
    out = []
    for path in library:
        found = _resolve(path)
        if found:
            out.append((path.replace(":", "."),) + found)
    return out


def _unwrap_chain(fn):
    """fn, and everything it wraps: functools.partial's func, __wrapped__ (functools.wraps), __func__."""
    seen, chain = set(), []
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        chain.append(fn)
        fn = (fn.func if isinstance(fn, functools.partial) else
              getattr(fn, "__wrapped__", None) or getattr(fn, "__func__", None))
    return chain


def _library_identity(fn, library) -> str | None:
    """The label of the library function ``fn`` is (or wraps), else None."""
    if not library:
        return None
    objs, codes = {}, {}
    for label, _, _, obj in _targets(library):
        for o in _faces(obj):
            objs[id(o)] = label
            if getattr(o, "__code__", None) is not None:
                codes[id(o.__code__)] = label          # a copy made with types.FunctionType(f.__code__, ...)
    for f in _unwrap_chain(fn):
        if id(f) in objs:
            return objs[id(f)]
        if id(getattr(f, "__code__", None)) in codes:
            return codes[id(f.__code__)]
    return None


def _faces(obj):
    """obj, and the plain function inside a classmethod or staticmethod (what getattr hands out)."""
    inner = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else None
    return (obj, inner) if inner is not None else (obj,)


def _stand_in(label, calls):
    def poisoned(*args, **kwargs):
        calls.append(label)
        raise LibraryCalled(label)
    poisoned.__name__ = poisoned.__qualname__ = f"poisoned_{label.rsplit('.', 1)[-1]}"
    return poisoned


@contextmanager
def _poisoned(fn, library, calls):
    """While active, every route from ``fn`` to a library function leads to a stand-in that records
    the call and raises LibraryCalled: module and class attributes across the loaded tinyrwkv
    modules, and ``fn``'s (and what it wraps') globals, closure cells and default arguments."""
    targets = _targets(library)
    by_id, by_code = {}, {}
    for label, _, _, obj in targets:
        stand_in = by_id[id(obj)] = _stand_in(label, calls)
        for o in _faces(obj):
            by_id[id(o)] = stand_in
            if getattr(o, "__code__", None) is not None:
                by_code[id(o.__code__)] = stand_in

    def poison(value):
        if id(value) in by_id:
            return by_id[id(value)]
        func = getattr(value, "__func__", None)           # a bound method of a library function
        if func is not None and id(func) in by_id:
            return by_id[id(func)]
        code = getattr(value, "__code__", None)           # a copy of one, sharing its code object
        return by_code.get(id(code)) if code is not None else None

    undo = []
    for _, owner, name, obj in targets:                   # the defining class or module
        undo.append((setattr, owner, name, obj))
        setattr(owner, name, by_id[id(obj)])
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "tinyrwkv" or module_name.startswith("tinyrwkv.")):
            continue
        for name, value in list(vars(module).items()):
            bad = poison(value)
            if bad is not None:
                undo.append((setattr, module, name, value))
                setattr(module, name, bad)
    for f in _unwrap_chain(fn):
        for g in _functions_reached(f):
            for name, value in list(g.__globals__.items()):
                bad = poison(value)
                if bad is not None:
                    undo.append((dict.__setitem__, g.__globals__, name, value))
                    g.__globals__[name] = bad
            for cell in g.__closure__ or ():
                try:
                    bad = poison(cell.cell_contents)
                except ValueError:                        # an empty cell
                    continue
                if bad is not None:
                    undo.append((setattr, cell, "cell_contents", cell.cell_contents))
                    cell.cell_contents = bad
            if g.__defaults__ and any(poison(d) is not None for d in g.__defaults__):
                undo.append((setattr, g, "__defaults__", g.__defaults__))
                g.__defaults__ = tuple(poison(d) or d for d in g.__defaults__)
            if g.__kwdefaults__ and any(poison(d) is not None for d in g.__kwdefaults__.values()):
                undo.append((setattr, g, "__kwdefaults__", g.__kwdefaults__))
                g.__kwdefaults__ = {k: poison(d) or d for k, d in g.__kwdefaults__.items()}
    try:
        yield
    finally:
        for setter, owner, name, value in reversed(undo):
            setter(owner, name, value)


def _functions_reached(f, depth=2):
    """f itself (a plain function, or the __call__ of a callable object) and the plain functions held
    in its closure cells, ``depth`` levels deep: where a call-through could be hidden."""
    if isinstance(f, types.MethodType):
        f = f.__func__
    if not isinstance(f, types.FunctionType):
        f = getattr(type(f), "__call__", None)
        if not isinstance(f, types.FunctionType):
            return []
    found, todo = [f], [(f, 0)]
    while todo:
        g, d = todo.pop()
        if d >= depth:
            continue
        for cell in g.__closure__ or ():
            try:
                c = cell.cell_contents
            except ValueError:
                continue
            if (isinstance(c, types.FunctionType) and c not in found
                    and not (c.__module__ or "").startswith("tinyrwkv")):
                found.append(c)
                todo.append((c, d + 1))
    return found


def _guarded(fn, library, calls):
    """fn, run with the library poisoned (see _poisoned) each time the check calls it."""
    def guarded(*args, **kwargs):
        with _poisoned(fn, library, calls):
            return fn(*args, **kwargs)
    return guarded


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


def expect_close(what: str, got, want, atol=1e-6, rtol=1e-5, mistakes: dict | None = None, time_axis=None):
    """Fails unless arrays match in shape and value.

    mistakes: message -> the answer a typical mistake gives, or a list of such answers that share
    the message. When ``got`` is wrong but matches one of them, the failure names that mistake
    (``"{what} is wrong: {message}"``). Any other wrong answer fails naming the property it breaks
    (``diagnose``; ``time_axis`` is the axis of ``want`` that runs over time steps, if any), then
    where it differs most.
    """
    if mistakes and not matches(got, want, atol, rtol):
        for message, wrong in mistakes.items():
            for candidate in (wrong if isinstance(wrong, list) else [wrong]):
                if matches(got, candidate, atol, rtol):
                    raise CheckFailed(f"{what} is wrong: {message}")
    got_dtype = np.asarray(got).dtype
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{what} should have shape {want.shape}, but has shape {got.shape}"
                          + _shape_hint(got.shape, want.shape) + ".")
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{what} contains NaN or inf (stability: an overflow in exp()? a division by zero?).")
    err = np.abs(got - want)
    if not np.all(err <= atol + rtol * np.abs(want)):
        i = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        prop = diagnose(got, want, got_dtype, time_axis=time_axis)
        raise CheckFailed(f"{what} is wrong" + (f" ({prop})" if prop else "") + ": "
                          f"at index {tuple(int(j) for j in i)} you have {got[i]:.6g}, "
                          f"expected {want[i]:.6g} (max abs error {err.max():.3g}).")


def _shape_hint(got: tuple, want: tuple) -> str:
    """Why two shapes differ, in words, when a common cause explains it."""
    if len(got) == len(want) and sorted(got) == sorted(want):
        return ": the right sizes in the wrong order (transposed axes?)"
    if len(got) == len(want) + 1 and 1 in got and tuple(d for d in got if d != 1) == tuple(d for d in want if d != 1):
        return ": an extra axis of size 1 (squeeze it, or index [0])"
    if len(got) + 1 == len(want) and tuple(d for d in want if d != 1) == tuple(d for d in got if d != 1):
        return ": an axis of size 1 is missing (keepdims? a batch axis?)"
    if len(got) == len(want):
        off = [(a, b) for a, b in zip(got, want) if a != b]
        if len(off) == 1 and abs(off[0][0] - off[0][1]) == 1:
            return ": one axis is off by one (a step too many or too few? the first or last position dropped?)"
    if len(got) < len(want):
        return ": did you sum or average over an axis that should stay?"
    return ""


def diagnose(got, want, got_dtype=None, time_axis=None) -> str | None:
    """Which property of the expected answer ``got`` (same shape, finite) breaks, in a few words, or None.

    Tried in order: an integer dtype, the sign, a constant factor (scale / normalisation), rows that
    should sum to 1, a shift by one step along ``time_axis`` (one step late or early), right up to some
    step and wrong after it (the carried state), transposed axes, the right numbers in the wrong places
    (order), and an error too small to be a formula mistake (precision).
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.max(np.abs(want))) or 1.0
    close = lambda a, b: a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-6 * scale))  # noqa: E731
    if got_dtype is not None and np.issubdtype(got_dtype, np.integer) and not np.allclose(want, np.round(want)):
        return f"dtype: your result has integer dtype {got_dtype}, which cuts off fractions; compute in floats"
    if np.any(np.abs(want) > 1e-9 * scale) and close(got, -want):
        return "sign: you have exactly the negative of the expected values"
    ww = float(np.sum(want * want))
    if ww > 0:
        c = float(np.sum(got * want)) / ww
        if not np.isclose(c, 1.0) and abs(c) > 1e-12 and close(got, c * want):
            return (f"scale: yours is the expected answer times {c:.4g} everywhere (a missing or extra factor, "
                    f"a wrong normalisation?)")
    if want.ndim >= 1 and want.shape[-1] > 1 and np.all(want >= 0) and np.allclose(want.sum(-1), 1.0):
        sums = got.sum(-1)
        if not np.allclose(sums, 1.0, atol=1e-6):
            return (f"normalisation: each row along the last axis should sum to 1 (a distribution); yours sum "
                    f"to {np.round(np.ravel(sums)[:3], 4).tolist()}{'...' if np.size(sums) > 3 else ''}")
    if time_axis is not None and want.ndim and want.shape[time_axis] > 1:
        g, w_ = np.moveaxis(got, time_axis, 0), np.moveaxis(want, time_axis, 0)
        if close(g[1:], w_[:-1]):
            return "off by one in time: your value at step t is the expected value at step t-1 (one step late)"
        if close(g[:-1], w_[1:]):
            return ("off by one in time: your value at step t is the expected value at step t+1 (one step early; "
                    "causality: step t may use tokens up to t only)")
        ok = [close(g[t], w_[t]) for t in range(len(w_))]
        if ok[0] and not all(ok):
            first = ok.index(False)
            return (f"right for steps 0..{first - 1}, wrong from step {first} on: look at what you carry from "
                    f"one step to the next (the state)")
        if not ok[0] and all(ok[1:]):
            return "wrong only at the first step: the initial state (or the first position) is handled wrongly"
    if got.ndim == 2 and got.shape[0] == got.shape[1] and close(got.T, want):
        return "axes: yours is the transpose of the expected answer"
    if got.size > 1 and close(np.sort(got, axis=None), np.sort(want, axis=None)):
        return "order: the right numbers in the wrong places (an index, axis or reshape mistake?)"
    rel = float(np.max(np.abs(got - want))) / scale
    if rel < 1e-3:
        return (f"precision: close (relative error {rel:.1e}) but not within tolerance: float32 somewhere, "
                f"or an approximation?")
    return None


def expect_tuple(out, n: int, names: str):
    """Fails unless ``out`` is a tuple (or list) of ``n`` values; ``names`` lists them for the message."""
    expect_true(isinstance(out, (tuple, list)) and len(out) == n,
                f"return a tuple of {n} arrays ({names}), got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))


def expect_true(cond: bool, message: str):
    """Fails with ``message`` unless ``cond``."""
    if not cond:
        raise CheckFailed(message)
