"""RWKV-5.2 / 6 / 7 in tinyrwkv: parallel == serial, batching, the shared state class, version
detection (and one short message for files of other layouts), Hugging Face names for v5/v6,
``tinyrwkv info``, generation. Parity with the rwkv pip package is in test_rwkv567_parity.py."""
import numpy as np
import pytest

from factories import random_rwkv567_params, rwkv567_config, torch_state_dict, write_blinkdl_pth_any

import tinyrwkv
from tinyrwkv.checkpoints import CheckpointError, inspect_checkpoint, read_checkpoint
from tinyrwkv.checkpoints.naming import to_file_layout
from tinyrwkv.errors import StateFileError
from tinyrwkv.loading import model_class
from tinyrwkv.models.rwkv import RWKVConfig, RWKVState
from tinyrwkv.models.state import MatrixState

VERSIONS = (5.2, 6, 7)
SMALL = {v: rwkv567_config(v, n_layer=2, n_embd=32, head_size=8, vocab_size=41, ffn_dim=64) for v in VERSIONS}


def small_model(version, backend="numpy", seed=0):
    config = RWKVConfig.from_dict(SMALL[version])
    return model_class(version)(config, random_rwkv567_params(SMALL[version], seed=seed), backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("version", VERSIONS)
def test_parallel_equals_serial_batched_and_split(version, backend):
    model = small_model(version, backend)
    tokens = np.random.default_rng(1).integers(0, 41, (3, 10))
    full, state = model.forward(tokens)                               # (B, T, V)
    assert full.shape == (3, 10, 41) and isinstance(state, MatrixState)
    serial, s = [], None
    for t in range(10):
        logits, s = model.step(tokens[:, t], s)
        serial.append(logits)
    assert np.abs(np.stack(serial, 1) - full).max() < 1e-5
    assert np.abs(s.wkv - state.wkv).max() < 1e-5
    first, s1 = model.forward(tokens[:, :6])
    second, _ = model.forward(tokens[:, 6:], s1)
    assert np.abs(second - full[:, 6:]).max() < 1e-5
    last, _ = model.forward(tokens[1], full_output=False)            # one sequence, last logits only
    assert np.abs(last - full[1, -1]).max() < 1e-5
    assert model.config.version == version and f"version={version}" in repr(model)


def test_matrix_state_methods(tmp_path):
    model = small_model(7)
    _, state = model.forward(np.array([[1, 2, 3], [4, 5, 6]]))
    assert state.wkv.shape == (2, 2, 4, 8, 8) and state.batch_size == 2
    assert state.size() == model.state_size() == 2 * (2 * 32 + 4 * 8 * 8)
    assert repr(state).startswith("MatrixState(") and "wkv(2, 2, 4, 8, 8)" in repr(state)
    one = state.select(1)
    both = MatrixState.stack([state.select(0), one])
    assert all(np.array_equal(getattr(both, f), getattr(state, f)) for f in MatrixState.FIELDS)
    copy = state.copy()
    copy.wkv[:] = 0
    assert state.wkv.any()
    state.save(tmp_path / "s.npz")
    back = MatrixState.load(tmp_path / "s.npz")
    assert np.array_equal(back.wkv, state.wkv)
    a, _ = model.step(np.array([7, 7]), back)
    b, _ = model.step(np.array([7, 7]), state)
    assert np.array_equal(a, b)
    with pytest.raises(StateFileError, match="s.npz"):               # a v7 state is not an RWKV-4 state
        RWKVState.load(tmp_path / "s.npz")
    with pytest.raises(ValueError, match=r"state.wkv has shape .*need"):
        model.step(3, MatrixState.zeros(2, 32, 16))                   # wrong head size
    with pytest.raises(ValueError, match="must be a MatrixState"):
        model.step(3, RWKVState.zeros(2, 32))


@pytest.mark.parametrize("version", VERSIONS)
def test_blinkdl_pth_is_detected_and_described(tmp_path, version, capsys):
    params = random_rwkv567_params(SMALL[version], seed=3)
    path = write_blinkdl_pth_any(tmp_path / "m.pth", params, dtype="bfloat16")
    model = tinyrwkv.load(path, backend="numpy", progress=False)
    assert type(model).__name__ == {5.2: "RWKV5", 6: "RWKV6", 7: "RWKV7"}[version]
    config = model.config
    assert (config.version, config.head_size, config.n_head, config.ffn_dim) == (version, 8, 4, 64)
    for key in ("decay_lora", "mix_lora", "a_lora", "v_lora", "gate_lora"):
        assert getattr(config, key) == SMALL[version].get(key, 0), key
    from tinyrwkv.cli import main
    assert main(["info", str(path), "--no-tensors"]) == 0
    out = capsys.readouterr().out
    assert f"version:    RWKV-{version}" in out and "heads:      4 heads of size 8" in out


@pytest.mark.parametrize("version", [5.2, 6])
def test_hugging_face_names_of_v5_v6(tmp_path, version):
    """The trust_remote_code "-HF" repos keep transformers' RWKV-4 renaming (rwkv., attention,
    feed_forward, time_mix_key ...); we read them through the same rule (written here by us:
    no real repo is reachable offline)."""
    from safetensors.numpy import save_file
    params = random_rwkv567_params(SMALL[version], seed=4)
    stored = {k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()}
    assert "rwkv.blocks.0.attention.time_faaaa" in stored and "rwkv.blocks.1.feed_forward.key.weight" in stored
    save_file(stored, str(tmp_path / "model.safetensors"))
    config, read = read_checkpoint(tmp_path, progress=False)
    assert config["version"] == version
    assert all(np.array_equal(read[k], params[k]) for k in params)


def _bad(tmp_path, tensors):
    from safetensors.numpy import save_file
    path = tmp_path / "other.safetensors"
    save_file({k: np.zeros(s, np.float32) for k, s in tensors.items()}, str(path))
    with pytest.raises(CheckpointError) as info:
        tinyrwkv.load(path, progress=False)
    message = str(info.value)
    assert str(path) in message and len(message.splitlines()) == 1, message
    assert inspect_checkpoint(path)["problems"] == [message]
    return message


def test_unsupported_layouts_get_one_short_message(tmp_path):
    v51 = {"emb.weight": (10, 8), "blocks.0.att.ln_x.weight": (8,), "blocks.0.att.gate.weight": (8, 8),
           "blocks.0.att.time_decay": (2,), "blocks.0.att.time_first": (2,)}
    assert "looks like an RWKV-5.1" in _bad(tmp_path, v51)
    v50 = {k: s for k, s in v51.items() if "gate" not in k}
    assert "looks like an RWKV-5.0" in _bad(tmp_path, v50)
    fla = {"model.embeddings.weight": (10, 8), "model.layers.0.attn.r_k": (2, 4), "lm_head.weight": (10, 8)}
    assert "flash-linear-attention" in _bad(tmp_path, fla)
    mamba = {"backbone.embeddings.weight": (10, 8), "backbone.layers.0.mixer.A_log": (8, 4)}
    assert "Mamba" in _bad(tmp_path, mamba)
    gpt2 = {"transformer.wte.weight": (10, 8), "transformer.h.0.attn.c_attn.weight": (8, 24)}
    assert "GPT-2" in _bad(tmp_path, gpt2)


def test_incomplete_v7_file_lists_every_problem(tmp_path):
    params = random_rwkv567_params(SMALL[7], seed=5)
    state = torch_state_dict(params, "blinkdl")
    del state["blocks.1.att.a1"]
    del state["blocks.0.att.v1"]                                      # block 0's v LoRA is optional
    import torch
    torch.save(state, tmp_path / "v7.pth")
    with pytest.raises(CheckpointError, match=r"RWKV-7 \(Goose, x070\) checkpoint .* 1 problem\(s\):\n  "
                                              r"missing blocks.1.att.a1: expected shape \(32, 16\)"):
        read_checkpoint(tmp_path / "v7.pth", progress=False)


def test_generate_with_rwkv7():
    from tinyrwkv.generation import generate
    from tinyrwkv.tokenizer import CharTokenizer
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,!?\n" + "0123456", eot="\0")
    model = small_model(7, "numba", seed=9)
    a = generate(model, tok, ["hello", "hi there"], max_new_tokens=8, temperature=0)
    b = generate(model, tok, "hi there", max_new_tokens=8, temperature=0)
    assert a[1] == b and len(a[0]) > 0


def test_rwkv7_pile_168m_known_by_name(tmp_path, capsys):
    """`tinyrwkv download rwkv7-pile-168m` fetches one file of BlinkDL/rwkv-7-pile; offline, load()
    finds it in the Hugging Face cache (built here by hand in the hub's layout) or says how to get it."""
    from tinyrwkv.checkpoints import hub
    repo, filename, _ = hub.NAMED_FILES["rwkv7-pile-168m"]
    assert (repo, filename) == ("BlinkDL/rwkv-7-pile", "RWKV-x070-Pile-168M-20241120-ctx4096.pth")
    with pytest.raises(CheckpointError, match="tinyrwkv download rwkv7-pile-168m"):
        tinyrwkv.load("rwkv7-pile-168m", cache_dir=tmp_path, progress=False)
    repo_dir = tmp_path / "models--BlinkDL--rwkv-7-pile"
    commit = "0" * 40
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    write_blinkdl_pth_any(snapshot / filename, random_rwkv567_params(SMALL[7], seed=6), dtype="bfloat16")
    model = tinyrwkv.load("rwkv7-pile-168m", cache_dir=tmp_path, backend="numpy", progress=False)
    assert model.config.version == 7 and model.config.head_size == 8


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_v7_pth_values_read_exactly(tmp_path, dtype):
    """Every stored dtype reads back to exactly the stored values, in the model's layout (LoRA
    matrices transposed to (out, in), (1, 1, C) vectors squeezed)."""
    from factories import round_params
    params = round_params(random_rwkv567_params(SMALL[7], seed=8), dtype)
    write_blinkdl_pth_any(tmp_path / "m.pth", params, dtype=dtype)
    config, read = read_checkpoint(tmp_path / "m.pth", progress=False)
    assert config["dtype"] == dtype and set(read) == set(params)
    assert all(np.array_equal(read[k], params[k]) for k in params)
    assert read["blocks.1.att.a1"].shape == (16, 32)                 # stored (C, Da) = (32, 16)


def test_bench_machinery_rwkv7_tiny(capsys):
    """Not a speed test: `bench --version 7` writes RWKV-7 weights, runs tinyrwkv's worker on them
    and prints a table naming the version (transformers is skipped with the reason)."""
    from tinyrwkv.cli import main
    code = main(["bench", "--version", "7", "--tiny", "--no-peers", "--rounds", "1", "--repeats", "1",
                 "--prompt-length", "8", "--decode-tokens", "3"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("RWKV-7 2 layers x 64, head size 32"), out
    line = next(line for line in out.splitlines() if line.startswith("tinyrwkv fp32"))
    assert float(line.split()[2]) > 0
