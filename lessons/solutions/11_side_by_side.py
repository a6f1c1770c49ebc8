"""Solutions to lesson 11's exercises (side by side: RWKV, a GPT with a KV cache and an LSTM).

Each function has the name of its check: ``check.count_state_floats(count_state_floats)`` passes.
"""
import numpy as np


def count_state_floats(state):
    """Every number in the arrays of a state: dicts (values), lists, tuples, and RWKVState's FIELDS."""
    if isinstance(state, np.ndarray):
        return int(state.size)
    if isinstance(state, dict):
        return sum(count_state_floats(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(count_state_floats(v) for v in state)
    if hasattr(state, "FIELDS"):                                   # RWKVState: att_x, aa, bb, pp, ffn_x
        return sum(count_state_floats(getattr(state, f)) for f in state.FIELDS)
    return 0                                                       # a position counter is not carried data


def kv_crossover_length(gpt_layers, gpt_dim, rwkv_layers, rwkv_dim):
    """The smallest t with 2 L t C (keys and values) > 5 L' C' (RWKV-4's five vectors per layer)."""
    rwkv = 5 * rwkv_layers * rwkv_dim
    per_token = 2 * gpt_layers * gpt_dim
    return rwkv // per_token + 1                                   # strictly more: one past the tie


def teacher_forced_loss(logits, ids):
    """Mean of -log p(ids[t+1] | logits[t]) over t = 0 .. T-2, in nats."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))        # log_softmax, (T, V)
    T = len(ids)
    return float(-logp[np.arange(T - 1), ids[1:]].mean())


def predict_state_bytes(kind, n_layer, dim, T):
    """float32 = 4 bytes. RWKV-4: five (C,) vectors per layer (att_x, aa, bb, pp, ffn_x), whatever T.
    GPT: a key and a value per token read and per layer, 2 L T C. LSTM: h and c per layer."""
    floats = {"rwkv": 5 * n_layer * dim, "gpt": 2 * n_layer * T * dim, "lstm": 2 * n_layer * dim}[kind]
    return 4 * floats
