"""tinyrwkv.compare and `tinyrwkv compare`: the state counted from the state objects equals each model's
own state_size; teacher-forced serial losses equal the parallel forward's; the greedy continuation is
tinyrwkv.generate's; the CLI prints the table (exit 0) and rejects bad arguments with one line (exit 2)."""
import json

import numpy as np
import pytest
from factories import random_internal_params, tiny_config

import tinyrwkv
from tinyrwkv import cli, compare
from tinyrwkv.checkpoints.naming import to_file_layout
from tinyrwkv.data.corpus import load_corpus
from tinyrwkv.models.lstm import LSTMLanguageModel
from tinyrwkv.models.transformer import GPT
from tinyrwkv.nn import functional as F
from tinyrwkv.tokenizer import SHIPPED_MODELS, CharTokenizer


def write_folder(folder, vocab_chars=None, vocab_size=None, n_layer=2, n_embd=16):
    """A small random RWKV-4 checkpoint folder (config.json, model.safetensors, tokenizer.json)."""
    from safetensors.numpy import save_file

    chars = list(vocab_chars) if vocab_chars else [chr(0x100 + i) for i in range(vocab_size)]
    config = tiny_config(n_layer=n_layer, n_embd=n_embd, vocab_size=len(chars))
    folder.mkdir(parents=True, exist_ok=True)
    params = random_internal_params(config, seed=3)
    save_file({k: np.ascontiguousarray(v) for k, v in to_file_layout(params, "hf").items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden_size": n_embd, "num_hidden_layers": n_layer,
                                                    "vocab_size": len(chars), "intermediate_size": 4 * n_embd}))
    CharTokenizer(chars).save(folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def char_folder(tmp_path_factory):
    """Reads small_tales' char ids, like the shipped tiny model: the peers get trained."""
    return write_folder(tmp_path_factory.mktemp("char_rwkv"), vocab_chars=load_corpus().vocab.chars)


@pytest.fixture(scope="module")
def other_folder(tmp_path_factory):
    """Another vocabulary (the tales' characters and one more): the peers stay untrained."""
    return write_folder(tmp_path_factory.mktemp("other_rwkv"), vocab_chars=load_corpus().vocab.chars + ["\u0101"])


def test_count_floats_equals_every_models_state_size(char_folder):
    rwkv = tinyrwkv.load(char_folder, progress=False)
    rng = np.random.default_rng(0)
    models = [rwkv, GPT(61, dim=16, n_heads=2, n_layers=2, rng=rng),
              LSTMLanguageModel(61, hidden_size=12, num_layers=2, rng=rng)]
    for model in models:
        stepper = compare.Stepper("m", model)
        for t in range(1, 6):
            stepper.step(t)
            assert compare.count_floats(stepper.state) == model.state_size(t), (type(model).__name__, t)


def test_stream_losses_equal_the_parallel_forward(char_folder):
    rwkv = tinyrwkv.load(char_folder, progress=False)
    ids = np.arange(1, 25) % 61
    run = compare.stream(compare.Stepper("RWKV-4", rwkv), ids)
    logits, _ = rwkv.forward(ids)                                        # (T, V)
    want = -F.log_softmax(logits.astype(np.float64))[np.arange(len(ids) - 1), ids[1:]]
    np.testing.assert_allclose(run["loss"][:-1], want, atol=2e-4)
    assert np.isnan(run["loss"][-1]) and np.all(run["ms"] > 0)
    assert np.all(run["floats"] == rwkv.state_size())


def test_greedy_continuation_is_generate_at_temperature_0(char_folder):
    rwkv = tinyrwkv.load(char_folder, progress=False)
    tok = tinyrwkv.load_tokenizer(char_folder)
    new = compare.greedy_continuation(compare.Stepper("RWKV-4", rwkv), tok.encode("The fox "), 12)
    assert tok.decode(new) == tinyrwkv.generate(rwkv, tok, "The fox ", max_new_tokens=12, temperature=0)


def test_compare_trains_peers_for_a_tales_model_and_builds_the_table(char_folder, tmp_path):
    result = compare.compare(str(char_folder), prompt="The fox ", length=70, new_tokens=5, train_steps=3)
    assert set(result.runs) == {"RWKV-4", "RWKV-7", "GPT + KV cache", "LSTM"}
    assert result.info["tiny"] and "trained 3 steps" in result.steppers["LSTM"].note
    assert "the tiny RWKV-7" in result.steppers["RWKV-7"].note                      # the tales' RWKV-7 column
    assert rows_of_rwkv7_are_flat(result, 4 * (2 * 64 + 4 * 16 * 16))
    rows = result.rows()
    assert [r["tokens"] for r in rows] == [1, 16, 64, 70]
    gpt = result.steppers["GPT + KV cache"].model
    assert rows[-1]["GPT + KV cache"][0] == 2 * gpt.n_layers * 70 * gpt.dim      # the KV cache grows with t
    assert rows[0]["RWKV-4"][0] == rows[-1]["RWKV-4"][0] == 5 * 2 * 16          # RWKV's state does not
    assert abs(result.steppers["GPT + KV cache"].num_parameters() - result.steppers["RWKV-4"].num_parameters()) \
        < 0.02 * result.steppers["RWKV-4"].num_parameters()                    # matched sizes
    assert all(len(text) == 5 for text in result.outputs.values())
    fig = result.plot(path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000 and len(fig.axes) == 3


def rows_of_rwkv7_are_flat(result, floats):
    return all(row["RWKV-7"][0] == floats for row in result.rows())


def test_other_vocabularies_get_an_untrained_rwkv7_of_the_same_shape(other_folder):
    result = compare.compare(str(other_folder), prompt="The fox ", length=6, new_tokens=2, peers=["rwkv7"])
    rwkv7 = result.steppers["RWKV-7"]
    assert "untrained" in rwkv7.note and rwkv7.model.config.version == 7
    assert (rwkv7.model.config.n_layer, rwkv7.model.config.n_embd) == (2, 16)
    assert rows_of_rwkv7_are_flat(result, rwkv7.model.state_size())


def test_other_vocabularies_get_untrained_peers_of_the_same_shape(other_folder):
    result = compare.compare(str(other_folder), prompt="The fox ", length=8, new_tokens=2, peers=["gpt"])
    gpt = result.steppers["GPT + KV cache"]
    assert not result.info["tiny"] and set(result.runs) == {"RWKV-4", "GPT + KV cache"}
    assert "untrained" in gpt.note and (gpt.model.dim, gpt.model.n_layers) == (16, 2)
    assert "untrained" in result.table()


def test_a_tokenizer_that_cannot_spell_the_tales_reads_the_prompt_repeated(tmp_path):
    tok = CharTokenizer(["a", "b", "c"])
    np.testing.assert_array_equal(compare.sequence_ids(tok, "abc", 7), [0, 1, 2, 0, 1, 2, 0])
    ids = compare.sequence_ids(tinyrwkv.load_tokenizer(write_folder(tmp_path / "m", vocab_size=4)), "\u0100", 3)
    np.testing.assert_array_equal(ids, [0, 0, 0])


def test_cli_prints_the_table(char_folder, capsys, tmp_path):
    figure = tmp_path / "compare.png"
    code = cli.main(["compare", "The fox ", "--model", str(char_folder), "--length", "20", "--new-tokens", "3",
                     "--train-steps", "2", "--figure", str(figure)])
    out = capsys.readouterr().out
    assert code == 0
    for expected in ("tokens seen", "RWKV-4", "RWKV-7", "GPT + KV cache", "LSTM", "state floats", "ms/tok",
                     "Greedy continuations of 'The fox '"):
        assert expected in out, expected
    assert figure.is_file()


@pytest.mark.parametrize("argv, message", [
    (["--length", "1"], "--length must be >= 2"),
    (["--new-tokens", "-1"], "--new-tokens must be >= 0"),
    (["--train-steps", "-5"], "--train-steps must be >= 0"),
    (["--peers", "gpt,rnn"], "unknown peer(s) ['rnn']"),
    (["--peers", ","], "--peers is empty"),
    (["--figure", "/no/such/folder/x.png"], "--figure: folder"),
    (["--length", "ten"], "invalid int value"),
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys, char_folder):
    code = cli.main(["compare", "--model", str(char_folder)] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    if "invalid int" not in message:                   # argparse prints its usage line first
        assert len(err.splitlines()) == 1, err


def test_cli_missing_model_exits_2(capsys, tmp_path):
    code = cli.main(["compare", "--model", str(tmp_path / "nothing_here"), "--length", "4"])
    assert code == 2 and "nothing_here" in capsys.readouterr().err


@pytest.mark.skipif(not (SHIPPED_MODELS["tiny"] / "model.safetensors").is_file(),
                    reason="the tiny shipped model is not in this checkout yet")
def test_cli_with_the_shipped_tiny_model(capsys):
    code = cli.main(["compare", "--length", "32", "--new-tokens", "8", "--train-steps", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "tiny shipped RWKV-4" in out and "'The fox " in out


def test_the_shipped_peers_are_trained_and_load_through_the_checked_reader():
    """The GPT and LSTM shipped for the tiny model (scripts/train_compare_peers.py) load without
    training, have the RWKV's size, and predict the held-out tales far better than chance (ln 61 = 4.1)."""
    assert all(path.is_file() for path in compare.PEER_FILES.values()), compare.PEER_FILES
    rwkv, tok = tinyrwkv.load("tiny", progress=False), tinyrwkv.load_tokenizer("tiny")
    peers = compare.build_peers(rwkv, trainable=True)                 # train_steps=None: the shipped ones
    ids = compare.sequence_ids(tok, "The fox ", 96)
    for name, stepper in peers.items():
        assert stepper.note.startswith("shipped, trained offline"), stepper.note
        assert abs(stepper.num_parameters() - rwkv.num_parameters()) < 0.01 * rwkv.num_parameters()
        assert np.nanmean(compare.stream(stepper, ids)["loss"]) < 2.6, name
    # a peer of another size does not take the shipped weights (it would train instead)
    assert compare.shipped_peer("gpt", GPT(61, dim=16, n_heads=2, n_layers=2)) is None
