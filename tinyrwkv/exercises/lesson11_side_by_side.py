"""Self-checks for lesson 11 (side by side: RWKV, a GPT with a KV cache and an LSTM).

    check.count_state_floats(fn)     every float a model carries between tokens, counted from its state
    check.kv_crossover_length(fn)    the first context length at which a KV cache outgrows RWKV's state
    check.teacher_forced_loss(fn)    mean next-token loss of a sequence from its logits
    check.predict_state_bytes(fn)    predict the bytes of each model's state; the check measures them

Each check compares the learner's function with tinyrwkv's own code (``compare.count_floats`` on
real state objects, the state sizes of ``GPT.state_size`` and ``RWKV.state_size``,
``nn.functional.cross_entropy``) and names typical mistakes.
"""
from __future__ import annotations

import numpy as np

from ..compare import Stepper, count_floats
from ..models.lstm import LSTMLanguageModel
from ..models.rwkv import RWKV, RWKVConfig
from ..models.transformer import GPT
from ..nn import functional as F
from ._checker import CheckFailed, expect_close, exercise

# --------------------------------------------------------------------------- 1. counting the state


def _states(tokens=3):
    """name -> the state of each model after ``tokens`` steps (small models, fixed seeds)."""
    rng = np.random.default_rng(11)
    models = {"RWKV": RWKV.random(RWKVConfig(n_layer=2, n_embd=8, vocab_size=20, ffn_dim=32), seed=1, backend="numpy"),
              "GPT": GPT(20, dim=8, n_heads=2, n_layers=3, rng=rng),
              "LSTM": LSTMLanguageModel(20, hidden_size=6, num_layers=2, rng=rng)}
    states = {}
    for name, model in models.items():
        stepper = Stepper(name, model)
        for t in range(tokens):
            stepper.step(t + 1)
        states[name] = (stepper.state, model.state_size(tokens))
    return states


@exercise("11", library=(
    "tinyrwkv.compare:count_floats",
    "tinyrwkv.models.base:LanguageModel.state_size",
    "tinyrwkv.models.rwkv:RWKV.state_size",
    "tinyrwkv.models.transformer:GPT.state_size",
    "tinyrwkv.models.rnn:RecurrentLanguageModel.state_size",
    "tinyrwkv.models.rwkv_train:RWKVLanguageModel.state_size",
))
def count_state_floats(fn):
    """fn(state) -> int: the number of floats in a model's state (RWKVState, the GPT's dict, the LSTM's list)."""
    for name, (state, want) in _states().items():
        assert count_floats(state) == want
        got = fn(state)
        if not isinstance(got, (int, np.integer)):
            raise CheckFailed(f"{name}: return an int (the number of floats), got {type(got).__name__}.")
        got = int(got)
        if got == want:
            continue
        if name == "GPT" and got == want + 1:
            raise CheckFailed("GPT: the 'position' entry is a counter (a Python int), not a float the model "
                              "carries; count only the arrays.")
        if got in (4 * want, 8 * want, 2 * want):
            raise CheckFailed(f"{name}: you have {got} = {got // want} x the number of floats: that is bytes "
                              f"(array.nbytes); count numbers (array.size).")
        arrays = _count_arrays(state)
        if got == arrays:
            raise CheckFailed(f"{name}: you counted {got} arrays; count the numbers inside them (array.size).")
        raise CheckFailed(f"{name}: the state holds {want} floats, you counted {got}. Go into dicts (their values), "
                          f"lists and tuples, and the five arrays of an RWKVState (state.FIELDS).")


def _count_arrays(state) -> int:
    if isinstance(state, np.ndarray):
        return 1
    if isinstance(state, dict):
        return sum(_count_arrays(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_count_arrays(v) for v in state)
    if hasattr(state, "FIELDS"):
        return len(state.FIELDS)
    return 0


# --------------------------------------------------------------------------- 2. the crossover


def _crossover(gpt_layers, gpt_dim, rwkv_layers, rwkv_dim, cache_factor=2, rwkv_factor=5, strict=True):
    rwkv = rwkv_factor * rwkv_layers * rwkv_dim
    per_token = cache_factor * gpt_layers * gpt_dim
    t = rwkv // per_token + 1 if strict else -(-rwkv // per_token)
    return max(int(t), 1)


@exercise("11", library=(
    "tinyrwkv.exercises.lesson11_side_by_side:_crossover",
    "tinyrwkv.experiments.cost_and_memory:kv_cache_floats",
    "tinyrwkv.experiments.cost_and_memory:rwkv_state_floats",
    "tinyrwkv.models.base:LanguageModel.state_size",
    "tinyrwkv.models.rwkv:RWKV.state_size",
    "tinyrwkv.models.transformer:GPT.state_size",
    "tinyrwkv.models.rnn:RecurrentLanguageModel.state_size",
    "tinyrwkv.models.rwkv_train:RWKVLanguageModel.state_size",
))
def kv_crossover_length(fn):
    """fn(gpt_layers, gpt_dim, rwkv_layers, rwkv_dim) -> the smallest t >= 1 at which the GPT's KV
    cache (2 L t C floats) holds MORE floats than RWKV's state (5 L C)."""
    cases = [(2, 10, 4, 8), (12, 768, 12, 768), (4, 64, 4, 64), (3, 7, 5, 11), (1, 1000, 2, 10), (1, 4, 3, 8)]
    wants, gots = [], []
    for case in cases:
        gl, gd, rl, rd = case
        rwkv = 5 * rl * rd
        wants.append(next(t for t in range(1, rwkv + 2) if 2 * gl * t * gd > rwkv))
        assert wants[-1] == _crossover(*case)
        got = fn(*case)
        if not isinstance(got, (int, np.integer)):
            raise CheckFailed(f"return an int number of tokens, got {type(got).__name__}.")
        gots.append(int(got))
    if gots == wants:
        return
    # a mistake is named when it explains every case (several mistakes can agree on one case)
    mistakes = {
        "at that t the cache is exactly as large as the state; you need the first t where it is LARGER":
            dict(strict=False),
        "the cache stores a key AND a value per token and layer: 2 L t C": dict(cache_factor=1),
        "RWKV-4's state is five vectors per layer (att_x, aa, bb, pp, ffn_x): 5 L C": dict(rwkv_factor=4),
    }
    for message, knobs in mistakes.items():
        if gots == [_crossover(*case, **knobs) for case in cases]:
            raise CheckFailed(message + ".")
    j = next(i for i in range(len(cases)) if gots[i] != wants[i])
    gl, gd, rl, rd = cases[j]
    raise CheckFailed(f"for a GPT of {gl} x {gd} and an RWKV of {rl} x {rd}: expected t = {wants[j]} (RWKV "
                      f"{5 * rl * rd} floats; the cache grows by {2 * gl * gd} per token), you have {gots[j]}.")


# --------------------------------------------------------------------------- 3. the loss column


@exercise("11", library=(
    "tinyrwkv.nn.functional:cross_entropy",
))
def teacher_forced_loss(fn):
    """fn(logits (T, V), ids (T,)) -> float: mean over t < T-1 of -log softmax(logits[t])[ids[t+1]]."""
    rng = np.random.default_rng(3)
    T, V = 9, 7
    logits = rng.normal(size=(T, V)) * 2
    ids = rng.integers(0, V, size=T)
    logp = F.log_softmax(logits)
    want = -logp[np.arange(T - 1), ids[1:]].mean()
    got = fn(logits.copy(), ids.copy())
    if np.ndim(got) != 0:
        raise CheckFailed(f"return one number (the mean loss), got shape {np.shape(got)}.")
    expect_close("loss", float(got), want, mistakes={
        "logits[t] predicts the NEXT token, ids[t+1], not ids[t]": -logp[np.arange(T), ids].mean(),
        "take the log of the softmax (log_softmax) of the logits, not the raw logits":
            -logits[np.arange(T - 1), ids[1:]].mean(),
        "average over the T-1 predictions, do not sum them": -logp[np.arange(T - 1), ids[1:]].sum(),
        "the last position has no next token: average over t < T-1 only":
            -np.concatenate([logp[np.arange(T - 1), ids[1:]], [0.0]]).mean(),
    })


# --------------------------------------------------------------------------- 4. predict, then measure


# sizes chosen so that no two mistakes give the same number (L != 2, L != T)
_PREDICT_CASES = (("rwkv", 3, 8, 4), ("rwkv", 1, 16, 5), ("gpt", 3, 8, 5), ("gpt", 4, 16, 6),
                  ("lstm", 3, 6, 4), ("lstm", 1, 10, 4))


def _measured_state_bytes(kind, n_layer, dim, T) -> int:
    """Runs a small real model of ``kind`` for T tokens and adds up the bytes of every array in its state."""
    rng = np.random.default_rng(12)
    if kind == "rwkv":
        model = RWKV.random(RWKVConfig(n_layer=n_layer, n_embd=dim, vocab_size=20, ffn_dim=4 * dim), seed=2,
                            backend="numpy")
    elif kind == "gpt":
        model = GPT(20, dim=dim, n_heads=2, n_layers=n_layer, rng=rng)
    else:
        model = LSTMLanguageModel(20, hidden_size=dim, num_layers=n_layer, rng=rng)
    stepper = Stepper(kind, model)
    for t in range(T):
        stepper.step(t % 20)
    return _nbytes(stepper.state)


def _nbytes(state) -> int:
    if isinstance(state, np.ndarray):
        return int(state.nbytes)
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_nbytes(v) for v in state)
    if hasattr(state, "__dataclass_fields__"):
        return sum(_nbytes(getattr(state, f)) for f in state.__dataclass_fields__)
    return 0


@exercise("11", library=(
    "tinyrwkv.compare:count_floats",
    "tinyrwkv.exercises.lesson11_side_by_side:_measured_state_bytes",
    "tinyrwkv.experiments.cost_and_memory:kv_cache_bytes",
    "tinyrwkv.experiments.cost_and_memory:kv_cache_floats",
    "tinyrwkv.experiments.cost_and_memory:rwkv_state_floats",
    "tinyrwkv.experiments.cost_and_memory:rnn_state_floats",
    "tinyrwkv.models.base:LanguageModel.state_size",
    "tinyrwkv.models.rwkv:RWKV.state_size",
    "tinyrwkv.models.transformer:GPT.state_size",
    "tinyrwkv.models.rnn:RecurrentLanguageModel.state_size",
))
def predict_state_bytes(fn):
    """fn(kind in {"rwkv", "gpt", "lstm"}, n_layer, dim, T) -> int: your PREDICTION of the bytes (float32)
    of the state the model carries after reading T tokens. The check then MEASURES it: it runs small
    real models token by token and adds up the bytes of the arrays in their states."""
    for kind, L, C, T in _PREDICT_CASES:
        got = fn(kind, L, C, T)
        where = f"{kind} with {L} layers of width {C} after T={T} tokens"
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise CheckFailed(f"{where}: return an int (a number of bytes), got {type(got).__name__}.")
        got = int(got)
        measured = _measured_state_bytes(kind, L, C, T)
        if got == measured:
            continue
        said = f"{where}: you predicted {got:,} bytes, the measured state holds {measured:,}. "
        floats = measured // 4
        common = {
            floats: "that is the number of floats; each float32 takes 4 bytes",
            2 * measured: "float32 takes 4 bytes, not 8 (the models run in float32)",
        }
        per_kind = {
            "rwkv": {4 * L * C * 4: "RWKV-4 carries FIVE vectors per layer: att_x, aa, bb, pp and ffn_x (two "
                                    "token shifts and the WKV state)",
                     3 * L * C * 4: "besides aa, bb, pp, the two token shifts each carry the previous x",
                     measured * T: "RWKV's state does not grow with T: 5 L C floats whatever the length"},
            "gpt": {measured // 2: "the cache keeps a key AND a value per token and layer: 2 L T C floats",
                    2 * L * (T - 1) * C * 4: "off by one in time: after reading T tokens the cache holds T keys "
                                             "(the current token's included), not T-1",
                    measured // L if L > 1 else -1: "every layer has its own cache: multiply by L",
                    2 * L * C * 4: "a KV cache grows with T: one key and one value per token read"},
            "lstm": {measured // 2: "an LSTM carries two vectors per layer: h AND the cell c",
                     measured // L if L > 1 else -1: "every layer carries its own (h, c)",
                     measured * T: "an LSTM's state does not grow with T"},
        }[kind]
        hints = {**common, **per_kind}
        if got in hints:
            raise CheckFailed(said + hints[got][0].upper() + hints[got][1:] + ".")
        raise CheckFailed(said + f"Count the arrays the state holds for this kind (lesson 11's table) and their "
                          f"sizes; {measured:,} bytes = {floats:,} float32 numbers.")
