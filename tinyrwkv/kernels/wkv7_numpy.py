"""WKV-7 in plain NumPy: the reference the numba and cuda backends are tested against, and the
backward that lets a tiny RWKV-7 train.

RWKV-7 ("Goose") keeps RWKV-5/6's matrix state per head but changes how it is written. A decayed
sum (v5/v6: S <- w S + k v^T) can only ADD to what is stored; RWKV-7 first REMOVES part of what
the state currently returns for a key, then writes the new value: a generalised **delta rule**,
the update of an online least-squares learner, with a per-channel in-context learning rate.

Per head, with S indexed S[value i, key j] (the layout of the RWKV-7 paper and BlinkDL's
``rwkv7.cu``) and all vectors of length N:

    sa[i]    = sum_j S[i, j] a[j]                                 what S returns for the "key" a
    S[i, j] <- S[i, j] w[j]  +  sa[i] b[j]  +  v[i] k[j]          decay, correct, write
    y[i]     = sum_j S[i, j] r[j]                                 read with the receptance

In the model a = -kk and b = kk * iclr, with kk a unit-length key and iclr in (0, 1) the
in-context learning rate, so the update is

    S <- S diag(w) - (S kk) (kk * iclr)^T + v k^T

i.e. (with w = 1, iclr = 1, k = kk) S <- S (I - kk kk^T) + v kk^T: the old value stored under kk
is replaced by v, exactly. Keeping a and b general (any vectors) is what the kernels do; the
"delta rule" is what the model puts in. w is the per-step decay FACTOR in (0, 1) per key channel
(in the model w = exp(-e^{-1/2} sigmoid(.)), so w > 0.545). The output uses the state AFTER the
update (no separate bonus u: the model adds its own "r k" term outside the kernel).

Signatures shared by the backends (numpy, numba, cuda):

    y, S = forward(r, w, k, v, a, b, state=None)
        r, w, k, v, a, b: (B, T, H, N); state: None (zeros) or S (B, H, N, N) [b, h, value i, key j]
        y: (B, T, H, N) and S after step T-1. The input state is not modified.
    y, S = step(r, w, k, v, a, b, state=None)          one step: the six inputs (B, H, N)
    gr, gw, gk, gv, ga, gb = backward(r, w, k, v, a, b, gy, state=None)
        gradients of L = sum(y * gy) for y = forward(r, w, k, v, a, b, state)[0], each (B, T, H, N)
        (the starting state is a constant: training starts from the empty state)

Backward: the recurrence run backwards, with dS carried
--------------------------------------------------------
Write S for the state entering step t and S' for the state leaving it. Let dS' = dL/dS', the
gradient arriving from the steps after t (zeros after the last step). Step t's output adds its
own part, y = S' r:

    dS'[i, j] += gy[i] r[j]                       and  gr[j] = sum_i S'[i, j] gy[i]

then S' = S diag(w) + sa b^T + v k^T with sa = S a gives, term by term,

    gw[j]  = sum_i dS'[i, j] S[i, j]              the decay scales the old state
    gk[j]  = sum_i dS'[i, j] v[i]                 v k^T
    gv[i]  = sum_j dS'[i, j] k[j]
    gb[j]  = sum_i dS'[i, j] sa[i]                sa b^T
    dsa[i] = sum_j dS'[i, j] b[j]
    ga[j]  = sum_i dsa[i] S[i, j]                 sa = S a
    dS[i, j] = dS'[i, j] w[j] + dsa[i] a[j]       what flows on to step t-1

Every line is a matrix-vector product or an outer product, the transposes of the forward's.
The backward needs S entering each step, so a forward sweep stores them first: T x (B, H, N, N)
numbers, N times what RWKV-4's backward stores; fine for the tiny models trained here (BlinkDL's
training kernel stores one state per 16 steps and steps back from it instead).
"""
from __future__ import annotations

import numpy as np

from . import wkv6_numpy

INPUT_NAMES = ("r", "w", "k", "v", "a", "b")


# The state is the same (B, H, N, N) array as WKV-5/6's (zeros when empty, copied before a backend
# updates it in place); WKV-7 reads it as [b, h, value i, key j].
empty_state, starting_state = wkv6_numpy.empty_state, wkv6_numpy.starting_state


def check_inputs(r, w, k, v, a, b, state=None, gy=None, fn="wkv7.forward", step=False):
    """Validates shapes for every backend; messages name the function, the argument and both shapes.

    Sequence form: the six inputs (and gy) (B, T, H, N); step form (step=True): (B, H, N).
    state: None or (B, H, N, N). Returns the shape of r.
    """
    form = "(B, H, N)" if step else "(B, T, H, N)"
    if np.ndim(r) != (3 if step else 4):
        raise ValueError(f"{fn}: r must be {form}, got {np.shape(r)}")
    shape = np.shape(r)
    named = list(zip(INPUT_NAMES, (r, w, k, v, a, b))) + ([("gy", gy)] if gy is not None else [])
    for name, x in named:
        if np.shape(x) != shape:
            raise ValueError(f"{fn}: {name} must be {form} = {shape} like r, got {np.shape(x)}")
    B, H, N = shape[0], shape[-2], shape[-1]
    if state is not None and np.shape(state) != (B, H, N, N):
        raise ValueError(f"{fn}: state must be (B, H, N, N) = ({B}, {H}, {N}, {N}), got {np.shape(state)}")
    return shape


def step_math(r, w, k, v, a, b, S):
    """One step for all (b, h) at once, the three lines of the module docstring.

    r, w, k, v, a, b: (B, H, N); S: (B, H, N, N). Returns (y (B, H, N), S'); S is not modified.
    """
    sa = np.einsum("bhij,bhj->bhi", S, a)                               # (B, H, N)
    S = S * w[..., None, :] + sa[..., :, None] * b[..., None, :] + v[..., :, None] * k[..., None, :]
    return np.einsum("bhij,bhj->bhi", S, r), S


def forward(r, w, k, v, a, b, state=None):
    """WKV-7 over a sequence (shapes in the module docstring). Returns y (B, T, H, N) and S (B, H, N, N)."""
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, fn="wkv7.forward")
    S = starting_state(state, B, H, N, r.dtype)
    y = np.empty((B, T, H, N), r.dtype)
    for t in range(T):
        y[:, t], S = step_math(r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t], S)
    return y, S


def step(r, w, k, v, a, b, state=None):
    """One decoding step: the six inputs (B, H, N) -> y (B, H, N) and the new S (B, H, N, N).

    Equal to ``forward`` with T = 1; ``state`` None is the empty state; the input is not modified.
    """
    B, H, N = check_inputs(r, w, k, v, a, b, state, fn="wkv7.step", step=True)
    S = empty_state(B, H, N, r.dtype) if state is None else np.asarray(state, r.dtype)
    return step_math(r, w, k, v, a, b, S)


def backward(r, w, k, v, a, b, gy, state=None):
    """Gradients of L = sum(y * gy), y = forward(r, w, k, v, a, b, state)[0].

    All inputs and gy: (B, T, H, N); state: None (empty) or (B, H, N, N), held constant.
    Returns gr, gw, gk, gv, ga, gb, each (B, T, H, N). Derivation in the module docstring;
    use float64 for gradient checks.
    """
    B, T, H, N = check_inputs(r, w, k, v, a, b, state, gy=gy, fn="wkv7.backward")
    # Forward sweep: saved[t] = the state entering step t; saved[T] = the final state.
    saved = np.empty((T + 1, B, H, N, N), r.dtype)
    saved[0] = starting_state(state, B, H, N, r.dtype)
    for t in range(T):
        _, saved[t + 1] = step_math(r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t], saved[t])

    grads = [np.empty((B, T, H, N), r.dtype) for _ in INPUT_NAMES]
    gr, gw, gk, gv, ga, gb = grads
    dS = np.zeros((B, H, N, N), r.dtype)                 # dL/dS after the last step: nothing follows
    for t in reversed(range(T)):
        S, S_out = saved[t], saved[t + 1]                                # entering, leaving step t
        gy_t = gy[:, t]
        gr[:, t] = np.einsum("bhij,bhi->bhj", S_out, gy_t)              # y = S' r
        dS = dS + gy_t[..., :, None] * r[:, t][..., None, :]
        sa = np.einsum("bhij,bhj->bhi", S, a[:, t])
        gw[:, t] = np.einsum("bhij,bhij->bhj", dS, S)
        gk[:, t] = np.einsum("bhij,bhi->bhj", dS, v[:, t])
        gv[:, t] = np.einsum("bhij,bhj->bhi", dS, k[:, t])
        gb[:, t] = np.einsum("bhij,bhi->bhj", dS, sa)
        dsa = np.einsum("bhij,bhj->bhi", dS, b[:, t])
        ga[:, t] = np.einsum("bhij,bhi->bhj", S, dsa)
        dS = dS * w[:, t][..., None, :] + dsa[..., :, None] * a[:, t][..., None, :]
    return gr, gw, gk, gv, ga, gb
