"""The shared training recipe of the tiny models: equal-size peers and one way to train them.

The tiny RWKV-4 shipped in ``tinyrwkv/data/tiny_rwkv`` and the GPT and LSTM it is compared with
(``tinyrwkv compare``, the training-curves figure, lesson 10) are built and trained here, so that
library code (compare.py) and the figure scripts (experiments/training_curves.py) share one recipe:

    RECIPE, PEAK_LR, RWKV_SIZE      the numbers (batch, window, steps, lr per model, the RWKV's size)
    tiny_rwkv, matched_gpt, matched_lstm, build_models
                                    models of equal parameter count
    WarmupCosine                    Adam with linear warm-up, then a cosine down to a floor
    train_with_curve                the recipe's training run, with validation evaluations
"""
from __future__ import annotations

import math

import numpy as np

from .models.lstm import LSTMLanguageModel
from .models.rwkv import RWKVConfig
from .models.rwkv_train import RWKVLanguageModel
from .models.transformer import GPT
from .nn import Adam
from .training import train

# The recipe every model shares (the shipped checkpoint was trained with exactly this).
RECIPE = {"batch_size": 16, "seq_len": 128, "steps": 1000, "eval_every": 50, "clip": 1.0, "seed": 0,
          "warmup_fraction": 0.05, "final_lr_fraction": 0.1}
# Peak learning rates: the best validation loss of each model in a sweep of 400-step runs of this
# recipe over {1e-3, 2e-3, 4e-3} (RWKV-4: 1.70 / 1.74 / 1.78 nats/char, it overfits sooner the
# higher the rate; GPT: 2.22 / 2.08 / 1.95; LSTM: 2.15 / 1.97 / 1.85).
PEAK_LR = {"RWKV-4": 1e-3, "GPT": 4e-3, "LSTM": 4e-3, "RWKV-7": 4e-3}
RWKV_SIZE = {"n_layer": 4, "n_embd": 64, "ffn_dim": 256}
# The tiny RWKV-7 (tinyrwkv/data/tiny_rwkv7, scripts/train_tiny_rwkv7.py): RWKV_SIZE with 4 heads of
# 16 and low-rank paths of 8 (BlinkDL's minimum is 32; 8 keeps it at the tiny RWKV-4's size:
# 224,832 vs 223,872 parameters). Its peak lr: best validation loss of full 1000-step runs of the
# recipe at {1e-3, 2e-3, 4e-3}: 1.819 / 1.821 / 1.808 nats/char, every one at step 200 (RWKV-7
# fits the 30 k training characters faster than RWKV-4 and overfits sooner).
RWKV7_SIZE = {**RWKV_SIZE, "head_size": 16, "decay_lora": 8, "a_lora": 8, "v_lora": 8, "gate_lora": 8}


# --------------------------------------------------------------------------- models of equal size


def tiny_rwkv(vocab_size: int, seed: int = 0, backend: str = "auto", **size) -> RWKVLanguageModel:
    """The tiny RWKV-4 (RWKV_SIZE unless overridden) with RWKV-4's own initialisation."""
    config = RWKVConfig(vocab_size=vocab_size, **{**RWKV_SIZE, **size})
    return RWKVLanguageModel(config, backend=backend, seed=seed)


def matched_gpt(vocab_size: int, target: int, dim: int = 64, n_heads: int = 4, n_layers: int = 4,
                seed: int = 0) -> GPT:
    """A pre-norm GPT of width ``dim`` whose ffn width makes its parameter count closest to ``target``."""
    def build(ffn_dim):
        return GPT(vocab_size, dim=dim, n_heads=n_heads, n_layers=n_layers, ffn_dim=ffn_dim,
                   rng=np.random.default_rng(seed))
    base, wider = build(4 * dim).num_parameters(), build(4 * dim + 1).num_parameters()
    per_unit = wider - base                                           # parameters per ffn unit
    ffn_dim = max(1, 4 * dim + round((target - base) / per_unit))
    return build(ffn_dim)


def matched_lstm(vocab_size: int, target: int, num_layers: int = 2, seed: int = 0) -> LSTMLanguageModel:
    """An LSTM language model (embedding width = hidden size) with the hidden size closest to ``target``."""
    def count(hidden):
        # embed V H + head H V + V; layer 1: 4H (H + H) + 8H biases; every further layer the same
        return 2 * vocab_size * hidden + vocab_size + num_layers * (8 * hidden * hidden + 8 * hidden)
    hidden = min(range(8, 1024), key=lambda h: abs(count(h) - target))
    model = LSTMLanguageModel(vocab_size, hidden_size=hidden, num_layers=num_layers, rng=np.random.default_rng(seed))
    assert model.num_parameters() == count(hidden), "matched_lstm: the count formula is out of date"
    return model


def build_models(vocab_size: int, seed: int = 0, rwkv_size=None) -> dict:
    """label -> model: the tiny RWKV-4 and a GPT and an LSTM matched to its parameter count."""
    rwkv = tiny_rwkv(vocab_size, seed, **(rwkv_size or {}))
    target = rwkv.num_parameters()
    dim = rwkv.config.n_embd
    return {"RWKV-4": rwkv,
            "GPT": matched_gpt(vocab_size, target, dim=dim, n_heads=4 if dim % 4 == 0 else 1,
                               n_layers=rwkv.config.n_layer, seed=seed),
            "LSTM": matched_lstm(vocab_size, target, seed=seed)}


# --------------------------------------------------------------------------- the shared recipe


class WarmupCosine:
    """Adam whose learning rate rises linearly over ``warmup`` steps to ``peak_lr``, then follows a
    cosine down to ``final_fraction * peak_lr`` at ``total`` steps. Has ``step(grads)`` and
    ``state_dict()`` like the optimiser it wraps, so ``tinyrwkv.training.train`` takes it."""

    def __init__(self, params: dict, peak_lr: float, total: int, warmup: int = 0, final_fraction: float = 0.1):
        self.adam = Adam(params, lr=peak_lr)
        self.peak_lr, self.total, self.warmup, self.final_fraction = peak_lr, max(total, 1), warmup, final_fraction

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.peak_lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(self.total - self.warmup, 1))
        low = self.final_fraction * self.peak_lr
        return low + 0.5 * (self.peak_lr - low) * (1.0 + math.cos(math.pi * progress))

    def step(self, grads: dict):
        self.adam.lr = self.lr_at(self.adam.t)
        self.adam.step(grads)

    def state_dict(self) -> dict:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict):
        self.adam.load_state_dict(state)


def train_with_curve(model, corpus, *, steps: int, peak_lr: float, batch_size: int = 16, seq_len: int = 128,
                     eval_every: int = 100, clip: float = 1.0, seed: int = 0, warmup_fraction: float = 0.05,
                     final_lr_fraction: float = 0.1, on_eval=None, progress: bool = True) -> dict:
    """Trains ``model`` with the shared recipe; returns {"params", "train" (loss per step), "val"
    ([(step, nats/char)], step 0 = before training), "seconds", "steps", "peak_lr"}.

    ``on_eval(model, step, val_loss)`` runs after every evaluation (the script keeps the best RWKV there).
    """
    before = float(corpus.evaluate(model))
    if on_eval:
        on_eval(model, 0, before)
    calls = []

    def eval_fn(m):
        # train() evaluates after every eval_every steps and once after the last step
        step = min((len(calls) + 1) * eval_every, steps)
        calls.append(step)
        loss = float(corpus.evaluate(m))
        if on_eval:
            on_eval(m, step, loss)
        return loss

    opt = WarmupCosine(model.parameters(), peak_lr, steps, int(warmup_fraction * steps), final_lr_fraction)
    history = train(model, corpus.batches(batch_size, seq_len), steps, optimizer=opt, clip=clip, seed=seed,
                    eval_fn=eval_fn, eval_every=eval_every, progress=progress, log_every=eval_every)
    val = [(0, before)] + [(int(s), float(v)) for s, v in history.evals]
    return {"params": int(model.num_parameters()), "train": [float(x) for x in history.losses], "val": val,
            "seconds": round(history.seconds, 1), "steps": steps, "peak_lr": peak_lr}
