"""Self-checks for lesson 09 (cost and memory against sequence length).

    check.state_floats(fn)       floats carried between tokens: RNN, LSTM, GPT's KV cache, RWKV
    check.flops_per_token(fn)    matrix-product FLOPs for one generated token: GPT + KV cache vs RWKV
    check.kv_cache_bytes(fn)     the memory of a KV cache, for a batch, in a given float size

Each check compares the learner's formulas with ``tinyrwkv.experiments.cost_and_memory`` (whose
formulas the tests hold against the models' own ``state_size`` and parameter shapes) at a few
sizes; when the answer matches a typical mistake, the message names the mistake.
"""
from __future__ import annotations

from ..experiments.cost_and_memory import (gpt_flops_per_token, kv_cache_bytes as _kv_cache_bytes, kv_cache_floats,
                                           rnn_state_floats, rwkv_flops_per_token, rwkv_state_floats)
from ._checker import CheckFailed, exercise

SIZES = [(3, 64, 100), (12, 768, 1024), (24, 1024, 1)]      # (L, C, T): tiny, RWKV-4 169M / GPT-2 small, T = 1


def _dict_of_ints(out, keys, what):
    if not isinstance(out, dict) or set(out) != set(keys):
        raise CheckFailed(f"return a dict with exactly the keys {sorted(keys)}, got "
                          f"{sorted(out) if isinstance(out, dict) else type(out).__name__}.")
    return {key: float(out[key]) for key in keys}


def _compare(where, name, got, want, mistakes):
    if got == want:
        return
    for message, wrong in mistakes.items():
        if got == wrong:
            raise CheckFailed(f"{where}, {name}: {message}")
    raise CheckFailed(f"{where}, {name}: you have {got:g}, expected {want:g}.")


@exercise("09", library=(
    "tinyrwkv.experiments.cost_and_memory:rnn_state_floats",
    "tinyrwkv.experiments.cost_and_memory:kv_cache_floats",
    "tinyrwkv.experiments.cost_and_memory:rwkv_state_floats",
    "tinyrwkv.experiments.cost_and_memory:state_floats",
    "tinyrwkv.models.base:LanguageModel.state_size",
    "tinyrwkv.models.rwkv:RWKV.state_size",
    "tinyrwkv.models.transformer:GPT.state_size",
    "tinyrwkv.models.rnn:RecurrentLanguageModel.state_size",
    "tinyrwkv.models.rwkv_train:RWKVLanguageModel.state_size",
))
def state_floats(fn):
    """fn(L, C, T) -> {"rnn", "lstm", "gpt_kv_cache", "rwkv"}: floats carried per sequence after T tokens."""
    for L, C, T in SIZES:
        got = _dict_of_ints(fn(L, C, T), ("rnn", "lstm", "gpt_kv_cache", "rwkv"), "state_floats")
        where = f"for L={L}, C={C}, T={T}"
        _compare(where, "rnn", got["rnn"], rnn_state_floats(L, C), {
            "an Elman RNN carries one hidden vector h of size C per layer": C})
        _compare(where, "lstm", got["lstm"], rnn_state_floats(L, C, per_layer=2), {
            "an LSTM carries two vectors per layer: the hidden state h AND the cell c": L * C})
        _compare(where, "gpt_kv_cache", got["gpt_kv_cache"], kv_cache_floats(L, C, T), {
            "the cache keeps a key AND a value per token and layer: 2 L T C": L * T * C,
            "every layer has its own cache: 2 L T C": 2 * T * C,
        })
        _compare(where, "rwkv", got["rwkv"], rwkv_state_floats(L, C), {
            "RWKV-4 carries five vectors per layer: att_x, aa, bb, pp AND ffn_x (two token shifts)": 4 * L * C,
            "besides aa, bb, pp, the two token shifts need the previous x of time-mix and of channel-mix": 3 * L * C,
            "RWKV's state does not grow with T: 5 L C": 5 * L * C * T,
        })


@exercise("09", library=(
    "tinyrwkv.experiments.cost_and_memory:gpt_flops_per_token",
    "tinyrwkv.experiments.cost_and_memory:rwkv_flops_per_token",
))
def flops_per_token(fn):
    """fn(L, C, T) -> {"gpt_kv_cache", "rwkv"}: FLOPs (2 per multiply-add) of the matrix products for one token."""
    for L, C, T in SIZES:
        got = _dict_of_ints(fn(L, C, T), ("gpt_kv_cache", "rwkv"), "flops_per_token")
        where = f"for L={L}, C={C}, T={T}"
        gpt = gpt_flops_per_token(L, C, T)
        _compare(where, "gpt_kv_cache", got["gpt_kv_cache"], gpt, {
            "count 2 FLOPs per multiply-add": gpt // 2,
            "the new query attends to all T cached keys: add 2 L T C multiply-adds (scores and weighted sum)":
                2 * L * 12 * C * C,
            "attention costs T C multiply-adds for the scores AND T C for the weighted sum of the values":
                2 * L * (12 * C * C + T * C),
            "with a KV cache the token attends to T keys once (O(T C)), it does not redo the T x T matrix":
                2 * L * (12 * C * C + 2 * T * T * C),
            "the FFN (C -> 4C -> C) costs 8 C^2 multiply-adds, the four projections 4 C^2":
                2 * L * (5 * C * C + 2 * T * C),
        })
        rwkv = rwkv_flops_per_token(L, C)
        _compare(where, "rwkv", got["rwkv"], rwkv, {
            "count 2 FLOPs per multiply-add": rwkv // 2,
            "channel-mix has a receptance matrix too (C x C): 4 + 9 = 13 C^2 per layer": 2 * L * 12 * C * C,
            "RWKV's serial step does not depend on T": rwkv * T,
        })


@exercise("09", library=(
    "tinyrwkv.experiments.cost_and_memory:kv_cache_bytes",
    "tinyrwkv.experiments.cost_and_memory:kv_cache_floats",
    "tinyrwkv.models.base:LanguageModel.state_size",
    "tinyrwkv.models.rwkv:RWKV.state_size",
    "tinyrwkv.models.transformer:GPT.state_size",
    "tinyrwkv.models.rnn:RecurrentLanguageModel.state_size",
    "tinyrwkv.models.rwkv_train:RWKVLanguageModel.state_size",
))
def kv_cache_bytes(fn):
    """fn(L, C, T, batch, bytes_per_float) -> int: bytes of the KV cache of ``batch`` sequences of T tokens."""
    for (L, C, T), batch, nbytes in zip(SIZES, (3, 32, 1), (4, 2, 4)):
        want = _kv_cache_bytes(L, C, T, batch, nbytes)
        got = fn(L, C, T, batch, nbytes)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"return a number of bytes, got {type(got).__name__}.") from None
        _compare(f"for L={L}, C={C}, T={T}, batch={batch}, bytes_per_float={nbytes}", "bytes", got, want, {
            "keys AND values: 2 L T C floats per sequence": want // 2,
            "every sequence of the batch has its own cache": want // batch if batch > 1 else -1,
            "that is bits: a byte is 8 bits, and a float takes bytes_per_float bytes": want * 8,
            "multiply the number of floats by bytes_per_float": want // nbytes,
        })
