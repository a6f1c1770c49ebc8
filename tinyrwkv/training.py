"""One training loop for every model of the lineage, plus ``.npz`` checkpoints.

Every model (RNN ... Transformer ... RWKV) is a ``Trainable``: ``loss(batch) -> (loss, cache)`` and
``loss_backward(cache)`` that adds gradients into ``model.grads``. So one loop fits them all:

    for step in range(steps):
        model.zero_grad()                              # gradients ADD up, so start from zero
        loss, cache = model.loss(batches(rng, step))   # forward
        model.loss_backward(cache)                     # backward (BPTT for recurrent models)
        norm = clip_grad_norm(grads, clip)             # tame exploding gradients; log the norm
        optimizer.step(grads)                          # update parameters in place

Reproducibility: ``batches`` draws its randomness from ``rng = np.random.default_rng(seed)`` only,
so the same model initialisation + the same seed gives the identical loss history.

Checkpoints are plain ``.npz`` files (``np.load`` opens them, no pickle):
    "<dotted.param.name>"      every parameter, e.g. "rnn.layers.0.w_ih"
    "optimizer/<key>"          the optimiser's state (Adam moments "m.<name>", "v.<name>", "t"), optional
    "__metadata__"             a JSON string: format, step, model and optimiser class, ``extra``
"""
from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .nn import SGD, Adam, clip_grad_norm
from .nn.module import compare_shapes

CHECKPOINT_FORMAT = "tinyrwkv-checkpoint-1"
METADATA_KEY = "__metadata__"
OPTIMIZER_PREFIX = "optimizer/"


@dataclass
class History:
    """What ``train`` measured. losses[i] and grad_norms[i] belong to step i (norm before clipping)."""

    losses: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    evals: list = field(default_factory=list)       # [(step, eval_fn(model)), ...]
    seconds: float = 0.0
    steps: int = 0

    def smoothed(self, window: int = 50) -> np.ndarray:
        """Running mean of the loss over the last ``window`` steps (same length as ``losses``)."""
        x = np.asarray(self.losses, dtype=np.float64)
        if x.size == 0:
            return x
        c = np.cumsum(np.insert(x, 0, 0.0))
        idx = np.arange(1, x.size + 1)
        lo = np.maximum(idx - window, 0)
        return (c[idx] - c[lo]) / (idx - lo)

    def to_dict(self) -> dict:
        return {"losses": list(self.losses), "grad_norms": list(self.grad_norms), "evals": list(self.evals),
                "seconds": self.seconds, "steps": self.steps}


def make_optimizer(model, optimizer="adam", lr=1e-3):
    """"adam" | "sgd" -> an optimiser over ``model.parameters()``; an object with ``.step(grads)`` passes through.

    Build the optimiser *after* any ``model.astype(...)``: astype replaces the arrays it would update.
    """
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name == "adam":
            return Adam(model.parameters(), lr=lr)
        if name == "sgd":
            return SGD(model.parameters(), lr=lr)
        raise ValueError(f"train: optimizer must be 'adam', 'sgd' or an object with .step(grads), got {optimizer!r}")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"train: optimizer {type(optimizer).__name__} has no .step(grads) method")
    return optimizer


def train(model, batches: Callable, steps: int, *, optimizer="adam", lr=1e-3, clip=1.0, log_every=50,
          seed=0, checkpoint=None, progress=True, eval_fn=None, eval_every=None) -> History:
    """Fits ``model`` for ``steps`` optimiser steps and returns a ``History``.

    model:      a ``Trainable`` (``loss(batch)``, ``loss_backward(cache)``, ``zero_grad``, ``gradients``).
    batches:    ``batches(rng, step) -> batch``; rng is ``np.random.default_rng(seed)``, shared by all steps.
    optimizer:  "adam", "sgd" or an optimiser object (e.g. ``Adam(model.parameters(), lr=...)``);
                ``lr`` is used only for the named ones.
    clip:       max global gradient norm; None or 0 turns clipping off (the norm is still logged).
    log_every:  how often the progress line (or a printed line, when stderr is not a terminal) updates.
    progress:   False for silence.
    eval_fn:    ``eval_fn(model) -> anything`` (a float or dict); run every ``eval_every`` steps and
                after the last step, stored in ``history.evals`` as (steps_done, result).
    checkpoint: a path; the model (and optimiser state) is saved there after the last step.
    Raises FloatingPointError naming the step if the loss becomes NaN or infinite.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"train: steps must be an int >= 0, got {steps!r}")
    if not callable(batches):
        raise TypeError("train: batches must be a callable batches(rng, step) -> batch")
    if log_every < 1:
        raise ValueError(f"train: log_every must be >= 1, got {log_every}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"train: eval_every must be >= 1 or None, got {eval_every}")
    opt = make_optimizer(model, optimizer, lr)
    grads = model.gradients()
    max_norm = clip if clip else np.inf
    rng = np.random.default_rng(seed)
    history = History()

    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"train {type(model).__name__}", unit="step", leave=False)

    start = time.perf_counter()
    for step in range(steps):
        model.zero_grad()
        loss, cache = model.loss(batches(rng, step))
        if not np.isfinite(loss):
            raise FloatingPointError(f"train: loss is {loss} at step {step}; lower lr or clip harder")
        model.loss_backward(cache)
        norm = clip_grad_norm(grads, max_norm)
        opt.step(grads)
        history.losses.append(float(loss))
        history.grad_norms.append(float(norm))
        history.steps = step + 1

        done = step + 1
        if eval_fn is not None and eval_every and done % eval_every == 0 and done < steps:
            history.evals.append((done, eval_fn(model)))
        if progress and (done % log_every == 0 or done == steps):
            recent = float(np.mean(history.losses[-log_every:]))
            if bar is not None:
                bar.update(done - bar.n)
                bar.set_postfix(loss=f"{recent:.4f}", grad_norm=f"{norm:.3g}")
            else:
                print(f"step {done:6d}/{steps}  loss {recent:.4f}  grad_norm {norm:.3g}  "
                      f"{time.perf_counter() - start:.1f}s", flush=True)
    if bar is not None:
        bar.close()
    if eval_fn is not None:
        history.evals.append((history.steps, eval_fn(model)))
    history.seconds = time.perf_counter() - start
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, opt, step=history.steps,
                        extra={"final_loss": history.losses[-1] if history.losses else None})
    return history


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, model, optimizer=None, step: int = 0, extra=None):
    """Writes ``model``'s parameters (and ``optimizer.state_dict()`` if given) to the ``.npz`` file ``path``.

    ``extra`` is any JSON-serialisable dict stored in the metadata (a config, a vocabulary ...).
    The file is written to a temporary name and then renamed, so a crash never leaves half a file.
    """
    path = os.fspath(path)
    arrays = {name: np.asarray(p) for name, p in model.state_dict().items()}
    if METADATA_KEY in arrays or any(k.startswith(OPTIMIZER_PREFIX) for k in arrays):
        raise ValueError(f"save_checkpoint: a parameter name clashes with {METADATA_KEY!r} or {OPTIMIZER_PREFIX!r}")
    if optimizer is not None:
        if not callable(getattr(optimizer, "state_dict", None)):
            raise TypeError(f"save_checkpoint: optimizer {type(optimizer).__name__} has no state_dict()")
        for k, v in optimizer.state_dict().items():
            arrays[OPTIMIZER_PREFIX + k] = np.asarray(v)
    meta = {"format": CHECKPOINT_FORMAT, "step": int(step), "model_class": type(model).__name__,
            "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
            "extra": extra}
    try:
        arrays[METADATA_KEY] = np.array(json.dumps(meta))
    except TypeError as e:
        raise TypeError(f"save_checkpoint: extra must be JSON-serialisable ({e})") from None
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:                   # a file object: np.savez then keeps the name as given
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Loads a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``); returns its metadata.

    Every key and shape is checked before anything is copied, so a mismatched file leaves the
    model untouched and the error names the file and every missing / unexpected / misshapen key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"load_checkpoint: {path!r} is not a readable .npz file ({type(e).__name__}: {e})") from None
    if METADATA_KEY not in arrays:
        raise ValueError(f"load_checkpoint: {path!r} has no {METADATA_KEY!r} entry; "
                         f"it was not written by tinyrwkv.training.save_checkpoint")
    try:
        meta = json.loads(str(arrays.pop(METADATA_KEY)))
    except json.JSONDecodeError as e:
        raise ValueError(f"load_checkpoint: {path!r} has corrupt metadata ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"load_checkpoint: {path!r} has format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")

    opt_state = {k[len(OPTIMIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    params = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    _check_matches(path, "parameter", model.parameters(), params, f"model {type(model).__name__}")
    if optimizer is not None:
        if not opt_state:
            raise ValueError(f"load_checkpoint: {path!r} holds no optimizer state "
                             f"(it was saved without an optimizer); load it with optimizer=None")
        _check_matches(path, "optimizer", optimizer.state_dict(), opt_state, f"optimizer {type(optimizer).__name__}")

    for name, p in model.parameters().items():
        p[...] = params[name]
    if optimizer is not None:
        optimizer.load_state_dict(opt_state)
    return meta


def _check_matches(path, what, own: dict, saved: dict, owner: str):
    """Raises ValueError listing every missing key, unexpected key and shape mismatch, naming the file."""
    missing, unexpected, mismatched = compare_shapes(own, saved)
    wrong = [f"{k}: expected {want}, file has {got}" for k, want, got in mismatched]
    nonnum = [f"{k}: dtype {saved[k].dtype}" for k in sorted(set(own) & set(saved))
              if not np.issubdtype(saved[k].dtype, np.number)]
    if missing or unexpected or wrong or nonnum:
        parts = []
        if missing:
            parts.append(f"missing {what} keys {missing}")
        if unexpected:
            parts.append(f"unexpected {what} keys {unexpected}")
        if wrong:
            parts.append(f"wrong shapes {wrong}")
        if nonnum:
            parts.append(f"non-numeric arrays {nonnum}")
        raise ValueError(f"load_checkpoint: {path!r} does not match {owner}: " + "; ".join(parts))
