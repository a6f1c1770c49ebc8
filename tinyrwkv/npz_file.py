"""Reading an ``.npz`` file we wrote (a saved model state) without trusting it.

``np.load`` is the wrong tool for a file someone hands you: it accepts a bare ``.npy``, reads a
header that claims a terabyte array by trying to allocate it, and raises zipfile, pickle or
ValueError messages that do not name the file. An ``.npz`` is just a zip of ``.npy`` members:

    att_x.npy     b"\\x93NUMPY" + version (1, 0) + header {'descr': '<f4', 'fortran_order': False,
                  'shape': (12, 1, 768)} padded to 64 bytes + the raw little-endian elements
    aa.npy        ...

so ``read_npz`` checks, before allocating anything: a zip, exactly the expected members (no
duplicates), each stored or deflated (``np.savez_compressed``) with a bounded unpacked size, each
an ``.npy`` version 1.0/2.0 whose header parses, whose dtype is the expected one (never an object
array: nothing is unpickled) and whose shape times itemsize -- computed with Python ints -- equals
the bytes the member actually holds. Then it reads, and refuses NaN and infinities. Every failure
is one ``StateFileError`` naming the file and the member.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import StateFileError

ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
# A state is small (RWKV-4 169M: 184 KB per sequence; RWKV-7 168M: 2.4 MB), but a deflated member
# of zeros packs ~1000x: this bounds what a small hostile file can make us allocate.
MAX_BYTES = 1 << 30
MAX_HEADER_BYTES = 10_000    # numpy's own limit for a trusted .npy header

# expected[name]: an ndim (int), or a shape whose entries are ints or None (= any length)
ShapeSpec = Union[int, Tuple[Optional[int], ...]]
MAX_ZIP_MEMBERS = 20_000      # a state file has a handful; a torch state dict one per tensor (+ 5)
ZIP_ENTRY_BYTES = 256         # the most central-directory bytes per member we accept on average


def zip_directory_problem(f, max_members: int = MAX_ZIP_MEMBERS) -> Optional[str]:
    """Why the zip open as ``f`` has too big a directory to parse, or None. Reads only the
    end-of-central-directory record: zipfile builds one ZipInfo per directory entry (1M empty
    members, 92 MB of file, take 60 s and 570 MB to open), and it walks the directory by its byte
    size, not by the declared count, so both are bounded."""
    try:
        end = zipfile._EndRecData(f)          # noqa: SLF001 (stable since Python 2; no public equivalent)
    except (OSError, ValueError, struct.error):
        return None                           # not a zip: zipfile says so, with its own message
    if not end:
        return None
    members, size = int(end[zipfile._ECD_ENTRIES_TOTAL]), int(end[zipfile._ECD_SIZE])
    if members > max_members or size > max_members * ZIP_ENTRY_BYTES:
        return (f"its zip directory declares {members:,} members in {size:,} bytes; tinyrwkv reads at most "
                f"{max_members:,} members ({max_members * ZIP_ENTRY_BYTES:,} bytes)")
    return None


def _first_nonfinite(array: np.ndarray) -> Optional[Tuple[int, Tuple[int, ...], str]]:
    """(count, index of the first, "NaN"/"inf"/"-inf") for the non-finite values of ``array``, or None."""
    finite = np.isfinite(array)
    if finite.all():
        return None
    bad = ~finite
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
    value = float(array[index])
    return int(bad.sum()), index, ("NaN" if value != value else "inf" if value > 0 else "-inf")


def _shape_ok(shape: Tuple[int, ...], spec: ShapeSpec) -> bool:
    if isinstance(spec, int):
        return len(shape) == spec
    return len(shape) == len(spec) and all(want is None or want == got for want, got in zip(spec, shape))


def _describe(spec: ShapeSpec) -> str:
    if isinstance(spec, int):
        return f"a {spec}-D array"
    return "shape (" + ", ".join("*" if d is None else str(d) for d in spec) + ("," if len(spec) == 1 else "") + ")"


def read_npz(path, expected: Mapping[str, ShapeSpec], *, dtype=np.float32, what: str = "state file",
             max_bytes: int = MAX_BYTES, allow_nonfinite: bool = False) -> Dict[str, np.ndarray]:
    """{name: C-contiguous array} for an ``.npz`` holding exactly the members ``expected`` names.

    expected: {name: ndim or shape}, e.g. {"att_x": 3, "aa": 3} or {"w": (None, 768)}.
    dtype: the one dtype every member must have (little-endian), e.g. float32.
    what: how the error calls the file ("RWKVState file").
    max_bytes: the most unpacked bytes all members together may claim.
    Raises StateFileError naming the file (and member) for anything else."""
    name = os.fspath(path)
    want_dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)

    def fail(problem: str) -> StateFileError:
        return StateFileError(f"{name}: not a valid {what}: {problem}")

    try:
        with open(name, "rb") as f:
            start = f.read(len(NPY_MAGIC))
            file_size = f.seek(0, 2)
    except OSError as e:
        raise StateFileError(f"{name}: cannot read {what}: {e.strerror or e}") from None
    if start.startswith(NPY_MAGIC):
        raise fail("it is a single .npy array, not an .npz archive of named arrays")
    if not start.startswith(ZIP_MAGIC):
        raise fail(f"not an .npz (zip) archive ({file_size} bytes, starting {start[:4]!r})")

    arrays: Dict[str, np.ndarray] = {}
    try:
        with open(name, "rb") as f:
            problem = zip_directory_problem(f, max(16, 2 * len(expected)))
        if problem:
            raise fail(problem)
        with zipfile.ZipFile(name) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            duplicates = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
            if duplicates:
                raise fail(f"member(s) stored twice: {', '.join(duplicates)}")
            members = {n[:-4] if n.endswith(".npy") else n: info for n, info in zip(names, infos)}
            missing = [n for n in expected if n not in members]
            unexpected = [n for n in members if n not in expected]
            if missing or unexpected:
                parts = ([f"lacks {', '.join(missing)}"] if missing else []) + \
                        ([f"has unexpected {', '.join(unexpected)}"] if unexpected else [])
                raise fail(f"{'; '.join(parts)} (expected exactly {', '.join(expected)})")
            claimed = sum(info.file_size for info in infos)
            if claimed > max_bytes:
                raise fail(f"its members unpack to {claimed} bytes, over the limit of {max_bytes}")
            for member, spec in expected.items():
                arrays[member] = _read_member(archive, members[member], member, spec, want_dtype, file_size, fail)
    except StateFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            ValueError, SyntaxError, RuntimeError) as e:
        # a corrupt directory, a bad CRC, an unsupported compression or encryption, a truncated member
        raise fail(f"corrupt archive ({type(e).__name__}: {e})") from None

    if not allow_nonfinite:
        for member, array in arrays.items():
            found = _first_nonfinite(array) if array.dtype.kind in "fc" else None
            if found:
                count, index, kind = found
                raise fail(f"{member} holds {count} non-finite value(s) (first at index {index}: {kind})")
    return arrays


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, spec: ShapeSpec,
                 want_dtype: np.dtype, file_size: int, fail) -> np.ndarray:
    """One ``.npy`` member, its header checked against ``spec``/``want_dtype`` and its size before reading."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise fail(f"{member} uses zip compression method {info.compress_type} (np.savez stores, "
                   f"np.savez_compressed deflates; nothing else)")
    if info.flag_bits & 0x1:
        raise fail(f"{member} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > file_size:
        raise fail(f"{member} claims {info.file_size} bytes, more than the whole file ({file_size})")
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            raise fail(f"{member} is not a .npy array (no \\x93NUMPY header)") from None
        if version not in ((1, 0), (2, 0)):
            raise fail(f"{member} is a .npy of version {version}; only 1.0 and 2.0 are read")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        try:        # a literal dict, parsed with ast.literal_eval: nothing in it is executed
            header = read_header(f, max_header_size=MAX_HEADER_BYTES)
        except (ValueError, SyntaxError, TypeError) as e:
            raise fail(f"{member} has a malformed .npy header ({str(e).splitlines()[0][:120]})") from None
        shape, fortran_order, dtype = header
        if dtype.hasobject:
            raise fail(f"{member} is an object array (it would need pickle); expected {want_dtype.name}")
        if dtype != want_dtype:
            raise fail(f"{member} has dtype {dtype.str} ({dtype.name}); expected {want_dtype.str} ({want_dtype.name})")
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            raise fail(f"{member} has a bad shape {shape!r:.80}")
        if not _shape_ok(shape, spec):
            raise fail(f"{member} has shape {shape}; expected {_describe(spec)}")
        nbytes = dtype.itemsize
        for d in shape:                        # Python ints: no wrap-around, however large the claim
            nbytes *= d
        data_bytes = info.file_size - f.tell()
        if nbytes != data_bytes:
            raise fail(f"{member}: its header claims {shape} x {dtype.itemsize} bytes = {nbytes} bytes "
                       f"but the member holds {data_bytes} (truncated or forged)")
        # straight into the array, a chunk at a time: memory is the array, not the array twice
        array = np.empty(shape[::-1] if fortran_order else shape, dtype)
        view, filled = memoryview(array.reshape(-1)).cast("B"), 0
        while filled < nbytes:
            chunk = f.read(min(nbytes - filled, 1 << 24))
            if not chunk:
                raise fail(f"{member}: the archive ends after {filled} of its {nbytes} bytes (truncated)")
            view[filled: filled + len(chunk)] = chunk
            filled += len(chunk)
    if fortran_order:
        array = np.ascontiguousarray(array.transpose())
    return array.astype(dtype.newbyteorder("="), copy=False)   # native byte order (a no-op here)
