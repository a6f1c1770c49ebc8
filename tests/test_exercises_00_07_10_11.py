"""The checks of lessons 00 (tour), 07 (the real RWKV), 10 (training) and 11 (side by side) catch
plausible mistakes, and say which.

``tests/test_exercises.py`` proves that solutions pass and blanks fail; here each exercise gets
wrong answers a learner might write, and the check must fail with a message that points at the
mistake (and accept a correct answer written differently from the solution).
"""
import numpy as np
import pytest

from exercise_checks import fails_with, load_solutions, own_copy
from tinyrwkv.exercises import check


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------- lesson 00


def test_char_encode_catches_mistakes():
    assert check.char_encode(lambda text, chars: [chars.index(c) for c in text], verbose=False).ok
    fails_with(check.char_encode, lambda text, chars: [chars.index(c) + 1 for c in text], "start at 0")
    fails_with(check.char_encode, lambda text, chars: [ord(c) for c in text], "ord")
    fails_with(check.char_encode, lambda text, chars: [sorted(chars).index(c) for c in text], "sorted copy")
    fails_with(check.char_encode, lambda text, chars: [chars.index(c) for c in text if c != " "], "ids")

    def lenient(text, chars):                       # skips unknown characters instead of raising
        return [chars.index(c) for c in text if c in chars]
    fails_with(check.char_encode, lenient, "raise ValueError")

    def wrong_error(text, chars):
        return [chars.index(c) if c in chars else {}[c] for c in text]
    fails_with(check.char_encode, wrong_error, "not KeyError")


def test_softmax_with_temperature_catches_mistakes():
    def good(z, tau):
        e = np.exp(z / tau - np.max(z / tau))
        return e / e.sum()
    assert check.softmax_with_temperature(good, verbose=False).ok
    fails_with(check.softmax_with_temperature, lambda z, tau: good(z * tau * tau, tau), "do not multiply")
    fails_with(check.softmax_with_temperature, lambda z, tau: good(z * tau, tau), "temperature is missing")
    fails_with(check.softmax_with_temperature, lambda z, tau: np.exp(z / tau - np.max(z / tau)), "sum to 1")
    fails_with(check.softmax_with_temperature, lambda z, tau: np.exp(z / tau) / np.exp(z / tau).sum(), "overflow")


def greedy_variant(keep_state=True, with_prompt=False, skip_last_prompt=False):
    def fn(step, state, prompt_ids, n_new):
        prompt = prompt_ids[:-1] if skip_last_prompt else prompt_ids
        for t in prompt:
            logits, new = step(t, state)
            state = new if keep_state else state
        out = []
        for _ in range(n_new):
            out.append(int(np.argmax(logits)))
            logits, new = step(out[-1], state)
            state = new if keep_state else state
        return list(prompt_ids) + out if with_prompt else out
    return fn


def test_greedy_generate_catches_mistakes():
    assert check.greedy_generate(greedy_variant(), verbose=False).ok
    fails_with(check.greedy_generate, greedy_variant(keep_state=False), "new state")
    fails_with(check.greedy_generate, greedy_variant(with_prompt=True), "not the prompt")
    fails_with(check.greedy_generate, greedy_variant(skip_last_prompt=True), "feed the prompt ids")
    fails_with(check.greedy_generate, lambda step, state, p, n: greedy_variant()(step, state, p, n)[:-1], "exactly")


# --------------------------------------------------------------------------- lesson 07


def test_half_life_catches_mistakes():
    assert check.half_life(lambda td: np.log(2) * np.exp(-np.asarray(td)), verbose=False).ok
    fails_with(check.half_life, lambda td: np.log(2) / np.abs(td), "w = -exp(time_decay)")
    fails_with(check.half_life, lambda td: 1 / np.exp(td), "factor e")
    fails_with(check.half_life, lambda td: np.log(2) * np.exp(td), "not ln 2 * (-w)")
    fails_with(check.half_life, lambda td: 1 / np.exp(td) * np.log2(2), "factor e")
    fails_with(check.half_life, lambda td: np.log10(2) / np.exp(td), "NATURAL log")
    fails_with(check.half_life, lambda td: np.log(2) / np.exp(td[:-1]), "shape")


def half_lives(td):
    return np.log(2) / np.exp(td)


def test_decay_summary_catches_mistakes():
    def good(td):
        h = half_lives(np.asarray(td))
        return np.column_stack([h.min(1), np.median(h, 1), h.max(1)])
    assert check.decay_summary(good, verbose=False).ok
    fails_with(check.decay_summary, lambda td: good(td).T, "one row per layer")
    fails_with(check.decay_summary, lambda td: good(np.asarray(td).T), "axis=1")
    fails_with(check.decay_summary, lambda td: good(td)[:, ::-1], "swapped")
    fails_with(check.decay_summary, lambda td: np.column_stack([td.min(1), np.median(td, 1), td.max(1)]),
               "not the raw time_decay")

    def mean_not_median(td):
        h = half_lives(td)
        return np.column_stack([h.min(1), h.mean(1), h.max(1)])
    fails_with(check.decay_summary, mean_not_median, "median, not the mean")


def top_p_variant(strict_stop=False, ascending=False, change_values=False):
    def fn(logits, p):
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(probs) if ascending else np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[cum <= p] if strict_stop else order[cum - probs[order] < p]
        out = np.full_like(logits, -np.inf)
        out[keep] = probs[keep] if change_values else logits[keep]
        return out
    return fn


def test_top_p_filter_catches_mistakes():
    assert check.top_p_filter(top_p_variant(), verbose=False).ok
    fails_with(check.top_p_filter, top_p_variant(strict_stop=True), "one token early")
    fails_with(check.top_p_filter, top_p_variant(ascending=True), "least likely")
    fails_with(check.top_p_filter, top_p_variant(change_values=True), "original logits")
    fails_with(check.top_p_filter, lambda logits, p: logits, "you kept tokens")


# --------------------------------------------------------------------------- lesson 10


def decay_init(layer_ratio=None, channel=None, reverse=False, as_w=False):
    def fn(layer, n_layer, C):
        r = layer / (n_layer - 1) if layer_ratio is None else layer_ratio(layer, n_layer)
        r = 1 - r if reverse else r
        x = np.arange(C) / (C - 1) if channel is None else channel(C)
        td = -5 + 8 * x ** (0.7 + 1.3 * r)
        return -np.exp(td) if as_w else td
    return fn


def test_rwkv4_time_decay_init_catches_mistakes():
    assert check.rwkv4_time_decay_init(decay_init(), verbose=False).ok
    fails_with(check.rwkv4_time_decay_init, decay_init(layer_ratio=lambda l, n: l / n), "layer / (n_layer - 1)")
    fails_with(check.rwkv4_time_decay_init, decay_init(channel=lambda C: np.arange(C) / C), "i / (C - 1)")
    fails_with(check.rwkv4_time_decay_init, decay_init(reverse=True), "grows with depth")
    fails_with(check.rwkv4_time_decay_init, decay_init(as_w=True), "w = -exp(time_decay)")
    fails_with(check.rwkv4_time_decay_init, lambda layer, n, C: decay_init()(layer, n, C + 1), "shape")


def gpt_count(biases=True, head=True, norm_f=True, layer_norms=True, positions=0):
    def fn(V, C, L, F_):
        per_layer = 4 * C * C + 2 * C * F_
        if biases:
            per_layer += 3 * C + C + F_ + C
        if layer_norms:
            per_layer += 4 * C
        total = V * C + L * per_layer + (2 * C if norm_f else 0) + positions
        if head:
            total += V * C + (V if biases else 0)
        return total
    return fn


def test_gpt_num_params_catches_mistakes():
    assert check.gpt_num_params(gpt_count(), verbose=False).ok
    fails_with(check.gpt_num_params, gpt_count(biases=False), "bias")
    fails_with(check.gpt_num_params, gpt_count(head=False), "no weight tying")
    fails_with(check.gpt_num_params, gpt_count(norm_f=False), "norm_f")
    fails_with(check.gpt_num_params, gpt_count(layer_norms=False), "two LayerNorms")

    def norms_without_bias(V, C, L, F_):
        return gpt_count()(V, C, L, F_) - 2 * L * C - C
    fails_with(check.gpt_num_params, norms_without_bias, "bias as well as a weight")
    fails_with(check.gpt_num_params, gpt_count(positions=1024 * 8), "too many")
    fails_with(check.gpt_num_params, lambda *a: float(gpt_count()(*a)), "return an int")


def adam_variant(bias_correction=True, sqrt=True, eps_inside=False, t_offset=0, return_p_only=False):
    def fn(p, g, m, v, t, lr, b1, b2, eps):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        tt = t + t_offset
        m_hat = m / (1 - b1 ** tt) if bias_correction else m
        v_hat = v / (1 - b2 ** tt) if bias_correction else v
        denom = np.sqrt(v_hat + eps) if eps_inside else (np.sqrt(v_hat) if sqrt else v_hat) + eps
        p = p - lr * m_hat / denom
        return p if return_p_only else (p, m, v)
    return fn


def test_adam_update_catches_mistakes():
    assert check.adam_update(adam_variant(), verbose=False).ok
    fails_with(check.adam_update, adam_variant(bias_correction=False), "m_hat = m / (1 - beta1^t)")
    fails_with(check.adam_update, adam_variant(sqrt=False), "square root")
    fails_with(check.adam_update, adam_variant(eps_inside=True), "eps goes outside")
    fails_with(check.adam_update, adam_variant(t_offset=-1), "divide by zero", "1 - beta^t")
    fails_with(check.adam_update, adam_variant(t_offset=1), "beta^t")
    fails_with(check.adam_update, adam_variant(return_p_only=True), "tuple (p, m, v)")


# --------------------------------------------------------------------------- lesson 11


def count_variant(count_ints=False, count_arrays=False, rwkv_first_field_only=False):
    def fn(state):
        if isinstance(state, np.ndarray):
            return 1 if count_arrays else int(state.size)
        if isinstance(state, (int, np.integer)):
            return 1 if count_ints else 0
        if isinstance(state, dict):
            return sum(fn(v) for v in state.values())
        if isinstance(state, (list, tuple)):
            return sum(fn(v) for v in state)
        if hasattr(state, "FIELDS"):
            fields = state.FIELDS[:1] if rwkv_first_field_only else state.FIELDS
            return sum(fn(getattr(state, f)) for f in fields)
        return 0
    return fn


def test_count_state_floats_catches_mistakes():
    assert check.count_state_floats(count_variant(), verbose=False).ok
    fails_with(check.count_state_floats, count_variant(count_ints=True), "position")
    fails_with(check.count_state_floats, count_variant(count_arrays=True), "array.size")
    fails_with(check.count_state_floats, count_variant(rwkv_first_field_only=True), "FIELDS")
    fails_with(check.count_state_floats, lambda s: float(count_variant()(s)), "return an int")
    fails_with(check.count_state_floats, lambda s: 4 * count_variant()(s), "that is bytes")


def crossover_variant(cache_factor=2, rwkv_factor=5, ties_count=False):
    def fn(gl, gd, rl, rd):
        rwkv = rwkv_factor * rl * rd
        t = 1
        while not (cache_factor * gl * t * gd >= rwkv if ties_count else cache_factor * gl * t * gd > rwkv):
            t += 1
        return t
    return fn


def test_kv_crossover_length_catches_mistakes():
    assert check.kv_crossover_length(crossover_variant(), verbose=False).ok
    fails_with(check.kv_crossover_length, crossover_variant(ties_count=True), "LARGER")
    fails_with(check.kv_crossover_length, crossover_variant(cache_factor=1), "key AND a value")
    fails_with(check.kv_crossover_length, crossover_variant(rwkv_factor=4), "five vectors")
    fails_with(check.kv_crossover_length, lambda *a: crossover_variant()(*a) + 1, "expected t =")


def test_teacher_forced_loss_catches_mistakes():
    def good(logits, ids):
        return float(-log_softmax(logits)[np.arange(len(ids) - 1), ids[1:]].mean())
    assert check.teacher_forced_loss(good, verbose=False).ok
    fails_with(check.teacher_forced_loss, lambda z, ids: -log_softmax(z)[np.arange(len(ids)), ids].mean(), "NEXT token")
    fails_with(check.teacher_forced_loss, lambda z, ids: -z[np.arange(len(ids) - 1), ids[1:]].mean(), "log_softmax")
    fails_with(check.teacher_forced_loss, lambda z, ids: -log_softmax(z)[np.arange(len(ids) - 1), ids[1:]].sum(),
               "do not sum")
    fails_with(check.teacher_forced_loss,
               lambda z, ids: -log_softmax(z)[np.arange(len(ids) - 1), ids[1:]].sum() / len(ids), "t < T-1")
    fails_with(check.teacher_forced_loss, lambda z, ids: -log_softmax(z)[np.arange(len(ids) - 1), ids[1:]],
               "one number")


# --------------------------------------------------------------------------- lesson 10: WKV backward, one step

S10 = load_solutions("10")


def backward_step_with(**mistake):
    """The solution with one mistake switched on (the knobs of the check's own variant, on a copy of it)."""
    from tinyrwkv.exercises import lesson10_training

    variant = own_copy(lesson10_training._step_backward_variant)

    def fn(*args):
        g = variant(*args, **mistake)
        return tuple(g[n] for n in ("gw", "gu", "gk", "gv", "ga_prev", "gb_prev"))
    return fn


@pytest.mark.parametrize("mistake,needles", [
    (dict(denominator=False), ("gu (dl/du) is wrong", "enters the denominator")),
    (dict(state_in_gk=False), ("gk (dl/dk) is wrong", "second term f2 (ga v + gb)")),
    (dict(bonus_in_state=True), ("gu (dl/du) is wrong", "bonus of the output only")),
    (dict(gw_new_state=True), ("gw (dl/dw) is wrong", "multiplies the old state")),
    (dict(carry=False), ("ga_prev", "add the carried gradient")),
    (dict(gb_sign=1.0), ("gb_prev", "negative")),
])
def test_wkv_backward_step_names_the_wrong_gradient_and_the_mistake(mistake, needles):
    fails_with(check.wkv_backward_step, backward_step_with(**mistake), *needles)


def test_wkv_backward_step_other_failures():
    def unscaled(w, u, k, v, aa, bb, pp, gy, ga, gb):       # right, but e^pp and e^(u+k) taken directly
        e1, e2 = np.exp(pp), np.exp(u + k)                    # (no max subtracted: overflows past ~709)
        den = e1 * bb + e2
        y = (e1 * aa + e2 * v) / den
        p_new = np.maximum(pp + w, k)
        f1, f2 = np.exp(pp + w - p_new), np.exp(k - p_new)
        g = gy / den
        gu = g * e2 * (v - y)
        return (f1 * (ga * aa + gb * bb), gu, gu + f2 * (ga * v + gb), g * e2 + f2 * ga, f1 * ga + g * e1,
                f1 * gb - g * e1 * y)
    fails_with(check.wkv_backward_step, unscaled, "near 800", "stability")
    fails_with(check.wkv_backward_step, lambda *a: S10.wkv_backward_step(*a)[:5], "tuple (gw, gu, gk, gv")

    def gv_off(*a):
        out = list(S10.wkv_backward_step(*a))
        out[3] = out[3] * 1.5
        return tuple(out)
    fails_with(check.wkv_backward_step, gv_off, "gv (dl/dv) is wrong", "scale")


def test_wkv_backward_step_chained_over_time_is_wkv_backward():
    """The one-step solution, run from t = T-1 down to 0 with the states of a forward sweep, gives
    exactly tinyrwkv's wkv_backward: the exercise's gradient is the library's, one step at a time."""
    from tinyrwkv.kernels import wkv_numpy

    rng = np.random.default_rng(5)
    B, T, C = 2, 6, 4
    w, u = -np.exp(rng.normal(size=C)), rng.normal(size=C)
    k, v, gy = rng.normal(size=(3, B, T, C))
    states = [wkv_numpy.initial_state(B, C, np.float64)]
    for t in range(T):
        _, *state = wkv_numpy.stable_step(w, u, k[:, t], v[:, t], *states[-1])
        states.append(tuple(state))
    gw, gu, gk, gv = np.zeros(C), np.zeros(C), np.zeros((B, T, C)), np.zeros((B, T, C))
    ga, gb = np.zeros((B, C)), np.zeros((B, C))
    for t in range(T - 1, -1, -1):
        aa, bb, pp = states[t]
        dw, du, gk[:, t], gv[:, t], ga, gb = S10.wkv_backward_step(w, u, k[:, t], v[:, t], aa, bb, pp, gy[:, t],
                                                                   ga, gb)
        gw, gu = gw + dw.sum(0), gu + du.sum(0)
    want = wkv_numpy.wkv_backward(w, u, k, v, gy)
    for got, ref in zip((gw, gu, gk, gv), want):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- lesson 11: predict, then measure

S11 = load_solutions("11")


def predicted(**wrong):
    def fn(kind, L, C, T):
        return wrong[kind](L, C, T) if kind in wrong else S11.predict_state_bytes(kind, L, C, T)
    return fn


@pytest.mark.parametrize("fn,needle", [
    (lambda kind, L, C, T: S11.predict_state_bytes(kind, L, C, T) // 4, "number of floats"),
    (lambda kind, L, C, T: S11.predict_state_bytes(kind, L, C, T) * 2, "not 8"),
    (predicted(rwkv=lambda L, C, T: 16 * L * C), "FIVE vectors"),
    (predicted(rwkv=lambda L, C, T: 20 * L * C * T), "does not grow with T"),
    (predicted(gpt=lambda L, C, T: 4 * L * T * C), "key AND a value"),
    (predicted(gpt=lambda L, C, T: 8 * L * (T - 1) * C), "off by one in time"),
    (predicted(gpt=lambda L, C, T: 8 * T * C), "every layer has its own cache"),
    (predicted(lstm=lambda L, C, T: 4 * L * C), "h AND the cell c"),
    (predicted(lstm=lambda L, C, T: 8 * C), "every layer carries"),
    (predicted(lstm=lambda L, C, T: 7), "measured state holds"),
    (lambda kind, L, C, T: 1.5, "return an int"),
])
def test_predict_state_bytes_catches(fn, needle):
    fails_with(check.predict_state_bytes, fn, needle)
