"""Hub downloads: offline gives a clear CheckpointError; safetensors are preferred over .bin; and one
real download, marked ``network`` (skipped unless TINYRWKV_NETWORK=1)."""
import fnmatch
import shutil

import numpy as np
import pytest

from factories import random_internal_params, tiny_config, torch_state_dict
from tinyrwkv.checkpoints import CheckpointError, download, read_checkpoint

huggingface_hub = pytest.importorskip("huggingface_hub")
from tinyrwkv.checkpoints import hub  # noqa: E402


def test_offline_download_is_a_clear_checkpoint_error(monkeypatch, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):   # what snapshot_download raises offline with nothing cached
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the files on the Hub, and we cannot find the "
            "appropriate snapshot folder for the specified revision on the local disk.")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(hub, "hub_unreachable", lambda: None)      # the probe passes, the download fails

    for call in (lambda: download("RWKV/rwkv-4-169m-pile", cache_dir=tmp_path),
                 lambda: read_checkpoint("RWKV/rwkv-4-169m-pile", cache_dir=tmp_path, progress=False)):
        with pytest.raises(CheckpointError) as info:
            call()
        message = str(info.value)
        assert "RWKV/rwkv-4-169m-pile" in message and "LocalEntryNotFoundError" in message
        assert "offline" in message and "local path" in message


def test_unknown_repo_is_a_clear_checkpoint_error(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(*args, **kwargs):
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)   # its __init__ wants an HTTP response
        Exception.__init__(error, "404 Client Error: Repository Not Found for url ...")
        raise error
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    with pytest.raises(CheckpointError, match="Check the repo id"):
        download("nobody/nothing")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """snapshot_download copying from a local 'remote' folder, honouring allow_patterns; records calls."""
    remote, cache = tmp_path / "remote", tmp_path / "cache"
    remote.mkdir()
    cache.mkdir()
    calls = []

    def snapshot_download(repo_id, *, revision=None, cache_dir=None, allow_patterns=None, **kwargs):
        calls.append(list(allow_patterns))
        for f in remote.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, cache / f.name)
        return str(cache)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(hub, "hub_unreachable", lambda: None)      # this fake Hub is always reachable
    return remote, cache, calls


def test_safetensors_are_preferred_so_only_one_copy_is_downloaded(fake_hub):
    remote, cache, calls = fake_hub
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file
    config = tiny_config()
    params = random_internal_params(config, seed=4)
    from tinyrwkv.checkpoints import to_file_layout
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(remote / "model.safetensors"))
    torch.save(torch_state_dict(params, "hf"), remote / "pytorch_model.bin")
    (remote / "config.json").write_text("{}")
    (remote / "README.md").write_text("not fetched")

    _, got = read_checkpoint("owner/tiny-rwkv", progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ["config.json", "model.safetensors"]
    assert len(calls) == 1
    assert all(np.array_equal(got[k], params[k]) for k in params)


def test_bin_is_fetched_when_there_is_no_safetensors(fake_hub):
    remote, cache, calls = fake_hub
    torch = pytest.importorskip("torch")
    config = tiny_config()
    params = random_internal_params(config, seed=5)
    torch.save(torch_state_dict(params, "hf"), remote / "pytorch_model.bin")
    (remote / "config.json").write_text('{"layer_norm_epsilon": 1e-6}')

    got_config, got = read_checkpoint("owner/tiny-rwkv", progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ["config.json", "pytorch_model.bin"]
    assert len(calls) == 2 and "*.bin" in calls[1]
    assert got_config["layer_norm_epsilon"] == 1e-6 and got_config["source"] == "owner/tiny-rwkv"
    assert all(np.array_equal(got[k], params[k]) for k in params)


@pytest.mark.network
def test_real_download_of_rwkv_4_169m_pile():
    config, params = read_checkpoint("RWKV/rwkv-4-169m-pile")
    assert {k: config[k] for k in ("n_layer", "n_embd", "vocab_size", "ffn_dim")} == \
        {"n_layer": 12, "n_embd": 768, "vocab_size": 50277, "ffn_dim": 3072}
    assert params["emb.weight"].shape == (50277, 768) and np.isfinite(params["head.weight"]).all()
    assert (params["blocks.0.att.time_mix_k"] >= 0).all() and (params["blocks.0.att.time_mix_k"] <= 1).all()
