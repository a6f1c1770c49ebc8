"""Tokenizers: text <-> token ids.

Two kinds, one interface (``encode(str) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
``eot_id``):

* ``Tokenizer``: a Hugging Face ``tokenizers`` file (tokenizer.json). RWKV-4 Pile uses GPT-NeoX-20B's
  byte-level BPE (50277 ids, "<|endoftext|>" = 0): "Hello my name is" -> [12092, 619, 1416, 310].
  Byte-level means one character may span several tokens ("🎉" is two), so decoding a prefix of
  the ids can end in half a character, shown as U+FFFD; ``generation`` streams only stable text.
* ``CharTokenizer``: one id per character, for the tiny models trained in the lessons. It saves
  to a small JSON file that ``load_tokenizer`` recognises.

``load_tokenizer(source)`` takes a tokenizer.json / 20B_tokenizer.json path, a char tokenizer's
JSON, a folder holding tokenizer.json, a Hugging Face repo id (downloaded once, then cached), or the
name of a model shipped in the package ("tiny", see ``SHIPPED_MODELS``).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable, Optional, Sequence

from .errors import ParameterError, TinyRWKVError

TOKENIZER_FILES = ("tokenizer.json", "20B_tokenizer.json", "char_tokenizer.json")
# Models shipped inside the package, by short name: folders with config.json, model.safetensors and
# tokenizer.json, so ``load(name)`` and ``load_tokenizer(name)`` work offline.
SHIPPED_MODELS = {"tiny": pathlib.Path(__file__).resolve().parent / "data" / "tiny_rwkv",
                  "tiny7": pathlib.Path(__file__).resolve().parent / "data" / "tiny_rwkv7"}
EOT_TOKENS = ("<|endoftext|>", "</s>", "<eos>")


def resolve_shipped(source):
    """The folder of a shipped model when ``source`` names one ("tiny", "tiny7"), else ``source`` unchanged."""
    return SHIPPED_MODELS[source] if isinstance(source, str) and source in SHIPPED_MODELS else source

CHAR_TOKENIZER_TYPE = "tinyrwkv.CharTokenizer"


class TokenizerError(TinyRWKVError, ValueError):
    """A tokenizer cannot be loaded; the message names the path or repo."""


def _as_id_list(ids) -> list:
    """ids (list, tuple or integer array) -> list of Python ints."""
    return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]


class Tokenizer:
    """A ``tokenizers`` tokenizer (byte-level BPE for RWKV-4 Pile) with the tinyrwkv interface."""

    def __init__(self, hf_tokenizer, source: str = ""):
        self.hf = hf_tokenizer
        self.source = source
        self.vocab_size: int = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        self.eot_id: Optional[int] = next((i for t in EOT_TOKENS
                                           if (i := hf_tokenizer.token_to_id(t)) is not None), None)

    @classmethod
    def from_file(cls, path) -> "Tokenizer":
        from tokenizers import Tokenizer as HFTokenizer
        try:
            return cls(HFTokenizer.from_file(os.fspath(path)), str(path))
        except Exception as e:     # tokenizers raises a bare Exception on a bad file
            raise TokenizerError(f"{path}: not a tokenizers JSON file ({e})") from None

    def encode(self, text: str) -> list:
        """text -> token ids (no special tokens added)."""
        if not isinstance(text, str):
            raise ParameterError(f"encode expects a str, got {type(text).__name__}")
        try:
            return self.hf.encode(text, add_special_tokens=False).ids
        except Exception as e:     # e.g. a character-level vocabulary without the character
            missing = next((c for c in text if self.hf.token_to_id(c) is None), None)
            what = f": character {missing!r} is not in its vocabulary" if missing is not None else ""
            raise ParameterError(f"Tokenizer {self.source}: cannot encode the text{what} ({e})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """token ids -> text. A prefix that ends inside a multi-byte character ends in U+FFFD."""
        return self.hf.decode(_as_id_list(ids), skip_special_tokens=False)

    def __repr__(self):
        return f"Tokenizer({self.source!r}, vocab_size={self.vocab_size}, eot_id={self.eot_id})"


class CharTokenizer:
    """One id per character: ids 0 .. len(chars)-1 in the order of ``chars``.

    ``CharTokenizer.from_text(corpus)`` takes the sorted set of characters in a corpus.
    ``eot`` (optional) is a string treated as a single extra token (e.g. "\\0" between stories).
    Characters outside the vocabulary raise ValueError naming the character.
    """

    def __init__(self, chars: Sequence[str], eot: Optional[str] = None):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: chars must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: chars contains duplicates")
        if eot is not None and eot not in chars:
            chars.append(eot)
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.vocab_size = len(chars)
        self.eot_id = None if eot is None else self.index[eot]
        self.eot = eot

    @classmethod
    def from_text(cls, text: str, eot: Optional[str] = None) -> "CharTokenizer":
        return cls(sorted(set(text) - ({eot} if eot else set())), eot)

    def encode(self, text: str) -> list:
        try:
            return [self.index[c] for c in text]
        except KeyError as e:
            raise ParameterError(f"CharTokenizer.encode: character {e.args[0]!r} is not in the vocabulary "
                             f"({self.vocab_size} characters)") from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = _as_id_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"CharTokenizer.decode: id {bad[0]} is out of range [0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"type": CHAR_TOKENIZER_TYPE, "chars": "".join(self.chars), "eot": self.eot},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("type") != CHAR_TOKENIZER_TYPE:
            raise ValueError("not a CharTokenizer JSON (its \"type\" must be "
                             f"{CHAR_TOKENIZER_TYPE!r})")
        chars, eot = data.get("chars"), data.get("eot")
        if not isinstance(chars, str) or not (eot is None or isinstance(eot, str)):
            raise ValueError(f"\"chars\" must be a string and \"eot\" a string or null, got "
                             f"{type(chars).__name__} and {type(eot).__name__}")
        return cls(list(chars), eot)

    def save(self, path) -> None:
        pathlib.Path(path).write_text(self.to_json(), encoding="utf-8")

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id})"


def _looks_like_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.endswith(".json") and not os.path.isabs(source)


def _from_json_file(path: pathlib.Path):
    try:
        with open(path, "rb") as f:
            head = f.read(200).decode("utf-8", "replace")
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tokenizer ({e.strerror})") from None
    if CHAR_TOKENIZER_TYPE in head:
        try:
            return CharTokenizer.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, RecursionError) as e:   # (json nested too deep: RecursionError)
            raise TokenizerError(f"{path}: bad CharTokenizer file ({type(e).__name__}: {str(e)[:200]})") from None
    return Tokenizer.from_file(path)


def load_tokenizer(source, *, revision: Optional[str] = None, cache_dir=None):
    """A Tokenizer (or CharTokenizer) from a tokenizer JSON file, a folder holding one, a
    Hugging Face repo id (its tokenizer.json, downloaded through huggingface_hub and cached), a
    shipped model's name ("tiny": the char-level tokenizer of tinyrwkv/data/tiny_rwkv), or "world"
    (the RWKV World models' vocabulary, ``tokenizer_world.WorldTokenizer``; also an rwkv_vocab*.txt path)."""
    if isinstance(source, (Tokenizer, CharTokenizer)):
        return source
    if isinstance(source, str) and source.lower() in ("world", "rwkv_vocab_v20230424"):
        from .tokenizer_world import world_tokenizer      # the RWKV World models' greedy byte tokenizer
        return world_tokenizer()
    source = resolve_shipped(source)
    path = pathlib.Path(os.fspath(source)).expanduser()
    if path.is_file() and path.name.startswith("rwkv_vocab") and path.suffix == ".txt":
        from .tokenizer_world import world_tokenizer
        try:
            return world_tokenizer(path)
        except (ValueError, OSError, RecursionError, MemoryError) as e:   # a bad line names itself
            message = str(e).removeprefix(f"{path}: ")
            raise TokenizerError(f"{path}: not a World vocabulary: {message[:300]}") from None
    if path.is_file():
        return _from_json_file(path)
    if path.is_dir():
        for name in TOKENIZER_FILES:
            if (path / name).is_file():
                return _from_json_file(path / name)
        raise TokenizerError(f"{path}: no tokenizer in this folder (looked for {', '.join(TOKENIZER_FILES)})")
    if _looks_like_repo_id(str(source)):
        from .checkpoints import hub                                 # the cache first, then a short probe
        file = hub.cached_file(str(source), "tokenizer.json", revision, cache_dir)   # no network
        if file is not None:
            return _from_json_file(file)
        why = hub.hub_unreachable()                                  # say "offline" at once
        if why:
            raise TokenizerError(f"{source}: tokenizer.json is not downloaded and the Hugging Face Hub cannot be "
                                 f"reached ({why}). Run once with internet: tinyrwkv download {source} ; or pass "
                                 f"a local tokenizer.json")
        try:
            from huggingface_hub import hf_hub_download
            file = hf_hub_download(str(source), "tokenizer.json", revision=revision, cache_dir=cache_dir)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise TokenizerError(f"could not get tokenizer.json of {source!r} from the Hugging Face Hub "
                                 f"({type(e).__name__}: {first}). Offline? Pass a local tokenizer.json") from None
        return _from_json_file(pathlib.Path(file))
    raise TokenizerError(f"{source}: no such tokenizer file or folder (and not a Hugging Face repo id)")
