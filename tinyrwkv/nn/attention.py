"""Attention: scaled dot-product attention (a function, backward beside it) and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + mask) V

Every query row takes a weighted average of the value rows; the weights say how well the query
matches each key. Dividing by sqrt(D) keeps the dot products at unit scale, so the softmax does not
saturate as the head size D grows.

Masks in tinyrwkv are boolean and say where attention is *allowed*: ``mask[..., i, j]`` is True when
query i may look at key j (the convention of torch's ``F.scaled_dot_product_attention``; note that
``torch.nn.MultiheadAttention`` uses the opposite one, True = blocked). Build them with
``causal_mask`` (no peeking at the future) and ``padding_mask`` (no looking at PAD keys), and
combine them with ``&``.

Multi-head attention runs H attentions side by side on E/H-sized slices of learned projections,
so each head can look for something different; its parameters use torch's names and layout
(``in_proj_weight`` (3E, E) holds W_q, W_k, W_v stacked), so weights copy over from
``torch.nn.MultiheadAttention``. There is no dropout (torch's dropout=0).
"""
from __future__ import annotations

import math

from typing import NamedTuple

import numpy as np

from . import functional as F
from .layers import Linear
from .module import Module, check_float

# --------------------------------------------------------------------------- masks


def causal_mask(t_query: int, t_key: int | None = None) -> np.ndarray:
    """(Tq, Tk) bool, True on and below the diagonal: query i may attend keys 0..i.

    With t_key > t_query the queries are the *last* Tq positions of a Tk-long sequence
    (what a decoder with a KV cache sees), so the diagonal is shifted right by Tk - Tq.
    """
    t_key = t_query if t_key is None else t_key
    offset = t_key - t_query
    return np.tril(np.ones((t_query, t_key), dtype=bool), k=offset)


def padding_mask(ids: np.ndarray, pad_id: int) -> np.ndarray:
    """(B, 1, Tk) bool from ids (B, Tk): False at PAD keys, True elsewhere (broadcasts over queries)."""
    return (np.asarray(ids) != pad_id)[:, None, :]


# --------------------------------------------------------------------------- the function


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(D), masked) v.

    q: (..., Tq, D), k: (..., Tk, D), v: (..., Tk, Dv), with the same leading axes.
    mask: bool, broadcastable to (..., Tq, Tk), True where the query may attend the key.
    Returns (y (..., Tq, Dv), weights (..., Tq, Tk)); the weights are the heatmap a learner plots
    and all the backward pass needs beside q, k, v.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])       # a Python float: keeps float32 inputs float32
    scores = (q @ np.swapaxes(k, -1, -2)) * scale                # (..., Tq, Tk)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        # A query with no allowed key would give softmax(-inf, ..., -inf) = NaN: refuse it loudly.
        if not np.all(np.any(mask, axis=-1)):
            raise ValueError("attention mask: every query must be allowed at least one key "
                             f"(mask of shape {mask.shape} has a row that is all False)")
        # -inf, not a large negative number: exp(-inf) = 0 exactly, so masked keys get weight 0
        # and (through softmax_backward) gradient 0.
        scores = np.where(mask, scores, -np.inf)
    weights = F.softmax(scores, axis=-1)                          # (..., Tq, Tk)
    return weights @ v, weights                                   # (..., Tq, Dv)


def scaled_dot_product_attention_backward(dy, q, k, v, weights):
    """Gradients of ``scaled_dot_product_attention``: returns (dq, dk, dv).

    dy: (..., Tq, Dv). With S = q k^T * scale and P = softmax(S), y = P v:
    dv = P^T dy,  dP = dy v^T,  dS = softmax_backward(dP, P),  dq = dS k * scale,  dk = dS^T q * scale.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])       # a Python float: keeps float32 inputs float32
    dweights = dy @ np.swapaxes(v, -1, -2)                       # (..., Tq, Tk)
    dv = np.swapaxes(weights, -1, -2) @ dy                        # (..., Tk, Dv)
    dscores = F.softmax_backward(dweights, weights, axis=-1) * scale   # (..., Tq, Tk)
    dq = dscores @ k                                              # (..., Tq, D)
    dk = np.swapaxes(dscores, -1, -2) @ q                         # (..., Tk, D)
    return dq, dk, dv


# --------------------------------------------------------------------------- multi-head


def xavier_uniform(rng, shape, dtype=np.float32):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): torch's init for MultiheadAttention.in_proj_weight."""
    fan_out, fan_in = shape
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


class MultiHeadCache(NamedTuple):
    """What MultiHeadAttention.backward needs; ``weights`` (B, H, Tq, Tk) is also the heatmap."""
    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    q: np.ndarray          # (B, H, Tq, Dh)
    k: np.ndarray          # (B, H, Tk, Dh)
    v: np.ndarray          # (B, H, Tk, Dh)
    weights: np.ndarray    # (B, H, Tq, Tk)
    out_proj: np.ndarray   # the Linear's cache


class MultiHeadAttention(Module):
    """H heads of scaled dot-product attention over learned projections, then an output projection.

        q_h = query W_q,h + b_q,h    k_h = key W_k,h + b_k,h    v_h = value W_v,h + b_v,h
        head_h = Attention(q_h, k_h, v_h)                        (B, Tq, E/H) each
        y = concat(head_1 .. head_H) W_o^T + b_o                 (B, Tq, E)

    Self-attention passes the same x as query, key and value; cross-attention (a decoder reading
    an encoder) passes the decoder's x as query and the encoder output as key and value.
    Parameters (torch's names): in_proj_weight (3E, E), in_proj_bias (3E,), out_proj.weight (E, E),
    out_proj.bias (E,).
    """

    def __init__(self, dim: int, n_heads: int, rng=None, dtype=np.float32):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"MultiHeadAttention: dim {dim} must be divisible by n_heads {n_heads}")
        rng = rng or np.random.default_rng()
        self.dim, self.n_heads, self.head_dim = dim, n_heads, dim // n_heads
        self.add_param("in_proj_weight", xavier_uniform(rng, (3 * dim, dim), dtype))   # [W_q; W_k; W_v]
        self.add_param("in_proj_bias", np.zeros(3 * dim, dtype))
        self.out_proj = Linear(dim, dim, rng=rng, dtype=dtype)
        self.out_proj.params["bias"][...] = 0                     # torch zeroes it too

    # -- pieces, shared by the full forward and by one-token-at-a-time decoding ---------------

    def _slice(self, which: str):
        """(weight (E, E), bias (E,)) of the q, k or v projection: rows of in_proj_* (views, not copies)."""
        i = "qkv".index(which) * self.dim
        return self.params["in_proj_weight"][i:i + self.dim], self.params["in_proj_bias"][i:i + self.dim]

    def split_heads(self, x):
        """(B, T, E) -> (B, H, T, E/H): head h owns features h*Dh .. (h+1)*Dh."""
        B, T, _ = x.shape
        return x.reshape(B, T, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

    @staticmethod
    def merge_heads(x):
        """(B, H, T, Dh) -> (B, T, H*Dh): the inverse of split_heads."""
        B, H, T, Dh = x.shape
        return x.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)

    def project(self, x, which: str):
        """Projects x (B, T, E) with W_which ('q', 'k' or 'v') and splits heads -> (B, H, T, Dh)."""
        w, b = self._slice(which)
        return self.split_heads(F.linear(x, w, b))

    def attend(self, q, k, v, mask=None):
        """Inference-only tail of the forward: attention over already-projected heads, then W_o.

        q: (B, H, Tq, Dh), k, v: (B, H, Tk, Dh). Returns (y (B, Tq, E), weights (B, H, Tq, Tk)).
        A KV cache calls this with k, v grown by one position per generated token.
        """
        o, weights = scaled_dot_product_attention(q, k, v, self._heads_mask(mask))
        return F.linear(self.merge_heads(o), self.out_proj.params["weight"], self.out_proj.params["bias"]), weights

    @staticmethod
    def _heads_mask(mask):
        """A mask (Tq, Tk) or (B, Tq, Tk) -> broadcastable to (B, H, Tq, Tk)."""
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.ndim not in (2, 3):
            raise ValueError(f"MultiHeadAttention: mask must be bool of shape (Tq, Tk) or (B, Tq, Tk) "
                             f"(True = may attend), got dtype {mask.dtype} shape {mask.shape}")
        return mask[:, None] if mask.ndim == 3 else mask

    # -- training ------------------------------------------------------------------------------

    def forward(self, query, key, value, mask=None):
        """query: (B, Tq, E), key and value: (B, Tk, E), mask: bool (Tq, Tk) or (B, Tq, Tk).

        Returns (y (B, Tq, E), cache); ``cache.weights`` (B, H, Tq, Tk) are the attention weights.
        """
        E = self.dim
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_float(f"MultiHeadAttention {name}", x)
            if x.ndim != 3 or x.shape[-1] != E:
                raise ValueError(f"MultiHeadAttention: expected {name} of shape (B, T, {E}), got {x.shape}")
        if key.shape != value.shape or key.shape[0] != query.shape[0]:
            raise ValueError(f"MultiHeadAttention: key and value must be (B, Tk, {E}) with the query's B; "
                             f"got query {query.shape}, key {key.shape}, value {value.shape}")
        Tq, Tk = query.shape[1], key.shape[1]
        if mask is not None and np.ndim(mask) >= 2 and np.shape(mask)[-2:] not in ((Tq, Tk), (1, Tk)):
            raise ValueError(f"MultiHeadAttention: expected mask of shape (Tq, Tk) = ({Tq}, {Tk}) "
                             f"or (B, Tq, Tk) / (B, 1, Tk), got {np.shape(mask)}")
        q = self.project(query, "q")                              # (B, H, Tq, Dh)
        k = self.project(key, "k")                                # (B, H, Tk, Dh)
        v = self.project(value, "v")                              # (B, H, Tk, Dh)
        o, weights = scaled_dot_product_attention(q, k, v, self._heads_mask(mask))   # (B, H, Tq, Dh)
        y, out_cache = self.out_proj.forward(self.merge_heads(o))  # (B, Tq, E)
        return y, MultiHeadCache(query, key, value, q, k, v, weights, out_cache)

    def backward(self, dy, cache: MultiHeadCache):
        """dy: (B, Tq, E). Adds parameter gradients; returns (dquery, dkey, dvalue).

        For self-attention the caller adds the three: d x = dquery + dkey + dvalue.
        """
        do = self.split_heads(self.out_proj.backward(dy, cache.out_proj))       # (B, H, Tq, Dh)
        dq, dk, dv = scaled_dot_product_attention_backward(do, cache.q, cache.k, cache.v, cache.weights)
        dinputs = []
        for which, dproj, x in (("q", dq, cache.query), ("k", dk, cache.key), ("v", dv, cache.value)):
            w, _ = self._slice(which)
            dx, dw, db = F.linear_backward(self.merge_heads(dproj), x, w)      # (B, T, E), (E, E), (E,)
            i = "qkv".index(which) * self.dim
            self.grads["in_proj_weight"][i:i + self.dim] += dw
            self.grads["in_proj_bias"][i:i + self.dim] += db
            dinputs.append(dx)
        return tuple(dinputs)
