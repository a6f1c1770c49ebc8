"""Downloading a checkpoint from the Hugging Face Hub (cached; progress bars from huggingface_hub).

What is a repo id, what is a path (``classify``)? An existing file or folder is a path. A string
that looks local (starts with ".", "~" or a separator, names a weights file, has more than one
"/", or lies in a folder that exists here) is a path, missing. Only "owner/name" in the Hub's
characters is a repo id. Before touching the network, ``fetch`` looks in the cache, then probes the
Hub with one short connection (``hub_unreachable``, ~1.5 s at most; HF_HUB_OFFLINE=1 skips it):
huggingface_hub's own retries on a dead connection take ~25 s (5 retries, 1+2+4+8+8 s of back-off).

``download("RWKV/rwkv-4-169m-pile")`` fetches config.json, the tokenizer and the weights into the
usual cache (~/.cache/huggingface/hub, or ``cache_dir``) and returns the snapshot folder; a second
call finds them there and downloads nothing. When a repo ships its weights both as safetensors
and as torch ``.bin``, only the safetensors copy is fetched.
"""
from __future__ import annotations

import os
import pathlib
import re
import threading
import warnings
from typing import Optional

from ..errors import ParameterError
from .errors import CheckpointError

# The Hub's repo ids: "owner/name", letters, digits, "-", "_", "." (no "--" or "..", at most 96 each)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LOCAL_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json", ".npz")
PROBE_SECONDS = 1.5

COMMON_FILES = ["config.json", "tokenizer.json"]
SAFETENSORS_FILES = ["*.safetensors", "model.safetensors.index.json"]
TORCH_FILES = ["*.bin", "pytorch_model.bin.index.json"]


def _has_weights(folder: pathlib.Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def is_repo_id(source) -> bool:
    """True for a string shaped like a Hub repo id, "owner/name" (e.g. "RWKV/rwkv-4-169m-pile")."""
    return (isinstance(source, str) and bool(REPO_ID.match(source)) and "--" not in source
            and ".." not in source and not source.endswith(".") and not source.lower().endswith(LOCAL_SUFFIXES))


def check_repo_id(repo_id) -> str:
    """``repo_id`` unchanged, or ParameterError saying what a repo id looks like (no network)."""
    if not is_repo_id(repo_id):
        raise ParameterError(f"{repo_id!r} is not a Hugging Face repo id: expected owner/name in letters, digits, "
                             f"'-', '_' and '.', e.g. RWKV/rwkv-4-169m-pile")
    return repo_id


def classify(source) -> str:
    """What a model argument names: "path" (exists), "missing" (looks local but is not there),
    "repo" (shaped like owner/name and not a local path) or "unknown" (neither)."""
    text = os.fspath(source)
    path = pathlib.Path(text).expanduser()
    if path.exists():
        return "path"
    if not isinstance(source, str):
        return "missing"                                    # a Path object is always meant locally
    looks_local = (text.startswith((".", "~", "/", os.sep)) or os.path.isabs(text) or text.count("/") > 1
                   or (os.sep != "/" and os.sep in text) or text.lower().endswith(LOCAL_SUFFIXES)
                   or ("/" in text and path.parent.is_dir() and str(path.parent) not in ("", ".")))
    if looks_local:
        return "missing"
    return "repo" if is_repo_id(text) else "unknown"


def hub_unreachable(timeout: float = PROBE_SECONDS) -> Optional[str]:
    """Why the Hub cannot be reached now (a short reason), or None when one TCP connection to it
    succeeds within ``timeout`` seconds. HF_HUB_OFFLINE=1 counts as unreachable without trying.
    The probe runs in a thread, so a slow DNS look-up cannot hold the caller longer than timeout."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result = {}

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError as e:
            result["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if result.get("ok"):
        return None
    return f"{host}:{port} did not answer ({result.get('error', f'no answer within {timeout:g} s')})"


def cached_snapshot(repo_id: str, revision: Optional[str] = None, cache_dir=None) -> Optional[pathlib.Path]:
    """The cached snapshot folder of ``repo_id`` holding config.json and weights, without any
    network access; None when it has not been downloaded."""
    try:
        with warnings.catch_warnings():          # huggingface_hub imports tqdm.auto, which warns in
            warnings.simplefilter("ignore")      # Jupyter when ipywidgets is absent
            from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    if not isinstance(config, str):                       # None, or a "known missing" sentinel
        return None
    folder = pathlib.Path(config).parent
    return folder if _has_weights(folder) else None


def cached_file(repo_id: str, filename: str, revision: Optional[str] = None, cache_dir=None) -> Optional[pathlib.Path]:
    """A cached file of ``repo_id`` (e.g. tokenizer.json), without any network access, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return pathlib.Path(found) if isinstance(found, str) else None


def not_here_message(repo_id: str, why: str, *, tokenizer_missing: bool = False) -> str:
    """The one message for a repo id that is neither cached nor reachable: every missing piece
    and the command that fixes it."""
    pieces = "the weights (config.json + *.safetensors or *.bin)"
    if tokenizer_missing:
        pieces += " and the tokenizer (tokenizer.json)"
    local = "pass a local folder or file to --model" + (" and a tokenizer.json to --tokenizer"
                                                        if tokenizer_missing else "")
    return (f"{repo_id}: not a local file or folder, and not downloaded: missing {pieces}. The Hugging Face "
            f"Hub cannot be reached ({why}). Run once with internet: tinyrwkv download {repo_id} ; or {local}")


def fetch(repo_id: str, revision: Optional[str] = None, cache_dir=None, *, progress: bool = True,
          tokenizer_needed: bool = True) -> pathlib.Path:
    """The snapshot folder of ``repo_id``: from the cache when it is there (no network), else
    downloaded, after a short probe so that being offline is reported at once: CheckpointError
    naming what is missing (the weights; the tokenizer too when ``tokenizer_needed`` and it is not
    cached either) and the command that fixes it."""
    check_repo_id(repo_id)
    folder = cached_snapshot(repo_id, revision, cache_dir)
    if folder is not None:
        return folder
    why = hub_unreachable()
    if why:
        tokenizer_missing = tokenizer_needed and cached_file(repo_id, "tokenizer.json", revision, cache_dir) is None
        raise CheckpointError(not_here_message(repo_id, why, tokenizer_missing=tokenizer_missing))
    return download(repo_id, revision, cache_dir, progress=progress)


def locate(source, revision: Optional[str] = None, cache_dir=None, *, progress: bool = True,
           tokenizer_needed: bool = True) -> pathlib.Path:
    """A model argument -> a local file or folder, at once: an existing path as it is; a repo id
    through ``fetch`` (cache, probe, download); anything else a CheckpointError saying there is no
    such file or folder (and, when it is not shaped like one, that it is no repo id either)."""
    kind = classify(source)
    if kind == "path":
        return pathlib.Path(os.fspath(source)).expanduser()
    if kind == "repo":
        return fetch(source, revision, cache_dir, progress=progress, tokenizer_needed=tokenizer_needed)
    raise CheckpointError(f"{os.fspath(source)}: no such file or folder" + ("" if kind == "missing" else
                          " (and not a Hugging Face repo id such as 'RWKV/rwkv-4-169m-pile')"))


def download(repo_id: str, revision: Optional[str] = None, cache_dir=None, *, progress: bool = True) -> pathlib.Path:
    """Fetches ``repo_id`` (e.g. "RWKV/rwkv-4-169m-pile") through ``huggingface_hub.snapshot_download``
    and returns the local snapshot folder. Raises ParameterError for a string that is not shaped
    like a repo id (before any network access), CheckpointError when the hub cannot be reached
    and the files are not cached, or the repo does not exist."""
    check_repo_id(repo_id)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError as e:  # a hard dependency, but say so clearly if it is absent
        raise CheckpointError(f"downloading {repo_id} needs huggingface_hub (pip install huggingface_hub): {e}")

    def fetch(patterns):
        return pathlib.Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                              allow_patterns=COMMON_FILES + patterns))

    bars_were_off = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        # safetensors first; only if the repo has none, the torch .bin files
        folder = fetch(SAFETENSORS_FILES)
        if not _has_weights(folder):
            folder = fetch(TORCH_FILES)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if "RepositoryNotFound" in type(e).__name__ or "RevisionNotFound" in type(e).__name__:
            hint = "Check the repo id and revision"
        else:
            hint = ("Are you offline? The files are not in the cache either. Download them once with "
                    "internet, or pass a local path instead: a folder with config.json + model.safetensors "
                    "or pytorch_model.bin, a .safetensors / .bin file, or a BlinkDL .pth")
        raise CheckpointError(f"could not download {repo_id!r}"
                              f"{f' (revision {revision})' if revision else ''} from the Hugging Face Hub: "
                              f"{reason}. {hint}") from e
    finally:
        if not progress and not bars_were_off:
            enable_progress_bars()
    if not _has_weights(folder):
        raise CheckpointError(f"{repo_id}: the repo has no *.safetensors or *.bin weights (downloaded to {folder})")
    return folder


# --------------------------------------------------------------------------- single-file releases known by name

# BlinkDL publishes RWKV-5/6/7 as single .pth files inside repos that hold many sizes, so a repo
# snapshot is the wrong unit: these names fetch one file (and the tokenizer it needs).
# name -> (repo, file, tokenizer repo): the tokenizer.json of that repo is fetched beside it.
# (Names as published on huggingface.co/BlinkDL/rwkv-7-pile in 2024-11; not re-checked offline.)
NAMED_FILES = {
    "rwkv7-pile-168m": ("BlinkDL/rwkv-7-pile", "RWKV-x070-Pile-168M-20241120-ctx4096.pth", "RWKV/rwkv-4-169m-pile"),
}


def named_file(name: str, cache_dir=None, *, download_if_missing: bool = False,
               progress: bool = True) -> Optional[pathlib.Path]:
    """The local copy of a release in ``NAMED_FILES`` (e.g. "rwkv7-pile-168m": RWKV-7 Pile 168M, which
    uses the GPT-NeoX-20B tokenizer), from the cache without network access; None when it is not
    there, unless ``download_if_missing`` (then it is fetched, with the tokenizer.json it needs)."""
    repo, filename, tokenizer_repo = NAMED_FILES[name]
    found = cached_file(repo, filename, cache_dir=cache_dir)
    if found is not None or not download_if_missing:
        return found
    why = hub_unreachable()                      # offline: said at once, not after ~25 s of retries
    if why:
        raise CheckpointError(f"could not download {name} ({repo}/{filename}): the Hugging Face Hub cannot be "
                              f"reached ({why}) and it is not in the cache; run again with internet")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import disable_progress_bars
        if not progress:
            disable_progress_bars()
        path = pathlib.Path(hf_hub_download(repo, filename, cache_dir=cache_dir))
        hf_hub_download(tokenizer_repo, "tokenizer.json", cache_dir=cache_dir)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        raise CheckpointError(f"could not download {name} ({repo}/{filename}): {reason}") from None
    return path


def named_tokenizer(name: str, cache_dir=None) -> Optional[pathlib.Path]:
    """The cached tokenizer.json for a release in ``NAMED_FILES``, or None (no network)."""
    return cached_file(NAMED_FILES[name][2], "tokenizer.json", cache_dir=cache_dir)
