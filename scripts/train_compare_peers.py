"""Trains the GPT and LSTM that ``tinyrwkv compare`` runs beside the shipped tiny RWKV-4, and ships them.

    OPENBLAS_NUM_THREADS=1 python scripts/train_compare_peers.py          # CPU minutes; writes tinyrwkv/data/

They are the GPT and the LSTM of the training-curves figure: ``recipes.build_models`` (the same
parameter count as the tiny RWKV-4, the same seed), trained with the same recipe (``recipes.RECIPE``:
batches of 16 x 128 characters, Adam, warm-up + cosine, each model's ``recipes.PEAK_LR``) on the same
small_tales characters, but for 400 steps (the length of the runs that chose PEAK_LR) instead of
1000: the shipped ones reached 1.96 (GPT) and 1.85 (LSTM) nats/char on the validation text, against
1.73 for the shipped RWKV-4 (17 CPU minutes on a very busy 2-core machine). As for the shipped RWKV,
the weights of the evaluation with the lowest validation loss are kept.

Each is written with ``tinyrwkv.training.save_checkpoint`` (a plain .npz: ``np.load`` without pickle)
as ``tinyrwkv/data/peer_gpt.npz`` and ``peer_lstm.npz`` (~0.9 MB each), with the recipe, the best step
and its validation loss in the metadata; ``tinyrwkv.compare.shipped_peers`` loads them through
``training.load_checkpoint``, which checks every name and shape.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyrwkv import recipes  # noqa: E402
from tinyrwkv.compare import PEER_FILES  # noqa: E402
from tinyrwkv.data.corpus import load_corpus  # noqa: E402
from tinyrwkv.training import save_checkpoint  # noqa: E402

LABELS = {"gpt": "GPT", "lstm": "LSTM"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=PEER_FILES["gpt"].parent, help="folder to write")
    parser.add_argument("--steps", type=int, default=400, help="training steps (the shipped peers: 400)")
    args = parser.parse_args(argv)

    corpus = load_corpus()
    recipe = {**recipes.RECIPE, "steps": args.steps}
    models = recipes.build_models(corpus.vocab.size, seed=recipe["seed"])
    summary = {}
    for name, label in LABELS.items():
        model = models[label]
        best = {"val": np.inf}

        def keep_best(m, step, val, best=best):
            if val < best["val"]:
                best.update(val=val, step=step, params=m.state_dict())

        print(f"training {label} ({model.num_parameters():,} parameters) for {recipe['steps']} steps", flush=True)
        curve = recipes.train_with_curve(
            model, corpus, steps=recipe["steps"], peak_lr=recipes.PEAK_LR[label], batch_size=recipe["batch_size"],
            seq_len=recipe["seq_len"], eval_every=recipe["eval_every"], clip=recipe["clip"], seed=recipe["seed"],
            warmup_fraction=recipe["warmup_fraction"], final_lr_fraction=recipe["final_lr_fraction"],
            on_eval=keep_best, progress=True)
        model.load_state_dict(best["params"])
        extra = {"label": label, "recipe": recipe, "peak_lr": recipes.PEAK_LR[label], "best_step": best["step"],
                 "val": round(best["val"], 4), "seconds": curve["seconds"], "params": model.num_parameters(),
                 "date": datetime.date.today().isoformat(), "script": "scripts/train_compare_peers.py"}
        path = args.out / PEER_FILES[name].name
        save_checkpoint(path, model, step=best["step"], extra=extra)
        summary[label] = {k: extra[k] for k in ("best_step", "val", "seconds", "params")}
        print(f"{label}: best validation {best['val']:.4f} nats/char at step {best['step']} -> {path} "
              f"({path.stat().st_size / 1e6:.2f} MB)", flush=True)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
