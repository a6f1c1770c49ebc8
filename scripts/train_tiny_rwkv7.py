"""Trains the tiny RWKV-7 that ships inside tinyrwkv (beside the tiny RWKV-4 of train_tiny_rwkv.py).

    python scripts/train_tiny_rwkv7.py                           # the shipped run (CPU minutes)
    python scripts/train_tiny_rwkv7.py --lr 2e-3 --out /tmp/t7   # another peak learning rate

What it does:

1. Trains RWKV-7 (x070; 4 layers, width 64 = 4 heads of 16, ffn 256, low-rank paths of 8:
   ``recipes.RWKV7_SIZE``, 224,832 parameters against the tiny RWKV-4's 223,872), with RWKV-7's
   own initialisation (``models.rwkv7_train.init_rwkv7_params``), char-level on the shipped
   small_tales corpus with the tiny RWKV-4's recipe (``recipes.RECIPE``: batch 16 x 128 chars,
   1000 steps, Adam with warm-up and cosine, clip 1.0), keeping the evaluation with the lowest
   validation loss.
2. Writes a folder ``tinyrwkv.load`` reads (``tinyrwkv.load("tiny7")``):
       model.safetensors    float32, BlinkDL's names and layout (as RWKV-x070-*.pth stores them)
       config.json          the sizes (informational: the reader takes them from the shapes)
       tokenizer.json       the same character tokenizer as the tiny RWKV-4 (same ids)
       training_curves.json the RWKV-7 curve beside the shipped RWKV-4's, with both best validation losses

Tip on a busy machine: ``OPENBLAS_NUM_THREADS=1``.
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
sys.path.insert(0, str(REPO / "scripts"))

from train_tiny_rwkv import char_tokenizer_json, samples  # noqa: E402

from tinyrwkv import recipes  # noqa: E402
from tinyrwkv.checkpoints.naming import to_file_layout  # noqa: E402
from tinyrwkv.data.corpus import load_corpus  # noqa: E402
from tinyrwkv.experiments import training_curves as tc  # noqa: E402
from tinyrwkv.models.rwkv7_train import RWKV7LanguageModel, rwkv7_config  # noqa: E402

TINY_RWKV7_DIR = REPO / "tinyrwkv" / "data" / "tiny_rwkv7"


def save_folder(directory, config, params: dict, chars, context_length: int, extra=None):
    """model.safetensors (float32, BlinkDL's names), config.json and tokenizer.json into ``directory``."""
    from safetensors.numpy import save_file

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(a, np.float32) for name, a in to_file_layout(params, "blinkdl").items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt", **(extra or {})})
    info = {"model_type": "rwkv7", "architecture": "RWKV-7 x070", "context_length": context_length,
            **{k: v for k, v in config.to_dict().items() if k not in ("source", "dtype", "mix_lora")}}
    (directory / "config.json").write_text(json.dumps(info, indent=2) + "\n")
    (directory / "tokenizer.json").write_text(char_tokenizer_json(chars))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=TINY_RWKV7_DIR, help="model folder to write")
    parser.add_argument("--steps", type=int, default=recipes.RECIPE["steps"])
    parser.add_argument("--eval-every", type=int, default=recipes.RECIPE["eval_every"])
    parser.add_argument("--lr", type=float, default=recipes.PEAK_LR["RWKV-7"], help="peak learning rate")
    parser.add_argument("--backend", default="numba", help="WKV-7 kernels: numba | numpy | cuda")
    args = parser.parse_args(argv)

    corpus = load_corpus()
    config = rwkv7_config(vocab_size=corpus.vocab.size, **recipes.RWKV_SIZE,
                          **{k: v for k, v in recipes.RWKV7_SIZE.items() if k not in recipes.RWKV_SIZE})
    model = RWKV7LanguageModel(config, backend=args.backend, seed=recipes.RECIPE["seed"])
    best = {"val": np.inf, "step": None, "params": None}

    def keep_best(m, step, val):
        if val < best["val"]:
            best.update(val=val, step=step, params={k: v.copy() for k, v in m.params.items()})
            # written at once, so an interrupted run still leaves its best model so far
            save_folder(args.out, config, best["params"], corpus.vocab.chars, recipes.RECIPE["seq_len"],
                        extra={"trained_on": corpus.name, "best_step": str(step), "val_loss_nats_per_char": f"{val:.4f}"})

    r = {**recipes.RECIPE, "steps": args.steps, "eval_every": args.eval_every}
    curve = recipes.train_with_curve(model, corpus, steps=r["steps"], peak_lr=args.lr, batch_size=r["batch_size"],
                                     seq_len=r["seq_len"], eval_every=r["eval_every"], clip=r["clip"], seed=r["seed"],
                                     warmup_fraction=r["warmup_fraction"], final_lr_fraction=r["final_lr_fraction"],
                                     on_eval=keep_best)
    reloaded = RWKV7LanguageModel(config, best["params"], backend=args.backend)
    val = float(corpus.evaluate(reloaded))
    rwkv4 = json.loads(tc.CURVES_FILE.read_text())
    rwkv4_best = min(v for _, v in rwkv4["models"]["RWKV-4"]["val"])
    results = {"date": datetime.date.today().isoformat(), "recipe": {**r, "peak_lr": args.lr},
               "size": recipes.RWKV7_SIZE, "params": model.num_parameters(),
               "corpus": rwkv4["corpus"],
               "models": {"RWKV-7": {**{k: v for k, v in curve.items() if k != "train"},
                                     "train": [round(x, 4) for x in curve["train"]],
                                     "val": [(s, round(v, 4)) for s, v in curve["val"]]}},
               "shipped": {"best_step": best["step"], "val": best["val"], "val_reevaluated": val},
               "rwkv4_shipped_val": rwkv4_best, "rwkv4_params": rwkv4["models"]["RWKV-4"]["params"]}
    try:
        from tinyrwkv.loading import load
        from tinyrwkv.tokenizer import load_tokenizer
        results["shipped"]["samples"] = samples(load(args.out, progress=False), load_tokenizer(args.out))
    except Exception as e:           # the inference RWKV-7 may not be in this checkout yet
        print(f"(no samples: loading the folder failed: {type(e).__name__}: {e})")
    (args.out / "training_curves.json").write_text(json.dumps(results) + "\n")
    print(f"saved {args.out}: best step {best['step']}, val {best['val']:.4f} nats/char "
          f"(re-evaluated {val:.4f}); the tiny RWKV-4: {rwkv4_best:.4f}; {curve['seconds']} s")


if __name__ == "__main__":
    main()
