"""Lesson 07's figure modules: the decay spectrum / time_mix summaries and the causal trace.

The causal trace is checked on properties that hold exactly: the block-by-block forward equals
RWKV.forward; restoring the last layer at the last token gives the clean probability back; tokens
before the subject restore nothing (the corruption is downstream of them); zero noise changes nothing.
"""
import numpy as np
import pytest

from tinyrwkv.experiments import decay_spectrum as ds
from tinyrwkv.experiments import information_flow as inf
from tinyrwkv.models.rwkv import RWKV, RWKVConfig
from tinyrwkv.nn import functional as F
from tinyrwkv.tokenizer import SHIPPED_MODELS, CharTokenizer

SHIPPED = (SHIPPED_MODELS["tiny"] / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def model():
    config = RWKVConfig(n_layer=3, n_embd=16, vocab_size=30, ffn_dim=64)
    return RWKV.random(config, seed=1, scale=0.3, backend="numpy")


def test_half_life_halves_a_contribution():
    time_decay = np.array([-5.0, 0.0, 2.0])
    h = ds.half_life(time_decay)
    w = -np.exp(time_decay)
    np.testing.assert_allclose(np.exp(w * h), 0.5)                      # e^{w h} = 1/2
    np.testing.assert_allclose(h[1], np.log(2))


def test_decay_spectrum_and_time_mix_shapes(model):
    s = ds.decay_spectrum(model)
    assert s["half_life"].shape == (3, 16) and s["quantiles"].shape == (3, 3)
    assert np.all(np.diff(s["half_life"], axis=1) >= 0)                 # sorted per layer
    want = np.sort(ds.half_life(model.params["blocks.2.att.time_decay"]))
    np.testing.assert_allclose(s["half_life"][2], want)
    mixes = ds.time_mix_values(model)
    assert set(mixes) == set(ds.MIX_NAMES) and all(v.shape == (3, 16) for v in mixes.values())
    fig = ds.plot_decay_spectrum(s, "test")
    assert len(fig.axes) == 2 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    fig = ds.plot_time_mix(mixes, "test")
    assert len(fig.axes) == 5


def test_block_by_block_equals_the_model(model):
    ids = np.array([1, 5, 7, 2, 9, 3])
    x = inf.run_blocks(model, inf.embed(model, ids), 0)
    logits, _ = model.forward(ids)
    p = F.softmax(logits[-1].astype(np.float64))
    np.testing.assert_allclose(inf.answer_probability(model, x[:, -1], 4)[0], p[4], rtol=1e-5)


def test_causal_trace_exact_properties(model):
    ids = np.array([1, 5, 7, 2, 9, 3, 4])
    subject = [2, 3]
    r = inf.causal_trace(model, ids, subject, answer_id=6, n_noise=4, seed=0)
    R = r["restored"]
    assert R.shape == (7, 3)
    assert abs(r["clean"] - r["corrupted"]) > 1e-4                      # the noise matters
    np.testing.assert_allclose(R[-1, -1], r["clean"], rtol=1e-5)        # last layer, last token: clean again
    np.testing.assert_allclose(R[:2], r["corrupted"], rtol=1e-5)        # before the subject: nothing to restore
    clean = inf.causal_trace(model, ids, subject, answer_id=6, n_noise=2, noise_scale=0.0)
    np.testing.assert_allclose(clean["restored"], clean["clean"], rtol=1e-5)
    np.testing.assert_allclose(clean["corrupted"], clean["clean"], rtol=1e-5)


def test_locate_subject_char_and_word_tokens():
    tok = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz ,."))
    ids, positions, answer = inf.locate_subject(tok, "in the lighthouse lived", "lighthouse", "t")
    assert positions == list(range(7, 17)) and answer == tok.encode("t")[0] and len(ids) == 23
    with pytest.raises(ValueError, match="'tower' is not in the prompt"):
        inf.locate_subject(tok, "in the lighthouse", "tower", "t")


def test_trace_prompt_and_plot(model):
    tok = CharTokenizer([chr(ord("a") + i) for i in range(26)] + [" ", ".", ",", "!"])
    r = inf.trace_prompt(model, tok, "a big dog sat", "big dog", "x", n_noise=2)
    assert r["tokens"][2:9] == list("big dog") and r["subject_positions"] == list(range(2, 9))
    fig = inf.plot_trace(r, "test")
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    s = inf.summarize(r)
    assert len(s["last_token_by_layer"]) == 3 and 0 <= s["best_restore"]["p"] <= 1


@pytest.mark.skipif(not SHIPPED, reason="the tiny shipped model is not in this checkout yet")
@pytest.mark.parametrize("module", [ds, inf])
def test_make_figures_fast(module, tmp_path, monkeypatch):
    from tinyrwkv import loading
    monkeypatch.setattr(loading, "find_local_model", lambda *a, **k: None)   # the tiny fallback, whatever is cached
    out = module.make_figures(tmp_path, fast=True)
    assert "tiny" in out["model"]
    for name in out["files"]:
        assert (tmp_path / name).stat().st_size > 10_000
