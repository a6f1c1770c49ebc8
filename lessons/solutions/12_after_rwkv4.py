"""Solutions to lesson 12's exercises (after RWKV-4: RWKV-5, -6 and -7).

Each function has the name of its check: ``check.delta_rule_step(delta_rule_step)`` passes.
"""
import numpy as np


def state_per_version(L, C, N):
    """Floats carried per sequence by each version, L layers of width C, heads of N channels."""
    matrices = L * (2 * C + (C // N) * N * N)      # two token shifts + one N x N matrix per head
    return {"rwkv4": 5 * L * C, "rwkv5": matrices, "rwkv6": matrices, "rwkv7": matrices}


def wkv6_head_step(r, k, v, w, u, S):
    """One RWKV-5/6 step of one head: S [key i, value j]."""
    kv = np.outer(k, v)                           # k v^T: what this token writes
    y = r @ (S + u[:, None] * kv)                 # read the past, plus the current token with its bonus
    return y, w[:, None] * S + kv                 # decay every key row, then write


def delta_rule_step(r, w, k, v, a, b, S):
    """One RWKV-7 step of one head: S [value i, key j]."""
    sa = S @ a                                    # what the state returns for the key a (= -kk)
    S = S * w[None, :] + np.outer(sa, b) + np.outer(v, k)
    return S @ r, S


def rwkv7_decay(z):
    """exp(-e^{-1/2} sigmoid(z)): a decay factor in (0.545, 1)."""
    return np.exp(-np.exp(-0.5) / (1 + np.exp(-z)))
