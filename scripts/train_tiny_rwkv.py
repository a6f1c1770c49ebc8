"""Trains the tiny RWKV-4 that ships inside tinyrwkv, and the GPT and LSTM it is compared with.

    python scripts/train_tiny_rwkv.py                          # the shipped run (CPU minutes)
    python scripts/train_tiny_rwkv.py --no-compare --steps 300 --out /tmp/tiny   # RWKV only, quick

What it does:

1. Trains RWKV-4 (4 layers, width 64, ffn 256: 0.22 M parameters, RWKV-4's own initialisation)
   char-level on the shipped small_tales corpus with the recipe in
   ``tinyrwkv.recipes.RECIPE`` (Adam, warm-up + cosine lr, clip 1.0), and keeps
   the parameters of the evaluation with the lowest validation loss (the corpus is small - 30 k
   training characters - so later steps overfit).
2. Writes them as a Hugging Face-style folder that ``tinyrwkv.load`` reads (and transformers'
   ``RwkvForCausalLM.from_pretrained`` too):
       config.json          transformers' RwkvConfig fields
       model.safetensors    float32, Hugging Face tensor names (rwkv.blocks.0.attention.key.weight ...)
       tokenizer.json       a ``tokenizers`` character-level tokenizer (WordLevel over single
                            characters, Fuse decoder): ``tinyrwkv.load_tokenizer`` reads it through
                            the same code path as the 20B tokenizer, and ids = the corpus's CharVocab ids
3. Unless ``--no-compare``: trains a GPT and an LSTM of the same parameter count with the same recipe
   and saves all three loss curves as ``training_curves.json`` beside the model (the figures command
   draws them from there), plus a greedy sample from the shipped model.

Tip on a busy machine: ``OPENBLAS_NUM_THREADS=1`` (OpenBLAS threads that spin-wait for busy cores
made these small matrix products ~5x slower in our runs).
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

from tinyrwkv.checkpoints.naming import to_file_layout  # noqa: E402
from tinyrwkv.data.corpus import load_corpus  # noqa: E402
from tinyrwkv import recipes  # noqa: E402
from tinyrwkv.experiments import training_curves as tc  # noqa: E402
from tinyrwkv.models.rwkv import RWKV, RWKVConfig  # noqa: E402

SAMPLE_PROMPT = "Once upon a time"


def samples(model, tokenizer, prompt: str = SAMPLE_PROMPT) -> dict:
    """Two continuations of ``prompt``: greedy (char models fall into loops) and sampled at
    temperature 0.7 with seed 0 (reads like the tales). Both are deterministic."""
    from tinyrwkv.generation import generate
    return {"prompt": prompt,
            "greedy": generate(model, tokenizer, prompt, max_new_tokens=200, temperature=0),
            "sampled_t0.7_seed0": generate(model, tokenizer, prompt, max_new_tokens=300, temperature=0.7, seed=0)}


def char_tokenizer_json(chars) -> str:
    """A ``tokenizers`` JSON for one token per character, ids in the order of ``chars``.

    Split every character off ("[\\s\\S]" matches newlines too), look it up in a WordLevel vocabulary,
    and join the pieces back with the Fuse decoder (the default decoder would put spaces between them).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab={c: i for i, c in enumerate(chars)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return tokenizer.to_str(pretty=True)


def hf_config(config: RWKVConfig, context_length: int) -> dict:
    """config.json as transformers' RwkvConfig writes it (rescale_every 0: the weights are as trained)."""
    return {"architectures": ["RwkvForCausalLM"], "model_type": "rwkv",
            "vocab_size": config.vocab_size, "hidden_size": config.n_embd, "num_hidden_layers": config.n_layer,
            "attention_hidden_size": config.n_embd, "intermediate_size": config.ffn_dim,
            "context_length": context_length, "layer_norm_epsilon": config.layer_norm_epsilon,
            "rescale_every": 0, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0,
            "use_cache": True}


def save_pretrained(directory, config: RWKVConfig, params: dict, chars, context_length: int, extra=None):
    """Writes config.json, model.safetensors (float32, HF names) and tokenizer.json into ``directory``."""
    from safetensors.numpy import save_file

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(a, np.float32) for name, a in to_file_layout(params, "hf").items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt", **(extra or {})})
    (directory / "config.json").write_text(json.dumps(hf_config(config, context_length), indent=2) + "\n")
    (directory / "tokenizer.json").write_text(char_tokenizer_json(chars))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=tc.TINY_RWKV_DIR, help="model folder to write")
    parser.add_argument("--steps", type=int, default=recipes.RECIPE["steps"])
    parser.add_argument("--eval-every", type=int, default=recipes.RECIPE["eval_every"])
    parser.add_argument("--no-compare", action="store_true", help="train only the RWKV (no GPT / LSTM curves)")
    parser.add_argument("--figure", type=pathlib.Path, default=None, help="also draw the curves to this .png")
    args = parser.parse_args(argv)
    if args.no_compare and args.out.resolve() == tc.TINY_RWKV_DIR.resolve():
        parser.error("--no-compare would leave the shipped training_curves.json out of step with the "
                     "shipped model: give another --out")

    corpus = load_corpus()
    best = {"val": np.inf, "step": None, "params": None}

    def keep_best(model, step, val):
        if val < best["val"]:
            best.update(val=val, step=step, params={k: v.copy() for k, v in model.params.items()})

    recipe = {"steps": args.steps, "eval_every": args.eval_every}
    if args.no_compare:
        rwkv = recipes.tiny_rwkv(corpus.vocab.size, recipes.RECIPE["seed"])
        r = {**recipes.RECIPE, **recipe}
        curve = recipes.train_with_curve(rwkv, corpus, steps=r["steps"], peak_lr=recipes.PEAK_LR["RWKV-4"],
                                    batch_size=r["batch_size"], seq_len=r["seq_len"], eval_every=r["eval_every"],
                                    clip=r["clip"], seed=r["seed"], warmup_fraction=r["warmup_fraction"],
                                    final_lr_fraction=r["final_lr_fraction"], on_eval=keep_best)
        results = None
        print(json.dumps({"RWKV-4": {k: v for k, v in curve.items() if k != "train"}}, indent=1))
    else:
        results = tc.run_comparison(corpus, recipe, on_rwkv_eval=keep_best)
        print(json.dumps(tc.summarize(results), indent=1))

    config = RWKVConfig(vocab_size=corpus.vocab.size, **recipes.RWKV_SIZE)
    save_pretrained(args.out, config, best["params"], corpus.vocab.chars, recipes.RECIPE["seq_len"],
                    extra={"trained_on": corpus.name, "best_step": str(best["step"]),
                           "val_loss_nats_per_char": f"{best['val']:.4f}"})

    from tinyrwkv.loading import load
    from tinyrwkv.tokenizer import load_tokenizer
    model, tokenizer = load(args.out, progress=False), load_tokenizer(args.out)
    assert isinstance(model, RWKV)
    val = float(corpus.evaluate(model))
    texts = samples(model, tokenizer)
    print(f"saved {args.out}: best step {best['step']}, val {best['val']:.4f} (reloaded: {val:.4f}) nats/char, "
          f"bigram {corpus.bigram_cross_entropy():.4f}")
    for kind in ("greedy", "sampled_t0.7_seed0"):
        print(f"--- {kind} ---\n{texts['prompt']}{texts[kind]}")
    if results is not None:
        results["date"] = datetime.date.today().isoformat()
        results["shipped"] = {"best_step": best["step"], "val": best["val"], "samples": texts}
        for curve in results["models"].values():                      # 4 decimals keep the file small
            curve["train"] = [round(x, 4) for x in curve["train"]]
            curve["val"] = [(s, round(v, 4)) for s, v in curve["val"]]
        (args.out / "training_curves.json").write_text(json.dumps(results) + "\n")
        if args.figure:
            tc.plot_curves(results, args.figure, note=f"scripts/train_tiny_rwkv.py, {results['date']}")


if __name__ == "__main__":
    main()
