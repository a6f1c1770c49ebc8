"""WKV-5/6 in plain NumPy: the reference the numba and cuda backends are tested against.

RWKV-5 ("Eagle") replaced RWKV-4's per-channel numerator/denominator pair with a **matrix state
per head**. Channels are cut into H heads of N channels; each head keeps an N x N matrix S that
sums outer products of keys and values, like linear attention, and reads it with the receptance:

    y_t[j]   = sum_i r_t[i] ( S[i, j] + u[i] k_t[i] v_t[j] )        read: the past + a bonus for now
    S[i, j] <- w_t[i] S[i, j] + k_t[i] v_t[j]                       write: decay, then add k v^T

S is indexed S[key i, value j] (the layout of BlinkDL's ``rwkv`` package, torch code). w is the
per-step decay FACTOR in (0, 1), one per key channel: row i of S fades by w[i] each step.
u ("time_faaaa") is the bonus for the current token, the matrix form of RWKV-4's time_first.
There is no denominator and no running max: r, k and the decay are bounded in these versions
(w < 1, and the model normalises the output per head with a GroupNorm), so the sums stay finite.

RWKV-5 and RWKV-6 differ only in where w comes from:

    v5  w = exp(-exp(time_decay))                 constant in time: (H, N)
    v6  w_t = exp(-exp(time_decay + lora(x_t)))   data-dependent: (B, T, H, N), a decay per token

so ONE recurrence serves both; ``forward`` accepts either shape of w.

Signatures shared by the backends (numpy, numba, cuda):

    y, S = forward(r, k, v, w, u, state=None)
        r, k, v: (B, T, H, N); w: (B, T, H, N) (v6) or (H, N) (v5); u: (H, N)
        state: None (the empty state: zeros) or S (B, H, N, N); y: (B, T, H, N), S after step T-1
    y, S = step(r, k, v, w, u, state=None)
        one decoding step: r, k, v: (B, H, N); w: (B, H, N) or (H, N); same S

The input state is never modified. State size per layer: H * N * N numbers per sequence,
N times RWKV-4's (5 vectors of C = H * N).
"""
from __future__ import annotations

import numpy as np


def empty_state(B, H, N, dtype=np.float32):
    """The empty WKV-5/6 state (no past): zeros (B, H, N, N), indexed [b, h, key i, value j]."""
    return np.zeros((B, H, N, N), dtype)


def starting_state(state, B, H, N, dtype):
    """A fresh C-contiguous (B, H, N, N) state of ``dtype`` a backend may update in place:
    zeros when ``state`` is None, else a copy (the caller's array is never modified)."""
    if state is None:
        return empty_state(B, H, N, dtype)
    return np.array(state, dtype=dtype, order="C")


def check_inputs(r, k, v, w, u, state=None, fn="wkv6.forward", step=False):
    """Validates shapes for every backend; messages name the function, the argument and both shapes.

    Sequence form (step=False): r, k, v (B, T, H, N), w (B, T, H, N) or (H, N), u (H, N).
    Step form (step=True): r, k, v (B, H, N), w (B, H, N) or (H, N). state: None or (B, H, N, N).
    Returns the shape of r: (B, T, H, N) or (B, H, N).
    """
    form = "(B, H, N)" if step else "(B, T, H, N)"
    ndim = 3 if step else 4
    if np.ndim(r) != ndim:
        raise ValueError(f"{fn}: r must be {form}, got {np.shape(r)}")
    shape = np.shape(r)
    H, N = shape[-2:]
    for name, a in (("k", k), ("v", v)):
        if np.shape(a) != shape:
            raise ValueError(f"{fn}: {name} must be {form} = {shape} like r, got {np.shape(a)}")
    if np.shape(w) not in (shape, (H, N)):
        raise ValueError(f"{fn}: w must be {form} = {shape} (v6: a decay per token) or (H, N) = "
                         f"({H}, {N}) (v5: constant), got {np.shape(w)}")
    if np.shape(u) != (H, N):
        raise ValueError(f"{fn}: u must be (H, N) = ({H}, {N}), got {np.shape(u)}")
    if state is not None and np.shape(state) != (shape[0], H, N, N):
        raise ValueError(f"{fn}: state must be (B, H, N, N) = ({shape[0]}, {H}, {N}, {N}), got {np.shape(state)}")
    return shape


def step_math(r, k, v, w, u, S):
    """One step of the recurrence for all (b, h) at once, the equations of the module docstring.

    r, k, v, w: (B, H, N) (w may also be (H, N)); u: (H, N); S: (B, H, N, N). Returns (y (B, H, N), S').
    """
    kv = k[..., :, None] * v[..., None, :]                          # (B, H, N, N): k v^T
    y = np.einsum("bhi,bhij->bhj", r, S + u[..., :, None] * kv)     # (B, H, N)
    return y, w[..., :, None] * S + kv


def forward(r, k, v, w, u, state=None):
    """WKV-5/6 over a sequence (shapes in the module docstring). Returns y (B, T, H, N) and S (B, H, N, N)."""
    B, T, H, N = check_inputs(r, k, v, w, u, state, fn="wkv6.forward")
    S = starting_state(state, B, H, N, r.dtype)
    y = np.empty((B, T, H, N), r.dtype)
    per_step = np.ndim(w) == 4
    for t in range(T):
        y[:, t], S = step_math(r[:, t], k[:, t], v[:, t], w[:, t] if per_step else w, u, S)
    return y, S


def step(r, k, v, w, u, state=None):
    """One decoding step for B sequences: r, k, v (B, H, N) -> y (B, H, N) and the new S (B, H, N, N).

    Equal to ``forward`` with T = 1; ``state`` None is the empty state; the input is not modified.
    """
    B, H, N = check_inputs(r, k, v, w, u, state, fn="wkv6.step", step=True)
    S = empty_state(B, H, N, r.dtype) if state is None else np.asarray(state, r.dtype)
    return step_math(r, k, v, w, u, S)                  # builds a new S: the input stays as it was
