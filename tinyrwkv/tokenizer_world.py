"""The RWKV "World" tokenizer (``rwkv_vocab_v20230424``): greedy longest match over bytes.

RWKV-5/6/7 "World" models do not use a BPE merge table. Their vocabulary is a list of 65529 byte
strings (every single byte among them, so any input can be encoded), and text is cut greedily:

    encode(text):  b = text as UTF-8;  while b: take the LONGEST vocabulary entry that b starts
                   with, emit its id, and continue after it
    decode(ids):   concatenate the entries' bytes, then decode UTF-8

A byte trie makes "the longest entry b starts with" one walk down from the root: follow b's bytes
while the trie has a child for them, remembering the last node that ends an entry. This is the
algorithm of BlinkDL's reference ``TRIE_TOKENIZER`` (``rwkv/rwkv_tokenizer.py``); the tests check
that both give the same ids on varied text, non-ASCII and emoji included.

Id 0 is the end-of-text token (it has no bytes). An id may end in the middle of a UTF-8 character
(entries are bytes); ``decode`` then shows U+FFFD for the broken bytes only, as Hugging Face
tokenizers do, so streaming (``generation.TextStream``) waits for the rest of the character. (The
reference returns a single U+FFFD for the whole text in that case.)

The vocabulary file ships in ``tinyrwkv/data`` (from the ``rwkv`` package, Apache-2.0: see
``data/NOTICE_rwkv_vocab.txt``).
"""
from __future__ import annotations

import ast
import os
import pathlib
from typing import Iterable, List, Optional

VOCAB_FILE = pathlib.Path(__file__).with_name("data") / "rwkv_vocab_v20230424.txt"
END_OF_TEXT = 0


class WorldTokenizer:
    """Greedy longest-match tokenizer over bytes. ``vocab_size`` 65536, ``eot_id`` 0.

        tok = WorldTokenizer()                  # or load_tokenizer("world")
        ids = tok.encode("Hello 世界 🌍")        # list of ints
        tok.decode(ids) == "Hello 世界 🌍"
    """

    def __init__(self, path=None):
        self.path = pathlib.Path(os.fspath(path)) if path is not None else VOCAB_FILE
        self.tokens: List[bytes] = [b""] * 65536          # id -> bytes (id 0: end of text)
        self.root: dict = {}                               # byte trie: {byte: child}; key None: the id ending here
        for line_no, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                first, last = line.index(" "), line.rindex(" ")
                token_id, literal, length = int(line[:first]), ast.literal_eval(line[first:last].strip()), \
                    int(line[last:])
                token = literal.encode("utf-8") if isinstance(literal, str) else literal
                if not isinstance(token, bytes) or len(token) != length or not 0 < token_id < 65536:
                    raise ValueError("entry does not match its length or id range")
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"{self.path}: line {line_no} is not '<id> <literal> <length>': {e}") from None
            self.tokens[token_id] = token
            node = self.root
            for byte in token:
                node = node.setdefault(byte, {})
            node[None] = token_id
        self.vocab_size = len(self.tokens)
        self.eot_id = END_OF_TEXT

    def encode_bytes(self, data: bytes) -> List[int]:
        """The ids of ``data``: at each position the longest vocabulary entry that starts there."""
        ids, i, n = [], 0, len(data)
        while i < n:
            node, j, best, best_end = self.root, i, None, i
            while j < n and data[j] in node:               # walk down while the trie has this byte
                node = node[data[j]]
                j += 1
                if None in node:
                    best, best_end = node[None], j         # the longest entry so far
            if best is None:                               # cannot happen: every byte is an entry
                raise ValueError(f"byte {data[i]} at {i} is not in the vocabulary {self.path}")
            ids.append(best)
            i = best_end
        return ids

    def encode(self, text: str) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"WorldTokenizer.encode takes a str, got {type(text).__name__}")
        return self.encode_bytes(text.encode("utf-8"))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined (the end-of-text id 0 adds nothing). ValueError names a bad id."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is out of range [0, {self.vocab_size})")
            out.append(self.tokens[i])
        return b"".join(out)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 (half a character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self):
        return f"WorldTokenizer({self.path.name}, vocab_size={self.vocab_size})"


_CACHE: dict = {}


def world_tokenizer(path: Optional[os.PathLike] = None) -> WorldTokenizer:
    """The World tokenizer (built once per vocabulary file and cached: building takes ~1 s)."""
    key = str(path or VOCAB_FILE)
    if key not in _CACHE:
        _CACHE[key] = WorldTokenizer(path)
    return _CACHE[key]
