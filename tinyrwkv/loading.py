"""``load``: checkpoint -> model. The one place where ``checkpoints`` and ``models`` meet.

    model = load("RWKV/rwkv-4-169m-pile")      # repo id | folder | .safetensors | .bin | .pth
"""
from __future__ import annotations

from typing import Optional

from .checkpoints import read_checkpoint
from .models.rwkv import RWKV, RWKVConfig


def load(source, backend: str = "auto", *, revision: Optional[str] = None, cache_dir=None,
         progress: bool = True) -> RWKV:
    """Reads an RWKV-4 checkpoint (see ``tinyrwkv.checkpoints.read_checkpoint`` for what ``source``
    may be) and builds the model on it; ``backend`` picks the WKV kernels ("auto", "numba",
    "numpy", "cuda"). Raises CheckpointError naming the file, key or shape at fault."""
    config, params = read_checkpoint(source, revision=revision, cache_dir=cache_dir, progress=progress)
    return RWKV(RWKVConfig.from_dict(config), params, backend=backend)
