"""One internal naming for RWKV-4 weights, the two names each tensor has in the wild, and the
config read off the shapes.

The same RWKV-4 model is published two ways:

* **BlinkDL** (the author's training code, ``RWKV-4-Pile-169M-20220807-8023.pth``): short names
  such as ``blocks.3.att.time_mix_k``; the first LayerNorm (applied once to the embeddings) is
  stored inside block 0 as ``blocks.0.ln0``.
* **Hugging Face** (``RWKV/rwkv-4-169m-pile``, ``transformers``' ``RwkvForCausalLM``): everything
  except the head lives under ``rwkv.``; ``att`` becomes ``attention``, ``ffn`` becomes
  ``feed_forward``, ``time_mix_k`` becomes ``time_mix_key``, ``ln0`` becomes ``pre_ln``.

Internally we use BlinkDL's short names, with ``ln0`` lifted out of block 0 (it is not part of
the repeated block) and with every ``time_mix_*`` squeezed from the stored ``(1, 1, C)`` to ``(C,)``.
The tables below are the whole mapping, in both directions; shapes use the letters

    C = n_embd (hidden size)   F = ffn_dim (channel-mix hidden size, 4 C)   V = vocab_size

Nothing is inferred from a config file: ``C`` and ``V`` come from ``emb.weight`` (V, C), ``F`` from
``ffn.key.weight`` (F, C) and ``n_layer`` from the block numbers, so every RWKV-4 size loads.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from .errors import CheckpointError

NAMINGS = ("hf", "blinkdl")

#  internal name     Hugging Face name              BlinkDL name            shape
GLOBAL_TENSORS = [
    ("emb.weight",    "rwkv.embeddings.weight",      "emb.weight",           ("V", "C")),
    ("ln0.weight",    "rwkv.blocks.0.pre_ln.weight", "blocks.0.ln0.weight",  ("C",)),
    ("ln0.bias",      "rwkv.blocks.0.pre_ln.bias",   "blocks.0.ln0.bias",    ("C",)),
    ("ln_out.weight", "rwkv.ln_out.weight",          "ln_out.weight",        ("C",)),
    ("ln_out.bias",   "rwkv.ln_out.bias",            "ln_out.bias",          ("C",)),
    ("head.weight",   "head.weight",                 "head.weight",          ("V", "C")),
]

# Inside block i the three names get the prefixes "blocks.{i}.", "rwkv.blocks.{i}.", "blocks.{i}.".
#  internal suffix          Hugging Face suffix                       BlinkDL suffix           shape
BLOCK_TENSORS = [
    ("ln1.weight",           "ln1.weight",                             "ln1.weight",            ("C",)),
    ("ln1.bias",             "ln1.bias",                               "ln1.bias",              ("C",)),
    ("ln2.weight",           "ln2.weight",                             "ln2.weight",            ("C",)),
    ("ln2.bias",             "ln2.bias",                               "ln2.bias",              ("C",)),
    ("att.time_decay",       "attention.time_decay",                   "att.time_decay",        ("C",)),
    ("att.time_first",       "attention.time_first",                   "att.time_first",        ("C",)),
    ("att.time_mix_k",       "attention.time_mix_key",                 "att.time_mix_k",        ("C",)),
    ("att.time_mix_v",       "attention.time_mix_value",               "att.time_mix_v",        ("C",)),
    ("att.time_mix_r",       "attention.time_mix_receptance",          "att.time_mix_r",        ("C",)),
    ("att.key.weight",       "attention.key.weight",                   "att.key.weight",        ("C", "C")),
    ("att.value.weight",     "attention.value.weight",                 "att.value.weight",      ("C", "C")),
    ("att.receptance.weight", "attention.receptance.weight",           "att.receptance.weight", ("C", "C")),
    ("att.output.weight",    "attention.output.weight",                "att.output.weight",     ("C", "C")),
    ("ffn.time_mix_k",       "feed_forward.time_mix_key",              "ffn.time_mix_k",        ("C",)),
    ("ffn.time_mix_r",       "feed_forward.time_mix_receptance",       "ffn.time_mix_r",        ("C",)),
    ("ffn.key.weight",       "feed_forward.key.weight",                "ffn.key.weight",        ("F", "C")),
    ("ffn.receptance.weight", "feed_forward.receptance.weight",        "ffn.receptance.weight", ("C", "C")),
    ("ffn.value.weight",     "feed_forward.value.weight",              "ffn.value.weight",      ("C", "F")),
]

_BLOCK_PREFIX = {"internal": "blocks.{i}.", "hf": "rwkv.blocks.{i}.", "blinkdl": "blocks.{i}."}
_BLOCK_NUMBER = {"hf": re.compile(r"^rwkv\.blocks\.(\d+)\."), "blinkdl": re.compile(r"^blocks\.(\d+)\.")}
_COLUMN = {"hf": 1, "blinkdl": 2}

Shape = Tuple[int, ...]


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}; choose one of {', '.join(NAMINGS)}")


def _rows(n_layer: int):
    """(internal, hf, blinkdl, shape) for every tensor, in state-dict order."""
    top = {row[0]: row for row in GLOBAL_TENSORS}
    yield top["emb.weight"]
    yield top["ln0.weight"]
    yield top["ln0.bias"]
    for i in range(n_layer):
        for internal, hf, blinkdl, shape in BLOCK_TENSORS:
            yield (_BLOCK_PREFIX["internal"].format(i=i) + internal,
                   _BLOCK_PREFIX["hf"].format(i=i) + hf,
                   _BLOCK_PREFIX["blinkdl"].format(i=i) + blinkdl, shape)
    yield top["ln_out.weight"]
    yield top["ln_out.bias"]
    yield top["head.weight"]


def internal_names(n_layer: int) -> List[str]:
    """Every internal tensor name of an ``n_layer`` RWKV-4, in state-dict order."""
    return [row[0] for row in _rows(n_layer)]


def name_table(n_layer: int, naming: str) -> Dict[str, str]:
    """{internal name: name in the file} for ``naming`` "hf" or "blinkdl" (state-dict order)."""
    _check_naming(naming)
    return {row[0]: row[_COLUMN[naming]] for row in _rows(n_layer)}


def expected_shapes(config: Mapping) -> Dict[str, Shape]:
    """{internal name: shape} for a config with n_layer, n_embd, vocab_size, ffn_dim."""
    size = {"C": int(config["n_embd"]), "F": int(config["ffn_dim"]), "V": int(config["vocab_size"])}
    return {row[0]: tuple(size[letter] for letter in row[3]) for row in _rows(int(config["n_layer"]))}


def is_time_mix(internal_name: str) -> bool:
    return ".time_mix_" in internal_name


def file_shape(internal_name: str, shape: Shape) -> Shape:
    """The shape a tensor is stored with: both formats keep time_mix_* as (1, 1, C), the
    broadcastable shape of (B, T, C) activations; everything else is stored as used."""
    return (1, 1) + tuple(shape) if is_time_mix(internal_name) else tuple(shape)


def to_file_layout(params: Mapping, naming: str) -> Dict[str, object]:
    """Internal params -> {file name: array in its stored shape}, e.g. to write a checkpoint.

    ``params`` is a dict of internal names (see ``internal_names``); arrays are reshaped, not copied."""
    n_layer = count_layers(params, "internal")
    table = name_table(n_layer, naming)
    missing = [name for name in table if name not in params]
    if missing:
        raise KeyError(f"params lack {', '.join(missing)}")
    return {table[name]: params[name].reshape(file_shape(name, params[name].shape)) for name in table}


def detect_naming(names: Iterable[str], where: str) -> str:
    """"hf" when the keys look like transformers' (``rwkv.*``), "blinkdl" for ``emb.weight`` / ``blocks.*``."""
    names = list(names)
    if any(n.startswith("rwkv.") for n in names):
        return "hf"
    if any(n == "emb.weight" or n.startswith("blocks.") for n in names):
        return "blinkdl"
    preview = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise CheckpointError(
        f"{where}: not an RWKV-4 checkpoint: expected Hugging Face names (rwkv.embeddings.weight, "
        f"rwkv.blocks.N....) or BlinkDL names (emb.weight, blocks.N....); found {len(names)} keys: {preview or 'none'}")


def count_layers(names: Iterable[str], naming: str) -> int:
    """1 + the largest block number among ``names`` (0 when there are no blocks)."""
    pattern = _BLOCK_NUMBER["blinkdl" if naming == "internal" else naming]
    numbers = [int(m.group(1)) for m in map(pattern.match, names) if m]
    return max(numbers) + 1 if numbers else 0


def infer_config(shapes: Mapping[str, Shape], naming: str, where: str,
                 layer_norm_epsilon: float = 1e-5) -> dict:
    """The model size read off the stored shapes ``{file name: shape}``.

    vocab_size, n_embd from emb.weight (V, C) (or head.weight if the embedding is absent),
    ffn_dim from ffn.key.weight (F, C) of the first block that has one (else 4 C),
    n_layer from the block numbers."""
    n_layer = count_layers(shapes, naming)
    table = name_table(max(n_layer, 1), naming)
    for source in ("emb.weight", "head.weight"):
        shape = shapes.get(table[source])
        if shape is not None and len(shape) == 2:
            vocab_size, n_embd = (int(d) for d in shape)
            break
    else:
        raise CheckpointError(
            f"{where}: cannot infer the model size: neither {table['emb.weight']} nor {table['head.weight']} "
            f"is a 2-D tensor in the file")
    ffn_dim = 4 * n_embd
    for i in range(n_layer):
        shape = shapes.get(table.get(f"blocks.{i}.ffn.key.weight", ""))
        if shape is not None and len(shape) == 2:
            ffn_dim = int(shape[0])
            break
    return {"n_layer": n_layer, "n_embd": n_embd, "vocab_size": vocab_size, "ffn_dim": ffn_dim,
            "layer_norm_epsilon": float(layer_norm_epsilon)}


def _shape_fits(stored: Sequence[int], expected: Shape) -> bool:
    stored = tuple(int(d) for d in stored)
    if stored == expected:
        return True
    # a (C,) vector may be stored with leading 1s, e.g. time_mix_k as (1, 1, C)
    return len(expected) == 1 and len(stored) > 1 and all(d == 1 for d in stored[:-1]) and stored[-1:] == expected


def find_problems(shapes: Mapping[str, Shape], naming: str, config: Mapping,
                  file_of: Mapping[str, str]) -> List[str]:
    """Every way ``shapes`` ({file name: stored shape}) differs from an RWKV-4 of ``config``:
    missing keys, unexpected keys and wrong shapes, one line each, naming the file."""
    table = name_table(int(config["n_layer"]), naming)
    expected = expected_shapes(config)
    problems = []
    for internal, external in table.items():
        if external not in shapes:
            problems.append(f"missing {external}: expected shape {expected[internal]}")
        elif not _shape_fits(shapes[external], expected[internal]):
            problems.append(f"wrong shape {external} in {file_of.get(external, '?')}: "
                            f"expected {expected[internal]}, got {tuple(shapes[external])}")
    known = set(table.values())
    for external, shape in shapes.items():
        if external not in known:
            problems.append(f"unexpected {external} in {file_of.get(external, '?')}: shape {tuple(shape)}")
    return problems


def check_and_map(shapes: Mapping[str, Shape], naming: str, config: Mapping, file_of: Mapping[str, str],
                  where: str) -> Dict[str, str]:
    """{internal name: file name} once every key and shape is right; else one CheckpointError
    listing all the problems (missing, unexpected, wrong shape, each with its file)."""
    problems = find_problems(shapes, naming, config, file_of)
    if problems:
        size = ", ".join(f"{k}={config[k]}" for k in ("n_layer", "n_embd", "vocab_size", "ffn_dim"))
        raise CheckpointError(
            f"{where} is not a complete RWKV-4 checkpoint ({naming} naming; inferred {size}); "
            f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return name_table(int(config["n_layer"]), naming)
