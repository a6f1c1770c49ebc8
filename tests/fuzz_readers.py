"""Property-based fuzzing of every reader of untrusted files (run by tests/test_fuzz.py in a child
process with a memory cap, so that a crash or a blow-up fails that test instead of killing pytest).

The property, for each reader: on any input it either returns a valid result or raises one of our
own error types whose message names the file -- never anything else (TypeError, RecursionError,
MemoryError, a NumPy error, a segfault, a hang).

Inputs start from real files (written by torch.save, safetensors and RWKVState.save, found in
$TINYRWKV_FUZZ_SEEDS) and are mutated: bytes flipped, inserted, deleted, the file truncated, the
pickle inside the zip rewritten (and re-zipped with a valid CRC, so the scan and the unpickler
see it), the safetensors header rewritten with random JSON values, random opcode streams, random
JSON configs, indexes and tokenizer files. Examples are bounded and derandomized (the same cases
every run) with a per-example deadline.

Run alone:  TINYRWKV_FUZZ_SEEDS=<folder made by test_fuzz.make_seeds> python -m pytest tests/fuzz_readers.py
"""
import io
import json
import os
import pathlib
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyrwkv.checkpoints import CheckpointError, read_checkpoint
from tinyrwkv.errors import StateFileError, TinyRWKVError
from tinyrwkv.models.state import MatrixState, RWKVState
from tinyrwkv.tokenizer import CHAR_TOKENIZER_TYPE, TokenizerError, load_tokenizer

SEEDS = pathlib.Path(os.environ.get("TINYRWKV_FUZZ_SEEDS", "/nonexistent"))
if not SEEDS.is_dir():
    pytest.skip("run through tests/test_fuzz.py (TINYRWKV_FUZZ_SEEDS names the seed files)", allow_module_level=True)

EXAMPLES = int(os.environ.get("TINYRWKV_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = pathlib.Path(tempfile.mkdtemp(prefix="tinyrwkv-fuzz-"))


# ---- the property -------------------------------------------------------------------------------

def check_checkpoint(path):
    """read_checkpoint(path) returns float32 finite params, or raises CheckpointError naming the file."""
    try:
        config, params = read_checkpoint(path, progress=False)
    except CheckpointError as e:
        assert str(path) in str(e), f"the error does not name {path}: {e}"
        return
    for name, value in params.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32, name
        assert np.isfinite(value).all(), name
    assert all(type(config[k]) is int and config[k] > 0 for k in ("n_layer", "n_embd", "vocab_size"))
    assert 0 < config["layer_norm_epsilon"] < 1, config


def write(name: str, data: bytes) -> pathlib.Path:
    path = WORK / name
    path.write_bytes(data)
    return path


# ---- byte-level mutations -----------------------------------------------------------------------

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**31), st.integers(1, 64)),
)


def mutate(data: bytes, ops, start: int = 0) -> bytes:
    """Applies ``ops`` to ``data`` (positions taken modulo the length, at or after ``start``)."""
    data = bytearray(data)
    for op in ops:
        if not data:
            break
        span = max(len(data) - start, 1)
        at = start + op[1] % span if len(data) > start else op[1] % len(data)
        if op[0] == "flip":
            data[at % len(data)] ^= op[2]
        elif op[0] == "truncate":
            del data[at:]
        elif op[0] == "insert":
            data[at:at] = op[2]
        else:
            del data[at: at + op[2]]
    return bytes(data)


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_torch_file_with_mutated_bytes(ops):
    check_checkpoint(write("mutated.pth", mutate((SEEDS / "tiny.pth").read_bytes(), ops)))


def rezip(seed: pathlib.Path, edit) -> bytes:
    """The torch zip ``seed`` with its data.pkl replaced by edit(data.pkl), CRCs recomputed."""
    out = io.BytesIO()
    with zipfile.ZipFile(seed) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, edit(data) if info.filename.endswith("data.pkl") else data)
    return out.getvalue()


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=6))
def test_torch_file_with_mutated_pickle(ops):
    check_checkpoint(write("pickle.pth", rezip(SEEDS / "tiny.pth", lambda pkl: mutate(pkl, ops, start=2))))


def p_str(s: str) -> bytes:
    return b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()


# opcode snippets a hostile pickle might string together: containers, marks, memo, ints of every
# width, strings, the allowed globals and a forbidden one, REDUCE/BUILD/BINPERSID, refused opcodes
SNIPPETS = [b"(", b"t", b"l", b"d", b"}", b"]", b")", b"\x85", b"\x86", b"\x87", b"N", b"\x88", b"\x89",
            b"K\x05", b"M\xff\xff", b"J\xff\xff\xff\xff", b"\x8a\x09" + b"\xff" * 9, b"\x8a\x01\x80", p_str("x"),
            p_str("storage"), p_str("0"), p_str("cpu"), b"ctorch\nFloatStorage\n", b"ctorch\nBFloat16Storage\n",
            b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n", b"cos\nsystem\n",
            b"R", b"Q", b"s", b"u", b"a", b"e", b"b", b"q\x00", b"q\x01", b"h\x00", b"h\x01", b"0", b"1",
            b"2", b"\x94", b"\x82\x01", b"P0\n", b"\x8c\x01x", b"\x93", b"G\x7f\xf0\x00\x00\x00\x00\x00\x00"]


@FUZZ
@given(body=st.lists(st.sampled_from(SNIPPETS), max_size=60))
def test_torch_file_with_random_opcodes(body):
    pkl = b"\x80\x02" + b"".join(body) + b"."
    check_checkpoint(write("opcodes.pth", rezip(SEEDS / "tiny.pth", lambda _: pkl)))


# ---- safetensors and the JSON files --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_safetensors_with_mutated_bytes(ops):
    check_checkpoint(write("mutated.safetensors", mutate((SEEDS / "tiny.safetensors").read_bytes(), ops)))


def seed_header():
    data = (SEEDS / "tiny.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8: 8 + n]), data[8 + n:]


EDIT = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), st.sampled_from(["dtype", "shape", "data_offsets"]), JSON),
    st.tuples(st.just("shape"), st.integers(0, 10**6), st.lists(st.integers(-2**66, 2**66), max_size=4)),
    st.tuples(st.just("offsets"), st.integers(0, 10**6), st.lists(st.integers(-10, 2**66), max_size=3)),
    st.tuples(st.just("drop"), st.integers(0, 10**6), st.sampled_from(["dtype", "shape", "data_offsets", None])),
    st.tuples(st.just("add"), st.text(max_size=12), JSON),
    st.tuples(st.just("metadata"), JSON),
)


@FUZZ
@given(edits=st.lists(EDIT, min_size=1, max_size=4), cut=st.integers(0, 64))
def test_safetensors_with_rewritten_header(edits, cut):
    header, data = seed_header()
    names = sorted(k for k in header if k != "__metadata__")
    for edit in edits:
        kind = edit[0]
        if kind in ("set", "shape", "offsets", "drop"):
            name = names[edit[1] % len(names)]
            if kind == "set":
                header[name][edit[2]] = edit[3]
            elif kind == "shape":
                header[name]["shape"] = edit[2]
            elif kind == "offsets":
                header[name]["data_offsets"] = edit[2]
            elif edit[2] is None:
                header[name] = None
            else:
                header[name].pop(edit[2], None)
        elif kind == "add":
            header[edit[1]] = edit[2]
        else:
            header["__metadata__"] = edit[1]
    raw = json.dumps(header).encode()
    check_checkpoint(write("header.safetensors", len(raw).to_bytes(8, "little") + raw + data[: len(data) - cut]))


@FUZZ
@given(header=JSON, data=st.binary(max_size=64))
def test_safetensors_with_a_random_json_header(header, data):
    raw = json.dumps(header).encode()
    check_checkpoint(write("random.safetensors", len(raw).to_bytes(8, "little") + raw + data))


def folder_with(name: str, files: dict) -> pathlib.Path:
    folder = WORK / name
    folder.mkdir(exist_ok=True)
    for p in folder.iterdir():
        p.unlink()
    for file, data in files.items():
        (folder / file).write_bytes(data)
    return folder


@FUZZ
@given(config=JSON | st.dictionaries(st.just("layer_norm_epsilon"), JSON, min_size=1))
def test_config_json(config):
    check_checkpoint(folder_with("config", {"model.safetensors": (SEEDS / "tiny.safetensors").read_bytes(),
                                            "config.json": json.dumps(config).encode()}))


@FUZZ
@given(index=JSON | st.fixed_dictionaries({"weight_map": st.dictionaries(st.text(max_size=12), JSON | st.text(max_size=20),
                                                                             max_size=4)}))
def test_shard_index(index):
    check_checkpoint(folder_with("index", {"model-00001-of-00001.safetensors": (SEEDS / "tiny.safetensors").read_bytes(),
                                           "model.safetensors.index.json": json.dumps(index).encode()}))


# ---- tokenizers ----------------------------------------------------------------------------------

def check_tokenizer(path):
    try:
        tok = load_tokenizer(path)
    except TokenizerError as e:
        assert str(path) in str(e), f"the error does not name {path}: {e}"
        return
    assert tok.vocab_size >= 0


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["chars", "eot", "extra"]), JSON | st.text(max_size=6)))
def test_char_tokenizer_json_with_any_field_types(fields):
    check_tokenizer(write("char_tokenizer.json", json.dumps({"type": CHAR_TOKENIZER_TYPE, **fields}).encode()))


@FUZZ
@given(value=JSON)
def test_tokenizer_json_of_any_shape(value):
    check_tokenizer(write("tokenizer.json", json.dumps(value).encode()))


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=3))
def test_char_tokenizer_with_mutated_bytes(ops):
    check_tokenizer(write("char_tokenizer.json", mutate((SEEDS / "char_tokenizer.json").read_bytes(), ops)))


_WORLD = iter(range(10**9))


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=3))
def test_world_vocabulary_with_mutated_bytes(ops):
    # a fresh name per example: world_tokenizer caches by path
    check_tokenizer(write(f"rwkv_vocab_{next(_WORLD)}.txt", mutate((SEEDS / "rwkv_vocab_small.txt").read_bytes(), ops)))


# ---- saved states --------------------------------------------------------------------------------

def check_state(path, cls=RWKVState):
    try:
        state = cls.load(path)
    except StateFileError as e:
        assert str(path) in str(e), f"the error does not name {path}: {e}"
        return
    for f in cls.FIELDS:
        a = getattr(state, f)
        assert a.dtype == np.float32 and np.isfinite(a).all() and a.flags.writeable, f


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_state_file_with_mutated_bytes(ops):
    check_state(write("state.npz", mutate((SEEDS / "state.npz").read_bytes(), ops)))


def full(dtype, shape, fill):
    with np.errstate(all="ignore"):          # NaN or 1e38 cast to an integer dtype: any value will do
        return np.full(shape, fill).astype(dtype)


ARRAY = st.builds(full,
                  st.sampled_from(["<f4", ">f4", "<f8", "<i4", "|u1", "<f2"]),
                  st.lists(st.integers(0, 3), max_size=4).map(tuple),
                  st.sampled_from([0.0, 1.5, np.nan, np.inf, -1e38]))


@FUZZ
@given(members=st.dictionaries(st.sampled_from(list(RWKVState.FIELDS) + list(MatrixState.FIELDS) + ["x"]), ARRAY,
                               max_size=7),
       compressed=st.booleans(), which=st.sampled_from([RWKVState, MatrixState]))
def test_state_file_with_random_members(members, compressed, which):
    path = WORK / "members.npz"
    (np.savez_compressed if compressed else np.savez)(path, **members)
    check_state(path, which)


def test_every_error_above_is_one_of_ours():
    """The checks catch only our types; these are what they are."""
    assert issubclass(CheckpointError, TinyRWKVError) and issubclass(StateFileError, TinyRWKVError)
    assert issubclass(TokenizerError, ValueError)
