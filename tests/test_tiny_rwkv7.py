"""The tiny RWKV-7 shipped in the package (tinyrwkv/data/tiny_rwkv7, made by scripts/train_tiny_rwkv7.py):
small and complete, read by the checkpoint reader as RWKV-7 with the recipe's sizes, its validation
loss is the one its curves report (and it beats the bigram baseline), its tokenizer is the tiny
RWKV-4's, and the training script runs end to end."""
import json

import numpy as np
import pytest

import tinyrwkv
from tinyrwkv import recipes
from tinyrwkv.checkpoints import read_checkpoint
from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.models.rwkv7_train import RWKV7LanguageModel
from tinyrwkv.models.rwkv import RWKVConfig
from tinyrwkv.tokenizer import SHIPPED_MODELS

FOLDER = SHIPPED_MODELS["tiny7"]


@pytest.fixture(scope="module")
def curves():
    return json.loads((FOLDER / "training_curves.json").read_text())


def test_ships_small_and_complete(curves):
    files = {p.name: p.stat().st_size for p in FOLDER.iterdir()}
    assert set(files) == {"config.json", "model.safetensors", "tokenizer.json", "training_curves.json"}
    assert sum(files.values()) < 2**20, files
    assert curves["params"] == 224832 and abs(curves["params"] - curves["rwkv4_params"]) < 1000


def test_reads_as_rwkv7_and_its_val_loss_is_the_reported_one(curves):
    config, params = read_checkpoint(FOLDER, progress=False)
    assert config["version"] == 7 and config["n_layer"] == 4 and config["head_size"] == 16
    for key, value in recipes.RWKV7_SIZE.items():
        assert config[key] == value, key
    model = RWKV7LanguageModel(RWKVConfig.from_dict(config), params, backend="numpy")
    corpus = load_corpus()
    val = float(corpus.evaluate(model))
    assert abs(val - curves["shipped"]["val"]) < 1e-3
    assert val < corpus.bigram_cross_entropy() - 0.4          # bigram 2.33 nats/char; shipped 1.81


def test_tokenizer_is_the_tiny_rwkv4s():
    assert (FOLDER / "tokenizer.json").read_text() == (SHIPPED_MODELS["tiny"] / "tokenizer.json").read_text()
    tok = tinyrwkv.load_tokenizer("tiny7")
    assert tok.decode(tok.encode("Once upon a time")) == "Once upon a time"


def test_training_script_runs_end_to_end(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_tiny_rwkv7.py"
    spec = importlib.util.spec_from_file_location("train_tiny_rwkv7", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--steps", "2", "--eval-every", "1", "--backend", "numpy", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "training_curves.json").read_text())
    assert written["params"] == 224832 and len(written["models"]["RWKV-7"]["train"]) == 2
    config, params = read_checkpoint(tmp_path, progress=False)
    assert config["version"] == 7 and set(params) >= {"blocks.3.att.r_k", "head.weight"}


def test_loads_through_the_front_door_and_equals_the_training_model():
    model = tinyrwkv.load("tiny7", backend="numpy", progress=False)
    assert model.config.version == 7 and model.config.head_size == 16
    config, params = read_checkpoint(FOLDER, progress=False)
    trainer = RWKV7LanguageModel(RWKVConfig.from_dict(config), params, backend="numpy")
    tok = tinyrwkv.load_tokenizer("tiny7")
    ids = np.array([tok.encode("Once upon a time, the fox ran.")])
    ours, _ = trainer.forward(ids)
    theirs, _ = model.forward(ids)
    assert np.abs(ours - theirs).max() < 1e-5                       # the training forward == the inference model
    text = tinyrwkv.generate(model, tok, "Once upon a time", max_new_tokens=40, temperature=0.7, seed=0)
    assert isinstance(text, str) and len(text) == 40
