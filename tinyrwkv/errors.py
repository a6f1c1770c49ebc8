"""The package's own error types, in one place (the lowest layer: every other module may import it).

Every error a user can cause and fix (a bad file, a bad parameter, a missing model) is a
``TinyRWKVError``, and its message names the thing at fault: the file, the key, the shape, the
parameter. The command line turns exactly these into a one-line message and exit status 2; any
other exception is a bug in tinyrwkv and keeps its traceback.

    TinyRWKVError
    ├── CheckpointError          a checkpoint cannot be read (missing, corrupt, wrong names/shapes)
    │   └── UnsafeCheckpointError   a pickle asked for a global that tensor storage never needs
    ├── StateFileError           a saved RNN state cannot be read (wrong format, truncated, ...)
    └── ParameterError           a bad argument value or type (also a ValueError)
"""
from __future__ import annotations


class TinyRWKVError(Exception):
    """Base class of every error tinyrwkv raises on purpose, with a message naming what is wrong."""


class CheckpointError(TinyRWKVError):
    """A checkpoint cannot be read: missing file, corrupt bytes, wrong names or shapes, no network.

    The message always names the file (and the tensor or key, when one is at fault)."""


class UnsafeCheckpointError(CheckpointError):
    """A torch pickle asked for a Python global that storing tensors never needs.

    Raised *before* anything is called, so nothing from the file was executed."""


class StateFileError(TinyRWKVError, ValueError):
    """A file given as a saved model state is not one this package wrote, or is damaged.

    The message names the file and what is wrong with it."""


class ParameterError(TinyRWKVError, ValueError):
    """A function or command-line parameter has a bad value or type; the message names it."""
