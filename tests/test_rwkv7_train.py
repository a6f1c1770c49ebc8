"""RWKV-7 training (tinyrwkv/models/rwkv7_train.py): the hand-written backward equals finite
differences (float64) and torch autograd of the x070 equations; the forward equals BlinkDL's `rwkv`
pip package (RWKV_x070); a carried state == one pass; step == forward; training lowers the loss."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinyrwkv.models.rwkv7_train import RWKV7LanguageModel, init_rwkv7_params, rwkv7_config, trainable_shapes
from tinyrwkv.nn import gradcheck
from tinyrwkv.training import train

SIZES = rwkv7_config(n_layer=2, n_embd=8, vocab_size=11, ffn_dim=16, head_size=4,
                   decay_lora=3, a_lora=3, v_lora=2, gate_lora=5)


def _model(backend="numpy", sizes=SIZES, seed=1, noise=0.3, dtype=np.float64):
    """Initialised, then every parameter nudged so no path starts silent (zeros kill gradients)."""
    model = RWKV7LanguageModel(sizes, backend=backend, seed=seed).astype(dtype)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += (noise * rng.normal(size=p.shape)).astype(dtype)
    return model


def _batch(sizes=SIZES, B=2, T=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, sizes.vocab_size, (B, T)), rng.integers(0, sizes.vocab_size, (B, T))


def _grads(model, batch):
    model.zero_grad()
    loss, cache = model.loss(batch)
    model.loss_backward(cache)
    return loss, {k: v.copy() for k, v in model.grads.items()}


def test_whole_model_gradients_equal_finite_differences_float64():
    model, batch = _model(), _batch()
    _grads(model, batch)
    errors = gradcheck(lambda: model.loss(batch)[0], model.params, model.grads, eps=1e-5, max_checks=5, tol=1e-6)
    assert len(errors) == len(trainable_shapes(SIZES)) == 2 * 33 - 3 + 6      # block 0 has no v0, v1, v2


# --------------------------------------------------------------------------- torch autograd


def torch_loss(P, ids, targets, sizes):
    """The x070 equations (rwkv/model.py RWKV_x070 TMix/CMix, WKV as its plain loop) in torch."""
    import torch
    import torch.nn.functional as TF

    H, N, C = sizes.n_head, sizes.head_size, sizes.n_embd
    B, T = ids.shape
    ln = lambda x, n: TF.layer_norm(x, (C,), P[n + ".weight"], P[n + ".bias"], 1e-5)  # noqa: E731
    shift = lambda h: torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1) - h        # noqa: E731
    x = ln(P["emb.weight"][ids], "ln0")
    v_first = None
    for i in range(sizes.n_layer):
        p = lambda n: P[f"blocks.{i}.{n}"]                                               # noqa: E731
        h = ln(x, f"blocks.{i}.ln1")
        xx = shift(h)
        xr, xw, xk, xv, xa, xg = (h + xx * p("att.x_" + m) for m in "rwkvag")
        r = xr @ p("att.receptance.weight").T
        w = torch.exp(-math.exp(-0.5) * torch.sigmoid(p("att.w0") + torch.tanh(xw @ p("att.w1").T) @ p("att.w2").T))
        k = xk @ p("att.key.weight").T
        v = xv @ p("att.value.weight").T
        a = torch.sigmoid(p("att.a0") + (xa @ p("att.a1").T) @ p("att.a2").T)
        g = torch.sigmoid(xg @ p("att.g1").T) @ p("att.g2").T
        kk = TF.normalize((k * p("att.k_k")).view(B, T, H, N), dim=-1, p=2.0)
        k = k * (1 + (a - 1) * p("att.k_a"))
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(p("att.v0") + (xv @ p("att.v1").T) @ p("att.v2").T)
        r4, w4, k4, v4, a4 = (z.view(B, T, H, N) for z in (r, w, k, v, a))
        S = torch.zeros(B, H, N, N, dtype=x.dtype)
        ys = []
        for t in range(T):
            ab = (-kk[:, t]).unsqueeze(-1) @ (kk[:, t] * a4[:, t]).unsqueeze(-2)
            S = S * w4[:, t].unsqueeze(-2) + S @ ab + v4[:, t].unsqueeze(-1) @ k4[:, t].unsqueeze(-2)
            ys.append((S @ r4[:, t].unsqueeze(-1)).squeeze(-1))
        y = TF.group_norm(torch.stack(ys, 1).reshape(B * T, C), H, p("att.ln_x.weight"), p("att.ln_x.bias"),
                          eps=64e-5).view(B, T, C)
        y = y + ((r * k).view(B, T, H, N) * p("att.r_k")).sum(-1, keepdim=True).mul(v4).view(B, T, C)
        x = x + (y * g) @ p("att.output.weight").T
        h = ln(x, f"blocks.{i}.ln2")
        kf = torch.relu((h + shift(h) * p("ffn.x_k")) @ p("ffn.key.weight").T) ** 2
        x = x + kf @ p("ffn.value.weight").T
    logits = ln(x, "ln_out") @ P["head.weight"].T
    return TF.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1)), logits


def test_loss_and_gradients_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    model, (ids, targets) = _model(seed=3), _batch(B=3, T=7, seed=1)
    loss, grads = _grads(model, (ids, targets))
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    t_loss, t_logits = torch_loss(P, torch.tensor(ids), torch.tensor(targets), SIZES)
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-12
    assert np.allclose(model.forward(ids)[0], t_logits.detach().numpy(), atol=1e-12)
    for name, g in grads.items():
        assert np.allclose(g, P[name].grad.numpy(), atol=1e-10), name


# --------------------------------------------------------------------------- the pip package

PIP_PARITY = """
    import json, os, sys
    os.environ["RWKV_V7_ON"] = "1"; os.environ["RWKV_JIT_ON"] = "0"
    import numpy as np, torch
    from rwkv.model import RWKV
    params = dict(np.load(sys.argv[1]))
    sd = {}
    for k, p in params.items():
        t, leaf = torch.tensor(p), k.rsplit(".", 1)[-1]
        if k.startswith("ln0."):                                   # BlinkDL keeps ln0 in block 0
            k = "blocks.0." + k
        elif leaf in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2"):
            t = t.T.contiguous()                                   # BlinkDL's (in, out)
        elif p.ndim == 1 and (".x_" in k or leaf in ("w0", "a0", "v0", "k_k", "k_a")):
            t = t.view(1, 1, -1)
        sd[k] = t
    torch.save(sd, sys.argv[2] + ".pth")
    model = RWKV(model=sys.argv[2], strategy="cpu fp32")
    ids = json.loads(sys.argv[3])
    seq, _ = model.forward(ids, None, full_output=True)
    state, steps = None, []
    for i in ids:
        out, state = model.forward([i], state)
        steps.append(out.tolist())
    print(json.dumps({"seq": seq.tolist(), "steps": steps}))
"""


def test_forward_and_steps_equal_the_pip_package(tmp_path):
    pytest.importorskip("rwkv")
    sizes = rwkv7_config(n_layer=3, n_embd=12, vocab_size=13, ffn_dim=20, head_size=4,
                       decay_lora=3, a_lora=5, v_lora=2, gate_lora=6)
    model = _model("numba", sizes=sizes, seed=4, dtype=np.float32)
    np.savez(tmp_path / "p.npz", **model.params)
    ids = [int(i) for i in np.random.default_rng(5).integers(0, 13, 9)]
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PIP_PARITY), str(tmp_path / "p.npz"),
                          str(tmp_path / "m"), json.dumps(ids)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RWKV_V7_ON": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    ours, _ = model.forward(np.array([ids]))
    assert np.abs(ours[0] - np.array(ref["seq"])).max() < 1e-5
    state = model.init_state(1)
    for i, ref_logits in zip(ids, ref["steps"]):
        logits, state = model.step(np.array([i]), state)
        assert np.abs(logits[0] - np.array(ref_logits)).max() < 1e-5


# --------------------------------------------------------------------------- modes, init, training


def test_the_training_forward_equals_the_inference_model_and_its_serial_mode():
    model = _model("numba", seed=6, dtype=np.float32)
    ids = np.random.default_rng(2).integers(0, 11, (2, 9))
    full, _ = model.forward(ids)
    inference = model.inference_model()                                # models/rwkv7.py on the same arrays
    assert all(inference.params[k] is v for k, v in model.params.items())
    logits, _ = inference.forward(ids)
    assert np.abs(logits - full).max() < 1e-5
    state = model.init_state(2)
    for t in range(9):
        step_logits, state = model.step(ids[:, t], state)
        assert np.abs(step_logits - full[:, t]).max() < 1e-4
    assert model.state_size() == state.size() == 2 * (2 * 8 + 2 * 4 * 4)


def test_backends_give_the_same_gradients():
    batch = _batch(seed=4)
    _, g_numpy = _grads(_model("numpy", seed=7), batch)
    _, g_numba = _grads(_model("numba", seed=7), batch)
    for name in g_numpy:
        assert np.allclose(g_numba[name], g_numpy[name], atol=1e-10), name


def test_init_follows_rwkv_lm_and_starts_near_uniform():
    p = init_rwkv7_params(SIZES, seed=0)
    assert set(p) == set(trainable_shapes(SIZES)) and all(a.dtype == np.float32 for a in p.values())
    for i in range(2):
        b = f"blocks.{i}."
        assert not p[b + "att.output.weight"].any() and not p[b + "ffn.value.weight"].any()
        assert not p[b + "att.w1"].any() and np.allclose(p[b + "att.r_k"], -0.04)
        assert np.allclose(p[b + "att.ln_x.weight"], ((i + 1) / 2) ** 0.7)
    w = np.exp(-math.exp(-0.5) / (1 + np.exp(-p["blocks.0.att.w0"])))
    assert w[0] > 0.99 and w[-1] < 0.7                      # slow decay in channel 0 .. fast at the end
    model = RWKV7LanguageModel(SIZES, backend="numpy")
    loss, _ = model.loss(_batch())
    assert abs(loss - math.log(SIZES.vocab_size)) < 0.3       # blocks start as the identity: ~uniform


def test_training_lowers_the_loss_and_bad_params_are_named():
    rng = np.random.default_rng(0)
    text = np.tile(np.arange(11), 40)                         # a cycle: easy to learn

    def batches(rng, step):
        starts = rng.integers(0, len(text) - 17, 8)
        windows = np.stack([text[s:s + 17] for s in starts])
        return windows[:, :-1], windows[:, 1:]

    model = RWKV7LanguageModel(SIZES, backend="numba", seed=0)
    history = train(model, batches, steps=60, lr=1e-2, log_every=1000, progress=False)
    assert history.losses[-1] < 0.5 * history.losses[0]
    bad = dict(init_rwkv7_params(SIZES))
    bad["blocks.1.att.r_k"] = np.zeros((3, 3), np.float32)
    del bad["head.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['head.weight'\].*blocks.1.att.r_k: expected \(2, 4\), got \(3, 3\)"):
        RWKV7LanguageModel(SIZES, bad)
