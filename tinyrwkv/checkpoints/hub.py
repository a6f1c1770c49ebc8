"""Downloading a checkpoint from the Hugging Face Hub (cached; progress bars from huggingface_hub).

``download("RWKV/rwkv-4-169m-pile")`` fetches config.json, the tokenizer and the weights into the
usual cache (~/.cache/huggingface/hub, or ``cache_dir``) and returns the snapshot folder; a second
call finds them there and downloads nothing. When a repo ships its weights both as safetensors
and as torch ``.bin``, only the safetensors copy is fetched.
"""
from __future__ import annotations

import pathlib
from typing import Optional

from .errors import CheckpointError

COMMON_FILES = ["config.json", "tokenizer.json"]
SAFETENSORS_FILES = ["*.safetensors", "model.safetensors.index.json"]
TORCH_FILES = ["*.bin", "pytorch_model.bin.index.json"]


def _has_weights(folder: pathlib.Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def download(repo_id: str, revision: Optional[str] = None, cache_dir=None, *, progress: bool = True) -> pathlib.Path:
    """Fetches ``repo_id`` (e.g. "RWKV/rwkv-4-169m-pile") through ``huggingface_hub.snapshot_download``
    and returns the local snapshot folder. Raises CheckpointError when the hub cannot be reached
    and the files are not cached, or the repo does not exist."""
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
