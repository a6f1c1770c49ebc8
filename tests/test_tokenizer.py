"""Tokenizers: the real GPT-NeoX-20B tokenizer gives RWKV-4 Pile's ids and round-trips text;
the char tokenizer round-trips through JSON; load_tokenizer finds files, folders, and fails clearly."""
import pytest

from tinyrwkv.tokenizer import CharTokenizer, Tokenizer, TokenizerError, load_tokenizer

TEXTS = ["Hello my name is", "héllo wörld — ünïcödé ✓ 世界 🎉", "line one\nline two\n\n\ttabbed  spaces  ",
         "", " leading and trailing ", "emoji 👩‍👩‍👧 family and ZWJ"]


def test_neox_tokenizer_ids(neox_tokenizer_path):
    tok = load_tokenizer(neox_tokenizer_path)
    assert isinstance(tok, Tokenizer)
    assert tok.encode("Hello my name is") == [12092, 619, 1416, 310]
    assert tok.vocab_size == 50277
    assert tok.eot_id == 0
    assert tok.decode([12092, 619, 1416, 310]) == "Hello my name is"


@pytest.mark.parametrize("text", TEXTS)
def test_neox_round_trip(neox_tokenizer_path, text):
    tok = load_tokenizer(neox_tokenizer_path)
    assert tok.decode(tok.encode(text)) == text


def test_neox_prefix_can_end_inside_a_character(neox_tokenizer_path):
    tok = load_tokenizer(neox_tokenizer_path)
    ids = tok.encode("🎉")
    assert len(ids) > 1                                # one emoji, several byte-level tokens
    assert tok.decode(ids[:1]).endswith("\ufffd")      # part of a character: what streaming must hold back


def test_folder_with_tokenizer_json(neox_tokenizer_path, tmp_path):
    (tmp_path / "tokenizer.json").symlink_to(neox_tokenizer_path)
    assert load_tokenizer(tmp_path).encode("Hello") == [12092]
    assert load_tokenizer(str(tmp_path / "tokenizer.json")).vocab_size == 50277


def test_char_tokenizer_round_trip_and_json(tmp_path):
    text = "to be or not to be\nthat is the question ✓"
    tok = CharTokenizer.from_text(text, eot="\0")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.vocab_size == len(set(text)) + 1 and tok.eot_id == tok.vocab_size - 1
    tok.save(tmp_path / "chars.json")
    again = load_tokenizer(tmp_path / "chars.json")
    assert isinstance(again, CharTokenizer) and again.encode(text) == ids and again.eot_id == tok.eot_id
    assert CharTokenizer.from_json(tok.to_json()).chars == tok.chars
    (tmp_path / "dir").mkdir()
    tok.save(tmp_path / "dir" / "char_tokenizer.json")
    assert load_tokenizer(tmp_path / "dir").decode(ids) == text


def test_char_tokenizer_errors():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="id 3 is out of range"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="duplicates"):
        CharTokenizer("aa")


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match="no tokenizer in this folder"):
        load_tokenizer(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="bad.json: not a tokenizers JSON"):
        load_tokenizer(tmp_path / "bad.json")


def test_repo_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):          # what hf_hub_download raises offline with nothing cached
        raise LocalEntryNotFoundError("cannot find the requested files in the disk cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    from tinyrwkv.checkpoints import hub
    monkeypatch.setattr(hub, "hub_unreachable", lambda: None)      # the probe passes, the download fails
    with pytest.raises(TokenizerError, match="could not get tokenizer.json of 'nobody/nothing-here'.*Offline"):
        load_tokenizer("nobody/nothing-here", cache_dir=tmp_path)
