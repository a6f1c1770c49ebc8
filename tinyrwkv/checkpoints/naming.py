"""Which RWKV a file holds, the names its tensors have in the wild, and the config read off the shapes.

The parameter tables themselves (internal name -> shape, how each tensor is stored) live in
``tinyrwkv/layouts.py``, one per version, shared with the models. This module adds what only a
*file* needs:

* **version detection** from names and shapes only, as the ``rwkv`` package does it:
  RWKV-7 has ``att.r_k`` / ``att.w0``; RWKV-6 ``time_maa_w1``; RWKV-5.2 ``att.ln_x`` with
  ``time_faaaa`` and a 2-D (H, N) ``time_decay``; RWKV-4 ``time_mix_k`` + ``time_first``.
  Anything else (RWKV-5.0/5.1, an RWKV-7 in flash-linear-attention naming, Mamba, GPT-2 ...) gets
  ONE short message saying what it looks like;
* **naming detection**: BlinkDL (``emb.weight``, ``blocks.N....``) or Hugging Face (``rwkv.*``);
* **the config from the shapes**: C and V from ``emb.weight`` (V, C), F from ``ffn.key.weight``,
  n_layer from the block numbers, (H, N) from ``time_decay`` / ``time_faaaa`` / ``r_k``, and the
  low-rank sizes from the LoRA matrices; nothing is read from a config file;
* one check listing every missing key, unexpected key and wrong shape.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from .. import layouts
from .errors import CheckpointError

NAMINGS = ("hf", "blinkdl")

Shape = Tuple[int, ...]

_BLOCK_NUMBER = {"hf": "rwkv.blocks.", "blinkdl": "blocks.", "internal": "blocks."}


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}; choose one of {', '.join(NAMINGS)}")


def _as_config(config_or_n_layer) -> Mapping:
    """A config dict; a bare int means the n_layer of an RWKV-4 (where only n_layer matters)."""
    if isinstance(config_or_n_layer, Mapping):
        return config_or_n_layer
    return {"n_layer": int(config_or_n_layer), "n_embd": 1, "ffn_dim": 1, "vocab_size": 1}


def external_name(internal: str, naming: str) -> str:
    _check_naming(naming)
    return layouts.hf_name(internal) if naming == "hf" else layouts.blinkdl_name(internal)


def internal_names(config_or_n_layer) -> List[str]:
    """Every internal tensor name (an int: of an n_layer RWKV-4), in state-dict order."""
    return [name for name, _ in layouts.rows(_as_config(config_or_n_layer))]


def name_table(config_or_n_layer, naming: str) -> Dict[str, str]:
    """{internal name: name in the file} for ``naming`` "hf" or "blinkdl" (state-dict order)."""
    _check_naming(naming)
    return {name: external_name(name, naming) for name in internal_names(config_or_n_layer)}


def expected_shapes(config: Mapping) -> Dict[str, Shape]:
    """{internal name: shape} for a config dict (n_layer, n_embd, vocab_size, ffn_dim, and for
    v5-v7 version, head_size and the low-rank sizes); see ``tinyrwkv.layouts``."""
    return layouts.param_shapes(config)


def _row_of(internal: str, version) -> layouts.Row:
    suffix = re.sub(r"^blocks\.\d+\.", "", internal)
    for row in (layouts.TOP["head"] + layouts.TOP["tail"] if suffix == internal else layouts.BLOCK[version]):
        if row.name == suffix:
            return row
    raise KeyError(f"{internal} is not a parameter of an RWKV-{version}")


def file_shape(internal_name: str, shape: Shape, version=4) -> Shape:
    """The shape a tensor of the given (internal) shape is stored with: (1, 1, C) for the vectors
    BlinkDL keeps broadcastable, the transpose for low-rank matrices, else as used."""
    row = _row_of(internal_name, version)
    if row.transposed:
        return tuple(shape[::-1])
    if row.stored:
        return (1,) * (len(row.stored) - 1) + (int(np.prod(shape)),)
    return tuple(shape)


def to_file_layout(params: Mapping, naming: str) -> Dict[str, object]:
    """Internal params -> {file name: array in its stored layout}, e.g. to write a checkpoint.

    The version is detected from the internal names; arrays are reshaped or transposed, not copied."""
    version = detect_version({k: np.shape(v) for k, v in params.items()}, "params", names_only=True)
    n_layer = layouts.count_layers(params)
    config = {"version": version, "n_layer": n_layer, "n_embd": 1, "ffn_dim": 1, "vocab_size": 1}
    out = {}
    for name, row in layouts.rows(config):
        if name not in params:
            if row.optional:
                continue
            raise KeyError(f"params lack {name}")
        array = params[name]
        if row.transposed:
            array = array.T
        elif row.stored:
            array = array.reshape((1,) * (len(row.stored) - 1) + (-1,))
        out[external_name(name, naming)] = array
    return out


# --------------------------------------------------------------------------- what is this file?


def _preview(names: Sequence[str]) -> str:
    names = list(names)
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "none"


def _looks_like(names: Sequence[str]) -> str | None:
    """What a file that is no supported RWKV looks like, from its names; None if unrecognised."""
    joined = "\n".join(names)
    if re.search(r"layers\.\d+\.attn\.(r_k|x_r|w0|k_k)", joined):
        return ("an RWKV-7 in flash-linear-attention naming (the fla-hub '-hf' repos): not supported; "
                "use BlinkDL's .pth release (e.g. BlinkDL/rwkv-7-pile)")
    if re.search(r"mixer\.(A_log|in_proj|dt_proj|conv1d)", joined):
        return "a Mamba model (mixer.A_log / mixer.in_proj): not an RWKV"
    if re.search(r"(^|\.)h\.\d+\.attn\.c_attn", joined):
        return "a GPT-2 model (h.N.attn.c_attn): not an RWKV"
    if re.search(r"layers\.\d+\.self_attn\.(q_proj|query_key_value)", joined) or "gpt_neox." in joined:
        return "a Transformer (self_attn.q_proj / gpt_neox): not an RWKV"
    return None


def detect_version(shapes: Mapping[str, Shape], where: str, *, names_only: bool = False):
    """The RWKV version (4, 5.2, 6 or 7) of a file's tensors ``{name: shape}``, from names and shapes.

    Raises one CheckpointError saying what the file looks like when it is no supported RWKV
    (RWKV-5.0/5.1, an fla-naming RWKV-7, Mamba, GPT-2, ...)."""
    names = list(shapes)
    has = lambda part: any(part in n for n in names)  # noqa: E731
    other = _looks_like(names)
    if other:
        raise CheckpointError(f"{where}: this looks like {other}")
    if has("att.r_k") or has("attention.r_k") or any(n.endswith(("att.w0", "att.k_k")) for n in names):
        return 7
    if has("time_maa_w1") or has("time_maa_x"):
        return 6
    if has("ln_x"):
        decay = [s for n, s in shapes.items() if n.endswith("time_decay")]
        two_d = bool(decay) and all(len(s) == 2 and s[-1] > 1 for s in decay)
        if has("time_faaaa") and (two_d or names_only):
            return 5.2
        kind = "5.1" if has("gate.weight") else "5.0"
        raise CheckpointError(
            f"{where}: this looks like an RWKV-{kind} (att.ln_x, but no time_faaaa with a (heads, head_size) "
            f"time_decay): only RWKV-4, 5.2, 6 and 7 are supported")
    if has("time_mix_k") or has("time_first") or has("time_mix_key"):
        return 4
    raise CheckpointError(
        f"{where}: not an RWKV checkpoint: expected BlinkDL names (emb.weight, blocks.N.att....) or Hugging "
        f"Face names (rwkv.embeddings.weight, rwkv.blocks.N....) of an RWKV-4/5.2/6/7; found {len(names)} "
        f"keys: {_preview(names)}")


def detect_naming(names: Iterable[str], where: str) -> str:
    """"hf" when the keys look like transformers' (``rwkv.*``), "blinkdl" for ``emb.weight`` / ``blocks.*``."""
    names = list(names)
    other = _looks_like(names)
    if other:
        raise CheckpointError(f"{where}: this looks like {other}")
    if any(n.startswith("rwkv.") for n in names):
        return "hf"
    if any(n == "emb.weight" or n.startswith("blocks.") for n in names):
        return "blinkdl"
    raise CheckpointError(
        f"{where}: not an RWKV checkpoint: expected Hugging Face names (rwkv.embeddings.weight, "
        f"rwkv.blocks.N....) or BlinkDL names (emb.weight, blocks.N....); found {len(names)} keys: {_preview(names)}")


def count_layers(names: Iterable[str], naming: str) -> int:
    """1 + the largest block number among ``names`` (0 when there are no blocks)."""
    return layouts.count_layers(list(names), _BLOCK_NUMBER[naming])


def infer_config(shapes: Mapping[str, Shape], naming: str, where: str,
                 layer_norm_epsilon: float = 1e-5, version=None) -> dict:
    """The model read off the stored shapes ``{file name: shape}``: version, n_layer, n_embd,
    vocab_size, ffn_dim, and for v5-v7 head_size, n_head and the low-rank sizes."""
    if version is None:
        version = detect_version(shapes, where)
    n_layer = count_layers(shapes, naming)
    name = lambda internal: external_name(internal, naming)  # noqa: E731
    for source in ("emb.weight", "head.weight"):
        shape = shapes.get(name(source))
        if shape is not None and len(shape) == 2:
            vocab_size, n_embd = (int(d) for d in shape)
            break
    else:
        raise CheckpointError(
            f"{where}: cannot infer the model size: neither {name('emb.weight')} nor {name('head.weight')} "
            f"is a 2-D tensor in the file")

    def first(suffix, axis, ndim=2):
        """shape[axis] of blocks.i.<suffix> for the first block that has it with ``ndim`` axes."""
        for i in range(n_layer):
            shape = shapes.get(name(f"blocks.{i}.{suffix}"))
            if shape is not None and len(shape) == ndim:
                return int(shape[axis])
        return None

    config = {"version": version, "n_layer": n_layer, "n_embd": n_embd, "vocab_size": vocab_size,
              "ffn_dim": first("ffn.key.weight", 0) or 4 * n_embd,
              "layer_norm_epsilon": float(layer_norm_epsilon)}
    if version == 4:
        return config
    head_source = {5.2: "att.time_faaaa", 6: "att.time_faaaa", 7: "att.r_k"}[version]
    heads = first(head_source, 0)
    head_size = first(head_source, 1)
    if not heads or not head_size or heads * head_size != n_embd:
        raise CheckpointError(f"{where}: cannot read the heads off {name('blocks.0.' + head_source)} "
                              f"(expected (n_head, head_size) with n_head * head_size = n_embd = {n_embd})")
    config.update(head_size=head_size, n_head=heads)
    stored_in = 1   # LoRA matrices are stored (in, out): the rank is the last axis of w1, the first of w2
    if version == 6:
        mix = first("att.time_maa_w1", stored_in)
        config.update(mix_lora=(mix or 0) // 5, decay_lora=first("att.time_decay_w1", stored_in) or 0)
    if version == 7:
        config.update(decay_lora=first("att.w1", stored_in) or 0, a_lora=first("att.a1", stored_in) or 0,
                      v_lora=first("att.v1", stored_in) or 0, gate_lora=first("att.g1", stored_in) or 0)
    return config


def _shape_fits(stored: Sequence[int], expected: Shape) -> bool:
    stored = tuple(int(d) for d in stored)
    if stored == expected:
        return True
    # a (C,) vector may be stored with leading 1s, e.g. time_mix_k as (1, 1, C)
    return len(expected) == 1 and len(stored) > 1 and all(d == 1 for d in stored[:-1]) and stored[-1:] == expected


def _expected_stored(config: Mapping) -> Dict[str, Tuple[Shape, bool]]:
    """{internal: (stored shape, optional)} for a config."""
    size = layouts.sizes(config)
    return {name: (row.stored_shape(size), row.optional) for name, row in layouts.rows(config)}


def find_problems(shapes: Mapping[str, Shape], naming: str, config: Mapping,
                  file_of: Mapping[str, str]) -> List[str]:
    """Every way ``shapes`` ({file name: stored shape}) differs from an RWKV of ``config``:
    missing keys, unexpected keys and wrong shapes, one line each, naming the file."""
    problems = []
    expected = _expected_stored(config)
    known = set()
    for internal, (want, optional) in expected.items():
        external = external_name(internal, naming)
        known.add(external)
        if external not in shapes:
            if not optional:
                problems.append(f"missing {external}: expected shape {want}")
        elif not _shape_fits(shapes[external], want):
            problems.append(f"wrong shape {external} in {file_of.get(external, '?')}: "
                            f"expected {want}, got {tuple(shapes[external])}")
    for external, shape in shapes.items():
        if external not in known:
            problems.append(f"unexpected {external} in {file_of.get(external, '?')}: shape {tuple(shape)}")
    return problems


def describe_config(config: Mapping) -> str:
    keys = ["n_layer", "n_embd", "vocab_size", "ffn_dim", "head_size"] + list(layouts.LORA_KEYS.values())
    return ", ".join(f"{k}={config[k]}" for k in keys if config.get(k))


def check_and_map(shapes: Mapping[str, Shape], naming: str, config: Mapping, file_of: Mapping[str, str],
                  where: str) -> Dict[str, str]:
    """{internal name: file name} (the tensors present) once every key and shape is right; else one
    CheckpointError listing all the problems (missing, unexpected, wrong shape, each with its file)."""
    problems = find_problems(shapes, naming, config, file_of)
    version = layouts.version_of(config)
    if problems:
        raise CheckpointError(
            f"{where} is not a complete {layouts.NAMES[version]} checkpoint ({naming} naming; inferred "
            f"{describe_config(config)}); {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return {k: v for k, v in name_table(config, naming).items() if v in shapes}


def to_internal(internal: str, array: np.ndarray, config: Mapping) -> np.ndarray:
    """A tensor as read from the file (flat or stored shape) -> the model's shape and layout
    (a reshape, or a transpose for the low-rank matrices, made contiguous)."""
    row = _row_of(internal, layouts.version_of(config))
    size = layouts.sizes(config)
    if row.transposed:
        return np.ascontiguousarray(array.reshape(row.stored_shape(size)).T)
    return array.reshape(row.shape_of(size))      # (1, 1, C) -> (C,): a view, no copy
