"""Solutions to lesson 05's exercises (the Transformer).

Each function has the name of its check: ``check.causal_attention(causal_attention)`` passes.
"""
import numpy as np


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))              # stable: the max is subtracted first
    return e / e.sum(axis=-1, keepdims=True)


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(D) with the future masked) v. q, k (T, D), v (T, Dv) -> (y (T, Dv), weights (T, T))."""
    T, D = q.shape
    scores = q @ k.T / np.sqrt(D)                               # (T, T): query i against key j
    allowed = np.tril(np.ones((T, T), dtype=bool))              # j <= i: no peeking at the future
    weights = _softmax(np.where(allowed, scores, -np.inf))      # exp(-inf) = 0 above the diagonal
    return weights @ v, weights


def sinusoidal_encoding(n_positions, dim):
    """(T, C) with PE[p, 2i] = sin(p / 10000^(2i/C)) and PE[p, 2i+1] = cos(p / 10000^(2i/C))."""
    position = np.arange(n_positions)[:, None]                 # (T, 1)
    frequency = 1.0 / 10000.0 ** (np.arange(0, dim, 2) / dim)  # (C/2,) one clock per channel pair
    pe = np.zeros((n_positions, dim))
    pe[:, 0::2] = np.sin(position * frequency)
    pe[:, 1::2] = np.cos(position * frequency)
    return pe


def kv_cache_step(q, k, v, cache_k, cache_v):
    """Appends the new key/value to the cache, then lets the new query attend to everything cached."""
    cache_k = np.concatenate([cache_k, k[None, :]], axis=0)     # (Tp+1, D)
    cache_v = np.concatenate([cache_v, v[None, :]], axis=0)     # (Tp+1, D)
    weights = _softmax(cache_k @ q / np.sqrt(q.shape[-1]))     # (Tp+1,): no mask needed, no future is cached
    return weights @ cache_v, cache_k, cache_v


def split_heads(x, n_heads):
    """(B, T, E) -> (B, H, T, E/H): head h gets features h*E/H .. (h+1)*E/H - 1."""
    B, T, E = x.shape
    return x.reshape(B, T, n_heads, E // n_heads).transpose(0, 2, 1, 3)
