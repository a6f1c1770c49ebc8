"""Reading ``torch.save`` checkpoints (``pytorch_model.bin``, BlinkDL ``.pth``) without torch.

What is inside. Since torch 1.6 ``torch.save`` writes an ordinary, *uncompressed* zip archive:

    archive/data.pkl            a pickle of the saved object (here: a dict name -> tensor)
    archive/data/0              raw bytes of storage "0" (e.g. 50277*768 bfloat16 = 77 MB)
    archive/data/1              raw bytes of storage "1"
    ...
    archive/byteorder           "little"
    archive/version, archive/.format_version, archive/.storage_alignment, archive/.data/serialization_id

(``archive`` is any folder name; torch uses the file's stem.) The pickle does not contain the
numbers. Each tensor in it is pickled as a call

    torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)

where ``storage`` is a *persistent id*, the tuple ("storage", torch.BFloat16Storage, "0", "cpu", numel),
that tells the loader to fetch ``data/0`` from the zip. A tensor is then: that storage's bytes,
starting ``storage_offset`` elements in, walked with ``stride`` to make ``size``.

Why not ``pickle.load``. A pickle is a little program: its GLOBAL opcode imports any
``module.name`` and REDUCE calls it with any arguments, so a file can call ``os.system``. Our
``RestrictedUnpickler.find_class`` hands out only the few names tensor storage needs, each mapped
to *our own* harmless stand-in (``_rebuild_tensor_v2`` here just records offset, shape and
stride). Anything else raises ``UnsafeCheckpointError`` before it is called. torch itself is
never imported.

Very old files (torch < 1.6, "legacy" format) are a bare pickle stream, not a zip; we recognise
them and ask for a re-save.
"""
from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import io
import pathlib
import pickle
import struct
import zipfile
from typing import Dict, Tuple

from ..npz_file import zip_directory_problem
from . import pickle_scan
from .errors import CheckpointError, UnsafeCheckpointError
from .tensors import RAW_DTYPES, StoredTensor

ZIP_MAGIC = b"PK\x03\x04"
# A state dict's pickle takes ~150 bytes per tensor (the 169M model's: ~20 KB); scanning 8 MiB of
# opcodes takes a few seconds, the worst a hostile file can cost us.
MAX_PICKLE_BYTES = 8 * 2**20
# A legacy torch file starts with the pickled "magic number" 0x1950a86a20f9469cfc6c (protocol 2, LONG1).
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

# torch's storage classes -> the dtype names of tensors.RAW_DTYPES
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


# ---- stand-ins for the torch objects a state-dict pickle mentions --------------------------------

class _Sealed:
    """Refuses pickle's BUILD opcode, which would otherwise overwrite an object's attributes (and the
    allowed stand-ins are shared by every load, so one file could tamper with the next)."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the pickle tries to modify {type(self).__name__.lstrip('_')}")


class _Callable(_Sealed):
    """One of our rebuild functions, as handed to the pickle: callable, not modifiable."""

    def __init__(self, function):
        self._function = function

    def __call__(self, *args):
        return self._function(*args)


@dataclasses.dataclass(frozen=True)
class _StorageType(_Sealed):
    """Stands in for ``torch.FloatStorage`` & co.: only remembers the dtype."""
    dtype: str


@dataclasses.dataclass(frozen=True)
class _Storage(_Sealed):
    """A storage the pickle points at: the bytes of ``data/<key>`` in the zip."""
    key: str
    dtype: str
    numel: int


@dataclasses.dataclass(frozen=True)
class _PickledTensor(_Sealed):
    """What ``_rebuild_tensor_v2`` would have built: a view into a storage (strides in elements)."""
    storage: _Storage
    storage_offset: int
    shape: Tuple[int, ...]
    strides: Tuple[int, ...]


MAX_INDEX = 2 ** 48     # no size, stride, offset or element count of a real tensor comes near 2**48
MAX_NDIM = 64


def _short(value) -> str:
    """A bounded description of a value from the pickle, for error messages."""
    return repr(value)[:80] if isinstance(value, (str, int, float, type(None))) else type(value).__name__


def _is_index(value) -> bool:
    """A Python int (not a bool) in [0, 2**48]: a sane size, stride, offset or element count."""
    return type(value) is int and 0 <= value <= MAX_INDEX


def _int_tuple(value, what):
    if not isinstance(value, tuple) or len(value) > MAX_NDIM or not all(_is_index(d) for d in value):
        raise pickle.UnpicklingError(f"{what} must be a tuple of at most {MAX_NDIM} ints in [0, 2**48], "
                                     f"got {value!r:.80}" if isinstance(value, tuple) else f"got {_short(value)}")
    return value


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor storage must be a persistent storage id, got {_short(storage)}")
    if not _is_index(storage_offset):
        raise pickle.UnpicklingError(f"bad storage offset {_short(storage_offset)}")
    return _PickledTensor(storage, storage_offset, _int_tuple(size, "size"), _int_tuple(stride, "stride"))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """An ``nn.Parameter`` is pickled as a tensor wrapped in this call; we keep the tensor."""
    if not isinstance(data, _PickledTensor):
        raise pickle.UnpicklingError(f"a parameter must wrap a tensor, got {data!r:.80}")
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a ``torch.save``d state dict needs.

    ``torch.save(model.state_dict())`` in torch 1.6 ... 2.13 emits exactly: ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2``, ``torch._utils._rebuild_parameter`` (for nn.Parameter
    values) and the storage classes ``torch.FloatStorage``, ``torch.BFloat16Storage``, ..."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2),
        ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): _Callable(_rebuild_parameter),
        **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
    }

    def __init__(self, file, source_name: str):
        super().__init__(file)
        self.source_name = source_name
        self.storages: Dict[str, _Storage] = {}

    def find_class(self, module, name):
        # Protocol 0-2 pickles spell some Python 3 names the Python 2 way (__builtin__.eval is
        # builtins.eval); translate like pickle itself does, so the error shows the real name.
        try:
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            return self.ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(
                f"{self.source_name}: refusing to load: its pickle asks for the Python global "
                f"{module}.{name}, which storing tensors never needs (a pickle can run any code this way). "
                f"Nothing from the file was executed.") from None

    def persistent_load(self, pid):
        # ("storage", storage_type, key, location, numel), e.g. ("storage", FloatStorage, "0", "cpu", 400)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str and 0 < len(pid[2]) <= 64
                and "/" not in pid[2] and _is_index(pid[4])):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.120}" if isinstance(pid, tuple)
                                         else f"unsupported persistent id: a {_short(pid)}")
        _, storage_type, key, _location, numel = pid
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if storage.numel != numel or storage.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
        return storage


# ---- the archive ----------------------------------------------------------------------------------

def looks_like_zip(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ZIP_MAGIC


def looks_like_legacy_torch(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC


def legacy_error(path: pathlib.Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: this is a legacy (torch < 1.6, non-zip) torch checkpoint, which tinyrwkv does not read. "
        f"Re-save it with a recent torch: torch.save(torch.load(path, map_location='cpu'), 'new.pth')")


def _member_data_offset(f, info: zipfile.ZipInfo, path: pathlib.Path) -> int:
    """Byte offset of a stored member's data: after its 30-byte local header, name and extra field."""
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != ZIP_MAGIC:
        raise CheckpointError(f"{path}: corrupt zip: no local header for {info.filename}")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


def _check_members(infos, path: pathlib.Path) -> None:
    """Refuses, from the zip directory alone, what torch.save never writes: duplicate or escaping
    member names, compressed or encrypted members, and a data.pkl too big to be a state dict."""
    seen = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise CheckpointError(f"{path}: the zip holds two members named {name!r:.100}")
        seen.add(name)
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise CheckpointError(f"{path}: zip member {name!r:.100} points outside the archive")
        if info.compress_type != zipfile.ZIP_STORED:
            # checked before anything is read: the 29 KB deflated data.pkl unpacked to 2.6 GB
            raise CheckpointError(f"{path}: {name} is compressed (zip method {info.compress_type}); "
                                  f"torch.save never compresses, so re-save the file with torch.save")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: {name} is encrypted")
        if name.endswith("data.pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path}: {name} is {info.file_size:,} bytes; a state dict's pickle is about "
                                  f"150 bytes per tensor, so tinyrwkv refuses one over {MAX_PICKLE_BYTES:,}")


def list_tensors(path) -> Dict[str, StoredTensor]:
    """{name: StoredTensor} for a ``torch.save``d dict of tensors, reading only data.pkl and
    the zip directory. Raises UnsafeCheckpointError for a pickle that wants anything but tensors,
    CheckpointError for anything corrupt or out of bounds (see ``pickle_scan``)."""
    path = pathlib.Path(path)
    if not looks_like_zip(path):
        if looks_like_legacy_torch(path):
            raise legacy_error(path)
        raise CheckpointError(f"{path}: not a torch zip checkpoint (it does not start with a zip header)")
    with open(path, "rb") as f:
        problem = zip_directory_problem(f)        # (a state dict has one member per tensor)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        with zipfile.ZipFile(path) as archive:
            infolist = archive.infolist()
            _check_members(infolist, path)
            infos = {info.filename: info for info in infolist}
            pickles = [name for name in infos if name.endswith("data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: a torch checkpoint holds exactly one <folder>/data.pkl; "
                                      f"found {pickles or 'none'}")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder_name = prefix + "byteorder"
            if byteorder_name in infos and archive.read(byteorder_name)[:16].strip() != b"little":
                raise CheckpointError(f"{path}: saved on a big-endian machine; tinyrwkv reads little-endian only")
            data = archive.read(pickles[0])
        try:
            pickle_scan.scan(data)
        except pickle_scan.PickleRefused as e:
            raise CheckpointError(f"{path}: refusing {pickles[0]}: {e}") from None
        obj = RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except CheckpointError:
        raise
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: not a readable zip archive (truncated or corrupt?): {e}") from None
    except Exception as e:  # anything the pickle or zip code raises on garbage
        raise CheckpointError(f"{path}: corrupt torch checkpoint: {type(e).__name__}: {str(e)[:200]}") from None

    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a saved dict of tensors (a state dict), got {type(obj).__name__}")

    tensors = {}
    with open(path, "rb") as f:
        file_size = f.seek(0, 2)
        data_offsets = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise CheckpointError(f"{path}: a key of the state dict is a Python {type(key).__name__} "
                                      f"({_short(key)}), not a tensor name")
            if not isinstance(value, _PickledTensor):
                raise CheckpointError(f"{path}: entry {key!r:.100} holds a Python {type(value).__name__}, "
                                      f"not a tensor")
            storage = value.storage
            member = f"{prefix}data/{storage.key}"
            info = infos.get(member)
            if info is None:
                raise CheckpointError(f"{path}: tensor {key!r} points at {member}, which the zip lacks")
            itemsize = RAW_DTYPES[storage.dtype].itemsize
            if info.file_size != storage.numel * itemsize:
                raise CheckpointError(f"{path}: {member} holds {info.file_size} bytes but the pickle says "
                                      f"{storage.numel} x {itemsize}-byte {storage.dtype} elements")
            if member not in data_offsets:
                data_offsets[member] = _member_data_offset(f, info, path)
            if data_offsets[member] + info.file_size > file_size:
                raise CheckpointError(f"{path}: {member} runs past the end of the file (truncated?)")
            if len(value.strides) != len(value.shape):
                raise CheckpointError(f"{path}: tensor {key!r} has strides {value.strides} for shape {value.shape}")
            tensor = StoredTensor(name=key, file=path, dtype=storage.dtype, shape=value.shape,
                                  offset=data_offsets[member] + value.storage_offset * itemsize,
                                  strides=value.strides)
            if value.storage_offset + tensor.span_elements() > storage.numel:   # Python ints: no wrap-around
                raise CheckpointError(f"{path}: tensor {key!r} (shape {value.shape}, offset {value.storage_offset}) "
                                      f"does not fit in its storage of {storage.numel} elements")
            tensors[key] = tensor
    return tensors
