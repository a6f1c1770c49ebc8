"""The checks of lessons 06 (attention to RWKV), 08 (kernels) and 09 (cost and memory) catch plausible
mistakes, and say which.

``tests/test_exercises.py`` proves that solutions pass and blanks fail; here each exercise gets
wrong answers a learner might write (no bonus u, an off-by-one distance, the bonus in the state,
a shift the wrong way, ReLU instead of squared ReLU, a floor instead of a ceiling, keys without
values in the KV cache ...), and the check must fail with a message that points at the mistake.
"""
import numpy as np

from exercise_checks import fails_with
from tinyrwkv.exercises import check


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- lesson 06


def wkv_variant(distance_offset=1, bonus=True, normalise=True, sign=1.0):
    def fn(w, u, k, v):
        y = np.empty(len(k))
        for t in range(len(k)):
            i = np.arange(t)
            past = np.exp((t - distance_offset - i) * sign * w + k[:t])
            now = np.exp((u if bonus else 0.0) + k[t])
            num = past @ v[:t] + now * v[t]
            y[t] = num / (past.sum() + now) if normalise else num
        return y
    return fn


def test_wkv_one_channel_catches_mistakes():
    assert check.wkv_one_channel(wkv_variant(), verbose=False).ok
    fails_with(check.wkv_one_channel, wkv_variant(bonus=False), "bonus u")
    fails_with(check.wkv_one_channel, wkv_variant(distance_offset=0), "(t-1-i)")
    fails_with(check.wkv_one_channel, wkv_variant(normalise=False), "denominator")
    fails_with(check.wkv_one_channel, wkv_variant(sign=-1.0), "already negative")
    fails_with(check.wkv_one_channel, lambda w, u, k, v: wkv_variant()(w, u, k, v)[:-1], "shape")


def stable_step_variant(bonus_in_state=False, decay=True, output_after_update=False, stable=True):
    def fn(w, u, k, v, aa, bb, pp):
        if not stable:                                   # the textbook recurrence, no running max
            a, b = aa * np.exp(pp), bb * np.exp(pp)
            y = (a + np.exp(u + k) * v) / (b + np.exp(u + k))
            return y, np.exp(w) * a + np.exp(k) * v, np.exp(w) * b + np.exp(k), np.zeros_like(pp)
        ww = pp + (w if decay else 0)
        kk = k + (u if bonus_in_state else 0)
        p = np.maximum(ww, kk)
        e1, e2 = np.exp(ww - p), np.exp(kk - p)
        new = (e1 * aa + e2 * v, e1 * bb + e2, p)
        if output_after_update:
            return (new[0] / new[1],) + new
        q = np.maximum(pp, u + k)
        f1, f2 = np.exp(pp - q), np.exp(u + k - q)
        return ((f1 * aa + f2 * v) / (f1 * bb + f2),) + new
    return fn


def test_wkv_stable_step_catches_mistakes():
    assert check.wkv_stable_step(stable_step_variant(), verbose=False).ok
    with np.errstate(over="ignore", invalid="ignore"):
        fails_with(check.wkv_stable_step, stable_step_variant(stable=False), "overflow", "max")
    fails_with(check.wkv_stable_step, stable_step_variant(bonus_in_state=True), "bonus u is for the output only")
    fails_with(check.wkv_stable_step, stable_step_variant(decay=False), "decay")
    fails_with(check.wkv_stable_step, stable_step_variant(output_after_update=True), "compute y first")
    fails_with(check.wkv_stable_step, lambda *a: stable_step_variant()(*a)[:3], "tuple")


def test_rwkv_token_shift_catches_mistakes():
    fails_with(check.rwkv_token_shift, lambda x, xp: np.concatenate([np.zeros_like(xp)[:, None], x[:, :-1]], 1),
               "not zeros")
    fails_with(check.rwkv_token_shift, lambda x, xp: np.concatenate([x[:, 1:], xp[:, None]], 1), "wrong way")
    fails_with(check.rwkv_token_shift, lambda x, xp: np.roll(x, 1, axis=1), "np.roll")
    fails_with(check.rwkv_token_shift, lambda x, xp: x, "nothing was shifted")
    fails_with(check.rwkv_token_shift, lambda x, xp: np.concatenate([xp[:, None], x], 1), "shape")


def channel_mix_variant(act=lambda z: np.maximum(z, 0) ** 2, gate=sigmoid, swap_mu=False, shift=True):
    def fn(x, x_prev, mu_k, mu_r, W_k, W_r, W_v):
        xx = np.concatenate([x_prev[None], x[:-1]], 0) if shift else x
        a, b = (xx, x) if swap_mu else (x, xx)
        xk, xr = mu_k * a + (1 - mu_k) * b, mu_r * a + (1 - mu_r) * b
        return gate(xr @ W_r.T) * (act(xk @ W_k.T) @ W_v.T)
    return fn


def test_rwkv_channel_mix_catches_mistakes():
    assert check.rwkv_channel_mix(channel_mix_variant(), verbose=False).ok
    fails_with(check.rwkv_channel_mix, channel_mix_variant(act=lambda z: np.maximum(z, 0)), "squared")
    fails_with(check.rwkv_channel_mix, channel_mix_variant(gate=lambda r: 1.0), "receptance")
    fails_with(check.rwkv_channel_mix, channel_mix_variant(swap_mu=True), "other way round")
    fails_with(check.rwkv_channel_mix, channel_mix_variant(shift=False), "no token shift")
    fails_with(check.rwkv_channel_mix, channel_mix_variant(act=np.tanh), "is wrong")


# --------------------------------------------------------------------------- lesson 08


def thread_variant(stable=True, reset_state=False, write_all_b=False, skip_last=False):
    def fn(b, c, w, u, k, v, y):
        aa, bb, pp = 0.0, 0.0, -1e38
        T = k.shape[1] - (1 if skip_last else 0)
        for t in range(T):
            if reset_state:
                aa, bb, pp = 0.0, 0.0, -1e38
            kt, vt = k[b, t, c], v[b, t, c]
            if stable:
                q = max(pp, u[c] + kt)
                e1, e2 = np.exp(pp - q), np.exp(u[c] + kt - q)
                out = (e1 * aa + e2 * vt) / (e1 * bb + e2)
                q = max(pp + w[c], kt)
                e1, e2 = np.exp(pp + w[c] - q), np.exp(kt - q)
                aa, bb, pp = e1 * aa + e2 * vt, e1 * bb + e2, q
            else:                                        # true sums: e^90 overflows float32
                now = np.exp(u[c] + kt)
                out = (aa + now * vt) / (bb + now)
                aa, bb = np.exp(w[c]) * aa + np.exp(kt) * vt, np.exp(w[c]) * bb + np.exp(kt)
            if write_all_b:
                y[:, t, c] = out
            else:
                y[b, t, c] = out
    return fn


def test_wkv_thread_catches_mistakes():
    assert check.wkv_thread(thread_variant(), verbose=False).ok
    fails_with(check.wkv_thread, thread_variant(stable=False), "overflow")
    fails_with(check.wkv_thread, thread_variant(write_all_b=True), "outside")
    fails_with(check.wkv_thread, thread_variant(skip_last=True), "unwritten")
    fails_with(check.wkv_thread, thread_variant(reset_state=True), "y is wrong")
    fails_with(check.wkv_thread, lambda b, c, w, u, k, v, y: None, "unwritten")


def test_max_trick_add_catches_mistakes():
    with np.errstate(over="ignore", invalid="ignore"):
        fails_with(check.max_trick_add, lambda m1, p1, m2, p2: (m1 * np.exp(p1) + m2 * np.exp(p2), 0 * p1), "overflow")
        p_min = lambda m1, p1, m2, p2: (m1 * np.exp(p1 - np.minimum(p1, p2)) + m2, np.minimum(p1, p2))  # noqa: E731
        fails_with(check.max_trick_add, p_min, "larger exponent")
        fails_with(check.max_trick_add, lambda m1, p1, m2, p2: (m1 + m2, np.maximum(p1, p2)), "different units")
        fails_with(check.max_trick_add,
                   lambda m1, p1, m2, p2: (m1 + m2 * np.exp(p2 - np.maximum(p1, p2)), np.maximum(p1, p2)),
                   "rescale m1")
        fails_with(check.max_trick_add,
                   lambda m1, p1, m2, p2: (m1 * np.exp(p1 - np.maximum(p1, p2)) + m2, np.maximum(p1, p2)),
                   "rescale m2")
        flipped = lambda m1, p1, m2, p2: (m1 * np.exp(np.maximum(p1, p2) - p1)  # noqa: E731
                                          + m2 * np.exp(np.maximum(p1, p2) - p2), np.maximum(p1, p2))
        fails_with(check.max_trick_add, flipped, "never e^p1 or e^(p - p1)")
    fails_with(check.max_trick_add, lambda m1, p1, m2, p2: m1, "tuple")


def test_launch_grid_catches_mistakes():
    fails_with(check.launch_grid, lambda B, C, tpb: (B * C // tpb, tpb), "round up")
    fails_with(check.launch_grid, lambda B, C, tpb: ((C + tpb - 1) // tpb, tpb), "pair")
    fails_with(check.launch_grid, lambda B, C, tpb: (B * C // tpb + 1, tpb), "more than needed")
    fails_with(check.launch_grid, lambda B, C, tpb: (tpb, (B * C + tpb - 1) // tpb), "swapped")
    fails_with(check.launch_grid, lambda B, C, tpb: ((B * C + 31) // 32, 32), "threads per block")
    fails_with(check.launch_grid, lambda B, C, tpb: (B * C + tpb - 1) // tpb, "tuple")


# --------------------------------------------------------------------------- lesson 09


def states(**override):
    def fn(L, C, T):
        out = {"rnn": L * C, "lstm": 2 * L * C, "gpt_kv_cache": 2 * L * T * C, "rwkv": 5 * L * C}
        out.update({k: v(L, C, T) for k, v in override.items()})
        return out
    return fn


def test_state_floats_catches_mistakes():
    assert check.state_floats(states(), verbose=False).ok
    fails_with(check.state_floats, states(lstm=lambda L, C, T: L * C), "cell c")
    fails_with(check.state_floats, states(gpt_kv_cache=lambda L, C, T: L * T * C), "key and a value")
    fails_with(check.state_floats, states(gpt_kv_cache=lambda L, C, T: 2 * T * C), "every layer")
    fails_with(check.state_floats, states(rwkv=lambda L, C, T: 4 * L * C), "five vectors")
    fails_with(check.state_floats, states(rwkv=lambda L, C, T: 3 * L * C), "token shifts")
    fails_with(check.state_floats, states(rwkv=lambda L, C, T: 5 * L * C * T), "does not grow")
    fails_with(check.state_floats, lambda L, C, T: {"rnn": L * C}, "keys")


def flops(gpt=lambda L, C, T: 2 * L * (12 * C * C + 2 * T * C), rwkv=lambda L, C, T: 2 * L * 13 * C * C):
    return lambda L, C, T: {"gpt_kv_cache": gpt(L, C, T), "rwkv": rwkv(L, C, T)}


def test_flops_per_token_catches_mistakes():
    assert check.flops_per_token(flops(), verbose=False).ok
    fails_with(check.flops_per_token, flops(gpt=lambda L, C, T: L * (12 * C * C + 2 * T * C)), "2 flops")
    fails_with(check.flops_per_token, flops(gpt=lambda L, C, T: 2 * L * 12 * C * C), "attends to all t cached")
    fails_with(check.flops_per_token, flops(gpt=lambda L, C, T: 2 * L * (12 * C * C + T * C)), "weighted sum")
    fails_with(check.flops_per_token, flops(gpt=lambda L, C, T: 2 * L * (12 * C * C + 2 * T * T * C)),
               "does not redo")
    fails_with(check.flops_per_token, flops(gpt=lambda L, C, T: 2 * L * (5 * C * C + 2 * T * C)), "ffn")
    fails_with(check.flops_per_token, flops(rwkv=lambda L, C, T: 2 * L * 12 * C * C), "receptance")
    fails_with(check.flops_per_token, flops(rwkv=lambda L, C, T: 2 * L * 13 * C * C * T), "does not depend on t")


def test_kv_cache_bytes_catches_mistakes():
    assert check.kv_cache_bytes(lambda L, C, T, b, n: 2 * L * T * C * b * n, verbose=False).ok
    fails_with(check.kv_cache_bytes, lambda L, C, T, b, n: L * T * C * b * n, "keys and values")
    fails_with(check.kv_cache_bytes, lambda L, C, T, b, n: 2 * L * T * C * n, "every sequence")
    fails_with(check.kv_cache_bytes, lambda L, C, T, b, n: 2 * L * T * C * b * n * 8, "bits")
    fails_with(check.kv_cache_bytes, lambda L, C, T, b, n: 2 * L * T * C * b, "bytes_per_float")
    fails_with(check.kv_cache_bytes, lambda L, C, T, b, n: "a lot", "number of bytes")
