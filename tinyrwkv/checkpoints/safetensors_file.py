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
no pickle: the worst a bad file can do is lie about offsets and sizes, which we check:
every tensor lies inside the file and end - begin == prod(shape) * itemsize(dtype).

Big models are split into shards, ``model-00001-of-00002.safetensors`` ..., with an index
``model.safetensors.index.json``: {"metadata": {...}, "weight_map": {tensor name: shard file}}.
The same index layout serves sharded torch files (``pytorch_model.bin.index.json``).
"""
from __future__ import annotations

import json
import pathlib
import struct
from typing import Dict

import numpy as np

from .errors import CheckpointError
from .tensors import RAW_DTYPES, StoredTensor

# safetensors dtype codes -> our dtype names (tensors.RAW_DTYPES)
SAFETENSORS_DTYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
MAX_HEADER_BYTES = 100 * 1024 * 1024   # the reference implementation refuses larger headers too


def read_header(path) -> dict:
    """The parsed JSON header of a .safetensors file (checked to be a JSON object)."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        file_size = f.seek(0, 2)
        f.seek(0)
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({file_size} bytes)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(MAX_HEADER_BYTES, file_size - 8):
            raise CheckpointError(f"{path}: not a valid safetensors file: its header claims {header_length} bytes "
                                  f"but the file has {file_size} (truncated or not safetensors)")
        raw = f.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (a {type(header).__name__}, not an object)")
    return {"length": header_length, "file_size": file_size, "entries": header}


def list_tensors(path) -> Dict[str, StoredTensor]:
    """{name: StoredTensor} for one .safetensors file, from its header alone (nothing else is read)."""
    path = pathlib.Path(path)
    parsed = read_header(path)
    data_start = 8 + parsed["length"]
    data_size = parsed["file_size"] - data_start
    tensors = {}
    for name, entry in parsed["entries"].items():
        if name == "__metadata__":
            continue
        try:
            dtype_code, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(d) for d in shape)
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r}: {entry!r:.200}") from e
        if dtype_code not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype_code}, which tinyrwkv cannot read "
                                  f"(supported: {', '.join(SAFETENSORS_DTYPES)})")
        dtype = SAFETENSORS_DTYPES[dtype_code]
        expected_bytes = int(np.prod(shape, dtype=np.int64)) * RAW_DTYPES[dtype].itemsize
        if any(d < 0 for d in shape) or not 0 <= begin <= end:
            raise CheckpointError(f"{path}: tensor {name!r}: bad shape {shape} or offsets [{begin}, {end})")
        if end - begin != expected_bytes:
            raise CheckpointError(f"{path}: tensor {name!r}: header says {end - begin} bytes but "
                                  f"{dtype_code} x {shape} needs {expected_bytes}")
        if end > data_size:
            raise CheckpointError(f"{path}: tensor {name!r} ends at byte {end} of the data but the file holds "
                                  f"only {data_size} bytes of data (truncated?)")
        tensors[name] = StoredTensor(name=name, file=path, dtype=dtype, shape=shape, offset=data_start + begin)
    return tensors


def read_index(index_path) -> Dict[str, pathlib.Path]:
    """{tensor name: shard path} from a ``*.index.json`` (safetensors or torch shards)."""
    index_path = pathlib.Path(index_path)
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map must map tensor names to file names")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: not a valid shard index ({type(e).__name__}: {e})") from None
    shards = {name: index_path.parent / file for name, file in weight_map.items()}
    absent = sorted({str(p) for p in shards.values() if not p.is_file()})
    if absent:
        raise CheckpointError(f"{index_path}: shard file(s) missing: {', '.join(absent)}")
    return shards
