"""The parameter table of every RWKV version: internal name -> shape, and how each tensor is stored.

ONE table per version, read by both sides: ``checkpoints/`` (to map and check a file's keys and
shapes, and to read the config off them) and ``models/`` (to check, initialise and count params).
This module imports nothing from the package, so both may import it.

Shape letters (all read off the shapes of a file; see ``sizes``):

    C  n_embd            F  ffn_dim (4 C)       V  vocab_size
    H  n_head = C / N    N  head_size (64 in every released RWKV-5/6/7)
    Dw decay_lora        Dm mix_lora (v6: the data-dependent token shift; 5 of them side by side)
    Da a_lora (v7's in-context learning rate)   Dv v_lora (v7's value residual)   Dg gate_lora (v7)

Internal names are BlinkDL's (the author's training code, ``RWKV-x070-Pile-168M-*.pth``), with two
changes that make every model file read the same:

* ``blocks.0.ln0`` (applied once, to the embeddings) is lifted to the top as ``ln0``;
* vectors stored broadcastable as (1, 1, C) are squeezed to (C,), and the low-rank ("LoRA")
  matrices, stored (in, out) because BlinkDL computes ``x @ w1``, are transposed to torch's
  (out, in), so EVERY weight-matrix product in the models is ``linear(x, W)``.

Hugging Face names (RWKV-4 in ``transformers``; the trust_remote_code RWKV-5/6 "-HF" repos) follow
from BlinkDL's by one renaming rule (``hf_name``). RWKV-7 Hugging Face repos use another library's
naming (flash-linear-attention) and are not supported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

VERSIONS = (4, 5.2, 6, 7)

NAMES = {4: "RWKV-4", 5.2: "RWKV-5.2 (Eagle)", 6: "RWKV-6 (Finch)", 7: "RWKV-7 (Goose, x070)"}

# The eps of the per-head GroupNorm ("ln_x") after the WKV in v5-v7: 1e-5 * head_size_divisor^2
# with head_size_divisor = 8 in every released model (BlinkDL trains with it; the rwkv package
# hard-codes 64e-5).
GROUP_NORM_EPSILON = 64e-5


@dataclass(frozen=True)
class Row:
    """One tensor: internal name (suffix inside a block for block rows), its shape as used by the
    model (letters), how it is stored when that differs (``stored``: letters; ``transposed``: the
    file holds the transpose), and whether a file may lack it (``optional``)."""

    name: str
    shape: Tuple[str, ...]
    stored: Optional[Tuple[str, ...]] = None
    transposed: bool = False
    optional: bool = False

    def stored_shape(self, size: Mapping[str, int]) -> Tuple[int, ...]:
        letters = self.stored or (self.shape[::-1] if self.transposed else self.shape)
        return tuple(size[s] for s in letters)

    def shape_of(self, size: Mapping[str, int]) -> Tuple[int, ...]:
        return tuple(size[s] for s in self.shape)


def _vec(name, **kw):          # a (C,) vector stored (1, 1, C)
    return Row(name, ("C",), ("1", "1", "C"), **kw)


def _lora(name, a, b, **kw):   # a low-rank matrix: used (a, b) = (out, in), stored (in, out)
    return Row(name, (a, b), transposed=True, **kw)


_C = ("C",)
_CC = ("C", "C")
_HN = ("H", "N")

TOP = {
    "head": [Row("emb.weight", ("V", "C")), Row("ln0.weight", _C), Row("ln0.bias", _C)],
    "tail": [Row("ln_out.weight", _C), Row("ln_out.bias", _C), Row("head.weight", ("V", "C"))],
}

_LN = [Row("ln1.weight", _C), Row("ln1.bias", _C), Row("ln2.weight", _C), Row("ln2.bias", _C)]
_FFN_MATRICES = [Row("ffn.key.weight", ("F", "C")), Row("ffn.receptance.weight", _CC),   # state-dict order
                 Row("ffn.value.weight", ("C", "F"))]
_LN_X = [Row("att.ln_x.weight", _C), Row("att.ln_x.bias", _C)]

BLOCK = {
    # RWKV-4: time_decay raw (w = -exp(time_decay)), time_first = u
    4: _LN + [
        Row("att.time_decay", _C), Row("att.time_first", _C),
        _vec("att.time_mix_k"), _vec("att.time_mix_v"), _vec("att.time_mix_r"),
        Row("att.key.weight", _CC), Row("att.value.weight", _CC), Row("att.receptance.weight", _CC),
        Row("att.output.weight", _CC),
        _vec("ffn.time_mix_k"), _vec("ffn.time_mix_r"),
    ] + _FFN_MATRICES,
    # RWKV-5.2: per-head matrix state; decay w = exp(-exp(time_decay)) per (head, key channel),
    # time_faaaa = u (the bonus of the current token), a SiLU gate and a GroupNorm per head
    5.2: _LN + [
        _vec("att.time_mix_k"), _vec("att.time_mix_v"), _vec("att.time_mix_r"), _vec("att.time_mix_g"),
        Row("att.time_decay", _HN), Row("att.time_faaaa", _HN),
        Row("att.receptance.weight", _CC), Row("att.key.weight", _CC), Row("att.value.weight", _CC),
        Row("att.gate.weight", _CC), Row("att.output.weight", _CC),
    ] + _LN_X + [_vec("ffn.time_mix_k"), _vec("ffn.time_mix_r")] + _FFN_MATRICES,
    # RWKV-6: token shift and decay depend on the data through small low-rank MLPs
    6: _LN + [
        _vec("att.time_maa_x"), _vec("att.time_maa_w"), _vec("att.time_maa_k"), _vec("att.time_maa_v"),
        _vec("att.time_maa_r"), _vec("att.time_maa_g"),
        _lora("att.time_maa_w1", "5Dm", "C"),          # five (Dm,) codes side by side
        Row("att.time_maa_w2", ("5", "Dm", "C")),       # one (Dm -> C) matrix per mix, stored as used
        Row("att.time_decay", _HN, ("1", "1", "C")),
        _lora("att.time_decay_w1", "Dw", "C"), _lora("att.time_decay_w2", "C", "Dw"),
        Row("att.time_faaaa", _HN),
        Row("att.receptance.weight", _CC), Row("att.key.weight", _CC), Row("att.value.weight", _CC),
        Row("att.gate.weight", _CC), Row("att.output.weight", _CC),
    ] + _LN_X + [_vec("ffn.time_maa_k"), _vec("ffn.time_maa_r")] + _FFN_MATRICES,
    # RWKV-7 (x070): the generalized delta rule; no ffn.receptance; v0/v1/v2 are unused in block 0
    # (the value residual starts there) and some files lack them
    7: _LN + [
        _vec("att.x_r"), _vec("att.x_w"), _vec("att.x_k"), _vec("att.x_v"), _vec("att.x_a"), _vec("att.x_g"),
        _vec("att.w0"), _lora("att.w1", "Dw", "C"), _lora("att.w2", "C", "Dw"),
        _vec("att.a0"), _lora("att.a1", "Da", "C"), _lora("att.a2", "C", "Da"),
        _vec("att.v0"), _lora("att.v1", "Dv", "C"), _lora("att.v2", "C", "Dv"),
        _lora("att.g1", "Dg", "C"), _lora("att.g2", "C", "Dg"),
        _vec("att.k_k"), _vec("att.k_a"), Row("att.r_k", _HN),
        Row("att.receptance.weight", _CC), Row("att.key.weight", _CC), Row("att.value.weight", _CC),
        Row("att.output.weight", _CC),
    ] + _LN_X + [_vec("ffn.x_k"), Row("ffn.key.weight", ("F", "C")), Row("ffn.value.weight", ("C", "F"))],
}

# v7's value-residual LoRA of block 0: present in BlinkDL's files, never used
V7_BLOCK0_UNUSED = ("att.v0", "att.v1", "att.v2")

# config key of each low-rank letter
LORA_KEYS = {"Dw": "decay_lora", "Dm": "mix_lora", "Da": "a_lora", "Dv": "v_lora", "Dg": "gate_lora"}


def version_of(config: Mapping) -> float:
    """The version in a config dict (4 when absent: every config written before v5 existed)."""
    v = config.get("version", 4)
    if v not in VERSIONS:
        raise ValueError(f"unknown RWKV version {v!r}; known: {', '.join(map(str, VERSIONS))}")
    return v


def sizes(config: Mapping) -> Dict[str, int]:
    """Letter -> size for a config dict (n_layer, n_embd, vocab_size, ffn_dim [, head_size, *_lora])."""
    C = int(config["n_embd"])
    N = int(config.get("head_size") or 0) or 1
    size = {"1": 1, "5": 5, "C": C, "F": int(config["ffn_dim"]), "V": int(config["vocab_size"]),
            "N": N, "H": C // N}
    for letter, key in LORA_KEYS.items():
        size[letter] = int(config.get(key) or 0)
    size["5Dm"] = 5 * size["Dm"]
    return size


def rows(config: Mapping):
    """(internal name, Row) for every tensor of a model with this config, in state-dict order."""
    version = version_of(config)
    for row in TOP["head"]:
        yield row.name, row
    for i in range(int(config["n_layer"])):
        for row in BLOCK[version]:
            if version == 7 and i == 0 and row.name in V7_BLOCK0_UNUSED:
                row = Row(row.name, row.shape, row.stored, row.transposed, optional=True)
            yield f"blocks.{i}.{row.name}", row
    for row in TOP["tail"]:
        yield row.name, row


def param_shapes(config: Mapping, *, required_only: bool = False) -> Dict[str, Tuple[int, ...]]:
    """{internal name: shape as the model uses it} for a config dict (see ``sizes``)."""
    size = sizes(config)
    return {name: row.shape_of(size) for name, row in rows(config) if not (required_only and row.optional)}


def count_layers(names, prefix: str = "blocks.") -> int:
    """1 + the largest block number among ``names`` that start with ``prefix`` (0 when none)."""
    pattern = re.compile("^" + re.escape(prefix) + r"(\d+)\.")
    numbers = [int(m.group(1)) for m in map(pattern.match, names) if m]
    return max(numbers) + 1 if numbers else 0


# --------------------------------------------------------------------------- names in files


def blinkdl_name(internal: str) -> str:
    """BlinkDL's name of an internal tensor: the same, with ln0 back inside block 0."""
    return "blocks.0." + internal if internal.startswith("ln0.") else internal


_HF_WORDS = [(r"\.att\.", ".attention."), (r"\.ffn\.", ".feed_forward."), (r"\.ln0\.", ".pre_ln."),
             (r"\.time_mix_k$", ".time_mix_key"), (r"\.time_mix_v$", ".time_mix_value"),
             (r"\.time_mix_r$", ".time_mix_receptance"), (r"\.time_mix_g$", ".time_mix_gate")]


def hf_name(internal: str) -> str:
    """The Hugging Face name: transformers' RWKV-4 convention, which the RWKV-5/6 "-HF" repos keep
    (rwkv. prefix except the head, embeddings, pre_ln, attention, feed_forward, time_mix_key...)."""
    name = blinkdl_name(internal)
    if name == "head.weight":
        return name
    if name == "emb.weight":
        return "rwkv.embeddings.weight"
    for pattern, new in _HF_WORDS:
        name = re.sub(pattern, new, name)
    return "rwkv." + name
