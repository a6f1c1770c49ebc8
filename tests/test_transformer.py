"""Transformer layers, the encoder-decoder and the GPT LM: torch twins, finite differences, KV cache, learning."""
import numpy as np
import pytest
from translation_checks import beam1_is_greedy_and_beam4_no_worse, perturb, train_on_dates

from tinyrwkv.data.translation import BOS, EOS, PAD, DateTask
from tinyrwkv.errors import ParameterError
from tinyrwkv.models.transformer import GPT, DecoderLayer, EncoderLayer, Transformer, sinusoidal_positions
from tinyrwkv.nn import functional as F
from tinyrwkv.nn import gradcheck
from tinyrwkv.nn.attention import causal_mask, padding_mask
from tinyrwkv.training import train


def test_sinusoidal_positions_formula():
    pe = sinusoidal_positions(5, 6, start=3, dtype=np.float64)
    p, i = 4, 1                                                   # position 3 + 4 = 7, pair i = 1
    assert np.isclose(pe[p, 2 * i], np.sin(7 / 10000 ** (2 * i / 6)))
    assert np.isclose(pe[p, 2 * i + 1], np.cos(7 / 10000 ** (2 * i / 6)))
    assert np.allclose(sinusoidal_positions(8, 6)[3:], sinusoidal_positions(5, 6, start=3))


# --------------------------------------------------------------------------- torch twins


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, T, C, H, Fd = 3, 6, 16, 4, 24
    layer = EncoderLayer(C, H, Fd, norm_first=norm_first, rng=rng)
    perturb(layer, rng)
    ref = torch.nn.TransformerEncoderLayer(C, H, Fd, dropout=0.0, activation="relu", batch_first=True,
                                           norm_first=norm_first)
    ref.load_state_dict({k: torch.tensor(v) for k, v in layer.parameters().items()})
    ref.train()                     # keep torch on the plain (differentiable) path, not the fused fast path

    x = rng.normal(size=(B, T, C)).astype(np.float32)
    dy = rng.normal(size=(B, T, C)).astype(np.float32)
    ids = np.array([[1] * T, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx, src_key_padding_mask=torch.tensor(ids == 0))
    ty.backward(torch.tensor(dy))
    y, cache = layer.forward(x, padding_mask(ids, 0))
    dx = layer.backward(dy, cache)

    np.testing.assert_allclose(y, ty.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=2e-5)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(layer.gradients()[name], p.grad.numpy(), atol=2e-4, err_msg=name)


def test_decoder_layer_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    B, T, S, C, H, Fd = 2, 5, 7, 12, 3, 20
    layer = DecoderLayer(C, H, Fd, rng=rng)
    perturb(layer, rng)
    ref = torch.nn.TransformerDecoderLayer(C, H, Fd, dropout=0.0, activation="relu", batch_first=True)
    ref.load_state_dict({k: torch.tensor(v) for k, v in layer.parameters().items()})
    x = rng.normal(size=(B, T, C)).astype(np.float32)
    mem = rng.normal(size=(B, S, C)).astype(np.float32)
    dy = rng.normal(size=(B, T, C)).astype(np.float32)
    src = np.array([[1] * S, [1] * 4 + [0] * 3])

    tx, tm = torch.tensor(x, requires_grad=True), torch.tensor(mem, requires_grad=True)
    ty = ref(tx, tm, tgt_mask=torch.tensor(~causal_mask(T)), memory_key_padding_mask=torch.tensor(src == 0))
    ty.backward(torch.tensor(dy))
    y, cache = layer.forward(x, mem, causal_mask(T), padding_mask(src, 0))
    dx, dmem = layer.backward(dy, cache)

    np.testing.assert_allclose(y, ty.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=2e-5)
    np.testing.assert_allclose(dmem, tm.grad.numpy(), atol=2e-5)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(layer.gradients()[name], p.grad.numpy(), atol=2e-4, err_msg=name)


# --------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_gradcheck(norm_first):
    rng = np.random.default_rng(2)
    layer = EncoderLayer(8, 2, 12, norm_first=norm_first, rng=rng).astype(np.float64)
    perturb(layer, rng)
    x, dy = rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 4, 8))
    layer.zero_grad()
    _, cache = layer.forward(x, causal_mask(4))
    dx = layer.backward(dy, cache)
    loss = lambda: float(np.sum(layer.forward(x, causal_mask(4))[0] * dy))   # noqa: E731
    gradcheck(loss, layer.parameters(), layer.gradients(), max_checks=12, tol=1e-6)
    gradcheck(loss, {"x": x}, {"x": dx}, max_checks=12, tol=1e-6)


def small_translation_batch():
    src = np.array([[3, 4, 5, 6], [7, 3, 0, 0]])                 # the second source is padded
    tgt_in = np.array([[BOS, 3, 4], [BOS, 5, 0]])
    tgt_out = np.array([[3, 4, EOS], [5, EOS, 0]])
    return src, tgt_in, tgt_out


def test_encoder_decoder_gradcheck():
    rng = np.random.default_rng(3)
    model = Transformer(9, 7, dim=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=2, ffn_dim=10,
                        rng=rng).astype(np.float64)
    perturb(model, rng)
    batch = small_translation_batch()
    model.zero_grad()
    _, cache = model.loss(batch)
    model.loss_backward(cache)
    errs = gradcheck(lambda: model.loss(batch)[0], model.parameters(), model.gradients(), max_checks=8, tol=1e-6)
    assert "src_embed.weight" in errs and "decoder_layers.1.multihead_attn.in_proj_weight" in errs
    # PAD source positions must not influence anything: their embedding rows get no gradient
    assert np.all(model.gradients()["src_embed.weight"][PAD] == 0)


def test_gpt_gradcheck():
    rng = np.random.default_rng(4)
    model = GPT(11, dim=8, n_heads=2, n_layers=2, ffn_dim=12, rng=rng).astype(np.float64)
    perturb(model, rng)
    ids = rng.integers(0, 11, size=(2, 5))
    batch = (ids[:, :-1], ids[:, 1:])
    model.zero_grad()
    _, cache = model.loss(batch)
    model.loss_backward(cache)
    gradcheck(lambda: model.loss(batch)[0], model.parameters(), model.gradients(), max_checks=8, tol=1e-6)


# --------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("norm_first", [True, False])
def test_gpt_kv_cache_step_equals_forward(norm_first):
    rng = np.random.default_rng(5)
    model = GPT(13, dim=16, n_heads=4, n_layers=2, norm_first=norm_first, rng=rng)
    perturb(model, rng)
    ids = rng.integers(0, 13, size=(3, 9))
    full, _ = model.forward(ids)                                  # (B, T, V)
    state = model.init_state(3)
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4, err_msg=f"position {t}")
    assert model.state_size(9) == 2 * 2 * 9 * 16
    assert sum(k.size + v.size for k, v in state["kv"]) == 3 * model.state_size(9)


def test_encoder_decoder_decode_step_equals_forward():
    rng = np.random.default_rng(6)
    model = Transformer(9, 7, dim=8, n_heads=2, rng=rng)
    perturb(model, rng)
    src, tgt_in, _ = small_translation_batch()
    logits, _ = model.forward(src, tgt_in)
    state = model.start_decoding(src)
    for t in range(tgt_in.shape[1]):
        logp, attention, state = model.decode_step(tgt_in[:, t], state)
        np.testing.assert_allclose(logp, F.log_softmax(logits[:, t].astype(np.float64)), atol=1e-4)
        assert np.allclose(attention.sum(-1), 1) and np.all(attention[1, 2:] == 0)   # PAD gets no attention


# --------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def trained_translator():
    """An encoder-decoder Transformer after 250 Adam steps (~10-15 s) on the date task."""
    task = DateTask()
    model = Transformer(len(task.src_vocab), len(task.tgt_vocab), dim=48, n_heads=4, n_encoder_layers=2,
                        n_decoder_layers=2, ffn_dim=96, rng=np.random.default_rng(0))
    pairs, before, after, history = train_on_dates(model, task, steps=250, lr=2e-3)
    return task, model, pairs, before, after, history


@pytest.mark.slow
def test_encoder_decoder_learns_dates(trained_translator):
    task, model, pairs, before, after, history = trained_translator
    # Baseline: the untrained model gets no date right. After 250 steps seed 0 gets 92% exact
    # (98.7% of characters) on 200 held-out dates; demand 75%.
    assert before["exact_match"] == 0.0
    assert after["exact_match"] > 0.75, after
    assert np.mean(history.losses[-20:]) < 0.25 * np.mean(history.losses[:20])


def test_beam_search_beam1_is_greedy_and_wider_beams_score_higher(trained_translator):
    task, model, pairs, *_ = trained_translator
    for b4 in beam1_is_greedy_and_beam4_no_worse(model, task, pairs[:12]):
        assert [h["score"] for h in b4] == sorted((h["score"] for h in b4), reverse=True)


@pytest.mark.slow
def test_gpt_char_lm_beats_the_bigram_baseline():
    """The shipped char corpus, as the RNN/LSTM/GRU tests use: 300 steps (~7 s of CPU) bring the
    validation loss below the bigram baseline (~2.33 nats/char; unigram ~3.07); seed 0 gets ~2.13."""
    from tinyrwkv.data.corpus import load_corpus
    corpus = load_corpus()
    model = GPT(len(corpus.vocab), dim=32, n_heads=4, n_layers=2, rng=np.random.default_rng(0))
    before = corpus.evaluate(model)
    train(model, corpus.batches(16, 64), 300, lr=5e-3, seed=0, progress=False)
    val, bigram, unigram = corpus.evaluate(model), corpus.bigram_cross_entropy(), corpus.unigram_entropy()
    assert val < bigram < unigram < before, (val, bigram, unigram, before)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_expected_shape():
    gpt = GPT(10, dim=8, n_heads=2, n_layers=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        gpt.forward(np.zeros(5, dtype=np.int64))
    with pytest.raises(ParameterError, match="integer"):
        gpt.forward(np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        gpt.forward(np.full((1, 5), 10))
    with pytest.raises(ValueError, match=r"\(B,\) = \(2,\)"):
        gpt.step(np.zeros(3, dtype=np.int64), gpt.init_state(2))
    layer = EncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        layer.forward(np.zeros((2, 3, 5), np.float32))
    tf = Transformer(9, 7, dim=8, n_heads=2, rng=np.random.default_rng(0))
    src, tgt_in, tgt_out = small_translation_batch()
    with pytest.raises(ValueError, match=r"tgt_out of shape \(B, T\) = \(2, 3\)"):
        tf.loss((src, tgt_in, tgt_out[:, :2]))
    with pytest.raises(ValueError, match="same B"):
        tf.forward(src[:1], tgt_in)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 7)


def test_attention_cost_experiment_smoke(tmp_path):
    """The cost figure's pipeline at tiny sizes (the numbers themselves belong to the figures command)."""
    from tinyrwkv.experiments.attention_cost import measure_cost, plot_cost
    cost = measure_cost([4, 8], repeats=1)
    assert cost["gpt_kv_cache"]["carried_floats"] == [2 * 2 * 4 * 64, 2 * 2 * 8 * 64]
    assert all(ms > 0 for ms in cost["gpt_no_cache"]["ms_per_token"])
    plot_cost(cost, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").stat().st_size > 10_000
