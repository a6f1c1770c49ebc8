"""Checkpoints round-trip: files written by the real writers (torch.save, save_pretrained) read back
by our torch-free readers give exactly the arrays torch reads, in every format and dtype."""
import json

import numpy as np
import pytest

from factories import (params_from_model, torch_state_dict, random_internal_params, real_169m_config, tiny_config,
                       write_blinkdl_pth, write_hf_bin, write_hf_safetensors)
from tinyrwkv.checkpoints import (describe, expected_shapes, inspect_checkpoint, internal_names, name_table,
                                  read_checkpoint)
from tinyrwkv.checkpoints.tensors import bfloat16_bits_to_float32

SIZE_KEYS = ("n_layer", "n_embd", "vocab_size", "ffn_dim", "layer_norm_epsilon")


def torch_reference(weights_file, naming, config):
    """What torch itself reads from the file: {internal name: float32 array} (torch's bf16 -> fp32)."""
    torch = pytest.importorskip("torch")
    if str(weights_file).endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(str(weights_file))
    else:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    shapes = expected_shapes(config)
    return {internal: state[external].float().numpy().reshape(shapes[internal])
            for internal, external in name_table(config["n_layer"], naming).items()}


def merged_reference(files, naming, config):
    torch = pytest.importorskip("torch")
    state = {}
    for f in files:
        if str(f).endswith(".safetensors"):
            from safetensors.torch import load_file
            state.update(load_file(str(f)))
        else:
            state.update(torch.load(f, map_location="cpu", weights_only=True))
    shapes = expected_shapes(config)
    return {internal: state[external].float().numpy().reshape(shapes[internal])
            for internal, external in name_table(config["n_layer"], naming).items()}


def assert_same_params(params, reference):
    assert list(params) == list(reference)          # every internal name, in state-dict order
    for name, expected in reference.items():
        got = params[name]
        assert got.dtype == np.float32 and got.flags.c_contiguous, name
        assert got.shape == expected.shape, name
        # bit-for-bit, so a bf16 conversion that were off by one ulp would fail
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), name


# Every format x dtype: (writer, where the weights end up, naming)
FORMATS = {
    "hf_safetensors": lambda d, p, c, dt: (write_hf_safetensors(d, p, c, dtype=dt), sorted(d.glob("*.safetensors")), "hf"),
    "hf_safetensors_sharded": lambda d, p, c, dt: (write_hf_safetensors(d, p, c, dtype=dt, max_shard_size="8KB"),
                                                    sorted(d.glob("*.safetensors")), "hf"),
    "hf_bin": lambda d, p, c, dt: (write_hf_bin(d, p, c, dtype=dt), [d / "pytorch_model.bin"], "hf"),
    "hf_bin_sharded": lambda d, p, c, dt: (write_hf_bin(d, p, c, dtype=dt, shards=3), sorted(d.glob("pytorch_model-*.bin")), "hf"),
    "blinkdl_pth": lambda d, p, c, dt: (write_blinkdl_pth(d / "RWKV-4-Tiny.pth", p, c, dtype=dt), [d / "RWKV-4-Tiny.pth"], "blinkdl"),
}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_equals_torch(tmp_path, fmt, dtype):
    pytest.importorskip("transformers")
    config = tiny_config(n_layer=2, n_embd=16, vocab_size=40, ffn_dim=48)
    params = random_internal_params(config, seed=1)
    model, files, naming = FORMATS[fmt](tmp_path, params, config, dtype)
    if "sharded" in fmt:
        assert len(files) > 1, "the writer should have made several shards"

    source = tmp_path if fmt != "blinkdl_pth" else files[0]
    got_config, got = read_checkpoint(source, progress=False)

    assert_same_params(got, merged_reference(files, naming, config))
    assert_same_params(got, params_from_model(model))   # the helper model holds the stored values too
    assert {k: got_config[k] for k in SIZE_KEYS} == {k: config[k] for k in SIZE_KEYS}
    assert got_config["dtype"] == dtype and got_config["source"] == str(source)
    if dtype == "float32":   # nothing was rounded: exactly the params we started from
        assert_same_params(got, params)


def test_every_way_to_point_at_the_same_weights(tmp_path):
    pytest.importorskip("transformers")
    config = tiny_config()
    params = random_internal_params(config, seed=2)
    write_hf_safetensors(tmp_path / "st", params, config, max_shard_size="8KB")
    write_hf_bin(tmp_path / "bin", params, config)
    write_hf_safetensors(tmp_path / "single", params, config)
    sources = [tmp_path / "st", tmp_path / "st" / "model.safetensors.index.json",
               tmp_path / "bin", tmp_path / "bin" / "pytorch_model.bin",
               tmp_path / "single" / "model.safetensors", str(tmp_path / "single")]
    for source in sources:
        _, got = read_checkpoint(source, progress=False)
        assert_same_params(got, params)


def test_bfloat16_conversion_is_exact_for_all_65536_patterns():
    torch = pytest.importorskip("torch")
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    ours = bfloat16_bits_to_float32(bits)
    theirs = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    assert np.array_equal(ours.view(np.uint32), bits.astype(np.uint32) << 16)


def test_views_saved_as_is_are_read_with_their_strides(tmp_path):
    """torch.save keeps views: a transposed weight, and two tensors sharing one storage at offsets."""
    torch = pytest.importorskip("torch")
    config = tiny_config(n_layer=1, n_embd=8, vocab_size=12, ffn_dim=16)
    params = random_internal_params(config, seed=3)
    table = name_table(1, "blinkdl")
    state = {table[k]: torch.from_numpy(v.copy()) for k, v in params.items()}
    for k in [k for k in params if ".time_mix_" in k]:
        state[table[k]] = state[table[k]].reshape(1, 1, -1)
    for dtype in (torch.float32, torch.bfloat16):
        saved = {k: v.to(dtype) for k, v in state.items()}
        both = torch.cat([saved["emb.weight"], saved["head.weight"]])                    # (2V, C), one storage
        saved["emb.weight"], saved["head.weight"] = both[:12], both[12:]                  # offset 0 and 12*C
        saved["blocks.0.att.key.weight"] = saved["blocks.0.att.key.weight"].t().contiguous().t()  # strides (1, C)
        saved["blocks.0.ffn.value.weight"] = saved["blocks.0.ffn.value.weight"].t().contiguous().t()
        assert not saved["blocks.0.att.key.weight"].is_contiguous()
        path = tmp_path / f"views_{dtype}.pth".replace("torch.", "")
        torch.save(saved, path)
        _, got = read_checkpoint(path, progress=False)
        assert_same_params(got, torch_reference(path, "blinkdl", config))


@pytest.mark.parametrize("size", [dict(n_layer=3, n_embd=8, vocab_size=20, ffn_dim=24),
                                  dict(n_layer=1, n_embd=32, vocab_size=101, ffn_dim=128),
                                  dict(n_layer=5, n_embd=4, vocab_size=7, ffn_dim=4)])
def test_config_is_inferred_from_shapes(tmp_path, size):
    torch = pytest.importorskip("torch")
    config = tiny_config(**size)   # torch.save directly: transformers cannot even build a 1-layer RWKV
    torch.save(torch_state_dict(random_internal_params(config), "blinkdl"), tmp_path / "m.pth")
    got, params = read_checkpoint(tmp_path / "m.pth", progress=False)
    assert {k: got[k] for k in SIZE_KEYS} == {k: config[k] for k in SIZE_KEYS}
    assert {k: v.shape for k, v in params.items()} == expected_shapes(config)


def test_layer_norm_epsilon_comes_from_config_json(tmp_path):
    pytest.importorskip("transformers")
    config = tiny_config(layer_norm_epsilon=1e-6)
    write_hf_bin(tmp_path, random_internal_params(config), config)
    assert json.loads((tmp_path / "config.json").read_text())["layer_norm_epsilon"] == 1e-6
    got, _ = read_checkpoint(tmp_path, progress=False)
    assert got["layer_norm_epsilon"] == 1e-6


def test_hf_names_match_transformers_state_dict():
    transformers = pytest.importorskip("transformers")
    from factories import hf_rwkv_config
    config = tiny_config(n_layer=3)
    model = transformers.RwkvForCausalLM(hf_rwkv_config(config))
    state = model.state_dict()
    table = name_table(3, "hf")
    assert list(table.values()) == list(state)                        # same names, same order
    shapes = expected_shapes(config)
    for internal, hf in table.items():
        assert int(np.prod(state[hf].shape)) == int(np.prod(shapes[internal])), internal


def test_blinkdl_names():
    table = name_table(2, "blinkdl")
    assert table["ln0.weight"] == "blocks.0.ln0.weight"
    assert table["blocks.1.att.time_mix_k"] == "blocks.1.att.time_mix_k"
    assert table["blocks.1.ffn.value.weight"] == "blocks.1.ffn.value.weight"
    assert table["emb.weight"] == "emb.weight" and table["head.weight"] == "head.weight"
    assert list(table) == internal_names(2)
    assert len(set(table.values())) == len(table)


def test_inspect_reads_headers_only_and_describes(tmp_path):
    pytest.importorskip("transformers")
    config = tiny_config()
    model = write_hf_bin(tmp_path, random_internal_params(config), config, dtype="bfloat16")
    info = inspect_checkpoint(tmp_path)
    assert info["naming"] == "hf" and info["dtype"] == "bfloat16" and info["problems"] == []
    assert info["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert info["stored_bytes"] == 2 * info["parameter_count"]
    assert {k: info["config"][k] for k in SIZE_KEYS} == {k: config[k] for k in SIZE_KEYS}
    assert {t["name"]: tuple(t["shape"]) for t in info["tensors"]} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    text = "\n".join(describe(info))
    assert "rwkv.blocks.1.attention.time_mix_key" in text and "(1, 1, 16)" in text and "n_layer=2" in text


def test_real_169m_shapes_from_headers(tmp_path):
    """inspect at full 169M shapes, without writing 676 MB: an HF-named safetensors of zeros costs
    only its header when the file is sparse."""
    config = real_169m_config()
    shapes = {name: shape for name, shape in expected_shapes(config).items()}
    table = name_table(12, "hf")
    header, offset = {}, 0
    for internal, shape in shapes.items():
        stored = (1, 1) + shape if ".time_mix_" in internal else shape
        size = 2 * int(np.prod(stored))
        header[table[internal]] = {"dtype": "BF16", "shape": list(stored), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + offset)          # sparse: no data written
    info = inspect_checkpoint(path)
    assert info["config"] == {"version": 4, "n_layer": 12, "n_embd": 768, "vocab_size": 50277, "ffn_dim": 3072,
                              "layer_norm_epsilon": 1e-5}
    assert info["problems"] == [] and info["dtype"] == "bfloat16"
    assert info["parameter_count"] == 169_342_464   # 2 * 50277 * 768 + 12 * (...) + LNs
