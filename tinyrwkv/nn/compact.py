"""Compact weight matrices: a weight matrix that owns how it is stored and how it multiplies itself.

A model holds every weight matrix W (out, in) either as a float32 ndarray or as one of these, and calls
``tinyrwkv.nn.functional.linear(x, W)`` (y = x W^T) either way; it never branches on the format.

    format  stored per weight                 bytes/weight   W is rebuilt as
    fp32    float32 ndarray                   4
    bf16    uint16: float32's high 16 bits    2              the exact float32 with those high bits
    int8    int8 q + float32 scale per        1 (+4/group)   q[n, k] * scale[n, k // group]
            output row (group = in) or per
            ``group`` consecutive inputs

bf16 ("brain float") keeps float32's sign and 8-bit exponent and 7 of its 23 mantissa bits: the same
range, ~3 significant digits; rounding to nearest even costs a relative error <= 2^-9 per weight.
int8 maps each row (or group) to [-127, 127] by its largest |w|: scale = max|w| / 127, q = round(w / scale),
an absolute error <= scale / 2 per weight.

Both multiply themselves with ``tinyrwkv.kernels.matmul_numba``: few rows of x (decoding) go through
kernels that read the compact words and accumulate in float32; many rows (a prompt) dequantise a block of
rows at a time and call BLAS. Vectors (layer norms, time_*) stay float32 ndarrays: they are a tiny part
of the bytes and every op touches them.

    W = compact(W_fp32, "int8")            # or "bf16", "fp32" (returns W_fp32 itself)
    y = F.linear(x, W)                     # x (..., in) -> y (..., out), float32
    rows = W[token_ids]                    # rows as float32 (an embedding lookup), (..., in)
    W.nbytes, W.shape, W.to_float32()
"""
from __future__ import annotations

import functools
import sys

import numpy as np

FORMATS = ("fp32", "bf16", "int8")


@functools.cache
def _matmul_kernels():
    """``tinyrwkv.kernels.matmul_numba``, imported on first use (importing it imports Numba)."""
    from ..kernels import matmul_numba
    return matmul_numba


def check_format(fmt) -> str:
    """``fmt`` if it names a weight format, else ValueError listing the formats."""
    if fmt not in FORMATS:
        raise ValueError(f"weights={fmt!r}: unknown weight format; choose one of {', '.join(FORMATS)}")
    return fmt


class CompactWeight:
    """A (out, in) weight matrix stored in fewer than 4 bytes per weight (base class).

    Subclasses set ``shape`` and implement ``linear``, ``dequantize_rows`` and ``nbytes``. Reads like an
    array where models read arrays: ``shape``, ``ndim``, ``size``, ``dtype`` (float32: what it computes
    in), ``W[rows]``. There is deliberately no ``__array__``: turning it into float32 (4x the memory)
    must be asked for, with ``to_float32()``."""

    format = "?"
    shape: tuple
    dtype = np.dtype(np.float32)
    ndim = 2

    @property
    def size(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape}, {self.nbytes / 2**20:.1f} MiB)"

    def linear(self, x) -> np.ndarray:
        """y = x W^T: x (..., in) float32 -> y (..., out) float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"linear: x has {x.shape[-1]} features but the {self.format} weight is "
                             f"{self.shape} (out, in)")
        lead = x.shape[:-1]
        x2 = np.ascontiguousarray(x.reshape(-1, self.shape[1]))      # (R, in)
        M = _matmul_kernels()
        if x2.shape[0] < M.BLAS_MIN_ROWS:                            # decoding: read the compact words
            y = np.empty((x2.shape[0], self.shape[0]), np.float32)
            self._matvec(x2, y, M)
        else:                                                         # a prompt: dequantise blocks, BLAS
            y = np.empty((x2.shape[0], self.shape[0]), np.float32)
            rows = max(1, M.BLOCK_ELEMENTS // self.shape[1])
            block = np.empty((min(rows, self.shape[0]), self.shape[1]), np.float32)
            for n0 in range(0, self.shape[0], rows):
                b = block[: min(rows, self.shape[0] - n0)]
                self.dequantize_rows(n0, b)
                np.matmul(x2, b.T, out=y[:, n0:n0 + len(b)])
        return y.reshape(*lead, self.shape[0])

    def __getitem__(self, index) -> np.ndarray:
        """Rows of W as float32 (an embedding lookup): W[ids] with ids of any shape -> (*ids.shape, in)."""
        ids = np.asarray(index)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__} rows are picked by integer ids, got {ids.dtype}")
        return self._rows(ids.reshape(-1)).reshape(*ids.shape, self.shape[1])

    def to_float32(self) -> np.ndarray:
        """The whole matrix as float32 (out, in): what the compact words stand for."""
        out = np.empty(self.shape, np.float32)
        self.dequantize_rows(0, out)
        return out


# --------------------------------------------------------------------------- bf16


def float32_to_bf16_bits(w: np.ndarray) -> np.ndarray:
    """float32 (any shape) -> uint16 bfloat16 words, rounded to nearest, ties to even; NaN stays NaN."""
    bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    words = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(w)
    if nan.any():                       # rounding could carry a NaN's low payload into inf
        words[nan] = 0x7FC0
    return words


class BF16Weight(CompactWeight):
    """W as bfloat16 words: ``words`` (out, in) uint16, each the high half of a float32."""

    format = "bf16"

    def __init__(self, words: np.ndarray):
        words = np.asarray(words)
        if words.dtype != np.uint16 or words.ndim != 2:
            raise ValueError(f"BF16Weight: words must be a 2-d uint16 array, got {words.dtype} {words.shape}")
        self.words = np.ascontiguousarray(words)
        self.shape = self.words.shape
        # the same bytes two words at a time, for the one-token kernel (even K, little-endian CPUs)
        self.pairs = (self.words.view(np.uint32) if self.shape[1] % 2 == 0 and sys.byteorder == "little"
                      else None)

    @classmethod
    def from_float32(cls, w) -> "BF16Weight":
        return cls(float32_to_bf16_bits(np.asarray(w, dtype=np.float32)))

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    def _matvec(self, x2, y, M):
        threads = M.use_threads(self.size)
        if len(x2) == 1 and self.pairs is not None:                    # one token: the 1-d kernel
            (M.bf16_matvec1 if threads else M.bf16_matvec1_serial)(self.pairs, x2[0], y[0])
        else:
            (M.bf16_matvec if threads else M.bf16_matvec_serial)(self.words, x2, y)

    def _rows(self, ids):
        out = np.empty((ids.size, self.shape[1]), np.float32)
        out.view(np.uint32)[...] = self.words[ids]                   # the 16 bits in the low half ...
        out.view(np.uint32)[...] <<= np.uint32(16)                    # ... moved to the high half: exact
        return out

    def dequantize_rows(self, n0: int, out: np.ndarray) -> None:
        _matmul_kernels().bf16_dequantize_rows(self.words, n0, out)


# --------------------------------------------------------------------------- int8


class Int8Weight(CompactWeight):
    """W as int8 with float32 scales: ``q`` (out, in) int8, ``scales`` (out, in // group) float32;
    W[n, k] ~= q[n, k] * scales[n, k // group]. group = in: one scale per output row."""

    format = "int8"

    def __init__(self, q: np.ndarray, scales: np.ndarray):
        q, scales = np.asarray(q), np.asarray(scales)
        if q.dtype != np.int8 or q.ndim != 2:
            raise ValueError(f"Int8Weight: q must be a 2-d int8 array, got {q.dtype} {q.shape}")
        if scales.ndim == 1:
            scales = scales[:, None]
        if scales.ndim != 2 or scales.shape[0] != q.shape[0] or q.shape[1] % scales.shape[1]:
            raise ValueError(f"Int8Weight: scales must be (out, groups) with groups dividing in; "
                             f"q is {q.shape}, scales {scales.shape}")
        self.q = np.ascontiguousarray(q)
        self.scales = np.ascontiguousarray(scales, dtype=np.float32)
        self.shape = self.q.shape
        self.group = q.shape[1] // scales.shape[1]

    @staticmethod
    def quantize(w: np.ndarray, group: int | None = None):
        """float32 (n, in) -> (q (n, in) int8, scales (n, in // group) float32), round to nearest.

        group: inputs sharing one scale (None: the whole row). ValueError if w holds inf or NaN."""
        w = np.asarray(w, dtype=np.float32)
        n, k = w.shape
        group = k if group is None else int(group)
        if group < 1 or k % group:
            raise ValueError(f"int8 group size {group} does not divide the {k} inputs of a {w.shape} weight")
        if not np.isfinite(w).all():
            raise ValueError(f"cannot quantise a {w.shape} weight holding inf or NaN to int8")
        wg = w.reshape(n, k // group, group)
        scales = np.abs(wg).max(axis=2) / np.float32(127.0)                     # (n, G)
        inv = np.divide(np.float32(1.0), scales, out=np.zeros_like(scales), where=scales > 0)
        q = np.rint(wg * inv[:, :, None]).astype(np.int8).reshape(n, k)        # |w / scale| <= 127
        return q, scales.astype(np.float32)

    @classmethod
    def from_float32(cls, w, group: int | None = None) -> "Int8Weight":
        return cls(*cls.quantize(w, group))

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scales.nbytes

    def _matvec(self, x2, y, M):
        threads = M.use_threads(self.size)
        if self.scales.shape[1] == 1 and len(x2) == 1 and self.shape[1] <= M.INT8_INTEGER_MAX_K:
            # one token, one scale per row: the integer kernel
            (M.int8_matvec1 if threads else M.int8_matvec1_serial)(self.q, self.scales, x2[0], y[0])
            return
        if self.scales.shape[1] == 1:                                  # one scale per row
            kernel = M.int8_matvec if threads else M.int8_matvec_serial
        else:
            kernel = M.int8_matvec_grouped if threads else M.int8_matvec_grouped_serial
        kernel(self.q, self.scales, x2, y)

    def _rows(self, ids):
        q = self.q[ids].astype(np.float32).reshape(ids.size, -1, self.group)   # (R, G, group)
        q *= self.scales[ids][:, :, None]
        return q.reshape(ids.size, self.shape[1])

    def dequantize_rows(self, n0: int, out: np.ndarray) -> None:
        _matmul_kernels().int8_dequantize_rows(self.q, self.scales, n0, out)


# --------------------------------------------------------------------------- choosing


def is_compactable(name: str, shape) -> bool:
    """Which parameters a compact format stores compactly: the 2-d ``*.weight`` matrices (projections,
    embedding, head). Vectors and other 2-d parameters (e.g. low-rank ``*_w1`` factors) stay float32."""
    return name.endswith(".weight") and len(shape) == 2


def compact(w, fmt: str, group: int | None = None):
    """A float32 (out, in) matrix in format ``fmt``: "fp32" -> w itself (float32), "bf16", "int8"."""
    check_format(fmt)
    if fmt == "fp32":
        return np.ascontiguousarray(w, dtype=np.float32)
    if fmt == "bf16":
        return BF16Weight.from_float32(w)
    return Int8Weight.from_float32(w, group)


def from_row_blocks(fmt: str, shape, blocks, group: int | None = None, empty=np.empty):
    """Builds a compact (out, in) weight from ``blocks``: an iterable of (first row, float32 block of
    rows), in order, covering the matrix. Only one float32 block is alive at a time, so a matrix is
    converted without ever holding it whole in float32 (a checkpoint reader yields such blocks).
    ``empty(shape, dtype)`` allocates the matrix's storage (e.g. ``MatrixArena().empty``)."""
    check_format(fmt)
    n, k = (int(d) for d in shape)
    if fmt == "fp32":
        out = empty((n, k), np.float32)
        for n0, block in blocks:
            out[n0:n0 + len(block)] = block
        return out
    if fmt == "bf16":
        words = empty((n, k), np.uint16)
        for n0, block in blocks:
            words[n0:n0 + len(block)] = float32_to_bf16_bits(block)
        return BF16Weight(words)
    group = k if group is None else int(group)
    if group < 1 or k % group:
        raise ValueError(f"int8 group size {group} does not divide the {k} inputs of a {(n, k)} weight")
    q = empty((n, k), np.int8)
    scales = np.empty((n, k // group), np.float32)
    for n0, block in blocks:
        q[n0:n0 + len(block)], scales[n0:n0 + len(block)] = Int8Weight.quantize(block, group)
    return Int8Weight(q, scales)


class MatrixArena:
    """Hands out C-contiguous arrays carved one after another from a few large buffers, so that a
    model's weight matrices lie together in memory instead of in many separate allocations.

    Why: decoding streams every matrix once per token. 85 separate small arrays (a 768 x 768 int8
    matrix is 590 KB) sit on 4 KiB pages, a TLB miss per page, while a buffer of 4 MiB or more gets
    2 MiB pages (numpy asks Linux for transparent huge pages for such allocations). Measured on the 85
    int8 matrices of a 169M token, 2 cores, alternating: 11.4 GB/s as separate arrays, 15.5 GB/s from
    one buffer; whole decoding steps (A/B on one loaded model) +7% for int8 and bf16, +1% for fp32.

    A checkpoint loader fills the arrays as it reads (``tinyrwkv.loading``), so memory never holds a
    matrix twice; a buffer's pages only become memory as they are written."""

    CHUNK_BYTES = 64 << 20          # large enough for huge pages; a bigger matrix gets its own buffer
    ALIGN = 64                      # every array starts on a cache line

    def __init__(self, chunk_bytes: int = CHUNK_BYTES):
        self.chunk_bytes = int(chunk_bytes)
        self._buffer = np.empty(0, np.uint8)
        self._used = 0

    def empty(self, shape, dtype) -> np.ndarray:
        """A new uninitialised C-contiguous array of ``shape`` and ``dtype`` (as ``np.empty``)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        start = -(-self._used // self.ALIGN) * self.ALIGN
        if start + nbytes > self._buffer.size:
            self._buffer = np.empty(max(self.chunk_bytes, nbytes + self.ALIGN), np.uint8)
            start = -self._buffer.ctypes.data % self.ALIGN
        self._used = start + nbytes
        return self._buffer[start:start + nbytes].view(dtype).reshape(shape)


def pack_matrices(params: dict) -> dict:
    """Moves every weight matrix of ``params`` (float32 2-d arrays, bf16 words, int8 q) into a
    ``MatrixArena``, in key order, replacing each entry (in place) by a view of its slot; returns
    ``params``. Values and shapes do not change, only where the bytes live. For models built in
    memory (``roofline.compact_params``); a loader should allocate from an arena as it reads instead
    (copying here holds the old and new copies of the matrices at once)."""
    arena = MatrixArena()
    for key, value in params.items():
        if isinstance(value, BF16Weight):
            words = arena.empty(value.shape, np.uint16)
            words[...] = value.words
            params[key] = BF16Weight(words)
        elif isinstance(value, Int8Weight):
            q = arena.empty(value.shape, np.int8)
            q[...] = value.q
            params[key] = Int8Weight(q, value.scales)
        elif isinstance(value, np.ndarray) and value.ndim == 2:
            params[key] = arena.empty(value.shape, value.dtype)
            params[key][...] = value
    return params


def bytes_in_format(name: str, shape, fmt: str) -> int:
    """Bytes a parameter of this name and shape takes in format ``fmt`` (per-row int8 scales)."""
    check_format(fmt)
    n = int(np.prod(shape, dtype=np.int64))
    if fmt == "fp32" or not is_compactable(name, shape):
        return 4 * n
    return 2 * n if fmt == "bf16" else n + 4 * int(shape[0])


def stored_bytes(params) -> int:
    """Bytes the parameters occupy, compact or not."""
    return int(sum(v.nbytes for v in params.values()))
