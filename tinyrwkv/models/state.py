"""What an RWKV remembers about the past, for every version: a few arrays with a layer axis and a batch axis.

    RWKV-4      RWKVState:    att_x, aa, bb, pp, ffn_x          each (L, B, C)
    RWKV-5/6/7  MatrixState:  att_x (L, B, C), wkv (L, B, H, N, N), ffn_x (L, B, C)

att_x / ffn_x are the last token's ln1 / ln2 output (token shift needs x_{t-1}); v4's WKV state is a
running numerator aa, denominator bb and max exponent pp per channel; from v5 on it is one N x N
matrix per head (indexed [key, value] in v5/v6 and [value, key] in v7, as in each version's paper).
The state's size does not grow with the number of tokens seen.

Both classes share one set of methods (``StateMethods``): copy, save / load (.npz), stack / select
along the batch axis, check against a model config, size, and a short repr.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import StateFileError
from ..npz_file import read_npz

# The WKV-4 state's running max starts at "minus infinity" (finite, so pp - max stays a number);
# the same value the WKV kernels and transformers use.
from ..kernels.wkv_numpy import NEG_INF  # noqa: E402  (the one definition lives with the kernels)


class StateMethods:
    """The methods every RWKV state has. A subclass is a dataclass whose fields (``FIELDS``) are
    float32 arrays with the layer on axis 0 and the batch on axis 1, described in ``SHAPES``."""

    FIELDS: tuple = ()
    SHAPES: dict = {}

    @classmethod
    def _ndim(cls, field) -> int:
        return cls.SHAPES[field].count(",") + 1

    def _arrays(self):
        return [getattr(self, f) for f in self.FIELDS]

    def _validate(self):
        first = getattr(self, self.FIELDS[0])
        lead = np.shape(first)[:2]
        for f in self.FIELDS:
            a = getattr(self, f)
            if np.ndim(a) != self._ndim(f) or np.shape(a)[:2] != lead:
                raise ValueError(f"{type(self).__name__}: {f} must be {self.SHAPES[f]} with (n_layer, batch) = "
                                 f"{lead} like {self.FIELDS[0]}, got shape {np.shape(a)}")

    @classmethod
    def empty_like(cls, other):
        return cls(*(np.empty_like(a) for a in other._arrays()))

    @property
    def n_layer(self) -> int:
        return getattr(self, self.FIELDS[0]).shape[0]

    @property
    def batch_size(self) -> int:
        return getattr(self, self.FIELDS[0]).shape[1]

    def size(self) -> int:
        """Floats carried per sequence (whatever the number of tokens seen)."""
        return int(sum(a.size for a in self._arrays())) // max(self.batch_size, 1)

    def copy(self):
        return type(self)(*(a.copy() for a in self._arrays()))

    def save(self, path) -> None:
        """Writes the arrays to an .npz file (one member per field)."""
        np.savez(path, **{f: getattr(self, f) for f in self.FIELDS})

    @classmethod
    def load(cls, path):
        """Reads a state written by ``save`` through the safe .npz reader; StateFileError names the
        file (and the array) for anything else: not an .npz, another kind of state (other members),
        wrong dtype or ndim, truncated, NaN."""
        arrays = read_npz(path, {f: cls._ndim(f) for f in cls.FIELDS}, what=f"{cls.__name__} file")
        try:
            return cls(*(arrays[f] for f in cls.FIELDS))
        except ValueError as e:                      # the shapes disagree
            raise StateFileError(f"{os.fspath(path)}: not a valid {cls.__name__} file: {e}") from None

    @classmethod
    def stack(cls, states):
        """Joins states of several sequences along the batch axis: B = sum of their batch sizes."""
        states = list(states)
        if not states:
            raise ValueError(f"{cls.__name__}.stack: no states given")
        return cls(*(np.concatenate([getattr(s, f) for s in states], axis=1) for f in cls.FIELDS))

    def select(self, index):
        """The state of sequence ``index`` (an int keeps a batch axis of 1) or of a list of them."""
        index = [index] if np.ndim(index) == 0 else list(index)
        return type(self)(*(a[:, index] for a in self._arrays()))

    def __repr__(self):
        """Shapes, batch, dtype and size, never the arrays, e.g. RWKVState(batch=1, float32,
        att_x(12, 1, 768), ...; 46,080 floats per sequence, 180.0 KiB)."""
        shapes = ", ".join(f"{f}{tuple(getattr(self, f).shape)}" for f in self.FIELDS)
        dtypes = "/".join(sorted({str(a.dtype) for a in self._arrays()}))
        kib = sum(a.nbytes for a in self._arrays()) / 1024
        return (f"{type(self).__name__}(batch={self.batch_size}, {dtypes}, {shapes}; "
                f"{self.size():,} floats per sequence, {kib:,.1f} KiB)")


@dataclass(repr=False)
class RWKVState(StateMethods):
    """RWKV-4's state: five (L, B, C) float32 arrays.

    For layer i and sequence b (B sequences can run side by side):
        att_x[i, b]  the last token's ln1 output, which time-mix's token shift needs as x_{t-1}
        aa[i, b]     WKV numerator   sum_i e^{k_i - pp} v_i  (decayed), scaled by e^-pp
        bb[i, b]     WKV denominator sum_i e^{k_i - pp}      (decayed), scaled by e^-pp
        pp[i, b]     the running max exponent that keeps aa and bb finite
        ffn_x[i, b]  the last token's ln2 output, for channel-mix's token shift

    The empty state (no past) is x = 0, aa = bb = 0, pp = -1e38: what zero padding gives in
    parallel mode. The state's size does not grow with the number of tokens seen.
    """

    att_x: np.ndarray
    aa: np.ndarray
    bb: np.ndarray
    pp: np.ndarray
    ffn_x: np.ndarray

    FIELDS = ("att_x", "aa", "bb", "pp", "ffn_x")
    SHAPES = {f: "(n_layer, batch, n_embd)" for f in FIELDS}

    @classmethod
    def zeros(cls, n_layer: int, n_embd: int, batch_size: int = 1) -> "RWKVState":
        """The empty state for ``batch_size`` sequences."""
        shape = (n_layer, batch_size, n_embd)
        z = lambda: np.zeros(shape, np.float32)  # noqa: E731
        return cls(att_x=z(), aa=z(), bb=z(), pp=np.full(shape, NEG_INF, np.float32), ffn_x=z())

    def __post_init__(self):
        shape = np.shape(self.att_x)
        for f in self.FIELDS:
            a = getattr(self, f)
            if np.ndim(a) != 3 or np.shape(a) != shape:
                raise ValueError(f"RWKVState: {f} must be (n_layer, batch, n_embd) like att_x {shape}, "
                                 f"got {np.shape(a)}")

    @property
    def n_embd(self) -> int:
        return self.att_x.shape[2]

    def check(self, config, batch_size: int) -> None:
        """Raises ValueError unless this state fits ``config`` and ``batch_size`` sequences."""
        want = (config.n_layer, batch_size, config.n_embd)
        if self.att_x.shape != want:
            raise ValueError(f"state has shape (n_layer, batch, n_embd) = {self.att_x.shape}, "
                             f"but this model and input need {want}")


@dataclass(repr=False)
class MatrixState(StateMethods):
    """RWKV-5/6/7's state: token-shift vectors and one (N, N) matrix per head.

        att_x (L, B, C)         the last token's ln1 output (time-mix's x_{t-1})
        wkv   (L, B, H, N, N)   the WKV state per head: S[key, value] in v5/v6, S[value, key] in v7
        ffn_x (L, B, C)         the last token's ln2 output (channel-mix's x_{t-1})

    The empty state is all zeros. H N^2 floats per layer instead of v4's 3 C: with N = 64 that is
    64 times more memory, and what lets a matrix-valued state hold key -> value associations.
    """

    att_x: np.ndarray
    wkv: np.ndarray
    ffn_x: np.ndarray

    FIELDS = ("att_x", "wkv", "ffn_x")
    SHAPES = {"att_x": "(n_layer, batch, n_embd)", "wkv": "(n_layer, batch, n_head, head_size, head_size)",
              "ffn_x": "(n_layer, batch, n_embd)"}

    @classmethod
    def zeros(cls, n_layer: int, n_embd: int, head_size: int, batch_size: int = 1) -> "MatrixState":
        """The empty state for ``batch_size`` sequences."""
        H = n_embd // head_size
        return cls(att_x=np.zeros((n_layer, batch_size, n_embd), np.float32),
                   wkv=np.zeros((n_layer, batch_size, H, head_size, head_size), np.float32),
                   ffn_x=np.zeros((n_layer, batch_size, n_embd), np.float32))

    def __post_init__(self):
        self._validate()
        if np.shape(self.ffn_x) != np.shape(self.att_x) or np.shape(self.wkv)[-1] != np.shape(self.wkv)[-2]:
            raise ValueError(f"MatrixState: ffn_x must match att_x {np.shape(self.att_x)} and wkv end in "
                             f"(head_size, head_size); got ffn_x {np.shape(self.ffn_x)}, wkv {np.shape(self.wkv)}")

    @property
    def n_embd(self) -> int:
        return self.att_x.shape[2]

    def check(self, config, batch_size: int) -> None:
        """Raises ValueError unless this state fits ``config`` and ``batch_size`` sequences."""
        N = config.head_size
        want = {"att_x": (config.n_layer, batch_size, config.n_embd),
                "wkv": (config.n_layer, batch_size, config.n_embd // N, N, N)}
        for f, shape in want.items():
            if getattr(self, f).shape != shape:
                raise ValueError(f"state.{f} has shape {getattr(self, f).shape}, but this model and input "
                                 f"need {shape} {self.SHAPES[f]}")
