"""RWKV-4, 5.2, 6 and 7 against BlinkDL's ``rwkv`` pip package (0.8.32, strategy "cpu fp32").

Random weights at odd sizes are written as BlinkDL .pth files with torch.save (fp32 and bf16);
``tinyrwkv.load`` must detect each version and give the package's logits within 1e-4:
over a whole sequence in parallel mode, token by token in RNN mode, and with the sequence
split in two and the state carried. The package runs in subprocesses (tests/rwkv_oracle.py):
it reads RWKV_V7_ON when imported, so RWKV-7 needs a process of its own.

bf16 files: the package, loading a bf16 .pth of v4-v6 with "cpu fp32", applies ln0 to the bf16
embedding *before* converting to float32 and rounds the result to bf16 (its "precompute
embedding" step); that alone moves its logits by ~1e-2. So the oracle reads an fp32 twin holding
exactly the bf16 values (``round_params``), while tinyrwkv reads the bf16 file itself: what is
tested is that our bf16 reading is exact and our math is the package's.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from factories import (random_internal_params, random_rwkv567_params, rwkv567_config, tiny_config,
                       write_blinkdl_pth_any)

pytest.importorskip("torch")
pytest.importorskip("rwkv")

import tinyrwkv  # noqa: E402

TOL = 1e-4
TOKENS = [3, 17, 96, 0, 42, 42, 5, 81, 60, 7, 13]
SPLIT = 5
# (version, config): odd sizes; head sizes 32 and 64; v6/v7's ffn 3.5 C
CASES = {
    4: tiny_config(n_layer=2, n_embd=48, vocab_size=97, ffn_dim=160),
    5.2: rwkv567_config(5.2, n_embd=96, head_size=32),
    6: rwkv567_config(6, n_embd=128, head_size=64),
    7: rwkv567_config(7, n_embd=96, head_size=32),
}
DTYPES = ("float32", "bfloat16")
ORACLE = pathlib.Path(__file__).with_name("rwkv_oracle.py")


def _params(version, dtype):
    config = CASES[version]
    if version == 4:
        return random_internal_params(config, seed=11, dtype=dtype)
    return random_rwkv567_params(config, seed=int(version * 10), dtype=dtype)


@pytest.fixture(scope="session")
def parity_runs(tmp_path_factory):
    """{(version, dtype): (path, oracle logits {"seq", "step", "split"})}: two oracle processes in all."""
    folder = tmp_path_factory.mktemp("parity")
    files, ours = {}, {}
    for version in CASES:
        for dtype in DTYPES:
            params = _params(version, dtype)                          # already rounded to dtype
            ours[(version, dtype)] = write_blinkdl_pth_any(folder / f"v{version}-{dtype}.pth", params, dtype=dtype)
            files[(version, dtype)] = write_blinkdl_pth_any(folder / f"v{version}-{dtype}-as-fp32.pth", params)
    runs = {}
    for v7 in (False, True):
        keys = [k for k in files if (k[0] == 7) == v7]
        out = folder / f"oracle{int(v7)}.npz"
        env = {k: v for k, v in os.environ.items() if k != "RWKV_V7_ON"}
        env.update({"OMP_NUM_THREADS": "1", **({"RWKV_V7_ON": "1"} if v7 else {})})
        done = subprocess.run([sys.executable, str(ORACLE), str(out), ",".join(map(str, TOKENS)), str(SPLIT)]
                              + [str(files[k]) for k in keys], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(out) as data:
            for i, k in enumerate(keys):
                runs[k] = (ours[k], {name: data[f"{name}{i}"] for name in ("seq", "step", "split")})
    return runs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", list(CASES))
def test_logits_match_the_rwkv_package(parity_runs, version, dtype):
    path, oracle = parity_runs[(version, dtype)]
    model = tinyrwkv.load(path, backend="numba", progress=False)
    assert model.config.version == version
    if version != 4:
        assert model.config.head_size == CASES[version]["head_size"]
    ours, state = model.forward(TOKENS)                              # (T, V) in parallel mode
    diffs = {"seq": np.abs(ours - oracle["seq"]).max()}
    state, steps = None, []
    for t in TOKENS:                                                  # RNN mode
        logits, state = model.step(t, state)
        steps.append(logits)
    diffs["step"] = np.abs(np.stack(steps) - oracle["step"]).max()
    _, state = model.forward(TOKENS[:SPLIT])                          # split, state carried
    second, _ = model.forward(TOKENS[SPLIT:], state)
    diffs["split"] = np.abs(second - oracle["split"]).max()
    print(f"RWKV-{version} {dtype}: max |logit diff| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) < TOL, diffs
    assert np.abs(oracle["seq"]).max() > 1.0                         # the logits are not all ~0
