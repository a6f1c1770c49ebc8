"""State files: ``read_npz`` (and ``RWKVState.load`` through it) refuses every file that is not a state
we wrote with one StateFileError naming the file, before allocating what a forged header claims."""
import io
import time
import zipfile

import numpy as np
import pytest

from hostile import run_isolated
from tinyrwkv.errors import StateFileError, TinyRWKVError
from tinyrwkv.models.rwkv import RWKVState
from tinyrwkv.npz_file import read_npz

FIELDS = RWKVState.FIELDS
SHAPE = (2, 1, 4)


@pytest.fixture
def state_path(tmp_path):
    state = RWKVState.zeros(*SHAPE[::2])
    state.aa[...] = np.arange(8, dtype=np.float32).reshape(2, 1, 4)
    path = tmp_path / "state.npz"
    state.save(path)
    return path


def npy_bytes(array=None, header: bytes = None, data: bytes = None, version=(1, 0)) -> bytes:
    """An .npy member: a real header for ``array``, or a hand-written header dict + raw data."""
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
        return buf.getvalue()
    text = header + b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + (data or b"")


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def good_members(**replace):
    arrays = {f: np.zeros(SHAPE, np.float32) for f in FIELDS}
    members = [(f + ".npy", npy_bytes(arrays[f])) for f in FIELDS]
    return [(n, replace.get(n[:-4], d)) for n, d in members if replace.get(n[:-4], d) is not None]


def expect_state_error(path, *patterns):
    start = time.perf_counter()
    with pytest.raises(StateFileError) as info:
        RWKVState.load(path)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for p in patterns:
        assert p in message, message
    assert isinstance(info.value, TinyRWKVError) and isinstance(info.value, ValueError)
    return message


def test_round_trip_is_exact_and_writable(state_path):
    restored = RWKVState.load(state_path)
    assert np.array_equal(restored.aa, np.arange(8, dtype=np.float32).reshape(2, 1, 4))
    assert (restored.pp == -1e38).all() and restored.aa.flags.writeable and restored.aa.dtype == np.float32


def test_compressed_state_round_trips(tmp_path):
    state = RWKVState.zeros(2, 4)
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **{f: getattr(state, f) for f in FIELDS})
    assert np.array_equal(RWKVState.load(path).pp, state.pp)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_state_files(tmp_path, state_path):
    """One file per class, each refused by name."""
    cases = {}
    np.save(tmp_path / "single.npy", np.zeros(SHAPE, np.float32))
    cases["single.npy"] = ["single .npy array"]
    (tmp_path / "text.npz").write_text("hello")
    cases["text.npz"] = ["not an .npz"]
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = ["not an .npz"]
    data = state_path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    cases["truncated.npz"] = ["corrupt"]
    write_npz(tmp_path / "missing.npz", good_members(pp=None))
    cases["missing.npz"] = ["lacks pp"]
    write_npz(tmp_path / "extra.npz", good_members() + [("extra.npy", npy_bytes(np.zeros(1, np.float32)))])
    cases["extra.npz"] = ["unexpected extra"]
    write_npz(tmp_path / "float64.npz", good_members(aa=npy_bytes(np.zeros(SHAPE))))
    cases["float64.npz"] = ["aa has dtype <f8"]
    write_npz(tmp_path / "object.npz", good_members(aa=npy_bytes(np.array([{"a": 1}], dtype=object))))
    cases["object.npz"] = ["aa is an object array"]
    write_npz(tmp_path / "ndim.npz", good_members(bb=npy_bytes(np.zeros((2, 4), np.float32))))
    cases["ndim.npz"] = ["bb has shape (2, 4); expected a 3-D array"]
    write_npz(tmp_path / "mismatch.npz", good_members(bb=npy_bytes(np.zeros((2, 1, 5), np.float32))))
    cases["mismatch.npz"] = ["bb must be"]
    nan = np.zeros(SHAPE, np.float32)
    nan[1, 0, 2] = np.nan
    write_npz(tmp_path / "nan.npz", good_members(att_x=npy_bytes(nan)))
    cases["nan.npz"] = ["att_x holds 1 non-finite value(s) (first at index (1, 0, 2): NaN)"]
    inf = np.zeros(SHAPE, np.float32)
    inf[0, 0, 0] = -np.inf
    write_npz(tmp_path / "inf.npz", good_members(ffn_x=npy_bytes(inf)))
    cases["inf.npz"] = ["-inf"]
    # a header claiming a (2**20, 2**20, 2**20) float32 array (4 EiB) in a member of 64 bytes
    huge = npy_bytes(header=b"{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576, 1048576), }")
    write_npz(tmp_path / "huge.npz", good_members(aa=huge))
    cases["huge.npz"] = ["aa: its header claims", "truncated or forged"]
    # the same claim in a compressed member: bounded by the unpacked size
    write_npz(tmp_path / "huge_deflated.npz", good_members(aa=huge), zipfile.ZIP_DEFLATED)
    cases["huge_deflated.npz"] = ["truncated or forged"]
    write_npz(tmp_path / "negative.npz",
              good_members(aa=npy_bytes(header=b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 1, 4), }")))
    cases["negative.npz"] = ["aa"]
    write_npz(tmp_path / "garbage_header.npz", good_members(aa=npy_bytes(header=b"{'descr': __import__('os')}")))
    cases["garbage_header.npz"] = ["aa"]
    write_npz(tmp_path / "not_npy.npz", good_members(aa=b"just some bytes here"))
    cases["not_npy.npz"] = ["aa is not a .npy"]
    write_npz(tmp_path / "short.npz", good_members(aa=npy_bytes(np.zeros(SHAPE, np.float32))[:-4]))
    cases["short.npz"] = ["aa: its header claims"]
    write_npz(tmp_path / "dup.npz", good_members() + [("aa.npy", npy_bytes(np.zeros(SHAPE, np.float32)))])
    cases["dup.npz"] = ["stored twice: aa.npy"]
    write_npz(tmp_path / "bzip.npz", good_members(), zipfile.ZIP_BZIP2)
    cases["bzip.npz"] = ["compression method 12"]
    cases["no_such.npz"] = ["cannot read"]
    from test_checkpoints_hostile import patch_end_record
    patch_end_record(write_npz(tmp_path / "members.npz", good_members()), entries=60000)
    cases["members.npz"] = ["declares 60,000 members", "at most 16"]
    for name, patterns in cases.items():
        expect_state_error(tmp_path / name, *patterns)


def test_the_huge_claim_allocates_nothing_in_a_capped_process(tmp_path):
    huge = npy_bytes(header=b"{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576, 1048576), }")
    path = write_npz(tmp_path / "huge.npz", good_members(aa=huge), zipfile.ZIP_DEFLATED)
    out = run_isolated("RWKVState.load(PATH)", path, mem_mb=1024,
                       setup="from tinyrwkv.models.rwkv import RWKVState")
    # Under the 1 GiB cap an attempt to allocate the claimed array would be a MemoryError; and the
    # reader itself adds almost nothing (the imports' own peak, which varies with the machine, is not counted).
    assert out.error_type == "StateFileError" and out.returncode == 0, out.describe()
    assert out.seconds < 2 and out.added_mb < 100, f"{out.describe()} added {out.added_mb:.0f} MB"


def test_read_npz_with_fixed_shapes_and_opt_in_nonfinite(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.array([[1.0, np.inf]], np.float32))
    with pytest.raises(StateFileError, match=r"w\.npz.*w has shape \(1, 2\); expected shape \(\*, 3\)"):
        read_npz(path, {"w": (None, 3)})
    with pytest.raises(StateFileError, match="non-finite"):
        read_npz(path, {"w": (None, 2)})
    assert read_npz(path, {"w": (1, 2)}, allow_nonfinite=True)["w"][0, 1] == np.inf


def test_fortran_order_is_read_right(tmp_path):
    a = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    path = tmp_path / "f.npz"
    np.savez(path, a=a)
    assert np.array_equal(read_npz(path, {"a": 3})["a"], a)
