"""A new user's first hour with the command: what a model argument means (path, missing path, repo
id), offline in one message naming every missing piece, defaults in every --help, a malformed repo
id said before any network, bench naming the extra to install, only our error types becoming exit 2,
and a short repr for RNN states."""
import argparse

import numpy as np
import pytest

from tinyrwkv import cli
from tinyrwkv.checkpoints import hub
from tinyrwkv.cli import COMMANDS, build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, out, err, *fragments):
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the Hub fails the test; the probe says 'offline' at once."""
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def forbidden(*args, **kwargs):
        raise AssertionError("the Hub was contacted")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", forbidden)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", forbidden)
    monkeypatch.setattr(hub, "hub_unreachable", lambda timeout=None: "test: no network")


def test_what_a_model_argument_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels").mkdir()
    assert hub.classify(str(tmp_path)) == "path"
    for local in ("mymodels/tiny", "./tiny", "~/nowhere-tinyrwkv", "model.pth", "x.safetensors", "a/b/c",
                  "/abs/model"):
        assert hub.classify(local) == "missing", local             # looks local: never sent to the Hub
    assert hub.classify("RWKV/rwkv-4-169m-pile") == "repo"
    assert hub.classify("othermodels/tiny") == "repo"              # no such folder here: shaped like owner/name
    for bad in ("not a repo", "tiny-typo", "a--b/c", "a/..b", "owner/name."):
        assert hub.classify(bad) == "unknown", bad


def test_a_missing_local_model_is_said_at_once(capsys, tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels").mkdir()
    for model in ("mymodels/tiny", "./missing", "missing.pth", "not a repo"):
        line = one_line_error(*run(capsys, "generate", "--model", model, "hi"), "tinyrwkv generate: error:",
                              f"{model}: no such file or folder")
        assert "tokenizer" not in line                             # the model is resolved first
    one_line_error(*run(capsys, "info", "mymodels/tiny"), "no such file or folder")


def test_offline_repo_id_names_every_missing_piece_and_the_fix(capsys, no_network, tmp_path):
    repo = "nobody/not-downloaded-tinyrwkv"
    line = one_line_error(*run(capsys, "generate", "--model", repo, "hi"),
                          repo, "missing the weights", "and the tokenizer (tokenizer.json)",
                          "cannot be reached (test: no network)", f"tinyrwkv download {repo}", "--tokenizer")
    assert line.count("tinyrwkv download") == 1
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    line = one_line_error(*run(capsys, "generate", "--model", repo, "--tokenizer", str(tok), "hi"),
                          "missing the weights", f"tinyrwkv download {repo}")
    assert "tokenizer.json)" not in line                         # --tokenizer given: not missing
    one_line_error(*run(capsys, "info", repo), "missing the weights", f"tinyrwkv download {repo}")


def test_download_checks_the_repo_id_before_any_network(capsys, no_network):
    for bad in ("not a repo", "a/b/c", "owner/", "x.safetensors"):
        one_line_error(*run(capsys, "download", bad), "tinyrwkv download: error:", "is not a Hugging Face repo id",
                       "owner/name")
    one_line_error(*run(capsys, "download", "nobody/not-downloaded-tinyrwkv"),
                   "could not download nobody/not-downloaded-tinyrwkv", "cannot be reached")
    if "rwkv7-pile-168m" in hub.NAMED_FILES and hub.named_file("rwkv7-pile-168m") is None:
        one_line_error(*run(capsys, "download", "rwkv7-pile-168m"), "could not download rwkv7-pile-168m",
                       "cannot be reached")


def test_the_probe_is_bounded_and_honours_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")      # the discard port: refused or silent
    why = hub.hub_unreachable(timeout=0.5)
    assert why is not None and "127.0.0.1:9" in why


def _walk_parsers():
    parser = build_parser()
    yield "tinyrwkv", parser
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    yield from sub.choices.items()


def test_every_help_shows_the_defaults():
    for name, parser in _walk_parsers():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            if action.default is not None and action.default is not False:   # shown, in its words or argparse's
                shown = parser._get_formatter()._get_help_string(action)
                assert "default" in shown, (name, action.option_strings)
        if name == "generate":
            flat = " ".join(text.split())
            for shown in ("(default: 100)", "(default: 1.0)", "(default: auto)", "no limit) (default: 0)",
                          "(0 = none) (default: 0.0)"):
                assert shown in flat, shown


def test_bench_names_the_extra_to_install(capsys, monkeypatch):
    from tinyrwkv import bench
    monkeypatch.setattr(bench, "_available", lambda name: name == "tinyrwkv")
    code, out, err = run(capsys, "bench", "--tiny", "--only", "rwkv", "--only", "transformers", "--rounds", "1")
    assert code == 0, err
    assert 'rwkv' in out and 'not installed: pip install -e ".[bench]"' in out and "pip install torch rwkv" in out
    one_line_error(*run(capsys, "bench", "--tiny", "--workdir", "/no/such/folder"), "--workdir /no/such/folder")


def test_only_our_errors_become_exit_2(capsys, monkeypatch, model_dir=None):
    def buggy(args):
        raise ZeroDivisionError("a bug in tinyrwkv")
    monkeypatch.setitem(COMMANDS, "info", cli.Command("inspect", COMMANDS["info"].add_arguments, buggy))
    with pytest.raises(ZeroDivisionError):                       # a bug keeps its traceback
        main(["info", "tiny"])

    def fixable(args):
        from tinyrwkv.errors import StateFileError
        raise StateFileError("state.npz: truncated")
    monkeypatch.setitem(COMMANDS, "info", cli.Command("inspect", COMMANDS["info"].add_arguments, fixable))
    one_line_error(*run(capsys, "info", "tiny"), "tinyrwkv info: error: state.npz: truncated")


def test_rwkv_state_repr_is_short():
    from tinyrwkv.models.rwkv import RWKVState
    state = RWKVState.zeros(12, 768, batch_size=2)
    text = repr(state)
    assert text == ("RWKVState(batch=2, float32, att_x(12, 2, 768), aa(12, 2, 768), bb(12, 2, 768), "
                    "pp(12, 2, 768), ffn_x(12, 2, 768); 46,080 floats per sequence, 360.0 KiB)")
    assert len(repr(RWKVState.zeros(24, 2048, 8))) < 200 and "array" not in text
    assert np.isfinite(state.pp).all()
