"""The checks of lesson 12 (after RWKV-4) catch plausible mistakes and say which, and refuse
tinyrwkv's own functions handed in (or called) as the answer.

``tests/test_exercises.py`` proves that solutions pass and blanks fail; here each exercise gets
wrong answers a learner might write (no token shifts, one matrix per layer, the bonus in the state,
a transposed outer product, reading after the update, RWKV-6's decay in RWKV-7 ...)."""
import numpy as np

from exercise_checks import fails_with, load_solutions
from tinyrwkv.exercises import check
from tinyrwkv.experiments.after_rwkv4 import state_floats
from tinyrwkv.kernels import wkv6_numpy, wkv7_numpy

solutions = load_solutions("12")


def per_version(v5to7=lambda L, C, N: L * (2 * C + C * N), v4=lambda L, C, N: 5 * L * C):
    return lambda L, C, N: {"rwkv4": v4(L, C, N), "rwkv5": v5to7(L, C, N), "rwkv6": v5to7(L, C, N),
                            "rwkv7": v5to7(L, C, N)}


def test_state_per_version_catches_mistakes():
    assert check.state_per_version(per_version(), verbose=False).ok
    fails_with(check.state_per_version, per_version(lambda L, C, N: L * C * N), "token-shift")
    fails_with(check.state_per_version, per_version(lambda L, C, N: L * (2 * C + N * N)), "per head")
    fails_with(check.state_per_version, per_version(lambda L, C, N: L * (2 * C + C * C)), "not one c x c")
    fails_with(check.state_per_version, per_version(lambda L, C, N: L * (3 * C + C * N)), "no denominator")
    fails_with(check.state_per_version, per_version(v4=lambda L, C, N: 3 * L * C), "five vectors")
    fails_with(check.state_per_version, lambda L, C, N: {"rwkv4": 1}, "keys")
    fails_with(check.state_per_version, lambda L, C, N: {k: state_floats(7 if k != "rwkv4" else 4, L, C, N)
                                                         for k in ("rwkv4", "rwkv5", "rwkv6", "rwkv7")},
               "tinyrwkv's own")


def wkv6_variant(bonus_in_state=False, read_after=False, decay_after_add=False, transposed=False,
                 decay_on_values=False):
    def fn(r, k, v, w, u, S):
        kv = np.outer(v, k) if transposed else np.outer(k, v)
        decay = w[None, :] if decay_on_values else w[:, None]
        new = decay * (S + kv) if decay_after_add else decay * S + kv
        if bonus_in_state:
            new = new + u[:, None] * kv
        return (r @ new if read_after else r @ (S + u[:, None] * kv)), new
    return fn


def test_wkv6_head_step_catches_mistakes():
    assert check.wkv6_head_step(wkv6_variant(), verbose=False).ok
    fails_with(check.wkv6_head_step, wkv6_variant(bonus_in_state=True), "never enters the state")
    fails_with(check.wkv6_head_step, wkv6_variant(decay_after_add=True), "then add")
    fails_with(check.wkv6_head_step, wkv6_variant(transposed=True), "[key, value]")
    fails_with(check.wkv6_head_step, wkv6_variant(decay_on_values=True), "row i")
    fails_with(check.wkv6_head_step, wkv6_variant(read_after=True), "before this token's update")

    def in_place(r, k, v, w, u, S):
        y, new = solutions.wkv6_head_step(r, k, v, w, u, S)
        S[...] = new
        return y, S
    fails_with(check.wkv6_head_step, in_place, "in place")


def test_wkv6_head_step_refuses_the_library():
    fails_with(check.wkv6_head_step, wkv6_numpy.step, "tinyrwkv's own")

    def through_the_kernel(r, k, v, w, u, S):
        y, S2 = wkv6_numpy.step(*(x[None, None] for x in (r, k, v, w)), u[None], S[None, None])
        return y[0, 0], S2[0, 0]
    fails_with(check.wkv6_head_step, through_the_kernel, "write it yourself")


def delta_variant(sa_after_decay=False, read_before=False, transposed=False, sab_transposed=False, no_decay=False):
    def fn(r, w, k, v, a, b, S):
        decayed = S if no_decay else S * w[None, :]
        sa = (decayed if sa_after_decay else S) @ a
        new = decayed + (np.outer(b, sa) if sab_transposed else np.outer(sa, b)) + \
            (np.outer(k, v) if transposed else np.outer(v, k))
        return (S if read_before else new) @ r, new
    return fn


def test_delta_rule_step_catches_mistakes():
    assert check.delta_rule_step(delta_variant(), verbose=False).ok
    fails_with(check.delta_rule_step, delta_variant(sa_after_decay=True), "before the decay")
    fails_with(check.delta_rule_step, delta_variant(transposed=True), "[value, key]")
    fails_with(check.delta_rule_step, delta_variant(sab_transposed=True), "np.outer(sa, b)")
    fails_with(check.delta_rule_step, delta_variant(no_decay=True), "decay first")
    fails_with(check.delta_rule_step, delta_variant(read_before=True), "after this token's update")


def test_delta_rule_step_refuses_the_library():
    fails_with(check.delta_rule_step, wkv7_numpy.step, "tinyrwkv's own")

    def through_the_kernel(r, w, k, v, a, b, S):
        y, S2 = wkv7_numpy.forward(*(x[None, None, None] for x in (r, w, k, v, a, b)), S[None, None])
        return y[0, 0, 0], S2[0, 0]
    fails_with(check.delta_rule_step, through_the_kernel, "write it yourself")


def test_rwkv7_decay_catches_mistakes():
    sig = lambda z: 1 / (1 + np.exp(-z))                                      # noqa: E731
    assert check.rwkv7_decay(lambda z: np.exp(-np.exp(-0.5) * sig(z)), verbose=False).ok
    fails_with(check.rwkv7_decay, lambda z: np.exp(-np.exp(z)), "rwkv-6's decay")
    fails_with(check.rwkv7_decay, lambda z: np.exp(-sig(z)), "scaled by e^{-1/2}")
    fails_with(check.rwkv7_decay, sig, "not the sigmoid itself")
    fails_with(check.rwkv7_decay, lambda z: np.exp(-0.5 * sig(z)), "not 1/2")
