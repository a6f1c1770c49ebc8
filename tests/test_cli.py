"""The tinyrwkv command on a tiny local checkpoint + char tokenizer: info, generate (streamed and
batched), bench's machinery, and bad arguments: exit status 2 with one line on stderr."""
import subprocess
import sys

import numpy as np
import pytest

from tinyrwkv.bench import write_checkpoints
from tinyrwkv.cli import COMMANDS, main
from tinyrwkv.generation import generate
from tinyrwkv.loading import load
from tinyrwkv.tokenizer import CharTokenizer

CONFIG = dict(n_layer=2, n_embd=16, vocab_size=30, ffn_dim=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder like a hub snapshot: config.json + model.safetensors + a tokenizer."""
    root = tmp_path_factory.mktemp("cli")
    folder = write_checkpoints(root, CONFIG, want_pth=False, seed=3)["hf"]
    CharTokenizer("abcdefghijklmnopqrstuvwxyz .!").save(folder / "char_tokenizer.json")   # 29 < 30 ids
    return folder


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err                       # one clear line, no traceback
    for f in fragments:
        assert f in lines[0], lines[0]


def test_info(capsys, model_dir):
    code, out, err = run(capsys, "info", str(model_dir))
    assert code == 0
    assert "n_layer=2" in out and "n_embd=16" in out and "vocab_size=30" in out and "ffn_dim=64" in out
    assert "blocks.1.feed_forward.value.weight" in out or "blocks.1.ffn.value.weight" in out
    code, out, _ = run(capsys, "info", str(model_dir), "--no-tensors")
    assert code == 0 and "value.weight" not in out


def test_generate_streams_the_same_text_as_the_library(capsys, model_dir):
    code, out, err = run(capsys, "generate", "--model", str(model_dir), "hello", "--max-new-tokens", "12",
                         "--temperature", "0")
    assert code == 0, err
    model, tok = load(model_dir, progress=False), CharTokenizer.from_json(
        (model_dir / "char_tokenizer.json").read_text())
    expected = generate(model, tok, "hello", max_new_tokens=12, temperature=0)
    assert out == "hello" + expected + "\n"


def test_generate_batch_and_sampling_options(capsys, model_dir):
    code, out, err = run(capsys, "generate", "--model", str(model_dir / "model.safetensors"),
                         "--tokenizer", str(model_dir / "char_tokenizer.json"), "one", "two words",
                         "--max-new-tokens", "6", "--temperature", "0.9", "--top-p", "0.9", "--top-k", "5",
                         "--seed", "1", "--repetition-penalty", "1.2", "--presence-penalty", "0.1")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("one") and lines[1].startswith("two words")


@pytest.mark.parametrize("argv, fragments", [
    (["--temperature", "-1"], ["--temperature must be a finite number >= 0", "-1"]),
    (["--temperature", "nan"], ["--temperature must be a finite number"]),
    (["--temperature", "inf"], ["--temperature must be a finite number"]),
    (["--top-p", "0"], ["--top-p must be a number in (0, 1]", "0.0"]),
    (["--top-p", "1.5"], ["--top-p must be a number in (0, 1]"]),
    (["--top-k", "-2"], ["--top-k must be an integer >= 0"]),
    (["--top-k", "2.5"], ["argument --top-k: invalid int value: '2.5'"]),
    (["--max-new-tokens", "-5"], ["--max-new-tokens must be an integer >= 0", "-5"]),
    (["--repetition-penalty", "0"], ["--repetition-penalty must be a finite number > 0"]),
    (["--presence-penalty", "nan"], ["--presence-penalty must be a finite number"]),
    (["--seed", "-1"], ["--seed must be an integer in [0, 2**64)", "-1"]),
    (["--seed", str(2 ** 70)], ["--seed must be an integer in [0, 2**64)", str(2 ** 70)]),
    (["--seed", "1.5"], ["argument --seed: invalid int value: '1.5'"]),
    (["--stop", ""], ["--stop must be a non-empty string"]),
    (["--backend", "tpu"], ["--backend tpu: unknown WKV backend 'tpu'"]),
])
def test_bad_flags_exit_2_with_one_line_before_any_output(capsys, model_dir, argv, fragments):
    code, out, err = run(capsys, "generate", "--model", str(model_dir), "hi", *argv)
    assert_usage_error(code, out, err, "tinyrwkv generate: error:", *fragments)
    assert out == ""                                   # the prompt was not printed first


def test_missing_files_and_bad_arguments(capsys, model_dir, tmp_path):
    missing = str(tmp_path / "nope.pth")
    assert_usage_error(*run(capsys, "generate", "--model", missing, "--tokenizer", str(model_dir), "hi"),
                       "nope.pth")
    assert_usage_error(*run(capsys, "generate", "--model", str(model_dir), "--tokenizer", missing, "hi"),
                       "nope.pth")
    assert_usage_error(*run(capsys, "info", missing), "tinyrwkv info: error:", "nope.pth")
    assert_usage_error(*run(capsys, "generate", "--model", str(model_dir), ""), "prompt is empty")
    # argparse's own usage errors: exit 2; its message is the last line (after the usage line)
    for argv in ([], ["frobnicate"], ["generate", "hi"], ["generate", "--model", "x", "hi", "--top-k", "many"]):
        code, out, err = run(capsys, *argv)
        assert_usage_error(code, out, err, "tinyrwkv")                    # one line too
    assert run(capsys, "--help")[0] == 0


def test_download_offline_is_one_line(capsys, monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the disk cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert_usage_error(*run(capsys, "download", "RWKV/rwkv-4-169m-pile", "--cache-dir", str(tmp_path)),
                       "tinyrwkv download: error:", "RWKV/rwkv-4-169m-pile")


def test_registry_and_python_dash_m(model_dir):
    assert {"generate", "download", "info", "bench"} <= set(COMMANDS)
    proc = subprocess.run([sys.executable, "-m", "tinyrwkv.cli", "info", str(model_dir / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bench_machinery_tiny(capsys):
    """Not a speed test: the tiny benchmark runs its worker subprocess and prints a table."""
    code, out, err = run(capsys, "bench", "--tiny", "--no-peers", "--rounds", "1", "--repeats", "1",
                         "--prompt-length", "8", "--decode-tokens", "3", "--weights", "fp32,int8")
    assert code == 0, err
    for fmt in ("fp32", "int8"):
        line = next(line for line in out.splitlines() if line.startswith(f"tinyrwkv {fmt}"))
        fields = line.split()
        of_bound = next(f for f in fields if f.endswith("%"))      # of the decode bound measured in the same run
        decode, prompt = float(fields[2]), float(fields[fields.index(of_bound) + 1])
        # (the tiny model's bound is thousands of tokens/s, so its share may print as 0%)
        assert decode > 0 and prompt > 0 and np.isfinite(decode) and 0 <= float(of_bound[:-1]) <= 100
    assert "read bandwidth" in out and "GEMM" in out
    assert_usage_error(*run(capsys, "bench", "--tiny", "--weights", "fp32,int4"), "--weights", "int4")
    assert_usage_error(*run(capsys, "bench", "--tiny", "--repeats", "0"), "--repeats must be >= 1")


def test_info_knows_the_shipped_tiny_model(capsys):
    assert main(["info", "tiny", "--no-tensors"]) == 0
    out = capsys.readouterr().out
    assert "n_layer=4" in out and "parameters: 223,872" in out
