"""Reading RWKV-4 weights, without torch, from the files people actually download.

    config, params = read_checkpoint("RWKV/rwkv-4-169m-pile")      # or a folder, .safetensors, .bin, .pth
    config  -> {"n_layer": 12, "n_embd": 768, "vocab_size": 50277, "ffn_dim": 3072,
                "layer_norm_epsilon": 1e-05, "source": ..., "dtype": "float32"}
    params  -> {"emb.weight": (50277, 768) float32, "ln0.weight": (768,), ...,
                "blocks.0.att.time_decay": (768,), ..., "head.weight": (50277, 768)}

Files, one idea each:

    tensors.py          a stored tensor = file + byte offset + dtype + shape; bf16/fp16 -> float32
    torch_zip.py        torch.save files: a zip of data.pkl + raw storages; the restricted unpickler
    safetensors_file.py safetensors: 8-byte length, JSON header, raw data; shard indexes
    naming.py           internal <-> Hugging Face <-> BlinkDL names; config from shapes; key checks
    hub.py              download from the Hugging Face Hub
    reader.py           read_checkpoint / inspect_checkpoint: resolve, list, map, read

This package knows no model code: it hands plain arrays to whoever builds the model.
"""
from .errors import CheckpointError, UnsafeCheckpointError
from .hub import download
from .naming import expected_shapes, internal_names, name_table, to_file_layout
from .reader import describe, inspect_checkpoint, read_checkpoint

__all__ = [
    "read_checkpoint", "inspect_checkpoint", "describe", "download",
    "CheckpointError", "UnsafeCheckpointError",
    "internal_names", "name_table", "expected_shapes", "to_file_layout",
]
