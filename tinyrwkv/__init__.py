"""tinyrwkv: from RNNs to RWKV-4 in small NumPy + Numba code.

The front door (re-exports only)::

    import tinyrwkv
    model = tinyrwkv.load("RWKV/rwkv-4-169m-pile")        # repo id | folder | .safetensors | .bin | .pth
                                                          # (RWKV-4, 5.2, 6 or 7: detected from the tensors)
    tok = tinyrwkv.load_tokenizer("RWKV/rwkv-4-169m-pile")
    print(tinyrwkv.generate(model, tok, "Hello my name is", max_new_tokens=10, temperature=0))

Names are imported on first use (PEP 562), so ``import tinyrwkv`` stays fast and compiles nothing.
``__version__`` below is the package's one version number (pyproject.toml reads it from here).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load": "tinyrwkv.loading",
    "load_tokenizer": "tinyrwkv.tokenizer",
    "Tokenizer": "tinyrwkv.tokenizer",
    "CharTokenizer": "tinyrwkv.tokenizer",
    "generate": "tinyrwkv.generation",
    "RWKV": "tinyrwkv.models.rwkv",
    "RWKVConfig": "tinyrwkv.models.rwkv",
    "RWKVState": "tinyrwkv.models.rwkv",
    "RWKV5": "tinyrwkv.models.rwkv5",
    "RWKV6": "tinyrwkv.models.rwkv6",
    "RWKV7": "tinyrwkv.models.rwkv7",
    "MatrixState": "tinyrwkv.models.state",
    "WorldTokenizer": "tinyrwkv.tokenizer_world",
    "read_checkpoint": "tinyrwkv.checkpoints",
    # the error types (tinyrwkv/errors.py): catch TinyRWKVError for anything a user can fix
    "TinyRWKVError": "tinyrwkv.errors",
    "CheckpointError": "tinyrwkv.errors",
    "UnsafeCheckpointError": "tinyrwkv.errors",
    "StateFileError": "tinyrwkv.errors",
    "ParameterError": "tinyrwkv.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value          # next time: a plain attribute
        return value
    raise AttributeError(f"module 'tinyrwkv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
