"""Writes tests/data/golden_rwkv.npz: seeded tiny RWKV-4 weights, tokens, and the logits that
transformers' RwkvForCausalLM computes from them (parallel mode, and RNN mode after a prompt).

    python tests/make_golden.py          # needs the parity extra (torch, transformers)

test_rwkv_golden.py checks tinyrwkv against this file without torch, so parity with transformers
is checked even where the extra is not installed. Regenerate only if the format must change.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from factories import hf_model, random_internal_params, tiny_config  # noqa: E402

OUT = HERE / "data" / "golden_rwkv.npz"
CONFIG = tiny_config(n_layer=2, n_embd=24, vocab_size=80, ffn_dim=96)
SEED = 2024


def main() -> None:
    import torch
    params = random_internal_params(CONFIG, seed=SEED)
    tokens = np.random.default_rng(SEED).integers(0, CONFIG["vocab_size"], 32)
    model = hf_model(params, CONFIG)
    with torch.no_grad():
        logits = model(torch.tensor(tokens)[None]).logits[0].numpy()              # (T, V)
        out = model(torch.tensor(tokens[:20])[None], use_cache=True)            # prompt, then RNN steps
        state, steps = out.state, []
        for t in tokens[20:]:
            out = model(torch.tensor([[int(t)]]), state=state, use_cache=True)
            state = out.state
            steps.append(out.logits[0, -1].numpy())
    arrays = {f"param/{name}": value for name, value in params.items()}
    arrays.update(tokens=tokens.astype(np.int64), logits=logits.astype(np.float32),
                  step_logits=np.array(steps, np.float32), prompt_length=np.array(20),
                  config=np.array([CONFIG[k] for k in ("n_layer", "n_embd", "vocab_size", "ffn_dim")]))
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, transformers {__import__('transformers').__version__})")


if __name__ == "__main__":
    main()
