"""Strict, bounded JSON for the small files beside the weights (config.json, *.index.json) and the
safetensors header.

Python's ``json`` accepts things no JSON writer of ours produces and that hurt later:
``NaN``/``Infinity`` (a ``layer_norm_epsilon`` of infinity), duplicate keys (the last silently
wins: two entries for one tensor name), and nesting deep enough to raise ``RecursionError``.
``parse_json`` refuses all three, bounds the size and the number of values (the Python objects
cost 20-40x the text), and turns every failure into a one-line CheckpointError naming the file.
"""
from __future__ import annotations

import json
import pathlib

from .errors import CheckpointError

MAX_JSON_DEPTH = 64                  # our files nest 3 deep; 64 leaves room and stays far from recursion limits
MAX_JSON_BYTES = 100 * 2**20         # the safetensors reference library's header limit
# Python objects cost ~50-100 bytes per JSON value: 100 MB of "0," would build 50M of them (37 s, and
# past 4 GB). A safetensors header needs ~10 values per tensor, so 2M values is 200,000 tensors.
MAX_JSON_VALUES = 2_000_000


class _Refused(ValueError):
    pass


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"the key {key!r:.100} appears twice")
        result[key] = value
    return result


def _no_constants(name):
    raise _Refused(f"{name} is not a JSON number")


def _depth(value) -> int:
    """How deep lists and objects nest in a parsed value (iteratively: no recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(raw: bytes, where, what: str):
    """The value of the UTF-8 JSON document ``raw``; ``where`` (a path) and ``what`` ("config.json",
    "safetensors header") name it in the CheckpointError raised for anything malformed."""
    # every value but the first follows a "," or a ":" (these bytes inside strings count too: an
    # upper bound, counted in C before anything is built)
    values = raw.count(b",") + raw.count(b":")
    if values > MAX_JSON_VALUES:
        raise CheckpointError(f"{where}: {what} holds about {values:,} JSON values; tinyrwkv parses at most "
                              f"{MAX_JSON_VALUES:,}")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise CheckpointError(f"{where}: corrupt {what}: JSON nested too deep") from None
    except _Refused as e:
        raise CheckpointError(f"{where}: corrupt {what}: {e}") from None
    except (UnicodeDecodeError, ValueError) as e:   # JSONDecodeError, and ints of more than 4300 digits
        raise CheckpointError(f"{where}: corrupt {what} (not JSON: {str(e)[:200]})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where}: corrupt {what}: JSON nested more than {MAX_JSON_DEPTH} deep")
    return value


def read_json_object(path, what: str) -> dict:
    """A JSON file whose top level must be an object, read with ``parse_json`` (size-bounded)."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise CheckpointError(f"{path}: {what} is over {MAX_JSON_BYTES // 2**20} MiB; refusing to parse it")
    value = parse_json(raw, path, what)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: corrupt {what}: the top level is a JSON {type(value).__name__}, "
                              f"not an object")
    return value
