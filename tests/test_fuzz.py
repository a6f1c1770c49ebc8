"""Runs the hypothesis fuzzing of the file readers (tests/fuzz_readers.py) in a child pytest with its
address space capped and a timeout: a segfault, a runaway allocation or a hang in any reader fails
this test (with hypothesis's report of the falsifying example) instead of killing the test run.

The seed files are written here by the real writers: torch.save (a tiny RWKV-4 state dict, BlinkDL
names, bfloat16), safetensors' save_file (Hugging Face names, float32), RWKVState.save, a
CharTokenizer and an excerpt of the World vocabulary.
"""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from factories import random_internal_params, tiny_config, torch_state_dict
from hostile import ROOT

MEMORY_CAP = 3 * 2**30          # address space of the child pytest (numpy + hypothesis need ~1 GB of it)


def make_seeds(folder):
    from safetensors.numpy import save_file
    from tinyrwkv.checkpoints import to_file_layout
    from tinyrwkv.models.state import RWKVState
    from tinyrwkv.tokenizer import CharTokenizer
    config = tiny_config(n_layer=1, n_embd=4, vocab_size=8, ffn_dim=8)
    params = random_internal_params(config, seed=0)
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(folder / "tiny.safetensors"))
    torch = pytest.importorskip("torch")
    torch.save({k: v.to(torch.bfloat16) for k, v in torch_state_dict(params, "blinkdl").items()}, folder / "tiny.pth")
    state = RWKVState.zeros(1, 4)
    state.aa[...] = 0.5
    state.save(folder / "state.npz")
    CharTokenizer.from_text("hello world", eot="\0").save(folder / "char_tokenizer.json")
    from tinyrwkv.tokenizer_world import VOCAB_FILE         # the first 300 entries of the World vocabulary
    lines = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    (folder / "rwkv_vocab_small.txt").write_text("\n".join(lines[:200] + lines[-100:]) + "\n", encoding="utf-8")


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_fuzz_the_readers_in_a_capped_child(tmp_path):
    make_seeds(tmp_path)
    env = dict(os.environ, TINYRWKV_FUZZ_SEEDS=str(tmp_path), PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                               "tests/fuzz_readers.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=240, preexec_fn=_cap_memory)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the fuzzing did not finish within 240 s (a hang?): {(e.stdout or '')[-3000:]}")
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"fuzzing failed (exit status {proc.returncode}; negative = killed by a signal):\n{report}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], report
