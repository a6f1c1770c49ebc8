"""Solutions to lesson 06's exercises (from attention to AFT to RWKV).

Each function has the name of its check: ``check.wkv_one_channel(wkv_one_channel)`` passes.
"""
import numpy as np


def wkv_one_channel(w, u, k, v):
    """wkv_t = (sum_{i<t} e^{(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (the same weights, summed). k, v (T,) -> (T,)."""
    T = len(k)
    y = np.empty(T)
    for t in range(T):
        i = np.arange(t)
        past = np.exp((t - 1 - i) * w + k[:t])           # (t,): older tokens decay by e^w per step
        now = np.exp(u + k[t])                           # the current token, with its bonus u
        y[t] = (past @ v[:t] + now * v[t]) / (past.sum() + now)
    return y


def wkv_stable_step(w, u, k, v, aa, bb, pp):
    """One step of the stable recurrence; every array (C,). Returns (y, aa', bb', pp')."""
    # Output: the past (aa, bb in units of e^pp) and the current token boosted by u.
    q = np.maximum(pp, u + k)
    e1, e2 = np.exp(pp - q), np.exp(u + k - q)           # both exponents <= 0: no overflow
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    # State: decay the past by e^w, add the current token (no bonus), in units of e^p.
    p = np.maximum(pp + w, k)
    e1, e2 = np.exp(pp + w - p), np.exp(k - p)
    return y, e1 * aa + e2 * v, e1 * bb + e2, p


def rwkv_token_shift(x, x_prev):
    """(B, T, C), (B, C) -> (B, T, C): x_prev, x[:, 0], ..., x[:, T-2]."""
    return np.concatenate([x_prev[:, None, :], x[:, :-1]], axis=1)


def rwkv_channel_mix(x, x_prev, mu_k, mu_r, W_k, W_r, W_v):
    """sigmoid(W_r xr) * (W_v relu(W_k xk)^2), with xk, xr mixes of x_t and x_{t-1}. x (T, C) -> (T, C)."""
    xx = np.concatenate([x_prev[None, :], x[:-1]], axis=0)      # (T, C): x_{t-1}
    xk = mu_k * x + (1 - mu_k) * xx
    xr = mu_r * x + (1 - mu_r) * xx
    k = np.maximum(xk @ W_k.T, 0.0) ** 2                         # (T, F): squared ReLU
    r = 1.0 / (1.0 + np.exp(-(xr @ W_r.T)))                      # (T, C): receptance, a gate in (0, 1)
    return r * (k @ W_v.T)
