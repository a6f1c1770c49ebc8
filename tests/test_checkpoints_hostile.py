"""A corpus of hand-made hostile checkpoints, one per malformed-input class, each refused with our
error type, a one-line message naming the file and the problem, in bounded time and memory.

The files are generated here (nothing binary is committed). The risky ones (a pickle nesting a
tuple 200,000 deep segfaulted the interpreter before the opcode scan; a 29 KB deflated data.pkl
took 42 s and 2.3 GB) also run in a child process with a capped address space, so a regression is
a failing test, not a dead test run.
"""
import json
import pickle
import time
import warnings
import zipfile

import numpy as np
import pytest

from factories import random_internal_params, tiny_config
from hostile import run_isolated, run_many
from tinyrwkv.checkpoints import CheckpointError, UnsafeCheckpointError, read_checkpoint, to_file_layout
from tinyrwkv.checkpoints import torch_zip
from tinyrwkv.checkpoints.tensors import read_float32

# ---- a tiny pickle assembler: torch.save's opcodes, with any values we like ----------------------


def p_int(n: int) -> bytes:
    return pickle.dumps(n, 2)[2:-1]              # BININT1/BININT2/BININT/LONG1, no memo


def p_str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def p_tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_tensor(storage_key="0", numel=6, offset=0, shape=(2, 3), stride=(3, 1), storage="FloatStorage") -> bytes:
    """_rebuild_tensor_v2(persistent storage id, offset, shape, stride, False, OrderedDict()), as torch writes it."""
    pid = p_tuple([p_str("storage"), f"ctorch\n{storage}\n".encode(), p_str(storage_key), p_str("cpu"), p_int(numel)])
    args = [pid + b"Q", p_int(offset), p_tuple(map(p_int, shape)), p_tuple(map(p_int, stride)), b"\x89",
            b"ccollections\nOrderedDict\n)R"]
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + p_tuple(args) + b"R"


def p_state(entries) -> bytes:
    """{key: value} from (key opcodes, value opcodes) pairs."""
    return b"\x80\x02}(" + b"".join(k + v for k, v in entries) + b"u."


def write_zip(path, pkl: bytes, storages=None, *, compression=zipfile.ZIP_STORED, members=()):
    storages = {"0": np.arange(6, dtype=np.float32).tobytes()} if storages is None else storages
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        for name, data in members:
            z.writestr(name, data)
    return path


def patch_end_record(path, entries=None, directory_bytes=None):
    """Rewrites the zip's end-of-central-directory record to declare ``entries`` members and a
    directory of ``directory_bytes``: what a zip holding a huge directory declares, without writing
    one (1M members take minutes to write)."""
    import struct
    data = bytearray(path.read_bytes())
    at = data.rindex(b"PK\x05\x06")
    sig, disk, disk_cd, n_disk, n_total, size, offset, comment = struct.unpack("<4s4H2LH", data[at: at + 22])
    n = n_total if entries is None else entries
    size = size if directory_bytes is None else directory_bytes
    data[at: at + 22] = struct.pack("<4s4H2LH", sig, disk, disk_cd, n, n, size, offset, comment)
    path.write_bytes(bytes(data))
    return path


def test_the_assembler_writes_what_the_reader_reads(tmp_path):
    """Positive control: the hand-made pickle is a valid state dict, so each refusal below is the hostile part."""
    path = write_zip(tmp_path / "ok.pth", p_state([(p_str("x"), p_tensor()),
                                                   (p_str("v"), p_tensor(offset=1, shape=(2, 2), stride=(1, 2)))]))
    tensors = torch_zip.list_tensors(path)
    with open(path, "rb") as f:
        assert np.array_equal(read_float32(tensors["x"], f), np.arange(6, dtype=np.float32).reshape(2, 3))
        assert np.array_equal(read_float32(tensors["v"], f), np.array([[1, 3], [2, 4]], np.float32))


# ---- safetensors helpers --------------------------------------------------------------------------

def write_safetensors(path, header, data: bytes):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def write_raw(path, data: bytes):
    path.write_bytes(data)
    return path


F32x4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}


def entry(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.fixture(scope="module")
def good_hf_folder(tmp_path_factory):
    """A complete tiny HF-style folder (config.json + model.safetensors) the config/index cases start from."""
    from safetensors.numpy import save_file
    folder = tmp_path_factory.mktemp("good")
    config = tiny_config(n_layer=1, n_embd=4, vocab_size=8, ffn_dim=8)
    params = random_internal_params(config, seed=0)
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"layer_norm_epsilon": 1e-5}))
    return folder


def hf_folder(base, good, config_text=None, index_text=None):
    """A copy of the good folder with config.json replaced, or the weights behind a shard index."""
    base.mkdir()
    weights = (good / "model.safetensors").read_bytes()
    if index_text is None:
        (base / "model.safetensors").write_bytes(weights)
    else:
        (base / "model-00001-of-00001.safetensors").write_bytes(weights)
        (base / "model.safetensors.index.json").write_text(index_text)
    (base / "config.json").write_text(config_text if config_text is not None else '{"layer_norm_epsilon": 1e-5}')
    return base


# ---- the corpus: name -> (builder(dir, good folder) -> path, error type, words the message holds) ---

DEEP = 200_000
CASES = {
    # torch zip: the pickle
    "pickle_deep_tuple_key": (lambda d, g: write_zip(d / "deepkey.pth", b"\x80\x02}" + b")" + b"\x85" * DEEP + b"K\x01s."),
                              CheckpointError, ["nested more than 32 deep"]),
    "pickle_deep_list": (lambda d, g: write_zip(d / "deeplist.pth", p_state([(p_str("k"), b"]" * DEEP + b"a" * (DEEP - 1))])),
                         CheckpointError, ["nested more than 32 deep"]),
    "pickle_deep_dict": (lambda d, g: write_zip(d / "deepdict.pth", b"\x80\x02" + b"}(X\x01\x00\x00\x00k" * 5000 + b"}" + b"u" * 5000 + b"."),
                         CheckpointError, ["nested more than 32 deep"]),
    "pickle_memo_cycle": (lambda d, g: write_zip(d / "cycle.pth", b"\x80\x02]q\x00h\x00a."),   # a list that holds itself
                          CheckpointError, ["nested more than 32 deep"]),
    "pickle_compressed_bomb": (lambda d, g: write_zip(d / "bomb.pth", b"\x80\x02}X\x01\x00\x00\x00k(" + b"]" * 30_000_000 + b"ls.",
                                                      compression=zipfile.ZIP_DEFLATED),
                               CheckpointError, ["data.pkl is compressed"]),
    "pickle_too_big": (lambda d, g: write_zip(d / "big.pth", b"\x80\x02N" + b"0N" * (4 * 2**20 + 1) + b"."),
                       CheckpointError, ["data.pkl is 8,388,614 bytes"]),
    "pickle_too_many_items": (lambda d, g: write_zip(d / "items.pth", b"\x80\x02(" + b"N" * 1_100_000 + b"l."),
                              CheckpointError, ["over 1,000,000 items"]),
    "pickle_huge_long": (lambda d, g: write_zip(d / "long.pth", b"\x80\x02L" + b"9" * 5000 + b"L\n."),
                         CheckpointError, ["malformed pickle"]),
    "pickle_huge_long1": (lambda d, g: write_zip(d / "long1.pth", b"\x80\x02" + p_int(2 ** 800) + b"."),
                          CheckpointError, ["an integer of 801 bits"]),
    "pickle_ext1": (lambda d, g: write_zip(d / "ext.pth", b"\x80\x02\x82\x01."),
                    CheckpointError, ["opcode EXT1", "extension registry"]),
    "pickle_persid": (lambda d, g: write_zip(d / "persid.pth", b"\x80\x02P0\n."),
                      CheckpointError, ["opcode PERSID"]),
    "pickle_inst": (lambda d, g: write_zip(d / "inst.pth", b"\x80\x02(ios\nsystem\nX\x02\x00\x00\x00id."),
                    CheckpointError, ["opcode INST"]),
    "pickle_bytes_after_stop": (lambda d, g: write_zip(d / "trailing.pth", p_state([]) + b"junk"),
                                CheckpointError, ["4 byte(s) after the pickle's STOP"]),
    "pickle_no_stop": (lambda d, g: write_zip(d / "nostop.pth", b"\x80\x02}"),
                       CheckpointError, ["malformed pickle"]),
    "pickle_get_unknown_memo": (lambda d, g: write_zip(d / "get.pth", b"\x80\x02h\x07."),
                                CheckpointError, ["memo slot 7"]),
    "pickle_os_system": (lambda d, g: write_zip(d / "evil.pth", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R."),
                         UnsafeCheckpointError, ["posix.system", "Nothing from the file was executed"]),
    # torch zip: the archive
    "zip_too_many_members": (lambda d, g: patch_end_record(write_zip(d / "members.pth", p_state([])), entries=65535),
                             CheckpointError, ["declares 65,535 members", "at most 20,000"]),
    "zip_directory_too_big": (lambda d, g: patch_end_record(write_zip(d / "directory.pth", p_state([]),
                                                                      members=[("archive/pad", b"\0" * (6 * 2**20))]),
                                                            directory_bytes=6 * 2**20),
                              CheckpointError, ["in 6,291,456 bytes"]),
    "zip_member_escapes": (lambda d, g: write_zip(d / "escape.pth", p_state([]), members=[("../../evil", b"x")]),
                           CheckpointError, ["'../../evil' points outside the archive"]),
    "zip_member_absolute": (lambda d, g: write_zip(d / "absolute.pth", p_state([]), members=[("/etc/evil", b"x")]),
                            CheckpointError, ["'/etc/evil' points outside the archive"]),
    "zip_duplicate_member": (lambda d, g: write_zip(d / "dup.pth", p_state([]), members=[("archive/data/0", b"x" * 24)]),
                             CheckpointError, ["two members named 'archive/data/0'"]),
    "zip_storage_missing": (lambda d, g: write_zip(d / "nostorage.pth", p_state([(p_str("x"), p_tensor())]), storages={}),
                            CheckpointError, ["archive/data/0, which the zip lacks"]),
    "zip_storage_shorter_than_claimed": (lambda d, g: write_zip(d / "short.pth", p_state([(p_str("x"), p_tensor(numel=8))])),
                                         CheckpointError, ["holds 24 bytes but the pickle says 8 x 4-byte"]),
    "zip_tensor_outside_storage": (lambda d, g: write_zip(d / "outside.pth", p_state([(p_str("x"), p_tensor(offset=2))])),
                                   CheckpointError, ["does not fit in its storage of 6 elements"]),
    "zip_strided_outside_storage": (lambda d, g: write_zip(d / "strided.pth", p_state([(p_str("x"), p_tensor(stride=(3, 2)))])),
                                    CheckpointError, ["does not fit in its storage"]),
    "zip_absurd_shape": (lambda d, g: write_zip(d / "absurd.pth", p_state([(p_str("x"), p_tensor(shape=(2 ** 60, 2 ** 60)))])),
                         CheckpointError, ["size must be a tuple of at most 64 ints in [0, 2**48]"]),
    "zip_negative_offset": (lambda d, g: write_zip(d / "negative.pth", p_state([(p_str("x"), p_tensor(offset=-1))])),
                            CheckpointError, ["bad storage offset -1"]),
    "zip_bool_in_shape": (lambda d, g: write_zip(d / "boolshape.pth", p_state([(p_str("x"), p_tensor(shape=(True, 3)))])),
                          CheckpointError, ["size must be a tuple"]),
    "zip_huge_numel": (lambda d, g: write_zip(d / "numel.pth", p_state([(p_str("x"), p_tensor(numel=2 ** 50))])),
                       CheckpointError, ["unsupported persistent id"]),
    "zip_int_key": (lambda d, g: write_zip(d / "intkey.pth", p_state([(p_int(5), p_tensor())])),
                    CheckpointError, ["a key of the state dict is a Python int (5)"]),
    "zip_tuple_key": (lambda d, g: write_zip(d / "tuplekey.pth", p_state([(p_tuple([p_int(1)]), p_tensor())])),
                      CheckpointError, ["a key of the state dict is a Python tuple"]),
    "zip_top_level_list": (lambda d, g: write_zip(d / "list.pth", b"\x80\x02]."),
                           CheckpointError, ["expected a saved dict of tensors", "got list"]),
    "zip_value_not_tensor": (lambda d, g: write_zip(d / "notensor.pth", p_state([(p_str("step"), p_int(7))])),
                             CheckpointError, ["entry 'step' holds a Python int"]),
    # safetensors
    "st_header_over_limit": (lambda d, g: write_raw(d / "limit.safetensors", (200 * 2**20).to_bytes(8, "little") + b"{}" * 8),
                             CheckpointError, ["over the format's limit"]),
    "st_header_deep": (lambda d, g: write_safetensors(d / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000, b""),
                       CheckpointError, ["nested too deep"]),
    "st_header_deep_but_parseable": (lambda d, g: write_safetensors(d / "deep2.safetensors", b'{"a":' + b"[" * 200 + b"]" * 200 + b"}", b""),
                                     CheckpointError, ["nested more than 64 deep"]),
    "st_header_too_many_values": (lambda d, g: write_safetensors(d / "values.safetensors", b'{"a": [' + b"0," * 2_100_000 + b"0]}", b""),
                                  CheckpointError, ["holds about 2,100,001 JSON values", "at most 2,000,000"]),
    "st_duplicate_name": (lambda d, g: write_safetensors(d / "dup.safetensors", b'{"x": ' + json.dumps(F32x4).encode() + b', "x": '
                                                         + json.dumps(F32x4).encode() + b"}", b"\0" * 16),
                          CheckpointError, ["the key 'x' appears twice"]),
    "st_nan_constant": (lambda d, g: write_safetensors(d / "nan.safetensors", b'{"x": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 16]}}',
                                                       b"\0" * 16), CheckpointError, ["NaN is not a JSON number"]),
    "st_shape_overflows_int64": (lambda d, g: write_safetensors(d / "overflow.safetensors", {"x": entry([2 ** 32, 2 ** 32], 0, 0)}, b""),
                                 CheckpointError, ["header says 0 bytes", "needs 73786976294838206464"]),
    "st_float_dim": (lambda d, g: write_safetensors(d / "float.safetensors", {"x": entry([4.0], 0, 16)}, b"\0" * 16),
                     CheckpointError, ["bad shape [4.0]"]),
    "st_bool_dim": (lambda d, g: write_safetensors(d / "bool.safetensors", {"x": entry([True], 0, 4)}, b"\0" * 4),
                    CheckpointError, ["bad shape [True]"]),
    "st_negative_dim": (lambda d, g: write_safetensors(d / "negdim.safetensors", {"x": entry([-4], 0, 16)}, b"\0" * 16),
                        CheckpointError, ["bad shape [-4]"]),
    "st_string_dim": (lambda d, g: write_safetensors(d / "strdim.safetensors", {"x": entry(["4"], 0, 16)}, b"\0" * 16),
                      CheckpointError, ["bad shape ['4']"]),
    "st_offsets_reversed": (lambda d, g: write_safetensors(d / "rev.safetensors", {"x": entry([0], 16, 0)}, b"\0" * 16),
                            CheckpointError, ["bad data_offsets [16, 0]"]),
    "st_offsets_overlap": (lambda d, g: write_safetensors(d / "overlap.safetensors", {"x": entry([4], 0, 16), "y": entry([2], 8, 16)},
                                                          b"\0" * 16), CheckpointError, ["tensors 'x' and 'y' overlap"]),
    "st_offsets_gap": (lambda d, g: write_safetensors(d / "gap.safetensors", {"x": entry([2], 0, 8), "y": entry([2], 16, 24)},
                                                      b"\0" * 24), CheckpointError, ["8 unused bytes before tensor 'y'"]),
    "st_trailing_data": (lambda d, g: write_safetensors(d / "trailing.safetensors", {"x": F32x4}, b"\0" * 20),
                         CheckpointError, ["4 bytes after the last tensor"]),
    "st_past_the_end": (lambda d, g: write_safetensors(d / "past.safetensors", {"x": F32x4}, b"\0" * 8),
                        CheckpointError, ["tensor 'x' ends at byte 16", "truncated"]),
    "st_unknown_dtype": (lambda d, g: write_safetensors(d / "dtype.safetensors", {"x": entry([4], 0, 16, "F8_E4M3")}, b"\0" * 16),
                         CheckpointError, ["dtype F8_E4M3"]),
    "st_metadata_not_strings": (lambda d, g: write_safetensors(d / "meta.safetensors", {"__metadata__": {"format": 1}, "x": F32x4},
                                                               b"\0" * 16), CheckpointError, ["__metadata__ must map strings to strings"]),
    "st_entry_not_object": (lambda d, g: write_safetensors(d / "entry.safetensors", {"x": [1, 2]}, b""),
                            CheckpointError, ["expected an object with dtype, shape and data_offsets"]),
    "st_header_list": (lambda d, g: write_safetensors(d / "list.safetensors", b"[1, 2]", b""),
                       CheckpointError, ["a list, not an object"]),
    "st_huge_int": (lambda d, g: write_safetensors(d / "hugeint.safetensors", b'{"x": ' + b"9" * 5000 + b"}", b""),
                    CheckpointError, ["not JSON"]),
    # config.json beside the weights
    "config_epsilon_infinity": (lambda d, g: hf_folder(d / "cfg_inf", g, '{"layer_norm_epsilon": Infinity}'),
                                CheckpointError, ["config.json", "Infinity is not a JSON number"]),
    "config_epsilon_overflow": (lambda d, g: hf_folder(d / "cfg_1e999", g, '{"layer_norm_epsilon": 1e999}'),
                                CheckpointError, ["layer_norm_epsilon must be a finite number in (0, 1), got inf"]),
    "config_epsilon_bool": (lambda d, g: hf_folder(d / "cfg_bool", g, '{"layer_norm_epsilon": true}'),
                            CheckpointError, ["got True (bool)"]),
    "config_epsilon_string": (lambda d, g: hf_folder(d / "cfg_str", g, '{"layer_norm_epsilon": "1e-5"}'),
                              CheckpointError, ["got 1e-5 (str)"]),
    "config_epsilon_negative": (lambda d, g: hf_folder(d / "cfg_neg", g, '{"layer_norm_epsilon": -1e-5}'),
                                CheckpointError, ["got -1e-05 (float)"]),
    "config_deep": (lambda d, g: hf_folder(d / "cfg_deep", g, "[" * 100_000 + "]" * 100_000),
                    CheckpointError, ["config.json: corrupt config.json: JSON nested too deep"]),
    "config_duplicate_key": (lambda d, g: hf_folder(d / "cfg_dup", g, '{"layer_norm_epsilon": 1e-5, "layer_norm_epsilon": 1}'),
                             CheckpointError, ["'layer_norm_epsilon' appears twice"]),
    "config_not_object": (lambda d, g: hf_folder(d / "cfg_list", g, "[1e-5]"),
                          CheckpointError, ["the top level is a JSON list"]),
    # shard index
    "index_escapes": (lambda d, g: hf_folder(d / "idx_escape", g, index_text='{"weight_map": {"head.weight": "../../etc/passwd"}}'),
                      CheckpointError, ["'../../etc/passwd' points outside the index's folder"]),
    "index_absolute": (lambda d, g: hf_folder(d / "idx_abs", g, index_text='{"weight_map": {"head.weight": "/etc/passwd"}}'),
                       CheckpointError, ["'/etc/passwd' points outside"]),
    "index_not_str": (lambda d, g: hf_folder(d / "idx_int", g, index_text='{"weight_map": {"head.weight": 3}}'),
                      CheckpointError, ["\"weight_map\" must map tensor names to file names"]),
    "index_no_map": (lambda d, g: hf_folder(d / "idx_none", g, index_text='{"metadata": {}}'),
                     CheckpointError, ["\"weight_map\" must map"]),
    "index_deep": (lambda d, g: hf_folder(d / "idx_deep", g, index_text="{\"a\": " + "[" * 100_000 + "]" * 100_000 + "}"),
                   CheckpointError, ["nested too deep"]),
    "index_duplicate": (lambda d, g: hf_folder(d / "idx_dup", g, index_text='{"weight_map": {"a": "x", "a": "y"}}'),
                        CheckpointError, ["'a' appears twice"]),
}
# run only in a capped child: before the fixes these crashed the interpreter or took seconds and gigabytes
ISOLATED_ONLY = {"pickle_deep_tuple_key", "pickle_compressed_bomb"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, good_hf_folder):
    folder = tmp_path_factory.mktemp("hostile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about the duplicate member we write on purpose
        return {name: builder(folder, good_hf_folder) for name, (builder, _, _) in CASES.items()}


def check_message(name, path, error_type_name, message):
    _, expected_type, words = CASES[name]
    assert error_type_name == expected_type.__name__, f"{name}: {error_type_name}: {message}"
    assert str(path) in message, f"{name}: the message does not name the file: {message}"
    assert "\n" not in message, f"{name}: not one line: {message}"
    for word in words:
        assert word in message, f"{name}: {word!r} not in: {message}"


@pytest.mark.parametrize("name", [n for n in CASES if n not in ISOLATED_ONLY])
def test_hostile_file_is_refused_by_name(corpus, name):
    path = corpus[name]
    start = time.process_time()                    # CPU seconds: robust to a busy machine
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, progress=False)
    assert time.process_time() - start < 5, name
    check_message(name, path, type(info.value).__name__, str(info.value))


def test_whole_corpus_in_a_capped_process(corpus):
    """Every case, in one child with 1 GiB of address space: none crashes, each is refused in under
    5 s (most in milliseconds), and the child's peak memory stays under 400 MB."""
    outcomes = run_many("from tinyrwkv.checkpoints import read_checkpoint\n"
                        "def run(path): read_checkpoint(path, progress=False)", list(corpus.values()), mem_mb=1024)
    for name, path in corpus.items():
        out = outcomes[str(path)]
        assert out.is_ours, f"{name}: {out.describe()}"
        check_message(name, path, out.error_type, out.message)
        assert out.seconds < 5, f"{name}: {out.describe()}"
    assert max(o.maxrss_mb for o in outcomes.values()) < 400, {n: outcomes[str(p)].maxrss_mb for n, p in corpus.items()}


def test_the_deep_tuple_that_segfaulted_is_refused_quickly(corpus):
    out = run_isolated("read_checkpoint(PATH, progress=False)", corpus["pickle_deep_tuple_key"], mem_mb=1024,
                       setup="from tinyrwkv.checkpoints import read_checkpoint")
    assert out.returncode == 0 and out.error_type == "CheckpointError", out.describe()
    assert out.seconds < 2 and out.added_mb < 50, f"{out.describe()} added {out.added_mb:.0f} MB"


def test_isolated_harness_reports_a_segfault_as_a_crash(tmp_path):
    """The harness itself: a child that really dies is reported, not hidden."""
    out = run_isolated("import ctypes; ctypes.string_at(0)", tmp_path, mem_mb=1024)
    assert out.error_type == "Crash" and out.returncode < 0, out.describe()


# ---- non-finite weights ---------------------------------------------------------------------------

@pytest.fixture
def nan_folder(tmp_path, good_hf_folder):
    """The good folder with 2 NaN and 1 -inf in one attention matrix."""
    from safetensors.numpy import load_file, save_file
    folder = hf_folder(tmp_path / "nan", good_hf_folder)
    tensors = load_file(str(folder / "model.safetensors"))
    key = tensors["rwkv.blocks.0.attention.key.weight"]
    key[0, 1] = key[2, 3] = np.nan
    key[3, 0] = -np.inf
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_nonfinite_weight_is_refused_by_name_with_an_opt_out(nan_folder):
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(nan_folder, progress=False)
    assert str(info.value) == (f"{nan_folder / 'model.safetensors'}: rwkv.blocks.0.attention.key.weight: 3 non-finite "
                               f"value(s) (first at index (0, 1): NaN); pass allow_nonfinite=True to load it anyway")
    _, params = read_checkpoint(nan_folder, progress=False, allow_nonfinite=True)
    assert np.isnan(params["blocks.0.att.key.weight"]).sum() == 2
    from tinyrwkv.loading import load
    with pytest.raises(CheckpointError, match="allow_nonfinite"):
        load(nan_folder, progress=False)
    model = load(nan_folder, progress=False, allow_nonfinite=True)
    assert np.isinf(model.params["blocks.0.att.key.weight"]).sum() == 1


def test_nonfinite_bfloat16_in_a_torch_file(tmp_path):
    torch = pytest.importorskip("torch")
    from factories import torch_state_dict
    config = tiny_config(n_layer=1, n_embd=4, vocab_size=8, ffn_dim=8)
    state = {k: v.to(torch.bfloat16) for k, v in torch_state_dict(random_internal_params(config, seed=1), "blinkdl").items()}
    state["head.weight"][5, 2] = float("inf")
    path = tmp_path / "inf.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"inf\.pth: head\.weight: 1 non-finite value\(s\) \(first at index \(5, 2\): inf\)"):
        read_checkpoint(path, progress=False)


def test_info_counts_nonfinite_values(nan_folder, capsys):
    from tinyrwkv.checkpoints import inspect_checkpoint
    from tinyrwkv.cli import main
    assert inspect_checkpoint(nan_folder)["nonfinite"] is None                      # headers only by default
    info = inspect_checkpoint(nan_folder, check_values=True)
    assert info["nonfinite"] == {"rwkv.blocks.0.attention.key.weight": 3}
    assert main(["info", str(nan_folder)]) == 1
    out = capsys.readouterr().out
    assert "problem:    rwkv.blocks.0.attention.key.weight: 3 non-finite value(s) (first at index (0, 1): NaN)" in out
    assert any(line.strip().startswith("rwkv.blocks.0.attention.key.weight") and line.endswith("3 non-finite")
               for line in out.splitlines())
    assert main(["info", str(nan_folder), "--headers-only"]) == 0


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_nonfinite_weight_is_refused_when_loading_compact_weights(nan_folder, weights):
    """Compact weights are converted by read_checkpoint's convert hook; the stored tensor is checked."""
    from tinyrwkv.loading import load
    with pytest.raises(CheckpointError, match=r"rwkv\.blocks\.0\.attention\.key\.weight: 3 non-finite value\(s\) "
                                              r"\(first at index \(0, 1\): NaN\); pass allow_nonfinite=True"):
        load(nan_folder, weights=weights, progress=False)


def test_stored_check_finds_the_first_bad_value_across_row_blocks(tmp_path, monkeypatch):
    from safetensors.numpy import save_file
    from tinyrwkv.checkpoints import reader, safetensors_file
    matrix = np.zeros((64, 8), np.float32)
    matrix[37, 5] = np.inf
    matrix[50, 0] = np.nan
    save_file({"m": matrix}, str(tmp_path / "m.safetensors"))
    tensor = safetensors_file.list_tensors(tmp_path / "m.safetensors")["m"]
    import tinyrwkv.checkpoints.tensors as tensors
    monkeypatch.setattr(tensors.iter_float32_rows, "__defaults__", (16,))    # 2 rows per block
    with open(tensor.file, "rb") as f:
        assert reader._stored_nonfinite(tensor, f) == (2, (37, 5), "inf")
