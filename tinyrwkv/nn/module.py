"""The smallest useful Module: parameters in one place, gradients beside them, caches passed by hand.

tinyrwkv writes every backward pass by hand (llm.c / min-char-rnn style) instead of using an
autograd engine, so a learner sees exactly what flows backward. The pattern, for every layer:

    y, cache = layer.forward(x)          # cache: whatever backward needs, returned, not stored
    dx = layer.backward(dy, cache)       # ADDS parameter gradients into layer.grads, returns dx

Returning the cache (instead of keeping it on the layer) is what makes backprop through time
easy: a recurrent model calls the same cell T times and keeps T caches in a list.

A Module owns ``params`` (name -> array) and ``grads`` (same names, same shapes). Submodules are
plain attributes (or lists of modules); ``named_parameters()`` walks them and gives dotted names
such as ``encoder.layers.0.w_ih``, the names checkpoints, optimisers and gradient checks share.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError


class Module:
    """Base class: parameter bookkeeping, dtype casting, state dicts. Subclasses add forward/backward."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    # -- parameters ---------------------------------------------------------------------------

    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Registers a parameter and a zero gradient of the same shape."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def children(self):
        """(name, submodule) pairs, including modules held in lists or tuples (``layers.0`` ...)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = ""):
        """Yields (dotted name, param, grad) for this module and every submodule."""
        for name, p in self.params.items():
            yield prefix + name, p, self.grads[name]
        for cname, child in self.children():
            yield from child.named_parameters(f"{prefix}{cname}.")

    def parameters(self) -> dict[str, np.ndarray]:
        """Dotted name -> parameter array (the arrays themselves, not copies)."""
        return {n: p for n, p, _ in self.named_parameters()}

    def gradients(self) -> dict[str, np.ndarray]:
        """Dotted name -> gradient array (the arrays themselves, not copies)."""
        return {n: g for n, _, g in self.named_parameters()}

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.named_parameters())

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g[...] = 0

    def astype(self, dtype):
        """Casts every parameter (and gradient) in place of the dict entries; float64 for gradient checks."""
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.grads = {k: v.astype(dtype) for k, v in self.grads.items()}
        for _, child in self.children():
            child.astype(dtype)
        return self

    # -- state dicts ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter by dotted name (what ``.npz`` checkpoints store)."""
        return {n: p.copy() for n, p in self.parameters().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]):
        """Copies arrays into the parameters; lists every missing/unexpected key and shape mismatch."""
        own = self.parameters()
        missing, unexpected, mismatched = compare_shapes(own, state)
        wrong = [f"{k}: expected {want}, got {got}" for k, want, got in mismatched]
        if missing or unexpected or wrong:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                             f"unexpected keys {unexpected}, wrong shapes {wrong}")
        for k, p in own.items():
            p[...] = state[k]


def compare_shapes(expected, actual):
    """What differs between two name -> array (or name -> shape tuple) mappings.

    Returns (missing, unexpected, mismatched): sorted names only in ``expected``, sorted names only
    in ``actual``, and (name, expected shape, actual shape) for shared names whose shapes differ.
    Every "does this checkpoint fit this model?" error is built from these three lists.
    """
    shape = lambda v: tuple(v) if isinstance(v, tuple) else tuple(np.shape(v))  # noqa: E731
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mismatched = [(k, shape(expected[k]), shape(actual[k])) for k in sorted(set(expected) & set(actual))
                  if shape(expected[k]) != shape(actual[k])]
    return missing, unexpected, mismatched


def check_shape(name: str, x: np.ndarray, expected: tuple):
    """Raises ValueError unless x.shape matches ``expected`` (None matches any size).

    ``expected`` is written the way the docstrings write shapes, e.g. (None, None, 16) for (B, T, 16).
    """
    x = np.asarray(x)
    ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {x.shape}")
    return x


def check_float(name: str, x: np.ndarray):
    """Raises TypeError unless x holds floating-point numbers (ints would silently truncate gradients)."""
    if not np.issubdtype(np.asarray(x).dtype, np.floating):
        raise TypeError(f"{name}: expected a float array, got dtype {np.asarray(x).dtype}")
    return x


def _layout_ndim(layout: str) -> int:
    """How many axes a shape written like the docstrings has: "int" -> 0, "(B,)" -> 1, "(B, T)" -> 2."""
    return 0 if layout == "int" else len([a for a in layout.strip("()").split(",") if a.strip()])


def _kind_of(value) -> str:
    return "bool" if isinstance(value, (bool, np.bool_)) else type(value).__name__


def check_tokens(name: str, ids, vocab_size: int, layouts=None) -> np.ndarray:
    """The one token-id check of every model: ``ids`` -> an int64 array of ids in [0, vocab_size).

    ``ids`` may be an int, a (nested) list or tuple, or an integer array. ``layouts`` (optional) are
    the shapes allowed, written like the docstrings: "int", "(T,)", "(B,)", "(B, T)". Raises
    ParameterError, its message starting with ``name``, for: empty input, a ragged nested list,
    anything but integers (floats, even 1.0; strings; None; other objects), booleans, an id < 0 or
    >= vocab_size (named), and a shape that is none of ``layouts``.
    """
    if isinstance(layouts, str):
        layouts = (layouts,)
    allowed = f"integer token ids in [0, {vocab_size})"
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError):       # numpy refuses nested lists of unequal length
        raise ParameterError(f"{name} is ragged: its rows have different lengths; give {allowed} of one "
                             f"rectangular shape") from None
    if arr.dtype.kind == "f" and not isinstance(ids, np.ndarray):
        arr = np.asarray(ids, dtype=object)   # ints beyond int64 mixed with others turn into floats
    if layouts is not None and arr.ndim not in {_layout_ndim(layout) for layout in layouts}:
        raise ParameterError(f"{name} must be {' or '.join(layouts)} {allowed}, got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty: give at least one token id (shape {arr.shape})")
    if arr.dtype.kind == "O":             # Python objects: ints too large for int64, None, lists ...
        flat = arr.ravel().tolist()
        bads = [v for v in flat if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
        if bads:
            bad = bads[0]
            what = "a nested list of unequal depth" if isinstance(bad, (list, tuple)) else _kind_of(bad)
            raise ParameterError(f"{name} must be {allowed}, got {what} ({bad!r:.40})")
        lo, hi = min(flat), max(flat)
    elif arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
    else:
        what = {"b": "bool", "f": "float", "c": "complex", "U": "str", "S": "bytes"}.get(arr.dtype.kind, "")
        raise ParameterError(f"{name} must be {allowed}, got {what} (dtype {arr.dtype})")
    if lo < 0 or hi >= vocab_size:
        raise ParameterError(f"{name}: token id {lo if lo < 0 else hi} is out of range [0, {vocab_size})")
    return arr.astype(np.int64)
