"""Reading ``.safetensors`` files: a tiny, safe format we parse ourselves (numpy has no bfloat16,
so the ``safetensors`` library's numpy loader cannot give us bf16 anyway).

A .safetensors file is three things, back to back:

    8 bytes      N, the header length, an unsigned little-endian 64-bit integer
    N bytes      a JSON header, e.g.
                 {"__metadata__": {"format": "pt"},
                  "head.weight": {"dtype": "BF16", "shape": [50277, 768], "data_offsets": [0, 77225472]},
                  ...}
    the rest     the data: tensor after tensor, raw little-endian, C-contiguous, no gaps

``data_offsets`` = [begin, end) in bytes, counted from the start of the data (byte 8 + N). No code,
no pickle: the worst a bad file can do is lie, which we check as the reference library does:
a header of at most 100 MB of strict JSON (``json_file``: no duplicate names, no NaN, bounded
nesting); known dtypes; dims that are non-negative ints (not floats, not bools); end - begin ==
prod(shape) * itemsize(dtype) computed with Python ints (``np.prod`` wraps to 0 on overflow); the
tensors, sorted by offset, tile the data exactly: no overlap, no gap, nothing past the end of the
file; ``__metadata__`` maps strings to strings.

Big models are split into shards, ``model-00001-of-00002.safetensors`` ..., with an index
``model.safetensors.index.json``: {"metadata": {...}, "weight_map": {tensor name: shard file}}.
The same index layout serves sharded torch files (``pytorch_model.bin.index.json``).
"""
from __future__ import annotations

import math
import os
import pathlib
import struct
from typing import Dict

from .errors import CheckpointError
from .json_file import parse_json, read_json_object
from .tensors import RAW_DTYPES, StoredTensor

# safetensors dtype codes -> our dtype names (tensors.RAW_DTYPES)
SAFETENSORS_DTYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
MAX_HEADER_BYTES = 100 * 1024 * 1024   # the reference implementation refuses larger headers too
MAX_NDIM = 64


def read_header(path) -> dict:
    """The parsed JSON header of a .safetensors file (checked to be a JSON object):
    {"length": N, "file_size": bytes, "entries": the header dict}."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        file_size = f.seek(0, 2)
        f.seek(0)
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({file_size} bytes)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: not a valid safetensors file: its header claims {header_length} bytes, "
                                  f"over the format's limit of {MAX_HEADER_BYTES} (corrupt or not safetensors)")
        if header_length > file_size - 8:
            raise CheckpointError(f"{path}: not a valid safetensors file: its header claims {header_length} bytes "
                                  f"but the file has {file_size} (truncated or not safetensors)")
        raw = f.read(header_length)
    header = parse_json(raw, path, "safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (a {type(header).__name__}, not an object)")
    return {"length": header_length, "file_size": file_size, "entries": header}


def _is_size(value) -> bool:
    """A JSON integer >= 0 (json gives bool for true/false and float for 2.0: both refused)."""
    return type(value) is int and value >= 0


def _parse_entry(path, name: str, entry):
    """(dtype name, shape, begin, end) of one header entry, every field checked."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r}: expected an object with "
                              f"dtype, shape and data_offsets, got {str(entry)[:120]}")
    dtype_code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype_code, str) or dtype_code not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {str(dtype_code)[:40]}, which tinyrwkv cannot "
                              f"read (supported: {', '.join(SAFETENSORS_DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_size(d) for d in shape):
        raise CheckpointError(f"{path}: tensor {name!r}: bad shape {str(shape)[:120]} (a list of at most "
                              f"{MAX_NDIM} non-negative integers)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise CheckpointError(f"{path}: tensor {name!r}: bad data_offsets {str(offsets)[:120]} "
                              f"(two integers 0 <= begin <= end)")
    return SAFETENSORS_DTYPES[dtype_code], tuple(shape), offsets[0], offsets[1]


def list_tensors(path) -> Dict[str, StoredTensor]:
    """{name: StoredTensor} for one .safetensors file, from its header alone (nothing else is read)."""
    path = pathlib.Path(path)
    parsed = read_header(path)
    data_start = 8 + parsed["length"]
    data_size = parsed["file_size"] - data_start
    metadata = parsed["entries"].get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: corrupt safetensors header: __metadata__ must map strings to strings, "
                              f"got {str(metadata)[:120]}")
    tensors, spans = {}, []
    for name, entry in parsed["entries"].items():
        if name == "__metadata__":
            continue
        dtype, shape, begin, end = _parse_entry(path, name, entry)
        expected_bytes = math.prod(shape) * RAW_DTYPES[dtype].itemsize      # Python ints: no wrap-around
        if end - begin != expected_bytes:
            raise CheckpointError(f"{path}: tensor {name!r}: header says {end - begin} bytes but "
                                  f"{entry['dtype']} x {list(shape)} needs {expected_bytes}")
        if end > data_size:
            raise CheckpointError(f"{path}: tensor {name!r} ends at byte {end} of the data but the file holds "
                                  f"only {data_size} bytes of data (truncated?)")
        spans.append((begin, end, name))
        tensors[name] = StoredTensor(name=name, file=path, dtype=dtype, shape=shape, offset=data_start + begin)
    # the reference library's rule: sorted by offset, the tensors tile the data with no overlap and no gap
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < position:
            raise CheckpointError(f"{path}: tensors {previous!r} and {name!r} overlap (bytes {begin}..{position} "
                                  f"of the data belong to both)")
        if begin > position:
            raise CheckpointError(f"{path}: {begin - position} unused bytes before tensor {name!r} "
                                  f"(data_offsets leave a gap at byte {position})")
        position, previous = end, name
    if position != data_size:
        raise CheckpointError(f"{path}: {data_size - position} bytes after the last tensor that no header entry "
                              f"describes (corrupt header?)")
    return tensors


def read_index(index_path) -> Dict[str, pathlib.Path]:
    """{tensor name: shard path} from a ``*.index.json`` (safetensors or torch shards)."""
    index_path = pathlib.Path(index_path)
    index = read_json_object(index_path, "shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path}: not a valid shard index: \"weight_map\" must map tensor names "
                              f"to file names, got {str(weight_map)[:120]}")
    for file in set(weight_map.values()):
        normal = os.path.normpath(file)
        if not file or os.path.isabs(file) or normal.startswith("..") or "\\" in file or ":" in file:
            raise CheckpointError(f"{index_path}: shard file name {file!r:.100} points outside the index's folder")
    shards = {name: index_path.parent / file for name, file in weight_map.items()}
    absent = sorted({str(p) for p in shards.values() if not p.is_file()})
    if absent:
        raise CheckpointError(f"{index_path}: shard file(s) missing: {', '.join(absent)}")
    return shards
