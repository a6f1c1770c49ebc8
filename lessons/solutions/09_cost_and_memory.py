"""Solutions to lesson 09's exercises (cost and memory against sequence length).

Each function has the name of its check: ``check.state_floats(state_floats)`` passes.
"""


def state_floats(L, C, T):
    """Floats carried per sequence after T tokens, for L layers of width C."""
    return {
        "rnn": L * C,                    # h per layer
        "lstm": 2 * L * C,               # h and c per layer
        "gpt_kv_cache": 2 * L * T * C,   # a key and a value per token per layer: grows with T
        "rwkv": 5 * L * C,               # att_x, aa, bb, pp, ffn_x per layer: does not
    }


def flops_per_token(L, C, T):
    """Matrix-product FLOPs (2 per multiply-add) for one generated token."""
    gpt = 2 * L * (4 * C * C + 8 * C * C + T * C + T * C)    # q,k,v,o + FFN + scores + weighted sum
    rwkv = 2 * L * (4 * C * C + 9 * C * C)                  # time-mix k,v,r,o + channel-mix key, value, receptance
    return {"gpt_kv_cache": gpt, "rwkv": rwkv}


def kv_cache_bytes(L, C, T, batch, bytes_per_float):
    """2 L T C floats per sequence, for every sequence of the batch, at bytes_per_float bytes each."""
    return 2 * L * T * C * batch * bytes_per_float
