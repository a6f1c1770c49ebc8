"""``load``: checkpoint -> model. The one place where ``checkpoints`` and ``models`` meet.

    model = load("RWKV/rwkv-4-169m-pile")      # repo id | folder | .safetensors | .bin | .pth
    model = load("tiny")                       # the tiny char-level RWKV-4 shipped in the package
    path = find_local_model()                  # the real 169M if downloaded (offline look-up), else None
    model, tok, is_real = load_real_or_tiny()  # that, or the tiny model with the download command printed
"""
from __future__ import annotations

import os
import pathlib
import warnings
from typing import Optional

from .checkpoints import read_checkpoint
from .models.rwkv import RWKV, RWKVConfig
from .tokenizer import load_tokenizer, resolve_shipped


def load(source, backend: str = "auto", *, revision: Optional[str] = None, cache_dir=None,
         progress: bool = True, device: str = "cpu", dtype: str = "float32"):
    """Reads an RWKV-4 checkpoint (see ``tinyrwkv.checkpoints.read_checkpoint`` for what ``source``
    may be) and builds the model on it; ``backend`` picks the WKV kernels ("auto", "numba",
    "numpy", "cuda"). ``source`` may also name a model shipped in the package ("tiny": a 4-layer
    char-level RWKV-4 trained on the small_tales corpus). Raises CheckpointError naming the file,
    key or shape at fault.

    ``device="cuda"`` returns a ``tinyrwkv.runners.cuda_rwkv4.DeviceRWKV`` instead: the weights
    uploaded once (``dtype`` "float32" or "float16" storage) and every op a numba.cuda kernel, with
    the same forward / step / init_state. (``backend`` is then ignored: the WKV runs on the device.)"""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"load: device must be 'cpu' or 'cuda', got {device!r}")
    source = resolve_shipped(source)
    config, params = read_checkpoint(source, revision=revision, cache_dir=cache_dir, progress=progress)
    if device == "cuda":
        from .runners.cuda_rwkv4 import DeviceRWKV
        return DeviceRWKV(RWKVConfig.from_dict(config), params, dtype=dtype)
    return RWKV(RWKVConfig.from_dict(config), params, backend=backend)


# --------------------------------------------------------------------------- the real model, if it is here

REAL_169M = "RWKV/rwkv-4-169m-pile"
MODEL_ENV = "TINYRWKV_MODEL"             # a local checkpoint (folder or file) to use instead of the cache
TOKENIZER_ENV = "TINYRWKV_TOKENIZER"     # its tokenizer, when it does not sit beside the weights


def download_command(repo_id: str = REAL_169M) -> str:
    """The one command that fetches ``repo_id`` into the Hugging Face cache."""
    return f"tinyrwkv download {repo_id}"


def find_local_model(repo_id: str = REAL_169M, cache_dir=None):
    """Where a downloaded copy of ``repo_id`` lies on this machine, without touching the network.

    Looks, in order, at the environment variable TINYRWKV_MODEL (a folder or a checkpoint file;
    FileNotFoundError naming it when it points nowhere), then at the Hugging Face cache (``cache_dir``
    or the default ~/.cache/huggingface/hub): the snapshot folder that holds the repo's config.json
    and weights (*.safetensors or *.bin). Returns a ``pathlib.Path``, or None when the model has not
    been downloaded (``download_command(repo_id)`` says how to get it).
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        path = pathlib.Path(env).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{MODEL_ENV}={env}: no such file or folder")
        return path
    try:
        with warnings.catch_warnings():          # huggingface_hub imports tqdm.auto, which warns in
            warnings.simplefilter("ignore")      # Jupyter when ipywidgets is absent
            from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    if not isinstance(config, str):                  # None, or "known not to exist" (a sentinel object)
        return None
    folder = pathlib.Path(config).parent             # the snapshot folder of the cached revision
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        return folder
    return None


def load_real_or_tiny(repo_id: str = REAL_169M, backend: str = "auto", cache_dir=None, verbose: bool = True):
    """The real model when ``find_local_model`` finds it, else the shipped tiny RWKV-4, announced.

    Returns (model, tokenizer, is_real). With ``verbose`` it prints which model it loaded and, for
    the fallback, the one command that downloads the real one. The tokenizer comes from beside the
    weights, or from TINYRWKV_TOKENIZER when that is set.
    """
    path = find_local_model(repo_id, cache_dir)
    if path is None:
        if verbose:
            print(f"{repo_id} is not downloaded here: using the tiny shipped RWKV-4 (char-level, small_tales).\n"
                  f"To use the real model, run once with internet:  {download_command(repo_id)}")
        return load("tiny", backend=backend, progress=False), load_tokenizer("tiny"), False
    tokenizer_source = os.environ.get(TOKENIZER_ENV) or (path if path.is_dir() else path.parent)
    model = load(path, backend=backend, progress=False)
    if verbose:
        print(f"loaded {repo_id} from {path}")
    return model, load_tokenizer(tokenizer_source), True
