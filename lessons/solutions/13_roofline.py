"""Solutions to lesson 13's exercises (the roofline).

Each function has the name of its check: ``check.bytes_per_token(bytes_per_token)`` passes.
"""
import numpy as np


def bytes_per_token(n_layer, n_embd, ffn_dim, vocab_size, bytes_per_weight):
    """Bytes of weight matrices one decoding step reads."""
    C, F = n_embd, ffn_dim
    per_layer = 4 * C * C + F * C + C * F + C * C     # time-mix k, v, r, o; channel-mix key, value, receptance
    head = vocab_size * C                             # the head: every token's logits
    embedding_row = C                                 # the token's row of the embedding table
    return (n_layer * per_layer + head + embedding_row) * bytes_per_weight


def predict_tokens_per_second(bandwidth_gbs, bytes_per_token):
    """Reading bytes_per_token at bandwidth_gbs * 1e9 bytes/s: the fastest a token can be."""
    return bandwidth_gbs * 1e9 / bytes_per_token


def arithmetic_intensity(bytes_per_weight, tokens_per_call):
    """2 flops per weight and token, one read of bytes_per_weight per weight for all the call's tokens."""
    return 2 * tokens_per_call / bytes_per_weight


def quantize_int8(w):
    """Per-row symmetric int8: scale = max|w| / 127, q = round(w / scale)."""
    scales = np.abs(w).max(axis=1) / 127                             # (n,)
    safe = np.where(scales > 0, scales, 1)                           # an all-zero row stays zero
    q = np.rint(w / safe[:, None]).astype(np.int8)                   # (n, k) in -127..127
    return q, scales.astype(np.float32)
