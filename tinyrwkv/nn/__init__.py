"""Building blocks with forward and backward, each defined once (see functional.py)."""
from . import functional  # noqa: F401
