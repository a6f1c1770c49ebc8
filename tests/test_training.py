"""The training loop and .npz checkpoints, on a model small enough to reason about.

The model-specific "training learns" tests live beside each model (test_rnn/lstm/gru.py).
"""
import numpy as np
import pytest

from tinyrwkv.models.base import Trainable
from tinyrwkv.nn import SGD, Adam, Linear
from tinyrwkv.training import History, load_checkpoint, save_checkpoint, train

TRUE_W = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])


class Regression(Trainable):
    """y = x W^T + b fitted to y* = x TRUE_W^T by mean squared error: the loss can reach ~0."""

    def __init__(self, seed=0):
        super().__init__()
        self.lin = Linear(3, 2, rng=np.random.default_rng(seed))

    def loss(self, batch):
        x, target = batch
        y, cache = self.lin.forward(x)
        diff = y - target
        return float(np.mean(diff ** 2)), (cache, diff)

    def loss_backward(self, cache):
        x, diff = cache
        self.lin.backward(2.0 * diff / diff.size, x)


def regression_batches(rng, step):
    x = rng.normal(size=(16, 3)).astype(np.float32)
    return x, (x @ TRUE_W.T).astype(np.float32)


def test_train_fits_and_records_history():
    model = Regression()
    h = train(model, regression_batches, 300, lr=0.05, progress=False)
    assert isinstance(h, History) and h.steps == 300
    assert len(h.losses) == len(h.grad_norms) == 300
    assert h.losses[-1] < 1e-3 * h.losses[0]
    assert np.allclose(model.lin.params["weight"], TRUE_W, atol=0.02)
    assert h.smoothed(10).shape == (300,) and h.seconds > 0


def test_same_seed_same_history_other_seed_differs():
    a = train(Regression(), regression_batches, 20, progress=False, seed=3)
    b = train(Regression(), regression_batches, 20, progress=False, seed=3)
    c = train(Regression(), regression_batches, 20, progress=False, seed=4)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_clipping_caps_the_update_and_logs_the_raw_norm():
    model = Regression()
    w0 = model.lin.params["weight"].copy()
    h = train(model, regression_batches, 1, optimizer="sgd", lr=1.0, clip=1e-3, progress=False)
    assert h.grad_norms[0] > 1e-3                      # the norm before clipping is what gets logged
    step = model.lin.params["weight"] - w0             # lr 1 * clipped grads: a part of a norm-1e-3 vector
    assert 0 < np.linalg.norm(step) <= 1e-3 + 1e-6


def test_optimizer_object_eval_fn_and_printed_progress(capsys):
    model = Regression()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)

    def distance(m):
        return float(np.abs(m.lin.params["weight"] - TRUE_W).max())
    start = distance(model)
    h = train(model, regression_batches, 40, optimizer=opt, log_every=10, eval_every=15, eval_fn=distance)
    assert [s for s, _ in h.evals] == [15, 30, 40]
    assert h.evals[-1][1] < 0.2 * start
    out = capsys.readouterr().out                      # not a terminal under pytest: printed lines
    assert out.count("loss") == 4 and "step     40/40" in out


def test_bad_arguments_and_nan_loss():
    with pytest.raises(ValueError, match="optimizer must be"):
        train(Regression(), regression_batches, 1, optimizer="adagrad", progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(Regression(), regression_batches, -1, progress=False)

    def nan_batches(rng, step):
        x, y = regression_batches(rng, step)
        return x, y * np.nan
    with pytest.raises(FloatingPointError, match="step 0"):
        train(Regression(), nan_batches, 3, progress=False)


def test_checkpoint_round_trip_resumes_exactly(tmp_path):
    path = tmp_path / "reg.npz"
    model = Regression(seed=1)
    opt = Adam(model.parameters(), lr=0.01)
    train(model, regression_batches, 10, optimizer=opt, progress=False)
    save_checkpoint(path, model, opt, step=10, extra={"note": "hello"})

    twin = Regression(seed=2)
    twin_opt = Adam(twin.parameters(), lr=0.01)
    meta = load_checkpoint(path, twin, twin_opt)
    assert meta["step"] == 10 and meta["extra"] == {"note": "hello"} and meta["model_class"] == "Regression"
    for k, p in model.parameters().items():
        assert np.array_equal(p, twin.parameters()[k])
    # Same parameters + same Adam moments + same batches -> the same future.
    a = train(model, regression_batches, 5, optimizer=opt, progress=False, seed=9)
    b = train(twin, regression_batches, 5, optimizer=twin_opt, progress=False, seed=9)
    assert a.losses == b.losses

    plain = np.load(path)                              # an ordinary npz, params by dotted name
    assert "lin.weight" in plain.files and "optimizer/m.lin.weight" in plain.files


def test_train_writes_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    model = Regression()
    train(model, regression_batches, 3, progress=False, checkpoint=path)
    twin = Regression(seed=5)
    assert load_checkpoint(path, twin)["step"] == 3
    assert np.array_equal(twin.lin.params["bias"], model.lin.params["bias"])


class Wider(Trainable):
    def __init__(self):
        super().__init__()
        self.lin = Linear(4, 2, rng=np.random.default_rng(0))


def test_mismatched_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    path = tmp_path / "reg.npz"
    save_checkpoint(path, Regression())
    wider = Wider()
    before = wider.lin.params["weight"].copy()
    with pytest.raises(ValueError, match=r"reg\.npz.*lin\.weight: expected \(2, 4\), file has \(2, 3\)"):
        load_checkpoint(path, wider)
    assert np.array_equal(wider.lin.params["weight"], before)      # untouched on failure
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, Regression(), Adam(Regression().parameters()))

    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match=r"garbage\.npz.*not a readable \.npz"):
        load_checkpoint(bad, Regression())

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    with pytest.raises(ValueError, match=r"foreign\.npz.*not written by"):
        load_checkpoint(foreign, Regression())

    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_checkpoint(tmp_path / "missing.npz", Regression())

    extra = Regression()
    extra.extra = Linear(1, 1)                                      # a parameter the file lacks
    with pytest.raises(ValueError, match=r"missing parameter keys \['extra.bias', 'extra.weight'\]"):
        load_checkpoint(path, extra)


def test_sgd_momentum_state_round_trips(tmp_path):
    model = Regression()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    train(model, regression_batches, 3, optimizer=opt, progress=False)
    save_checkpoint(tmp_path / "s.npz", model, opt)
    twin = Regression(seed=7)
    twin_opt = SGD(twin.parameters(), lr=0.01, momentum=0.9)
    load_checkpoint(tmp_path / "s.npz", twin, twin_opt)
    assert np.array_equal(twin_opt.velocity["lin.weight"], opt.velocity["lin.weight"])


def test_recurrent_lm_seeds_and_checkpoint(tmp_path):
    """A real model of the lineage: same init seed + same data seed -> identical losses; npz round trip."""
    from tinyrwkv.data.corpus import load_corpus
    from tinyrwkv.models.lstm import LSTMLanguageModel

    corpus = load_corpus()

    def run(data_seed):
        model = LSTMLanguageModel(corpus.vocab.size, hidden_size=16, num_layers=2, rng=np.random.default_rng(0))
        return model, train(model, corpus.batches(4, 16), 5, lr=0.01, seed=data_seed, progress=False)
    model, a = run(1)
    _, b = run(1)
    _, c = run(2)
    assert a.losses == b.losses and a.losses != c.losses

    save_checkpoint(tmp_path / "lm.npz", model, extra={"corpus": corpus.name, "vocab": "".join(corpus.vocab.chars)})
    twin = LSTMLanguageModel(corpus.vocab.size, hidden_size=16, num_layers=2, rng=np.random.default_rng(9))
    meta = load_checkpoint(tmp_path / "lm.npz", twin)
    assert meta["extra"]["vocab"] == "".join(corpus.vocab.chars)
    ids = corpus.val_ids[None, :20]
    assert np.array_equal(twin.forward(ids)[0], model.forward(ids)[0])
    assert "rnn.layers.1.w_hh" in np.load(tmp_path / "lm.npz").files
