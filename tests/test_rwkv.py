"""RWKV-4 in NumPy equals transformers' RwkvForCausalLM, in parallel and RNN mode, from every
checkpoint format; and it agrees with itself (parallel == serial, numpy == numba, state
continuation, batches), stays finite over long sequences and rejects bad input by name."""
import numpy as np
import pytest

from factories import random_internal_params, tiny_config, write_blinkdl_pth, write_hf_bin, write_hf_safetensors
import tinyrwkv
from tinyrwkv.models.rwkv import RWKV, RWKVConfig, RWKVState, count_parameters, init_params, param_shapes

TOL = 1e-4
CONFIG = tiny_config(n_layer=3, n_embd=32, vocab_size=97, ffn_dim=128)
TOKENS = np.random.default_rng(3).integers(0, CONFIG["vocab_size"], 24)


def our_model(params, config=CONFIG, backend="numba"):
    return RWKV(RWKVConfig.from_dict(config), params, backend=backend)


def hf_logits(hf_model, tokens):
    """transformers' logits (T, V) in parallel mode."""
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        return hf_model(torch.tensor(np.asarray(tokens))[None]).logits[0].numpy()


def hf_step_logits(hf_model, tokens):
    """transformers' logits (T, V), one token at a time through its RNN state."""
    torch = pytest.importorskip("torch")
    out, state, logits = None, None, []
    with torch.no_grad():
        for t in tokens:
            out = hf_model(torch.tensor([[int(t)]]), state=state, use_cache=True)
            state = out.state
            logits.append(out.logits[0, -1].numpy())
    return np.array(logits)


@pytest.fixture(scope="module")
def params():
    return random_internal_params(CONFIG, seed=11)


# --------------------------------------------------------------------------- parity with transformers

WRITERS = {
    "safetensors": lambda d, p: (write_hf_safetensors(d, p, CONFIG), d),
    "pytorch_model.bin": lambda d, p: (write_hf_bin(d, p, CONFIG), d / "pytorch_model.bin"),
    "blinkdl_fp32.pth": lambda d, p: (write_blinkdl_pth(d / "m.pth", p, CONFIG), d / "m.pth"),
    "blinkdl_bf16.pth": lambda d, p: (write_blinkdl_pth(d / "m.pth", p, CONFIG, dtype="bfloat16"), d / "m.pth"),
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_forward_and_step_equal_transformers(tmp_path, params, fmt):
    """Loaded through tinyrwkv.load from a file written by the real writer; for bf16 the reference
    is transformers on the same bf16-rounded weights, run in float32."""
    pytest.importorskip("transformers")
    hf, source = WRITERS[fmt](tmp_path, params)
    model = tinyrwkv.load(source, progress=False)
    assert model.config.n_layer == CONFIG["n_layer"] and model.config.ffn_dim == CONFIG["ffn_dim"]

    ref = hf_logits(hf, TOKENS)                                          # (T, V)
    logits, _ = model.forward(TOKENS)
    assert logits.dtype == np.float32 and logits.shape == ref.shape
    assert np.abs(logits - ref).max() <= TOL

    ref_step = hf_step_logits(hf, TOKENS[:8])
    state, ours = None, []
    for t in TOKENS[:8]:
        out, state = model.step(int(t), state)
        ours.append(out)
    assert np.abs(np.array(ours) - ref_step).max() <= TOL
    assert np.abs(ref_step - ref[:8]).max() <= TOL                        # transformers agrees with itself


def test_state_continuation_equals_transformers(params):
    """forward(prompt) then step(token) == forward(prompt + token) == transformers."""
    pytest.importorskip("transformers")
    from factories import hf_model
    hf = hf_model(params, CONFIG)
    ref = hf_logits(hf, TOKENS)
    model = our_model(params)
    _, state = model.forward(TOKENS[:-1])
    last, state2 = model.step(int(TOKENS[-1]), state)
    assert np.abs(last - ref[-1]).max() <= TOL
    # and parallel mode continues from a state too
    head, s = model.forward(TOKENS[:10])
    tail, s_end = model.forward(TOKENS[10:], s)
    assert np.abs(np.concatenate([head, tail]) - ref).max() <= TOL
    for f in RWKVState.FIELDS:
        assert np.allclose(getattr(s_end, f), getattr(state2, f), rtol=1e-4, atol=1e-4), f


# --------------------------------------------------------------------------- self-consistency


def test_parallel_equals_serial_and_last_only(params):
    model = our_model(params)
    full, s_par = model.forward(TOKENS)
    last, s_last = model.forward(TOKENS, full_output=False)
    assert last.shape == (CONFIG["vocab_size"],)
    assert np.abs(last - full[-1]).max() <= 1e-5
    for f in RWKVState.FIELDS:                   # the shortcut in the last block leaves the state whole
        assert np.allclose(getattr(s_last, f), getattr(s_par, f), atol=1e-6), f
    one, _ = model.forward(TOKENS[:1], full_output=False)
    assert np.abs(one - full[0]).max() <= 1e-5
    state, serial = None, []
    for t in TOKENS:
        out, state = model.step(t, state)
        serial.append(out)
    assert np.abs(np.array(serial) - full).max() <= TOL
    for f in RWKVState.FIELDS:
        assert np.allclose(getattr(state, f), getattr(s_par, f), rtol=1e-4, atol=1e-4), f


def test_numpy_backend_equals_numba_backend(params):
    a, sa = our_model(params, backend="numba").forward(TOKENS)
    b, sb = our_model(params, backend="numpy").forward(TOKENS)
    assert np.abs(a - b).max() <= 1e-5
    sa2 = our_model(params, backend="numba").step(5, sa)[0]
    sb2 = our_model(params, backend="numpy").step(5, sb)[0]
    assert np.abs(sa2 - sb2).max() <= 1e-5


def test_batch_equals_one_by_one(params):
    model = our_model(params)
    rows = np.stack([TOKENS, TOKENS[::-1], (TOKENS + 7) % CONFIG["vocab_size"]])    # (B, T)
    logits, state = model.forward(rows)
    assert logits.shape == (3, len(TOKENS), CONFIG["vocab_size"]) and state.batch_size == 3
    step_logits, _ = model.step(np.array([1, 2, 3]), state)                       # (B,) -> (B, V)
    assert step_logits.shape == (3, CONFIG["vocab_size"])
    for b in range(3):
        one, s = model.forward(rows[b])
        assert np.abs(one - logits[b]).max() <= 1e-5
        one_step, _ = model.step(b + 1, s)
        assert np.abs(one_step - step_logits[b]).max() <= 1e-5
        assert np.allclose(state.select(b).aa, s.aa, atol=1e-5)


def test_long_random_sequence_stays_finite():
    """10k tokens through the stable WKV (parallel mode, then RNN mode): no inf, no nan."""
    config = RWKVConfig(n_layer=2, n_embd=16, vocab_size=50, ffn_dim=64)
    model = RWKV.random(config, seed=4, scale=0.5)
    tokens = np.random.default_rng(0).integers(0, 50, 10_000)
    logits, state = model.forward(tokens)
    assert np.isfinite(logits).all()
    for t in tokens[:50]:
        out, state = model.step(t, state)
    assert np.isfinite(out).all()
    for f in RWKVState.FIELDS:
        assert np.isfinite(getattr(state, f)).all(), f


def test_forward_does_not_modify_the_given_state(params):
    model = our_model(params)
    _, state = model.forward(TOKENS[:5])
    before = state.copy()
    model.forward(TOKENS[5:], state)
    model.step(3, state)
    for f in RWKVState.FIELDS:
        assert np.array_equal(getattr(state, f), getattr(before, f)), f


# --------------------------------------------------------------------------- state object


def test_state_save_load_copy_stack_select(tmp_path, params):
    model = our_model(params)
    _, state = model.forward(TOKENS)
    path = tmp_path / "state.npz"
    state.save(path)
    restored = RWKVState.load(path)
    a, _ = model.step(4, state)
    b, _ = model.step(4, restored)
    assert np.array_equal(a, b)
    c = state.copy()
    c.aa[...] = 0
    assert not np.array_equal(c.aa, state.aa)                # a real copy
    both = RWKVState.stack([state, restored])
    assert both.batch_size == 2 and both.n_layer == CONFIG["n_layer"] and both.n_embd == CONFIG["n_embd"]
    assert np.array_equal(both.select(1).pp, state.pp)
    empty = model.init_state(2)
    assert (empty.pp == -1e38).all() and not empty.aa.any()
    assert model.state_size() == 5 * CONFIG["n_layer"] * CONFIG["n_embd"]


def test_state_file_that_is_not_a_state(tmp_path):
    np.savez(tmp_path / "x.npz", att_x=np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match=r"x\.npz.*lacks.*aa"):
        RWKVState.load(tmp_path / "x.npz")


# --------------------------------------------------------------------------- bad input


def test_bad_tokens_and_states_are_named(params):
    model = our_model(params)
    V = CONFIG["vocab_size"]
    with pytest.raises(ValueError, match="tokens is empty"):
        model.forward([])
    with pytest.raises(ValueError, match=f"token id {V} is out of range"):
        model.forward([1, V])
    with pytest.raises(ValueError, match="token id -1 is out of range"):
        model.step(-1)
    with pytest.raises(ValueError, match="integer token ids.*float"):
        model.forward(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"tokens must be \(T,\) or \(B, T\)"):
        model.forward(np.zeros((1, 2, 3), int))
    _, state = model.forward([1, 2])
    with pytest.raises(ValueError, match=r"state has shape .*\(3, 1, 32\).*need \(3, 2, 32\)"):
        model.step(np.array([1, 2]), state)
    other = RWKVState.zeros(2, 32)
    with pytest.raises(ValueError, match="state has shape"):
        model.forward([1], other)
    with pytest.raises(ValueError, match="must be an RWKVState"):
        model.step(1, state=[np.zeros(3)])
    with pytest.raises(ValueError, match="aa must be"):
        RWKVState(np.zeros((1, 1, 4)), np.zeros((1, 4)), np.zeros((1, 1, 4)), np.zeros((1, 1, 4)), np.zeros((1, 1, 4)))


def test_params_that_do_not_fit_the_config_are_listed(params):
    config = RWKVConfig.from_dict(CONFIG)
    broken = dict(params)
    del broken["blocks.1.att.time_first"]
    broken["blocks.0.ffn.key.weight"] = np.zeros((5, 5), np.float32)
    broken["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as e:
        RWKV(config, broken)
    msg = str(e.value)
    assert "blocks.1.att.time_first" in msg and "extra.weight" in msg
    assert "blocks.0.ffn.key.weight: expected (128, 32), got (5, 5)" in msg
    with pytest.raises(ValueError, match="n_embd must be a positive integer"):
        RWKVConfig(n_layer=1, n_embd=0, vocab_size=3, ffn_dim=4)


def test_config_from_params_and_counts():
    config = RWKVConfig(n_layer=12, n_embd=768, vocab_size=50277, ffn_dim=3072)
    assert count_parameters(config) == 169_342_464          # RWKV-4 169M
    shapes = param_shapes(RWKVConfig(n_layer=2, n_embd=8, vocab_size=11, ffn_dim=32))
    fake = {k: np.empty(s, np.float32) for k, s in shapes.items()}
    assert RWKVConfig.from_params(fake) == RWKVConfig(n_layer=2, n_embd=8, vocab_size=11, ffn_dim=32)
    small = init_params(RWKVConfig(n_layer=1, n_embd=8, vocab_size=11, ffn_dim=32), seed=1)
    assert all(v.dtype == np.float32 for v in small.values())
    assert (small["blocks.0.att.time_mix_k"] >= 0).all() and (small["blocks.0.att.time_mix_k"] <= 1).all()


def test_wkv_thread_count_is_local_to_the_call(params):
    import numba
    before = numba.get_num_threads()
    one = our_model(params)
    assert one.wkv_threads in (1, None) and our_model(params, backend="numpy").wkv_threads is None
    a, _ = one.forward(TOKENS)
    assert numba.get_num_threads() == before                 # restored after the forward
    b, _ = RWKV(RWKVConfig.from_dict(CONFIG), params, wkv_threads=None).forward(TOKENS)
    assert np.abs(a - b).max() <= 1e-6
