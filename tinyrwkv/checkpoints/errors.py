"""The two errors every checkpoint reader raises, so callers catch one thing.

They are defined with the package's other error types in ``tinyrwkv/errors.py``."""
from __future__ import annotations

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["CheckpointError", "UnsafeCheckpointError"]
