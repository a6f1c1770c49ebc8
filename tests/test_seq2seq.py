"""GNMT-style seq2seq: a hand-wired torch twin, finite differences, padding, decoding, learning."""
import numpy as np
import pytest
from translation_checks import beam1_is_greedy_and_beam4_no_worse, perturb, train_on_dates

from tinyrwkv.data.translation import BOS, EOS, PAD, DateTask
from tinyrwkv.models.decoding import beam_search, greedy_decode, length_penalty
from tinyrwkv.models.seq2seq import GNMT, AdditiveAttention
from tinyrwkv.nn import functional as F
from tinyrwkv.nn import gradcheck


def small_batch():
    src = np.array([[3, 4, 5, 6, 7], [7, 3, 8, 0, 0]])            # the second source is padded
    tgt_in = np.array([[BOS, 3, 4, 5], [BOS, 5, 0, 0]])
    tgt_out = np.array([[3, 4, 5, EOS], [5, EOS, 0, 0]])
    return src, tgt_in, tgt_out


# --------------------------------------------------------------------------- torch twin


def torch_twin_loss(torch, model, src, tgt_in, tgt_out):
    """The same GNMT wired from torch.nn.LSTM layers and torch ops; returns (loss, {our name: torch param})."""
    nn = torch.nn
    H = model.hidden_size
    params = {}

    def lstm(layers, input_size):
        m = nn.LSTM(input_size, H, batch_first=True, bidirectional=len(layers) == 2).double()
        for (prefix, layer), suffix in zip(layers, ("", "_reverse")):
            for ours, theirs in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                                 ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
                p = getattr(m, theirs + suffix)
                with torch.no_grad():
                    p.copy_(torch.tensor(layer.params[ours]))
                params[f"{prefix}.{ours}"] = p
        return m

    def leaf(name):
        params[name] = torch.tensor(model.parameters()[name], requires_grad=True)
        return params[name]

    enc1 = lstm([("encoder_forward", model.encoder_forward), ("encoder_backward", model.encoder_backward)],
                model.encoder_forward.input_size)
    encs = [lstm([(f"encoder_layers.{i}", layer)], layer.input_size) for i, layer in enumerate(model.encoder_layers)]
    decs = [lstm([(f"decoder_layers.{i}", layer)], layer.input_size) for i, layer in enumerate(model.decoder_layers)]
    src_e, tgt_e = leaf("src_embed.weight"), leaf("tgt_embed.weight")
    wq, bq, wk, v = (leaf("attention.query_proj.weight"), leaf("attention.query_proj.bias"),
                     leaf("attention.key_proj.weight"), leaf("attention.v"))
    wo, bo = leaf("head.weight"), leaf("head.bias")

    x, _ = enc1(src_e[torch.tensor(src)])                          # (B, S, 2H), no PAD in the twin's source
    for l, m in enumerate(encs, start=2):
        y, _ = m(x)
        x = y + x if l >= model.residual_from else y
    memory = x
    h, _ = decs[0](tgt_e[torch.tensor(tgt_in)])                    # (B, T, H)
    scores = torch.tanh((h @ wq.T + bq)[:, :, None, :] + (memory @ wk.T)[:, None, :, :]) @ v   # (B, T, S)
    weights = torch.softmax(scores, dim=-1)
    context = weights @ memory
    x = h
    for l, m in enumerate(decs[1:], start=2):
        y, _ = m(torch.cat([x, context], dim=-1))
        x = y + x if l >= model.residual_from else y
    logits = x @ wo.T + bo
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(tgt_out).reshape(-1),
                                             ignore_index=model.pad_id)
    return loss, weights, params


def test_gnmt_matches_hand_wired_torch_twin():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    model = GNMT(10, 8, embed_dim=6, hidden_size=5, n_encoder_layers=4, n_decoder_layers=4, attention_size=7,
                 rng=rng).astype(np.float64)
    src = rng.integers(3, 10, size=(3, 6))                        # the twin's source has no PAD
    tgt_in = np.concatenate([np.full((3, 1), BOS), rng.integers(3, 8, size=(3, 4))], axis=1)
    tgt_out = np.concatenate([tgt_in[:, 1:], np.array([[EOS], [EOS], [PAD]])], axis=1)
    model.zero_grad()
    loss, cache = model.loss((src, tgt_in, tgt_out))
    model.loss_backward(cache)
    _, weights, _ = model.forward(src, tgt_in)

    tloss, tweights, tparams = torch_twin_loss(torch, model, src, tgt_in, tgt_out)
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-12
    np.testing.assert_allclose(weights, tweights.detach().numpy(), atol=1e-12)
    assert set(tparams) == set(model.parameters())
    for name, p in tparams.items():
        np.testing.assert_allclose(model.gradients()[name], p.grad.numpy(), atol=1e-12, err_msg=name)


# --------------------------------------------------------------------------- finite differences


def test_additive_attention_gradcheck_with_padding():
    rng = np.random.default_rng(1)
    attn = AdditiveAttention(4, 5, 6, rng=rng).astype(np.float64)
    q, mem = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    dctx = rng.normal(size=(2, 3, 5))
    attn.zero_grad()
    _, w, cache = attn.forward(q, mem, mask)
    assert np.all(w[1, :, 2:] == 0)
    dq, dmem = attn.backward(dctx, cache)
    loss = lambda: float(np.sum(attn.forward(q, mem, mask)[0] * dctx))   # noqa: E731
    gradcheck(loss, attn.parameters(), attn.gradients(), tol=1e-7)
    gradcheck(loss, {"q": q, "mem": mem}, {"q": dq, "mem": dmem}, tol=1e-7)
    assert np.all(dmem[1, 2:] == 0)                               # PAD memory gets no gradient


def test_gnmt_gradcheck_float64_with_padding_and_residuals():
    rng = np.random.default_rng(2)
    model = GNMT(10, 8, embed_dim=4, hidden_size=5, n_encoder_layers=3, n_decoder_layers=3, rng=rng)
    model.astype(np.float64)
    perturb(model, rng)
    perturb(model.attention, rng, scale=1.0)   # sharper attention: its gradients would otherwise be ~1e-6,
    batch = small_batch()                      # where finite differences drown in rounding
    model.zero_grad()
    _, cache = model.loss(batch)
    model.loss_backward(cache)
    errs = gradcheck(lambda: model.loss(batch)[0], model.parameters(), model.gradients(),
                     eps=1e-5, max_checks=6, tol=1e-6)
    assert len(errs) == len(model.parameters())
    assert np.all(model.gradients()["src_embed.weight"][PAD] == 0)   # PAD source tokens influence nothing


# --------------------------------------------------------------------------- padding, decoding


def test_padding_does_not_change_a_sentence():
    rng = np.random.default_rng(3)
    model = GNMT(10, 8, embed_dim=4, hidden_size=6, rng=rng)
    src, tgt_in, _ = small_batch()
    alone, _, _ = model.forward(src[1:, :3], tgt_in[1:, :2])      # sentence 2 without any PAD
    batched, _, _ = model.forward(src, tgt_in)
    np.testing.assert_allclose(batched[1, :2], alone[0], atol=1e-5)


def test_decode_step_equals_teacher_forced_forward():
    rng = np.random.default_rng(4)
    model = GNMT(10, 8, embed_dim=4, hidden_size=6, rng=rng)
    src, tgt_in, _ = small_batch()
    logits, weights, _ = model.forward(src, tgt_in)
    state = model.start_decoding(src)
    for t in range(tgt_in.shape[1]):
        logp, w, state = model.decode_step(tgt_in[:, t], state)
        np.testing.assert_allclose(logp, F.log_softmax(logits[:, t].astype(np.float64)), atol=1e-5)
        np.testing.assert_allclose(w, weights[:, t], atol=1e-6)


@pytest.fixture(scope="module")
def trained_gnmt():
    """GNMT (3+3 LSTM layers, H=64) after 300 Adam steps (~12 s of CPU) on the date task."""
    task = DateTask()
    model = GNMT(len(task.src_vocab), len(task.tgt_vocab), embed_dim=32, hidden_size=64,
                 rng=np.random.default_rng(0))
    pairs, before, after, history = train_on_dates(model, task, steps=300, lr=3e-3)
    return task, model, pairs, before, after, history


@pytest.mark.slow
def test_gnmt_learns_dates(trained_gnmt):
    task, model, pairs, before, after, history = trained_gnmt
    # Baseline: untrained, no date is right. After 300 steps seed 0 gets 100% of 200 held-out
    # dates exact; demand 90%.
    assert before["exact_match"] == 0.0
    assert after["exact_match"] > 0.9, after
    assert np.mean(history.losses[-20:]) < 0.1 * np.mean(history.losses[:20])


def test_beam_search_on_trained_gnmt(trained_gnmt):
    task, model, pairs, *_ = trained_gnmt
    beam1_is_greedy_and_beam4_no_worse(model, task, pairs[:10])
    for source, target in pairs[:10]:
        one = task.src_vocab.encode(source)
        hyps = beam_search(model, one, BOS, EOS, task.max_tgt_len, beam_size=4, alpha=0.6)
        for h in hyps:                                             # GNMT's length normalisation
            assert np.isclose(h["score"], h["logprob"] / length_penalty(len(h["ids"]), 0.6))
        assert task.tgt_vocab.decode(hyps[0]["ids"]) == target


def test_length_penalty_formula():
    assert length_penalty(7, 0.0) == 1.0
    assert np.isclose(length_penalty(7, 0.6), (12 / 6) ** 0.6)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_problem():
    model = GNMT(10, 8, embed_dim=4, hidden_size=6, rng=np.random.default_rng(0))
    src, tgt_in, tgt_out = small_batch()
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model.forward(src[0], tgt_in)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.forward(src, tgt_in + 8)
    with pytest.raises(ValueError, match=r"tgt_out of shape \(B, T\) = \(2, 4\)"):
        model.loss((src, tgt_in, tgt_out[:, :3]))
    with pytest.raises(ValueError, match="non-PAD"):
        model.forward(np.zeros((2, 3), dtype=np.int64), tgt_in)
    with pytest.raises(ValueError, match="residual_from"):
        GNMT(10, 8, residual_from=2)
    with pytest.raises(ValueError, match=r"\(S,\)"):
        beam_search(model, src, BOS, EOS, 5)
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        greedy_decode(model, src[0], BOS, EOS, 5)
