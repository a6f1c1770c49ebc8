"""Runs BlinkDL's ``rwkv`` pip package (0.8.32, strategy "cpu fp32") on .pth files and writes its
logits to an .npz: the oracle of the RWKV-4/5.2/6/7 parity tests (tests/test_rwkv567_parity.py).

    python tests/rwkv_oracle.py OUT.npz TOKENS(comma-separated) SPLIT MODEL.pth [MODEL.pth ...]

It runs in its own process because ``rwkv.model`` reads RWKV_V7_ON when it is imported: one
process serves RWKV-4/5/6 files, another (RWKV_V7_ON=1) RWKV-7 files. Per model i it stores
  seq{i}    logits (T, V) of one forward over the whole sequence
  step{i}   logits (T, V) token by token, the state carried
  split{i}  logits (T - SPLIT, V) of the second half after a forward over tokens[:SPLIT]
"""
import os
import sys

os.environ.setdefault("RWKV_JIT_ON", "0")
os.environ.setdefault("RWKV_CUDA_ON", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def main():
    out, tokens, split = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])
    from rwkv.model import RWKV
    results = {}
    for i, path in enumerate(sys.argv[4:]):
        model = RWKV(path[:-len(".pth")], strategy="cpu fp32", verbose=False) if "RWKV_V7_ON" not in os.environ \
            else RWKV(path[:-len(".pth")], strategy="cpu fp32")
        seq, _ = model.forward(list(tokens), None, full_output=True)
        state, steps = None, []
        for t in tokens:
            logits, state = model.forward([t], state)
            steps.append(logits.float().numpy().copy())
        _, state = model.forward(list(tokens[:split]), None, full_output=True)
        second, _ = model.forward(list(tokens[split:]), state, full_output=True)
        results[f"seq{i}"] = seq.float().numpy()
        results[f"step{i}"] = np.stack(steps)
        results[f"split{i}"] = second.float().numpy()
    np.savez(out, **results)


if __name__ == "__main__":
    main()
