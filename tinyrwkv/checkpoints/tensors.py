"""Where a stored tensor's bytes are, and how they become a float32 array.

Both formats we read (torch zip checkpoints and safetensors) end up storing each tensor the same
way: its elements as raw little-endian bytes at some offset of the file, uncompressed. So once a
format's header has been parsed, a tensor is fully described by a ``StoredTensor``: file, byte
offset, stored dtype, shape and strides. ``read_float32`` then turns it into a float32 array.

Stored dtypes and their conversion to float32:

    float32   4 bytes   read straight into the output array, no copy at all
    float16   2 bytes   IEEE half; numpy converts it exactly (every half is a float32)
    bfloat16  2 bytes   "brain float": the top 16 bits of a float32 (same sign and 8-bit exponent,
                        7 mantissa bits instead of 23). numpy has no bfloat16, but the conversion
                        is exact and free: put the 16 bits in the high half of a uint32, which is
                        (u16.astype(np.uint32) << 16).view(np.float32)

Memory: we ``read`` bytes in chunks into a small reusable buffer (or straight into the output)
instead of memory-mapping the file. Pages read with ``read`` stay in the OS page cache, not in our
process, so peak RSS is the float32 result plus one chunk.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import BinaryIO, Optional, Tuple

import numpy as np

from .errors import CheckpointError

# stored dtype name -> numpy dtype of its raw bytes (bfloat16 is read as its uint16 bit pattern)
RAW_DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")

# elements per chunk when converting: 4M elements = 8 MB of bf16, 16 MB of float32
CHUNK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class StoredTensor:
    """One tensor inside a checkpoint file, described but not read.

    ``offset`` is the byte offset of element [0, 0, ...] in ``file``; ``strides`` count elements
    (torch's convention), C-contiguous when None."""
    name: str
    file: pathlib.Path
    dtype: str
    shape: Tuple[int, ...]
    offset: int
    strides: Optional[Tuple[int, ...]] = None

    @property
    def numel(self) -> int:
        return math.prod(int(d) for d in self.shape)    # Python ints: np.prod wraps to 0 on overflow

    @property
    def itemsize(self) -> int:
        return RAW_DTYPES[self.dtype].itemsize

    @property
    def is_contiguous(self) -> bool:
        return self.strides is None or self.strides == contiguous_strides(self.shape) or self.numel <= 1

    def span_elements(self) -> int:
        """How many stored elements lie between the first and the last element (inclusive)."""
        if self.numel == 0:
            return 0
        if self.is_contiguous:
            return self.numel
        return 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides))


def contiguous_strides(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """Row-major strides in elements: (3, 4, 5) -> (20, 5, 1)."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def bfloat16_bits_to_float32(bits: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """bfloat16 bit patterns (uint16, any shape) -> float32, exactly: the 16 bits become the high half."""
    if out is None:
        out = np.empty(bits.shape, np.float32)
    as_uint32 = out.view(np.uint32)
    as_uint32[...] = bits            # zero-extends: the bits sit in the low half ...
    as_uint32 <<= 16                 # ... and move to the high half, where sign and exponent live
    return out


def _convert_into(raw: np.ndarray, dtype: str, out: np.ndarray) -> None:
    """Stored elements (raw bytes viewed as RAW_DTYPES[dtype]) -> float32 ``out`` of the same shape."""
    if dtype == "bfloat16":
        bfloat16_bits_to_float32(raw, out)
    else:
        out[...] = raw               # float16/float64/ints: numpy casts element by element


def _read_exactly(f: BinaryIO, buffer: memoryview, tensor: StoredTensor) -> None:
    """Fill ``buffer`` from ``f``; a short read means the file ends too early."""
    filled = 0
    while filled < len(buffer):
        n = f.readinto(buffer[filled:])
        if not n:
            raise CheckpointError(f"{tensor.file}: file ends inside tensor {tensor.name!r} "
                                  f"(truncated download?)")
        filled += n


def read_float32(tensor: StoredTensor, f: BinaryIO) -> np.ndarray:
    """Reads ``tensor`` from the open binary file ``f`` into a new C-contiguous float32 array
    of ``tensor.shape``. Converts chunk by chunk, so memory stays at the result plus one chunk."""
    if tensor.dtype not in RAW_DTYPES:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} has dtype {tensor.dtype}, which tinyrwkv "
                              f"cannot read")
    raw_dtype = RAW_DTYPES[tensor.dtype]
    out = np.empty(tensor.shape, np.float32)
    f.seek(tensor.offset)

    if not tensor.is_contiguous:
        # A view saved as is (e.g. a transposed weight): read the whole span of storage it covers,
        # then let numpy walk it with the saved strides.
        span = np.empty(tensor.span_elements(), raw_dtype)
        _read_exactly(f, memoryview(span).cast("B"), tensor)
        view = np.lib.stride_tricks.as_strided(
            span, shape=tensor.shape, strides=tuple(s * raw_dtype.itemsize for s in tensor.strides))
        _convert_into(view, tensor.dtype, out)
        return out

    flat = out.reshape(-1)
    if tensor.dtype == "float32":
        _read_exactly(f, memoryview(flat).cast("B"), tensor)   # bytes land directly in the result
        return out
    chunk = np.empty(min(CHUNK_ELEMENTS, flat.size), raw_dtype)
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        part = chunk[: min(CHUNK_ELEMENTS, flat.size - start)]
        _read_exactly(f, memoryview(part).cast("B"), tensor)
        _convert_into(part, tensor.dtype, flat[start: start + part.size])
    return out


def first_nonfinite(array: np.ndarray) -> Optional[Tuple[int, Tuple[int, ...], str]]:
    """None when every value of the float ``array`` is finite, else (how many are NaN or +-inf,
    the index of the first, "NaN" / "inf" / "-inf" for that one).

    Fast path, one read of memory and no temporary: a chunk's sum is finite only if every value is
    (a NaN or an infinity makes the sum NaN or infinite); a finite sum proves the chunk clean. Only
    when a sum is not finite (a bad value, or finite values overflowing float32) does the exact
    element-wise test run, chunk by chunk, so its boolean mask stays small (4 MB)."""
    flat = array.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):      # the sum may overflow or meet inf - inf
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            chunk = flat[start: start + CHUNK_ELEMENTS]
            if not np.isfinite(chunk.sum()) and not np.isfinite(chunk).all():
                break
        else:
            return None
    count = sum(chunk.size - int(np.count_nonzero(np.isfinite(chunk)))
                for chunk in (flat[i: i + CHUNK_ELEMENTS] for i in range(start, flat.size, CHUNK_ELEMENTS)))
    position = start + int(np.argmin(np.isfinite(flat[start: start + CHUNK_ELEMENTS])))
    value = float(flat[position])
    kind = "NaN" if value != value else ("inf" if value > 0 else "-inf")
    return count, tuple(int(i) for i in np.unravel_index(position, array.shape)), kind


def read_raw(tensor: StoredTensor, f: BinaryIO, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Reads a C-contiguous ``tensor`` as stored, without conversion: an array of
    RAW_DTYPES[tensor.dtype] (bfloat16 -> its uint16 bit patterns) and ``tensor.shape``, new or
    ``out`` (C-contiguous, of that dtype and shape)."""
    if tensor.dtype not in RAW_DTYPES:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} has dtype {tensor.dtype}, which tinyrwkv "
                              f"cannot read")
    if not tensor.is_contiguous:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} is stored as a strided view; "
                              f"read_raw reads contiguous tensors only")
    if out is None:
        out = np.empty(tensor.shape, RAW_DTYPES[tensor.dtype])
    elif out.dtype != RAW_DTYPES[tensor.dtype] or out.shape != tuple(tensor.shape) or not out.flags.c_contiguous:
        raise ValueError(f"read_raw: out is {out.dtype} {out.shape}, tensor {tensor.name!r} needs a C-contiguous "
                         f"{RAW_DTYPES[tensor.dtype]} {tuple(tensor.shape)}")
    f.seek(tensor.offset)
    _read_exactly(f, memoryview(out.reshape(-1)).cast("B"), tensor)
    return out


def iter_float32_rows(tensor: StoredTensor, f: BinaryIO, max_elements: int = CHUNK_ELEMENTS):
    """Yields (first row, float32 block (rows, cols)) covering a 2-d ``tensor`` in order, each block at
    most ``max_elements`` (at least one row), so that a caller can convert a matrix to another form
    holding only one float32 block at a time. The block array is reused: copy what you keep."""
    if len(tensor.shape) != 2:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} has shape {tensor.shape}; "
                              f"row blocks need a 2-d tensor")
    n, k = tensor.shape
    if not tensor.is_contiguous:                    # rare (a saved transposed view): read it whole
        whole = read_float32(tensor, f)
        rows = max(1, max_elements // max(k, 1))
        for n0 in range(0, n, rows):
            yield n0, whole[n0:n0 + rows]
        return
    if tensor.dtype not in RAW_DTYPES:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} has dtype {tensor.dtype}, which tinyrwkv "
                              f"cannot read")
    raw_dtype = RAW_DTYPES[tensor.dtype]
    rows = max(1, min(n, max_elements // max(k, 1)))
    block = np.empty((rows, k), np.float32)
    raw = block if tensor.dtype == "float32" else np.empty((rows, k), raw_dtype)
    f.seek(tensor.offset)
    for n0 in range(0, n, rows):
        m = min(rows, n - n0)
        _read_exactly(f, memoryview(raw[:m].reshape(-1)).cast("B"), tensor)
        if raw is not block:
            _convert_into(raw[:m], tensor.dtype, block[:m])
        yield n0, block[:m]
