"""Self-checks for lesson 08 (WKV kernels: NumPy, @njit, numba.cuda).

    check.wkv_thread(fn)       the body of one CUDA thread, as a Python function of its (b, c)
    check.max_trick_add(fn)    m e^p = m1 e^p1 + m2 e^p2 without ever computing a huge e^p
    check.launch_grid(fn)      (blocks, threads per block) so that one thread covers each (b, c)

Each check compares the learner's function with tinyrwkv's own code (``kernels.wkv_numpy``,
``kernels.wkv_cuda.launch_config``) on fixed inputs; when the answer matches a typical mistake,
the message names the mistake. Nothing here imports numba until a check runs, so importing the
checks never decides for a notebook whether numba.cuda is the simulator.
"""
from __future__ import annotations

import numpy as np

from ..kernels import wkv_numpy
from ._checker import CheckFailed, expect_close, expect_shape, exercise

# --------------------------------------------------------------------------- 1. one thread's loop


@exercise("08", library=(
    "tinyrwkv.kernels.wkv_numpy:wkv_forward",
    "tinyrwkv.kernels.wkv_numpy:wkv_closed_form",
    "tinyrwkv.kernels.wkv_numpy:stable_step",
    "tinyrwkv.kernels.wkv_numpy:wkv_step",
    "tinyrwkv.kernels.wkv_numba:wkv_forward",
    "tinyrwkv.kernels.wkv_numba:_wkv_forward_kernel",
    "tinyrwkv.kernels.wkv_cuda:wkv_forward",
    "tinyrwkv.exercises.lesson06_attention_to_rwkv:_step_variant",
))
def wkv_thread(fn):
    """fn(b, c, w, u, k, v, y) -> None: writes y[b, :, c], the WKV of sequence b, channel c.

    The check "launches" fn once per (b, c) in a shuffled order, like a GPU would, on float32
    inputs whose keys are about 90 (e^90 overflows float32), and compares y with wkv_numpy.
    """
    rng = np.random.default_rng(8)
    B, T, C = 2, 9, 3
    w = -np.exp(rng.normal(size=C)).astype(np.float32)
    u = rng.normal(size=C).astype(np.float32)
    k = (rng.normal(size=(B, T, C)) + 90.0).astype(np.float32)
    v = rng.normal(size=(B, T, C)).astype(np.float32)
    want, _ = wkv_numpy.wkv_forward(w.astype(np.float64), u.astype(np.float64), k.astype(np.float64),
                                     v.astype(np.float64))
    UNWRITTEN = np.float32(12345.0)                          # a value no WKV output takes here
    y = np.full((B, T, C), UNWRITTEN, np.float32)
    pairs = [(b, c) for b in range(B) for c in range(C)]
    for j in rng.permutation(len(pairs)):                    # threads run in no particular order
        b, c = pairs[j]
        before = y.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            fn(b, c, w, u, k, v, y)
        mine = np.zeros((B, T, C), bool)
        mine[b, :, c] = True
        changed = ~((y == before) | (np.isnan(y) & np.isnan(before)))
        if np.any(changed & ~mine):
            raise CheckFailed(f"thread (b={b}, c={c}) wrote to y outside y[{b}, :, {c}]: a thread owns one "
                              "(batch, channel) pair and must write only there (other threads write the rest).")
        if np.any(y[b, :, c] == UNWRITTEN):
            raise CheckFailed(f"thread (b={b}, c={c}) left part of y[{b}, :, {c}] unwritten: write y[b, t, c] "
                              "at every t.")
    if not np.all(np.isfinite(y)):
        raise CheckFailed("y has inf or NaN: the keys here are about 90 and e^90 overflows float32. Keep the "
                          "state as (aa, bb, pp) and subtract the larger exponent before every exp().")
    expect_close("y", y, want, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- 2. the max trick


@exercise("08")
def max_trick_add(fn):
    """fn(m1, p1, m2, p2) -> (m, p): m e^p = m1 e^p1 + m2 e^p2 with p = max(p1, p2), elementwise."""
    p1 = np.array([0.0, 3.0, 800.0, -5.0, 1000.0, 2.0])
    p2 = np.array([1.0, 3.0, 790.0, 4.0, 1200.0, wkv_numpy.NEG_INF])   # the "empty" state's exponent
    m1 = np.array([0.5, -1.0, 2.0, 1.5, 0.25, 0.7])
    m2 = np.array([2.0, 4.0, -1.0, 0.5, 3.0, 9.0])
    p_want = np.maximum(p1, p2)
    m_want = m1 * np.exp(p1 - p_want) + m2 * np.exp(p2 - p_want)
    with np.errstate(over="ignore", invalid="ignore"):
        out = fn(m1.copy(), p1.copy(), m2.copy(), p2.copy())
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("return a tuple (m, p).")
    m, p = (np.asarray(a, np.float64) for a in out)
    expect_shape("m", m, m_want.shape)
    expect_shape("p", p, p_want.shape)
    if np.array_equal(p, np.minimum(p1, p2)):
        raise CheckFailed("p is wrong: p is the LARGER exponent, max(p1, p2), so that both e^(p_i - p) are <= 1.")
    if not np.all(np.isfinite(m)):
        raise CheckFailed("m has inf or NaN: e^800 overflows even float64. Every exp() must see a number <= 0: "
                          "compute only e^(p1 - p) and e^(p2 - p) with p = max(p1, p2), never e^p1 or e^(p - p1).")
    expect_close("p", p, p_want)
    expect_close("m", m, m_want, mistakes={
        "m1 and m2 are in different units (e^p1 and e^p2): bring both to units of e^p before adding":
            m1 + m2,
        "rescale m1 too: m = m1 e^(p1 - p) + m2 e^(p2 - p) (p1 is not always the larger one)":
            m1 + m2 * np.exp(p2 - p_want),
        "rescale m2 too: m = m1 e^(p1 - p) + m2 e^(p2 - p) (p2 is not always the smaller one)":
            m1 * np.exp(p1 - p_want) + m2,
    })


# --------------------------------------------------------------------------- 3. the launch grid


@exercise("08", library=(
    "tinyrwkv.kernels.wkv_cuda:launch_config",
))
def launch_grid(fn):
    """fn(B, C, threads_per_block) -> (blocks, threads_per_block): one thread per (b, c), the fewest blocks."""
    from ..kernels.wkv_cuda import launch_config            # imports numba.cuda only now

    for B, C, tpb in [(8, 768, 64), (1, 100, 64), (3, 5, 32), (2, 64, 128), (1, 1, 256)]:
        want = launch_config(B * C, tpb)
        got = fn(B, C, tpb)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed("return a tuple (blocks, threads_per_block).")
        blocks, threads = (int(x) for x in got)
        where = f"for B={B}, C={C}, threads_per_block={tpb}"
        if (blocks, threads) == want:
            continue
        if (threads, blocks) == want:
            raise CheckFailed(f"{where}: you swapped them; CUDA's launch is kernel[blocks, threads_per_block].")
        if threads != tpb:
            raise CheckFailed(f"{where}: threads per block is the number you were given ({tpb}), got {threads}.")
        if blocks * threads < B * C:
            hint = ("one thread per (batch, channel) PAIR: B * C threads in all, not C"
                    if blocks == -(-C // tpb) and B > 1 else
                    "round UP: the last block may be partly empty (those threads return at once), "
                    "but no pair may be left without a thread")
            raise CheckFailed(f"{where}: {blocks} blocks x {threads} threads = {blocks * threads} < B * C = "
                              f"{B * C} pairs: {hint}.")
        raise CheckFailed(f"{where}: {blocks} blocks is more than needed ({want[0]} = ceil(B * C / "
                          f"threads_per_block)): a whole block would start with nothing to do.")
