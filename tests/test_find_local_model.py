"""find_local_model / load_real_or_tiny: the real checkpoint is found offline in a Hugging Face cache
laid out as huggingface_hub lays it out (refs/main -> snapshots/<commit>/...), or through
TINYRWKV_MODEL; otherwise None, and the lessons fall back to the tiny model with the download command."""
import json

import numpy as np
import pytest
from factories import random_internal_params, tiny_config

from tinyrwkv import loading
from tinyrwkv.errors import CheckpointError
from tinyrwkv.checkpoints.naming import to_file_layout
from tinyrwkv.tokenizer import SHIPPED_MODELS, CharTokenizer

REPO = "RWKV/rwkv-4-169m-pile"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_model_folder(folder, config, with_weights=True):
    """config.json + model.safetensors (HF names) + a char tokenizer.json, like a downloaded snapshot."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    params = random_internal_params(config, seed=1)
    hf = {"hidden_size": config["n_embd"], "num_hidden_layers": config["n_layer"],
          "vocab_size": config["vocab_size"], "intermediate_size": config["ffn_dim"], "model_type": "rwkv"}
    (folder / "config.json").write_text(json.dumps(hf))
    if with_weights:
        save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
                  str(folder / "model.safetensors"))
    CharTokenizer([chr(ord("a") + i) for i in range(config["vocab_size"])]).save(folder / "tokenizer.json")
    return params


def fake_hub_cache(cache, config, with_weights=True):
    repo_dir = cache / ("models--" + REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    write_model_folder(snapshot, config, with_weights)
    return snapshot


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(loading.MODEL_ENV, raising=False)
    monkeypatch.delenv(loading.TOKENIZER_ENV, raising=False)


def test_empty_cache_gives_none(tmp_path):
    assert loading.find_local_model(REPO, cache_dir=tmp_path) is None
    assert loading.download_command() == "tinyrwkv download RWKV/rwkv-4-169m-pile"


def test_finds_the_snapshot_in_the_cache_and_loads_it(tmp_path, capsys):
    config = tiny_config(n_layer=2, n_embd=8, vocab_size=20)
    snapshot = fake_hub_cache(tmp_path, config)
    assert loading.find_local_model(REPO, cache_dir=tmp_path) == snapshot
    assert loading.find_local_model("RWKV/some-other-repo", cache_dir=tmp_path) is None

    model, tok, is_real = loading.load_real_or_tiny(REPO, cache_dir=tmp_path, backend="numpy")
    assert is_real and "loaded RWKV/rwkv-4-169m-pile" in capsys.readouterr().out
    assert (model.config.n_layer, model.config.n_embd, model.config.vocab_size) == (2, 8, 20)
    assert tok.vocab_size == 20


def test_a_snapshot_without_weights_does_not_count(tmp_path):
    fake_hub_cache(tmp_path, tiny_config(n_layer=2, n_embd=8, vocab_size=20), with_weights=False)
    assert loading.find_local_model(REPO, cache_dir=tmp_path) is None


def test_env_variable_wins_and_a_bad_one_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "my_model"
    write_model_folder(folder, tiny_config(n_layer=2, n_embd=8, vocab_size=20))
    monkeypatch.setenv(loading.MODEL_ENV, str(folder))
    assert loading.find_local_model(REPO, cache_dir=tmp_path / "empty") == folder
    monkeypatch.setenv(loading.MODEL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="TINYRWKV_MODEL=.*nowhere"):
        loading.find_local_model(REPO)


def test_fallback_announces_the_tiny_model_and_the_download_command(tmp_path, capsys):
    if not (SHIPPED_MODELS["tiny"] / "model.safetensors").is_file():
        pytest.skip("the tiny shipped model is not in this checkout yet")
    model, tok, is_real = loading.load_real_or_tiny(REPO, cache_dir=tmp_path)
    out = capsys.readouterr().out
    assert not is_real and "tinyrwkv download RWKV/rwkv-4-169m-pile" in out and "tiny" in out
    assert model.config.vocab_size == tok.vocab_size
