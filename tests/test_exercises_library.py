"""No exercise can be passed by handing over tinyrwkv's own answer, or anything that merely calls it.

For every exercise and every library function it names (``run.library``): the function itself fails
("this is tinyrwkv's own ..."), and so does a right answer that calls it on the way (through a
closure, a module attribute, a global or a default argument: "this calls tinyrwkv's own ...").
The four answers of lessons 06-07 that exist in the library, handed over as a learner would, fail too.
"""
import functools
import importlib

import numpy as np
import pytest

from exercise_checks import load_solutions
from tinyrwkv.exercises import EXERCISES, check

CASES = [(name, path) for name, (_, run) in sorted(EXERCISES.items()) for path in run.library]


def resolve(path):
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_exercise_whose_answer_is_in_the_library_names_it():
    without = sorted(name for name, (lesson, run) in EXERCISES.items() if not run.library and lesson <= "11")
    # lessons 00-11: the two whose answers tinyrwkv does not contain as a function
    assert without == ["gru_hold_biases", "max_trick_add"]


@pytest.mark.parametrize("name,path", CASES, ids=[f"{n}-{p.split(':')[1]}" for n, p in CASES])
def test_library_function_and_a_call_through_fail(name, path):
    lesson, run = EXERCISES[name]
    target = resolve(path)
    result = run(target, verbose=False)
    assert not result.ok and "tinyrwkv's own" in result.message and "write it yourself" in result.message, result

    solution = getattr(load_solutions(lesson), name)

    def calls_through(*args, **kwargs):          # the library function held in a closure cell
        try:
            target(*args, **kwargs)
        except Exception:                        # a learner's try/except cannot hide the call
            pass
        return solution(*args, **kwargs)

    result = run(calls_through, verbose=False)
    assert not result.ok and "calls tinyrwkv's own" in result.message, result
    assert run(solution, verbose=False).ok          # and nothing stays poisoned afterwards


def test_call_through_a_module_attribute_a_global_and_a_default_fails():
    from tinyrwkv.kernels import wkv_numpy
    solution = load_solutions("06").wkv_stable_step

    def by_module(*a):
        return wkv_numpy.stable_step(*a)

    def by_default(*a, step=wkv_numpy.stable_step):
        return step(*a)

    for fn in (by_module, by_default, functools.partial(wkv_numpy.stable_step)):
        assert not check.wkv_stable_step(fn, verbose=False).ok
    g = {}
    exec("from tinyrwkv.kernels.wkv_numpy import stable_step\ndef mine(*a):\n    return stable_step(*a)\n", g)
    result = check.wkv_stable_step(g["mine"], verbose=False)
    assert not result.ok and "calls tinyrwkv's own tinyrwkv.kernels.wkv_numpy.stable_step" in result.message
    assert g["stable_step"] is wkv_numpy.stable_step                 # the learner's namespace is restored

    import types
    clone = types.FunctionType(wkv_numpy.stable_step.__code__, wkv_numpy.stable_step.__globals__, "mine")
    result = check.wkv_stable_step(clone, verbose=False)
    assert not result.ok and "is tinyrwkv's own" in result.message

    def via_clone(*a):
        return clone(*a)
    result = check.wkv_stable_step(via_clone, verbose=False)
    assert not result.ok and "calls tinyrwkv's own" in result.message
    assert check.wkv_stable_step(solution, verbose=False).ok


def test_the_issues_examples_lessons_06_and_07_fail():
    from tinyrwkv.experiments.decay_spectrum import half_life
    from tinyrwkv.generation import top_p_filter
    from tinyrwkv.kernels import wkv_numpy
    from tinyrwkv.models.rwkv import channel_mix, token_shift

    def channel_mix_adapter(x, x_prev, mu_k, mu_r, W_k, W_r, W_v):
        ffn = {"time_mix_k": mu_k, "time_mix_r": mu_r, "key.weight": W_k, "receptance.weight": W_r,
               "value.weight": W_v}
        return channel_mix(x[None], x_prev[None], ffn)[0][0]

    def wkv_adapter(w, u, k, v):
        return wkv_numpy.wkv_closed_form(np.array([w]), np.array([u]), k[None, :, None], v[None, :, None])[0, :, 0]

    for run, fn in ((check.wkv_stable_step, wkv_numpy.stable_step), (check.rwkv_token_shift, token_shift),
                    (check.rwkv_channel_mix, channel_mix_adapter), (check.wkv_one_channel, wkv_adapter),
                    (check.half_life, half_life), (check.top_p_filter, top_p_filter)):
        result = run(fn, verbose=False)
        assert not result.ok and "tinyrwkv's own" in result.message, result
