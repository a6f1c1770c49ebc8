"""The RWKV World tokenizer against the reference TRIE_TOKENIZER of the rwkv pip package."""
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyrwkv.tokenizer import load_tokenizer
from tinyrwkv.tokenizer_world import VOCAB_FILE, WorldTokenizer

rwkv = pytest.importorskip("rwkv")
from rwkv.rwkv_tokenizer import TRIE_TOKENIZER  # noqa: E402

REFERENCE_VOCAB = os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt")


@pytest.fixture(scope="module")
def ours():
    return load_tokenizer("world")


@pytest.fixture(scope="module")
def ref():
    return TRIE_TOKENIZER(REFERENCE_VOCAB)


def test_shipped_vocab_is_the_reference_file():
    with open(REFERENCE_VOCAB, "rb") as a, open(VOCAB_FILE, "rb") as b:
        assert a.read() == b.read()


TEXTS = ["", "Hello, world!", "  leading spaces\n\n\ttabs\r\n", "The quick brown fox " * 20,
         "Ünïcödé façade naïve café", "日本語のテキストと中文文本", "Привет, мир", "emoji 🌍🚀👩‍👩‍👧 done",
         "def f(x):\n    return x ** 2  # comment\n", "\x00\x01 control \x7f", "a" * 300, "🌍" * 40,
         "mixed Ωmega and ∑ math ≤ ≥ ≠", "User: hi\n\nAssistant: hello"]


@pytest.mark.parametrize("text", TEXTS)
def test_same_ids_as_the_reference(ours, ref, text):
    ids = ours.encode(text)
    assert ids == ref.encode(text)
    assert ours.decode(ids) == text == ref.decode(ids)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_random_text_agrees(ours, ref, text):
    ids = ours.encode(text)
    assert ids == ref.encode(text) and ours.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 65529), max_size=8))
def test_decode_of_any_ids_incl_broken_utf8(ours, ref, ids):
    """Ids may cut a character: the bytes always agree with the reference; the text replaces only
    the broken bytes with U+FFFD (the reference returns one U+FFFD for the whole text then)."""
    raw = ours.decode_bytes(ids)
    assert raw == ref.decodeBytes(ids)
    assert ours.decode(ids) == raw.decode("utf-8", errors="replace")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert ref.decode(ids) == "\ufffd"
    else:
        assert ours.decode(ids) == ref.decode(ids)


def test_end_of_text_bad_ids_and_bad_vocab(ours, tmp_path):
    assert ours.eot_id == 0 and ours.vocab_size == 65536 and ours.decode([0]) == ""
    with pytest.raises(ValueError, match="token id 70000 is out of range"):
        ours.decode([70000])
    bad = tmp_path / "rwkv_vocab_bad.txt"
    bad.write_text("1 '\\x00' 1\n2 __import__('os') 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        WorldTokenizer(bad)
