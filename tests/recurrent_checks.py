"""Checks shared by test_rnn.py, test_lstm.py and test_gru.py: the three differ only in their cell.

* ``torch_parity``: our stack vs torch.nn.RNN/LSTM/GRU with copied weights: outputs, final states,
  and gradients of the input, the initial state and every parameter.
* ``torch_parity_random_sizes``: the same at small odd sizes drawn from a seed.
* ``gradcheck_*``: finite differences in float64 for the cell, a sequence layer, a stack and an LM.
* ``bad_input_names_expected_shapes``: wrong shapes and dtypes fail with messages naming them.
"""
import numpy as np
import pytest

from tinyrwkv.nn import gradcheck, numerical_gradient, relative_error

GRADCHECK_TOL = 1e-6


def torch_parity(stack_cls, torch_cls, *, D, H, num_layers, bidirectional, B, T, seed, dtype=np.float64):
    """Max abs differences (name -> float) between our stack and torch's, forward and backward."""
    import torch

    rng = np.random.default_rng(seed)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(seed)
    ref = torch_cls(D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True).to(tdtype)
    ours = stack_cls(D, H, num_layers, bidirectional=bidirectional, rng=rng, dtype=dtype)
    ours.load_torch_state_dict(ref.state_dict())

    n_state = len(ours.layers[0].state_names)                      # 1: (h,), 2: (h, c)
    LD = len(ours.layers)                                           # num_layers * directions
    x = rng.normal(size=(B, T, D)).astype(dtype)
    init = [rng.normal(size=(LD, B, H)).astype(dtype) for _ in range(n_state)]   # torch layout
    dy = rng.normal(size=(B, T, H * ours.num_directions)).astype(dtype)
    dfinal = [rng.normal(size=(LD, B, H)).astype(dtype) for _ in range(n_state)]

    tx = torch.tensor(x, requires_grad=True)
    tinit = [torch.tensor(s, requires_grad=True) for s in init]
    ty, tfinal = ref(tx, tuple(tinit) if n_state == 2 else tinit[0])
    tfinal = tfinal if n_state == 2 else (tfinal,)
    objective = (ty * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(tfinal, dfinal))
    objective.backward()

    def per_layer(arrays):                                          # torch (LD, B, H) x n -> [tuple] * LD
        return [tuple(a[k] for a in arrays) for k in range(LD)]

    def stacked(states, j):                                         # [tuple] * LD -> (LD, B, H)
        return np.stack([s[j] for s in states])

    y, final, cache = ours.forward(x, per_layer(init))
    ours.zero_grad()
    dx, dinit = ours.backward(dy, cache, per_layer(dfinal))

    diffs = {"y": np.abs(y - ty.detach().numpy()).max(), "dx": np.abs(dx - tx.grad.numpy()).max()}
    for j, name in enumerate(ours.layers[0].state_names):
        diffs[f"final {name}"] = np.abs(stacked(final, j) - tfinal[j].detach().numpy()).max()
        diffs[f"d initial {name}"] = np.abs(stacked(dinit, j) - tinit[j].grad.numpy()).max()
    torch_params = dict(ref.named_parameters())
    grads = ours.gradients()
    for our_name, torch_name in ours.torch_names().items():
        diffs[f"grad {torch_name}"] = np.abs(grads[our_name] - torch_params[torch_name].grad.numpy()).max()
    return {k: float(v) for k, v in diffs.items()}


def torch_parity_random_sizes(stack_cls, torch_cls, *, num_layers, bidirectional, seed):
    """``torch_parity`` in float64 with B, T, D, H each drawn from 1..6 by ``seed``: unequal sizes
    catch a transposed weight, size 1 catches a squeezed axis."""
    rng = np.random.default_rng(seed)
    B, T, D, H = (int(v) for v in rng.integers(1, 7, size=4))
    return torch_parity(stack_cls, torch_cls, D=D, H=H, num_layers=num_layers, bidirectional=bidirectional,
                        B=B, T=T, seed=seed)


def _check_inputs(loss, arrays: dict, analytic: dict, tol=GRADCHECK_TOL):
    """Finite differences w.r.t. inputs / states (arrays the Module does not own)."""
    for name, a in arrays.items():
        num = numerical_gradient(loss, a)
        err = relative_error(analytic[name], num)
        assert err < tol, f"gradient of {name}: relative error {err:.2e}"


def gradcheck_cell(layer_cls, seed=0):
    """One time step (input projection + cell): params, input x_t and every state entry."""
    rng = np.random.default_rng(seed)
    B, D, H = 2, 3, 4
    layer = layer_cls(D, H, rng=rng, dtype=np.float64)
    x = rng.normal(size=(B, D))
    state = tuple(rng.normal(size=(B, H)) for _ in layer.state_names)
    w = tuple(rng.normal(size=(B, H)) for _ in layer.state_names)    # loss = sum_j <w_j, new_state_j>

    def loss():
        new, _ = layer.cell(x, state)
        return float(sum(np.sum(a * b) for a, b in zip(new, w)))

    _, cache = layer.cell(x, state)
    layer.zero_grad()
    dx, dstate = layer.cell_backward(w, cache)
    errs = gradcheck(loss, layer.parameters(), layer.gradients(), tol=GRADCHECK_TOL)
    assert set(errs) == {"w_ih", "w_hh", "b_ih", "b_hh"}
    analytic = {"x": dx, **{f"state {n}": d for n, d in zip(layer.state_names, dstate)}}
    _check_inputs(loss, {"x": x, **{f"state {n}": s for n, s in zip(layer.state_names, state)}}, analytic)


def gradcheck_layer(layer_cls, reverse=False, masked=False, seed=1):
    """A sequence layer (BPTT): params, the whole input, the initial state; optionally reversed / masked."""
    rng = np.random.default_rng(seed)
    B, T, D, H = 2, 5, 3, 4
    layer = layer_cls(D, H, reverse=reverse, rng=rng, dtype=np.float64)
    x = rng.normal(size=(B, T, D))
    state = tuple(rng.normal(size=(B, H)) for _ in layer.state_names)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool) if masked else None
    dy = rng.normal(size=(B, T, H))
    dfinal = tuple(rng.normal(size=(B, H)) for _ in layer.state_names)

    def loss():
        y, final, _ = layer.forward(x, state, mask)
        return float(np.sum(y * dy) + sum(np.sum(a * b) for a, b in zip(final, dfinal)))

    _, _, cache = layer.forward(x, state, mask)
    layer.zero_grad()
    dx, dstate = layer.backward(dy, cache, dfinal)
    gradcheck(loss, layer.parameters(), layer.gradients(), tol=GRADCHECK_TOL)
    analytic = {"x": dx, **{f"state {n}": d for n, d in zip(layer.state_names, dstate)}}
    _check_inputs(loss, {"x": x, **{f"state {n}": s for n, s in zip(layer.state_names, state)}}, analytic)


def gradcheck_stack(stack_cls, seed=2):
    """Two layers, bidirectional: every parameter of every layer and direction."""
    rng = np.random.default_rng(seed)
    B, T, D, H = 2, 4, 3, 3
    stack = stack_cls(D, H, num_layers=2, bidirectional=True, rng=rng, dtype=np.float64)
    x = rng.normal(size=(B, T, D))
    dy = rng.normal(size=(B, T, 2 * H))

    def loss():
        return float(np.sum(stack.forward(x)[0] * dy))

    _, _, cache = stack.forward(x)
    stack.zero_grad()
    dx, _ = stack.backward(dy, cache)
    errs = gradcheck(loss, stack.parameters(), stack.gradients(), max_checks=10, tol=GRADCHECK_TOL)
    assert len(errs) == 16                                          # 4 layers x (w_ih, w_hh, b_ih, b_hh)
    _check_inputs(loss, {"x": x}, {"x": dx})


def gradcheck_language_model(lm_cls, seed=3):
    """The LM's cross-entropy loss through head, stack and embedding, with an ignored target."""
    rng = np.random.default_rng(seed)
    V, B, T = 7, 2, 5
    model = lm_cls(V, hidden_size=4, num_layers=2, embed_dim=3, rng=rng, dtype=np.float64)
    inputs = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    targets[0, 1] = -1                                              # IGNORE_INDEX counts for nothing
    loss, cache = model.loss((inputs, targets))
    model.zero_grad()
    model.loss_backward(cache)
    # tol 1e-5: the loss is ~2 nats, so the finite difference carries ~1e-10 of rounding, which is
    # 1e-6 relative for the smallest (layer-0) gradients. A real backward bug gives errors ~1e-1.
    errs = gradcheck(lambda: model.loss((inputs, targets))[0], model.parameters(), model.gradients(),
                     max_checks=10, tol=1e-5)
    assert "embed.weight" in errs and "head.bias" in errs and "rnn.layers.1.w_hh" in errs


def step_matches_forward(lm_cls, seed=4):
    """Generating token by token with ``step`` gives forward()'s logits (float32, so tolerance 1e-5)."""
    rng = np.random.default_rng(seed)
    V, B, T = 11, 3, 6
    model = lm_cls(V, hidden_size=8, num_layers=2, embed_dim=5, rng=rng)
    ids = rng.integers(0, V, size=(B, T))
    logits, cache = model.forward(ids)
    state = model.init_state(B)
    for t in range(T):
        step_logits, state = model.step(ids[:, t], state)
        assert np.allclose(step_logits, logits[:, t], atol=1e-5), f"position {t}"
    for ours, theirs in zip(state, cache["state"]):                 # the same final state, too
        for a, b in zip(ours, theirs):
            assert np.allclose(a, b, atol=1e-6)
    return model


def learns_char_lm(lm_cls, steps=200, seed=0):
    """Trains on the shipped corpus; returns (val loss, unigram baseline, bigram baseline) in nats/char."""
    from tinyrwkv.data.corpus import load_corpus
    from tinyrwkv.training import train

    corpus = load_corpus()
    model = lm_cls(corpus.vocab.size, hidden_size=64, embed_dim=32, rng=np.random.default_rng(seed))
    train(model, corpus.batches(batch_size=32, seq_len=32), steps, lr=0.01, seed=seed, progress=False)
    return corpus.evaluate(model), corpus.unigram_entropy(), corpus.bigram_cross_entropy()


def learns_copy_task(lm_cls, steps=700, seed=0):
    """Copy 3 symbols (of 8) across a delay of 10 blanks; returns CopyTask.accuracy (symbol, sequence, chance)."""
    from tinyrwkv.data.copy_task import CopyTask
    from tinyrwkv.training import train

    task = CopyTask(n_symbols=8, length=3, delay=10)
    model = lm_cls(task.vocab_size, hidden_size=48, embed_dim=16, rng=np.random.default_rng(seed))
    train(model, task.batches(32), steps, lr=0.02, seed=seed, progress=False)
    return task.accuracy(model)


def bad_input_names_expected_shapes(layer_cls, stack_cls, lm_cls):
    """Wrong input shapes, dtypes and states fail with a message naming the class, the expected shape
    and what came instead; so do a bidirectional step, zero layers and ids of the wrong rank."""
    name = layer_cls.__name__
    layer = layer_cls(3, 4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=rf"{name} input \(B, T, D\): expected shape \(\*, \*, 3\), got \(2, 5, 2\)"):
        layer.forward(np.zeros((2, 5, 2), np.float32))
    with pytest.raises(TypeError, match=f"{name} input: expected a float array, got dtype int64"):
        layer.forward(np.zeros((2, 5, 3), np.int64))
    with pytest.raises(ValueError, match=rf"{name}.cell input: expected shape \(\*, 3\), got \(2, 1, 3\)"):
        layer.cell(np.zeros((2, 1, 3), np.float32), layer.zero_state(2))
    with pytest.raises(ValueError, match=r"state h: expected shape \(2, 4\), got \(3, 4\)"):
        layer.cell(np.zeros((2, 3), np.float32), tuple(np.zeros((3, 4), np.float32) for _ in layer.state_names))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 5, 4\)"):
        _, _, cache = layer.forward(np.zeros((2, 5, 3), np.float32))
        layer.backward(np.zeros((2, 5, 3), np.float32), cache)
    with pytest.raises(ValueError, match="bidirectional stack cannot run one step"):
        bi = stack_cls(3, 4, bidirectional=True, rng=np.random.default_rng(0))
        bi.step(np.zeros((1, 3), np.float32), bi.init_state(1))
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        stack_cls(3, 4, num_layers=0)
    lm = lm_cls(5, hidden_size=4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"step ids must be \(B,\) integer token ids in \[0, 5\), got shape \(1, 1\)"):
        lm.step(np.array([[1]]), lm.init_state(1))
