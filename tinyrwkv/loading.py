"""``load``: checkpoint -> model. The one place where ``checkpoints`` and ``models`` meet.

    model = load("RWKV/rwkv-4-169m-pile")      # repo id | folder | .safetensors | .bin | .pth
    model = load("tiny")                       # the tiny char-level RWKV-4 shipped in the package
"""
from __future__ import annotations

from typing import Optional

from .checkpoints import read_checkpoint
from .models.rwkv import RWKV, RWKVConfig
from .tokenizer import SHIPPED_MODELS


def load(source, backend: str = "auto", *, revision: Optional[str] = None, cache_dir=None,
         progress: bool = True) -> RWKV:
    """Reads an RWKV-4 checkpoint (see ``tinyrwkv.checkpoints.read_checkpoint`` for what ``source``
    may be) and builds the model on it; ``backend`` picks the WKV kernels ("auto", "numba",
    "numpy", "cuda"). ``source`` may also name a model shipped in the package ("tiny": a 4-layer
    char-level RWKV-4 trained on the small_tales corpus). Raises CheckpointError naming the file,
    key or shape at fault."""
    if isinstance(source, str) and source in SHIPPED_MODELS:
        source = SHIPPED_MODELS[source]
    config, params = read_checkpoint(source, revision=revision, cache_dir=cache_dir, progress=progress)
    return RWKV(RWKVConfig.from_dict(config), params, backend=backend)
