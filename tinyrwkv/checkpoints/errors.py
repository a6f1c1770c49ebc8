"""The two errors every checkpoint reader raises, so callers catch one thing."""
from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint cannot be read: missing file, corrupt bytes, wrong names or shapes, no network.

    The message always names the file (and the tensor or key, when one is at fault)."""


class UnsafeCheckpointError(CheckpointError):
    """A torch pickle asked for a Python global that storing tensors never needs.

    Raised *before* anything is called, so nothing from the file was executed."""
