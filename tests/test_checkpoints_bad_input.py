"""Bad checkpoints: malicious pickles execute nothing; corrupt, truncated and mismatched files give
a CheckpointError that names the file (and the key / shape at fault), never a raw zipfile, struct
or pickle exception."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from factories import random_internal_params, tiny_config, torch_state_dict
from tinyrwkv.checkpoints import CheckpointError, UnsafeCheckpointError, inspect_checkpoint, read_checkpoint


def write_torch_like_zip(path, payload: bytes, extra_members=()):
    """A zip laid out like torch.save's, with our own data.pkl bytes (no torch needed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        for name, data in extra_members:
            z.writestr(name, data)


class SystemCall:
    """Unpickling this runs a shell command (the classic malicious checkpoint)."""
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalCall:
    def __init__(self, source):
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


@pytest.fixture
def tiny_params():
    config = tiny_config(n_layer=2, n_embd=8, vocab_size=16, ffn_dim=16)
    return config, random_internal_params(config, seed=0)


# ---- malicious pickles ---------------------------------------------------------------------------

def test_torch_saved_os_system_is_refused_and_runs_nothing(tmp_path, tiny_params):
    torch = pytest.importorskip("torch")
    sentinel = tmp_path / "pwned"
    state = torch_state_dict(tiny_params[1], "blinkdl")
    state["blocks.0.att.key.weight"] = SystemCall(f"touch {sentinel}")   # hidden among real tensors
    path = tmp_path / "evil.pth"
    torch.save(state, path)

    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path, progress=False)
    message = str(info.value)
    assert f"{os.system.__module__}.system" in message and str(path) in message
    assert not sentinel.exists()
    with pytest.raises(UnsafeCheckpointError):
        inspect_checkpoint(path)
    assert not sentinel.exists()

    # control: the payload is real, an unrestricted loader does run it
    torch.load(path, weights_only=False)
    assert sentinel.exists()


@pytest.mark.parametrize("protocol", [2, 4])   # GLOBAL and STACK_GLOBAL both go through find_class
def test_builtins_eval_is_refused(tmp_path, protocol):
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps({"emb.weight": EvalCall(f"open({str(sentinel)!r}, 'w')")}, protocol=protocol)
    path = tmp_path / "evil.bin"
    write_torch_like_zip(path, payload)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval") as info:
        read_checkpoint(path, progress=False)
    assert str(path) in str(info.value)
    assert not sentinel.exists()


def test_any_other_global_is_refused(tmp_path):
    """Even harmless-looking classes are refused: only tensor storage is allowed."""
    import collections
    path = tmp_path / "odd.bin"
    write_torch_like_zip(path, pickle.dumps({"x": collections.Counter("ab")}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"collections\.Counter"):
        read_checkpoint(path, progress=False)


@pytest.mark.parametrize("target", [b"ctorch\nFloatStorage\n", b"ctorch._utils\n_rebuild_tensor_v2\n"])
def test_pickle_cannot_tamper_with_the_allowed_stand_ins(tmp_path, target):
    """GLOBAL <allowed thing>, then BUILD with new attributes: refused, and later loads are unaffected."""
    from tinyrwkv.checkpoints.torch_zip import RestrictedUnpickler
    before = repr(RestrictedUnpickler.ALLOWED[("torch", "FloatStorage")])
    # PROTO 2, GLOBAL target, EMPTY_DICT, MARK, 'dtype', 'float16', SETITEMS, BUILD, STOP
    payload = b"\x80\x02" + target + b"}(X\x05\x00\x00\x00dtypeX\x07\x00\x00\x00float16ub."
    path = tmp_path / "tamper.bin"
    write_torch_like_zip(path, payload)
    expect_error(path, "modify")
    assert repr(RestrictedUnpickler.ALLOWED[("torch", "FloatStorage")]) == before == "_StorageType(dtype='float32')"


# ---- corrupt and truncated files -----------------------------------------------------------------

@pytest.fixture
def good_bin(tmp_path, tiny_params):
    torch = pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    torch.save(torch_state_dict(tiny_params[1], "hf"), path)
    return path


@pytest.fixture
def good_safetensors(tmp_path, tiny_params):
    from safetensors.numpy import save_file
    from tinyrwkv.checkpoints import to_file_layout
    path = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(tiny_params[1], "hf").items()}, str(path))
    return path


def expect_error(path, *patterns):
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, progress=False)
    message = str(info.value)
    assert str(path) in message, message
    for pattern in patterns:
        assert pattern in message, message
    assert not isinstance(info.value, UnsafeCheckpointError)
    return message


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_zip(good_bin, keep):
    data = good_bin.read_bytes()
    good_bin.write_bytes(data[: int(len(data) * keep)])
    expect_error(good_bin)


def test_corrupt_pickle_inside_zip(tmp_path):
    path = tmp_path / "garbage_pickle.bin"
    write_torch_like_zip(path, b"\x80\x02}q\x00(X\x03\x00\x00\x00abcq\x01")   # stops mid-pickle
    expect_error(path, "corrupt")


def test_flipped_bytes_in_data_pkl_fail_the_zip_crc(good_bin):
    data = bytearray(good_bin.read_bytes())
    start = data.index(b"data.pkl") + len(b"data.pkl") + 40
    data[start: start + 16] = b"\xff" * 16
    good_bin.write_bytes(bytes(data))
    expect_error(good_bin)


def test_storage_missing_from_zip(good_bin, tmp_path):
    """The pickle points at <archive>/data/0 but the archive lacks it."""
    path = tmp_path / "no_storage.bin"
    with zipfile.ZipFile(good_bin) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info.filename, src.read(info.filename))
    expect_error(path, "pytorch_model/data/0")


def test_compressed_storage_is_refused(good_bin, tmp_path):
    path = tmp_path / "deflated.bin"
    with zipfile.ZipFile(good_bin) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    expect_error(path, "compressed")


def test_non_tensor_entry_is_named(tmp_path, tiny_params):
    torch = pytest.importorskip("torch")
    state = torch_state_dict(tiny_params[1], "hf")
    state["step"] = 1000
    path = tmp_path / "with_step.bin"
    torch.save(state, path)
    expect_error(path, "'step'")


def test_legacy_torch_format_asks_for_a_resave(tmp_path, tiny_params):
    torch = pytest.importorskip("torch")
    path = tmp_path / "old.pth"
    torch.save(torch_state_dict(tiny_params[1], "blinkdl"), path, _use_new_zipfile_serialization=False)
    expect_error(path, "legacy", "torch.save")


@pytest.mark.parametrize("name", ["random.bin", "random.pth", "random.safetensors", "random.weights"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_error(path)


def test_empty_file(tmp_path):
    for name in ("empty.bin", "empty.safetensors"):
        (tmp_path / name).write_bytes(b"")
        expect_error(tmp_path / name)


def rewrite_safetensors_header(path, edit):
    """Rewrite a safetensors file with edit(header dict) applied, same data after it."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


def test_truncated_safetensors_names_the_tensor(good_safetensors):
    data = good_safetensors.read_bytes()
    header = json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    good_safetensors.write_bytes(data[:-10])
    expect_error(good_safetensors, repr(last), "truncated")


def test_safetensors_header_length_lies(good_safetensors):
    data = bytearray(good_safetensors.read_bytes())
    data[:8] = (len(data) * 10).to_bytes(8, "little")
    good_safetensors.write_bytes(bytes(data))
    expect_error(good_safetensors, "header")


def test_safetensors_header_is_not_json(good_safetensors):
    data = bytearray(good_safetensors.read_bytes())
    data[8:12] = b"@@@@"
    good_safetensors.write_bytes(bytes(data))
    expect_error(good_safetensors, "JSON")


def test_safetensors_size_does_not_match_shape(good_safetensors):
    def lie(header):
        header["rwkv.ln_out.bias"]["shape"] = [9]   # 9 floats claimed in 8 floats' bytes
    rewrite_safetensors_header(good_safetensors, lie)
    expect_error(good_safetensors, "rwkv.ln_out.bias", "36")


def test_safetensors_offsets_past_the_end(good_safetensors):
    def lie(header):
        entry = header["head.weight"]
        entry["data_offsets"] = [entry["data_offsets"][0] + 10**6, entry["data_offsets"][1] + 10**6]
    rewrite_safetensors_header(good_safetensors, lie)
    expect_error(good_safetensors, "head.weight")


def test_shard_index_pointing_at_a_missing_file(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"head.weight": "gone.safetensors"}}))
    with pytest.raises(CheckpointError, match="gone.safetensors"):
        read_checkpoint(tmp_path, progress=False)


# ---- wrong names and shapes ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["blinkdl_pth", "hf_safetensors"])
def test_missing_unexpected_and_wrong_shape_are_all_listed(tmp_path, tiny_params, fmt):
    config, params = tiny_params
    from tinyrwkv.checkpoints import to_file_layout
    naming = "blinkdl" if fmt == "blinkdl_pth" else "hf"
    state = {k: np.ascontiguousarray(v) for k, v in to_file_layout(params, naming).items()}
    prefix = "" if naming == "blinkdl" else "rwkv."
    att, ffn = ("att", "ffn") if naming == "blinkdl" else ("attention", "feed_forward")
    missing = f"{prefix}blocks.1.{att}.key.weight"
    unexpected = f"{prefix}blocks.0.{att}.time_mystery"
    reshaped = f"{prefix}blocks.0.{ffn}.value.weight"
    del state[missing]
    state[unexpected] = np.zeros(3, np.float32)
    state[reshaped] = np.zeros((8, 15), np.float32)
    if fmt == "blinkdl_pth":
        torch = pytest.importorskip("torch")
        path = tmp_path / "bad.pth"
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    else:
        from safetensors.numpy import save_file
        path = tmp_path / "bad.safetensors"
        save_file(state, str(path))
    message = expect_error(path, "3 problem(s)", f"missing {missing}: expected shape (8, 8)",
                           f"unexpected {unexpected} in {path.name}: shape (3,)",
                           f"wrong shape {reshaped} in {path.name}: expected (8, 16), got (8, 15)")
    # inspect reports the same problems without raising
    assert len(inspect_checkpoint(path)["problems"]) == 3, message


def test_not_an_rwkv_checkpoint(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": np.zeros((2, 2), np.float32)}, str(path))
    expect_error(path, "not an RWKV checkpoint", "encoder.weight")


def test_missing_path_and_folder_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pth", progress=False)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="notes.txt"):
        read_checkpoint(tmp_path, progress=False)
