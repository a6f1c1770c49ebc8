"""From "whatever the user typed" to (config, float32 params): the one entry point of checkpoints/.

The steps, each cheap until the last:

1. resolve   repo id -> the cache, else download (hub.fetch); folder -> its weights file (safetensors preferred); file -> itself
2. list      read headers only (safetensors JSON header / torch data.pkl) -> {name: StoredTensor}
3. map       detect the naming (Hugging Face or BlinkDL), infer the config from the shapes,
             check every key and shape against it (one error listing every problem)
4. read      convert tensor by tensor straight into the final float32 arrays

Steps 1-3 are also all that ``inspect_checkpoint`` (``tinyrwkv info``) does.
"""
from __future__ import annotations

import math
import pathlib
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import layouts
from . import naming, safetensors_file, torch_zip
from .errors import CheckpointError
from .hub import locate
from .json_file import read_json_object
from .tensors import StoredTensor, first_nonfinite, iter_float32_rows, read_float32

# folder -> weights file, in order of preference (safetensors needs no pickle and no torch)
PREFERRED_FILES = ("model.safetensors.index.json", "model.safetensors",
                   "pytorch_model.bin.index.json", "pytorch_model.bin")
DEFAULT_EPSILON = 1e-5


def weights_in_folder(folder: pathlib.Path) -> pathlib.Path:
    """The weights file of a folder: model.safetensors(.index.json), pytorch_model.bin(.index.json),
    else the only *.safetensors / *.pth / *.bin in it."""
    for name in PREFERRED_FILES:
        if (folder / name).is_file():
            return folder / name
    for pattern in ("*.safetensors", "*.pth", "*.bin"):
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f"{folder}: several {pattern} files ({', '.join(p.name for p in found)}) "
                                  f"and no index; pass the file to load")
    listing = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
    raise CheckpointError(f"{folder}: no weights: expected {', '.join(PREFERRED_FILES)} or a single "
                          f"*.safetensors / *.pth / *.bin; the folder holds {listing}")


def resolve(source, *, revision=None, cache_dir=None, progress=True) -> pathlib.Path:
    """The local weights file (or shard index) for a repo id, folder or file; downloads repo ids."""
    # an existing path as it is; a repo id from the cache or the Hub (offline said at once)
    path = locate(source, revision, cache_dir, progress=progress)
    if path.is_dir():
        return weights_in_folder(path)
    return path


def _list_file(path: pathlib.Path) -> Tuple[Dict[str, StoredTensor], str]:
    """Headers of one weights file, whichever format it is (told by its first bytes, then its name)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if torch_zip.looks_like_zip(path):
        return torch_zip.list_tensors(path), "torch zip"
    if torch_zip.looks_like_legacy_torch(path):
        raise torch_zip.legacy_error(path)
    if path.suffix == ".safetensors":
        return safetensors_file.list_tensors(path), "safetensors"
    with open(path, "rb") as f:
        start = f.read(9)
    if len(start) == 9 and start[8:9] == b"{":   # 8-byte length, then the JSON header
        return safetensors_file.list_tensors(path), "safetensors"
    raise CheckpointError(f"{path}: unrecognised file: neither a torch zip checkpoint (.bin / .pth) nor "
                          f"safetensors (corrupt or truncated?)")


def list_stored_tensors(weights: pathlib.Path) -> Tuple[Dict[str, StoredTensor], str]:
    """({name in file: StoredTensor}, format) for a weights file or a shard index, headers only."""
    if weights.name.endswith(".index.json"):
        shards = safetensors_file.read_index(weights)
        tensors: Dict[str, StoredTensor] = {}
        formats = set()
        for shard in sorted(set(shards.values())):
            found, fmt = _list_file(shard)
            formats.add(fmt)
            for name, tensor in found.items():
                if name in tensors:
                    raise CheckpointError(f"{weights}: tensor {name!r} is in both {tensors[name].file.name} "
                                          f"and {shard.name}")
                tensors[name] = tensor
        absent = [f"{name} (in {shard.name})" for name, shard in shards.items()
                  if name not in tensors or tensors[name].file != shard]
        if absent:
            raise CheckpointError(f"{weights}: the index lists tensors its shards lack: {', '.join(absent)}")
        return tensors, " + ".join(sorted(formats)) + f" ({len(set(shards.values()))} shards)"
    return _list_file(weights)


def _layer_norm_epsilon(weights: pathlib.Path) -> float:
    """layer_norm_epsilon from a config.json beside the weights (HF folders), else 1e-5: a finite
    number in (0, 1) (not a bool, not a string), else a CheckpointError naming the file."""
    config_path = weights.parent / "config.json"
    if not config_path.is_file():
        return DEFAULT_EPSILON
    config = read_json_object(config_path, "config.json")
    epsilon = config.get("layer_norm_epsilon", DEFAULT_EPSILON)
    if type(epsilon) not in (int, float) or not (math.isfinite(epsilon) and 0 < epsilon < 1):
        raise CheckpointError(f"{config_path}: layer_norm_epsilon must be a finite number in (0, 1), "
                              f"got {str(epsilon)[:40]} ({type(epsilon).__name__})")
    return float(epsilon)


def _check_config(config: dict, where: str) -> dict:
    """The inferred sizes must describe a model: every size a positive int."""
    bad = [f"{k}={config[k]!r}" for k in ("n_layer", "n_embd", "vocab_size", "ffn_dim")
           if type(config[k]) is not int or config[k] < 1]
    if bad:
        raise CheckpointError(f"{where}: the shapes in the file describe no model ({', '.join(bad)})")
    return config


def _stored_nonfinite(tensor: StoredTensor, f):
    """first_nonfinite of a stored tensor, read block by block before a ``convert`` hook turns it into
    a compact form (whose NaN/inf would hide in words or scales); the index is in the stored shape."""
    if len(tensor.shape) != 2:
        return first_nonfinite(read_float32(tensor, f))
    count, first = 0, None
    for row, block in iter_float32_rows(tensor, f):
        found = first_nonfinite(block)
        if found:
            count += found[0]
            first = first or ((row + found[1][0], found[1][1]), found[2])
    return (count, first[0], first[1]) if count else None


def _nonfinite_message(name: str, found) -> str:
    count, index, kind = found
    return f"{name}: {count} non-finite value(s) (first at index {index}: {kind})"


def _dtype_summary(tensors) -> str:
    dtypes = sorted({t.dtype for t in tensors})
    return dtypes[0] if len(dtypes) == 1 else "mixed(" + ",".join(dtypes) + ")"


def read_checkpoint(source, *, revision: Optional[str] = None, cache_dir=None,
                    progress: bool = True, convert=None,
                    allow_nonfinite: bool = False) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Reads an RWKV-4, -5.2, -6 or -7 checkpoint into (config, params); the version is detected.

    source: a Hugging Face repo id ("RWKV/rwkv-4-169m-pile"), an HF-style folder (config.json +
        model.safetensors | pytorch_model.bin | shards with an index), a .safetensors / .bin / .pth
        file (BlinkDL names or HF names; float32, float16 or bfloat16) or a shard index.
    config: {"version", "n_layer", "n_embd", "vocab_size", "ffn_dim", "layer_norm_epsilon", "source", "dtype"}
        (+ "head_size", "n_head" and the low-rank sizes for v5-v7), sizes inferred from the shapes;
        epsilon from config.json when present; dtype = stored dtype.
    params: {internal name: float32 C-contiguous array}, names and shapes as in ``tinyrwkv.layouts``
        (e.g. "blocks.3.att.time_mix_k" (C,), "blocks.3.ffn.key.weight" (F, C)).

    convert: optional ``convert(internal_name, tensor: StoredTensor, f) -> value`` that reads each tensor
        itself from the open file ``f`` (e.g. into a compact weight, block by block: see
        ``tensors.iter_float32_rows`` / ``read_raw``); default ``read_float32``. Tensors are read one at
        a time in file order, so memory peaks at the converted values plus one tensor's work space.

    allow_nonfinite: a tensor holding NaN or infinity is refused (CheckpointError naming the tensor,
        the count and the first index) unless this is True (to study a broken checkpoint).

    Raises CheckpointError (file, key and shape named) or UnsafeCheckpointError (malicious pickle)."""
    weights = resolve(source, revision=revision, cache_dir=cache_dir, progress=progress)
    tensors, _ = list_stored_tensors(weights)
    shapes = {name: t.shape for name, t in tensors.items()}
    file_of = {name: t.file.name for name, t in tensors.items()}
    file_naming = naming.detect_naming(shapes, str(weights))
    config = _check_config(naming.infer_config(shapes, file_naming, str(weights), _layer_norm_epsilon(weights)),
                           str(weights))
    table = naming.check_and_map(shapes, file_naming, config, file_of, str(weights))
    config["source"] = str(source)
    config["dtype"] = _dtype_summary(tensors[name] for name in table.values())

    from tqdm import tqdm
    # read in file order, so the disk streams forward
    order = sorted(table, key=lambda internal: (str(tensors[table[internal]].file), tensors[table[internal]].offset))
    total_bytes = sum(tensors[table[name]].numel * tensors[table[name]].itemsize for name in order)
    params: Dict[str, np.ndarray] = {}
    files = {}
    try:
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"reading {weights.name}",
                  disable=None if progress else True) as bar:
            for internal in order:
                tensor = tensors[table[internal]]
                if tensor.file not in files:
                    files[tensor.file] = open(tensor.file, "rb", buffering=0)
                if convert is None:
                    value = read_float32(tensor, files[tensor.file])
                    found = None if allow_nonfinite else first_nonfinite(value)
                else:       # check the stored values first: a compact form would hide (or choke on) NaN/inf
                    found = None if allow_nonfinite else _stored_nonfinite(tensor, files[tensor.file])
                if found:
                    raise CheckpointError(f"{tensor.file}: {_nonfinite_message(tensor.name, found)}; "
                                          f"pass allow_nonfinite=True to load it anyway")
                if convert is not None:
                    value = convert(internal, tensor, files[tensor.file])
                if isinstance(value, np.ndarray):   # (1, 1, C) -> (C,), LoRA (in, out) -> (out, in)
                    value = naming.to_internal(internal, value, config)
                params[internal] = value            # (a compact weight is already (out, in))
                bar.update(tensor.numel * tensor.itemsize)
    except OSError as e:
        raise CheckpointError(f"{weights}: read failed: {e}") from None
    finally:
        for f in files.values():
            f.close()
    return config, {name: params[name] for name in table}   # state-dict order


def inspect_checkpoint(source, *, revision: Optional[str] = None, cache_dir=None,
                       check_values: bool = False) -> dict:
    """Describes a checkpoint from its headers only (no tensor data is read), unless ``check_values``:
    then every tensor is also read once (one at a time) to count its NaN and infinite values.

    Returns {"source", "path", "format", "naming" ("hf" | "blinkdl" | None),
             "tensors": [{"name", "shape", "dtype", "file"}, ...] in file order,
             "parameter_count", "stored_bytes", "dtype" (stored; "mixed(...)" if several),
             "version" (4, 5.2, 6, 7 or None), "config" (inferred, or None),
             "problems" (list of str: missing / unexpected / wrong shape, or what the file looks like;
             with check_values also "<name>: N non-finite value(s) (first at index ...: NaN)"),
             "nonfinite" ({name: count} of the tensors holding any; None without check_values)}."""
    weights = resolve(source, revision=revision, cache_dir=cache_dir)
    tensors, fmt = list_stored_tensors(weights)
    shapes = {name: t.shape for name, t in tensors.items()}
    file_of = {name: t.file.name for name, t in tensors.items()}
    info = {
        "source": str(source), "path": str(weights), "format": fmt, "naming": None,
        "tensors": [{"name": t.name, "shape": t.shape, "dtype": t.dtype, "file": t.file.name}
                    for t in sorted(tensors.values(), key=lambda t: (str(t.file), t.offset))],
        "parameter_count": int(sum(t.numel for t in tensors.values())),
        "stored_bytes": int(sum(t.numel * t.itemsize for t in tensors.values())),
        "dtype": _dtype_summary(tensors.values()) if tensors else None,
        "version": None, "config": None, "problems": [], "nonfinite": None,
    }
    try:
        info["naming"] = naming.detect_naming(shapes, str(weights))
        info["config"] = naming.infer_config(shapes, info["naming"], str(weights), _layer_norm_epsilon(weights))
        info["version"] = info["config"]["version"]
        info["problems"] = naming.find_problems(shapes, info["naming"], info["config"], file_of)
    except CheckpointError as e:
        info["problems"] = [str(e)]
    if check_values:
        info["nonfinite"] = {}
        try:
            for t in sorted(tensors.values(), key=lambda t: (str(t.file), t.offset)):
                with open(t.file, "rb", buffering=0) as f:
                    found = first_nonfinite(read_float32(t, f))
                if found:
                    info["nonfinite"][t.name] = found[0]
                    info["problems"].append(_nonfinite_message(t.name, found))
        except OSError as e:
            raise CheckpointError(f"{weights}: read failed: {e}") from None
    return info


def describe(info: dict) -> List[str]:
    """Human-readable lines for an ``inspect_checkpoint`` result (what ``tinyrwkv info`` prints)."""
    lines = [f"source:     {info['source']}", f"file:       {info['path']} ({info['format']})",
             f"naming:     {info['naming'] or '?'}", f"dtype:      {info['dtype']}",
             f"version:    {layouts.NAMES.get(info.get('version'), '?')}",
             f"parameters: {info['parameter_count']:,} ({info['stored_bytes'] / 2**20:.1f} MiB stored, "
             f"{info['parameter_count'] * 4 / 2**20:.1f} MiB as float32)"]
    config = info["config"]
    if config and config.get("head_size"):
        lines.append(f"heads:      {config['n_head']} heads of size {config['head_size']}")
    if info["config"]:
        lines.append("config:     " + ", ".join(f"{k}={v}" for k, v in info["config"].items()))
    lines += [f"problem:    {p}" for p in info["problems"]]
    width = max((len(t["name"]) for t in info["tensors"]), default=0)
    nonfinite = info.get("nonfinite") or {}
    lines += [f"  {t['name']:<{width}}  {str(tuple(t['shape'])):<16} {t['dtype']}"
              + (f"  {nonfinite[t['name']]} non-finite" if t["name"] in nonfinite else "") for t in info["tensors"]]
    return lines
