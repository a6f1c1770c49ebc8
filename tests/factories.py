"""Test helpers shared across test files: configs, random RWKV-4 weights, and checkpoint writers
that use the *real* writers (``torch.save``, transformers' ``save_pretrained``).

    from factories import tiny_config, random_internal_params, write_hf_safetensors
    config = tiny_config()
    params = random_internal_params(config, seed=0)                  # internal names, float32
    model = write_hf_safetensors(tmp_path, params, config)          # transformers RwkvForCausalLM

Every writer returns a float32 ``RwkvForCausalLM`` (eval mode, no forward run yet) holding exactly
the values stored in the file: when the file is bf16 / fp16, the params are rounded by torch first,
so ``read_checkpoint`` must give back ``params_from_model(model)`` bit for bit.

Configs are plain dicts with the keys read_checkpoint returns (n_layer, n_embd, vocab_size,
ffn_dim, layer_norm_epsilon) plus context_length for transformers.

transformers cannot build a 1-layer RWKV (its weight init divides by n_layer - 1): use n_layer >= 2
with the writers, or ``torch.save(torch_state_dict(params, naming), path)`` directly.

torch and transformers are imported inside the functions, so a test file can import this module
and still skip cleanly (``pytest.importorskip("torch")``) when they are absent.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from tinyrwkv.checkpoints.naming import expected_shapes, internal_names, name_table, to_file_layout


def tiny_config(n_layer=2, n_embd=16, vocab_size=64, ffn_dim=None, layer_norm_epsilon=1e-5, context_length=64):
    """A small RWKV-4 config dict; ffn_dim defaults to 4 * n_embd as in every real RWKV-4."""
    return {"n_layer": n_layer, "n_embd": n_embd, "vocab_size": vocab_size,
            "ffn_dim": 4 * n_embd if ffn_dim is None else ffn_dim,
            "layer_norm_epsilon": layer_norm_epsilon, "context_length": context_length}


def real_169m_config():
    """The shapes of RWKV-4 169M Pile (RWKV/rwkv-4-169m-pile, RWKV-4-Pile-169M-20220807-8023.pth)."""
    return tiny_config(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072, context_length=1024)


def round_bfloat16(x):
    """float32 -> the nearest bfloat16 (round half to even), returned as float32. torch rounds the same way."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def round_params(params, dtype):
    """Params rounded to ``dtype`` ("float32", "float16" or "bfloat16") and returned as float32."""
    if dtype == "float32":
        return {k: np.array(v, np.float32) for k, v in params.items()}
    if dtype == "float16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in params.items()}
    if dtype == "bfloat16":
        return {k: round_bfloat16(v) for k, v in params.items()}
    raise ValueError(f"unknown dtype {dtype!r}")


def random_internal_params(config, seed=0, dtype="float32"):
    """Random RWKV-4 weights in the internal naming, float32, with trained-like scales:
    LayerNorm gains near 1, time_decay in [-4, 1) (so w = -exp(time_decay) is a real decay),
    time_mix in [0, 1), Linear weights ~ N(0, 1/fan_in). Rounded to ``dtype`` ("float32",
    "float16", "bfloat16") so a file stored in that dtype holds exactly these values."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in expected_shapes(config).items():
        if name.endswith(("ln0.weight", "ln1.weight", "ln2.weight", "ln_out.weight")):
            value = 1.0 + 0.1 * rng.standard_normal(shape, np.float32)
        elif name.endswith(".bias"):
            value = 0.1 * rng.standard_normal(shape, np.float32)
        elif name.endswith("time_decay"):
            value = rng.uniform(-4.0, 1.0, shape)
        elif name.endswith("time_first"):
            value = rng.uniform(-1.0, 1.0, shape)
        elif ".time_mix_" in name:
            value = rng.uniform(0.0, 1.0, shape)
        elif name == "emb.weight":
            value = rng.standard_normal(shape, np.float32)
        else:                                   # Linear (out, in)
            value = rng.standard_normal(shape, np.float32) / np.sqrt(shape[1])
        params[name] = np.ascontiguousarray(value, np.float32)
    return round_params(params, dtype)


def _torch_dtype(dtype):
    import torch
    if isinstance(dtype, torch.dtype):
        return dtype
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _dtype_name(dtype):
    return str(_torch_dtype(dtype)).replace("torch.", "")


def torch_state_dict(params, naming="hf", dtype="float32"):
    """{file name: torch tensor} in the stored layout (time_mix as (1, 1, C)), cast to ``dtype``."""
    import torch
    return {name: torch.from_numpy(np.ascontiguousarray(array)).to(_torch_dtype(dtype)).clone()
            for name, array in to_file_layout(params, naming).items()}


def hf_rwkv_config(config):
    """transformers.RwkvConfig for one of our config dicts. rescale_every=0: transformers would
    otherwise halve att.output / ffn.value weights in place on the first eval forward."""
    from transformers import RwkvConfig
    return RwkvConfig(vocab_size=config["vocab_size"], hidden_size=config["n_embd"],
                      num_hidden_layers=config["n_layer"], intermediate_size=config["ffn_dim"],
                      attention_hidden_size=config["n_embd"], context_length=config.get("context_length", 1024),
                      layer_norm_epsilon=config["layer_norm_epsilon"], rescale_every=0,
                      tie_word_embeddings=False)


def hf_model(params, config):
    """A float32 transformers ``RwkvForCausalLM`` in eval mode holding ``params`` (internal names)."""
    from transformers import RwkvForCausalLM
    model = RwkvForCausalLM(hf_rwkv_config(config))
    model.load_state_dict(torch_state_dict(params, "hf"), strict=True)
    return model.eval()


def params_from_model(model):
    """{internal name: float32 numpy array} of what a transformers RWKV model holds (time_mix squeezed)."""
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    n_layer = model.config.num_hidden_layers
    config = {"n_layer": n_layer, "n_embd": model.config.hidden_size, "vocab_size": model.config.vocab_size,
              "ffn_dim": model.config.intermediate_size}
    shapes = expected_shapes(config)
    return {internal: np.ascontiguousarray(state[hf].reshape(shapes[internal]))
            for internal, hf in name_table(n_layer, "hf").items()}


def _stored_model(params, config, dtype):
    """The model whose float32 weights equal the file's ``dtype`` values (rounded by torch)."""
    import torch
    rounded = {k: torch.from_numpy(np.ascontiguousarray(v)).to(_torch_dtype(dtype)).float().numpy()
               for k, v in params.items()}
    return hf_model(rounded, config)


def write_hf_safetensors(directory, params, config, *, dtype="float32", max_shard_size=None):
    """``save_pretrained`` into ``directory`` (config.json + model.safetensors, or shards + index when
    ``max_shard_size`` is small, e.g. "20KB"). Returns the float32 model holding the stored values."""
    model = _stored_model(params, config, dtype)
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.to(_torch_dtype(dtype)).save_pretrained(directory, **kwargs)
    return model.float()          # bf16 / fp16 -> float32 is exact


def write_hf_bin(directory, params, config, *, dtype="float32", shards=1):
    """What the hub repo ships: ``torch.save`` of the HF-named state dict as pytorch_model.bin plus
    config.json; ``shards > 1`` writes pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json.
    Returns the float32 model holding the stored values."""
    import torch
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = _stored_model(params, config, dtype)
    hf_rwkv_config(config).to_json_file(directory / "config.json")
    state = torch_state_dict(params_from_model(model), "hf", dtype)
    if shards == 1:
        torch.save(state, directory / "pytorch_model.bin")
        return model
    names = list(state)
    weight_map = {}
    for i, part in enumerate(np.array_split(np.arange(len(names)), shards)):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({names[j]: state[names[j]] for j in part}, directory / file)
        weight_map.update({names[j]: file for j in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (directory / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return model


def write_blinkdl_pth(path, params, config=None, *, dtype="float32"):
    """``torch.save`` of the BlinkDL-named state dict (blocks.0.ln0, att.time_mix_k as (1, 1, C) ...),
    like RWKV-4-Pile-169M-20220807-8023.pth (which is bf16). Returns the float32 model holding the
    stored values (``config`` defaults to the one read off the params' shapes)."""
    import torch
    if config is None:
        n_layer = sum(1 for name in params if name.endswith(".att.time_decay"))
        config = tiny_config(n_layer=n_layer, n_embd=params["emb.weight"].shape[1],
                             vocab_size=params["emb.weight"].shape[0], ffn_dim=params["blocks.0.ffn.key.weight"].shape[0])
    model = _stored_model(params, config, dtype)
    torch.save(torch_state_dict(params_from_model(model), "blinkdl", dtype), path)
    return model


# --------------------------------------------------------------------------- RWKV-5.2, 6, 7


def rwkv567_config(version, n_layer=2, n_embd=96, head_size=32, vocab_size=97, ffn_dim=None, **lora):
    """A small RWKV-5.2/6/7 config dict at odd sizes. ffn_dim defaults to 3.5 C (RWKV-6/7's ratio,
    in multiples of 32) for v6/v7 and 4 C for v5; LoRA sizes default to small ones."""
    if ffn_dim is None:
        ffn_dim = 4 * n_embd if version == 5.2 else int(3.5 * n_embd) // 32 * 32
    defaults = {6: dict(decay_lora=16, mix_lora=8), 7: dict(decay_lora=16, a_lora=16, v_lora=8, gate_lora=24)}
    return {"version": version, "n_layer": n_layer, "n_embd": n_embd, "vocab_size": vocab_size, "ffn_dim": ffn_dim,
            "head_size": head_size, "layer_norm_epsilon": 1e-5, **defaults.get(version, {}), **lora}


def rwkv7_168m_config():
    """The shapes of RWKV-x070-Pile-168M-20241120-ctx4096.pth: 12 x 768, head 64, V 50277, ffn 4 C,
    LoRA ranks from RWKV-7's formulas at C = 768 (decay 64, a 64, v 32, gate 128)."""
    return rwkv567_config(7, n_layer=12, n_embd=768, head_size=64, vocab_size=50277, ffn_dim=3072,
                          decay_lora=64, a_lora=64, v_lora=32, gate_lora=128)


def random_rwkv567_params(config, seed=0, dtype="float32"):
    """Random RWKV-5.2/6/7 weights in the internal naming (the models' own random init), rounded to
    ``dtype`` so a file stored in that dtype holds exactly these values."""
    from tinyrwkv.models.rwkv import RWKVConfig
    from tinyrwkv.models.rwkv5 import init_matrix_params
    return round_params(init_matrix_params(RWKVConfig.from_dict(config), seed=seed), dtype)


def write_blinkdl_pth_any(path, params, *, dtype="float32"):
    """``torch.save`` of any version's params in BlinkDL's names and stored layout (ln0 in block 0,
    (1, 1, C) vectors, LoRA matrices (in, out)), cast to ``dtype``, as BlinkDL's .pth releases are."""
    import torch
    torch.save(torch_state_dict(params, "blinkdl", dtype), path)
    return path


__all__ = ["tiny_config", "real_169m_config", "random_internal_params", "round_params", "round_bfloat16",
           "torch_state_dict", "hf_rwkv_config", "hf_model", "params_from_model",
           "write_hf_safetensors", "write_hf_bin", "write_blinkdl_pth", "internal_names", "name_table",
           "rwkv567_config", "rwkv7_168m_config", "random_rwkv567_params", "write_blinkdl_pth_any"]
