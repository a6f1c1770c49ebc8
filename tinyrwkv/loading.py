"""``load``: checkpoint -> model. The one place where ``checkpoints`` and ``models`` meet.

    model = load("RWKV/rwkv-4-169m-pile")      # repo id | folder | .safetensors | .bin | .pth
    model = load("RWKV-x070-Pile-168M-20241120-ctx4096.pth")   # RWKV-4, 5.2, 6 or 7: detected from the tensors
    model = load("tiny")                       # the tiny char-level RWKV-4 shipped in the package
    path = find_local_model()                  # the real 169M if downloaded (offline look-up), else None
    model, tok, is_real = load_real_or_tiny()  # that, or the tiny model with the download command printed
"""
from __future__ import annotations

import os
import pathlib
from typing import Optional

import numpy as np

from .checkpoints import CheckpointError, read_checkpoint
from .checkpoints.hub import cached_snapshot
from .checkpoints.tensors import iter_float32_rows, read_float32, read_raw
from .models.rwkv import RWKV, RWKVBase, RWKVConfig
from .nn.compact import BF16Weight, MatrixArena, check_format, from_row_blocks, is_compactable
from .tokenizer import load_tokenizer, resolve_shipped


def model_class(version):
    """The model class that runs RWKV-``version`` (4, 5.2, 6, 7); the v5-v7 modules load only when asked."""
    if version == 4:
        return RWKV
    if version == 5.2:
        from .models.rwkv5 import RWKV5
        return RWKV5
    if version == 6:
        from .models.rwkv6 import RWKV6
        return RWKV6
    if version == 7:
        from .models.rwkv7 import RWKV7
        return RWKV7
    raise ValueError(f"no model for RWKV version {version!r}; known: 4, 5.2, 6, 7")


def resolve_named(source, cache_dir=None):
    """A release known by name ("rwkv7-pile-168m") -> its cached file; CheckpointError with the
    download command when it is not downloaded. Anything else is returned unchanged."""
    from .checkpoints import hub
    if not isinstance(source, str) or source not in hub.NAMED_FILES:
        return source
    path = hub.named_file(source, cache_dir)
    if path is None:
        repo, filename, _ = hub.NAMED_FILES[source]
        raise CheckpointError(f"{source} ({repo}/{filename}) is not downloaded here; run once with internet: "
                              f"tinyrwkv download {source}")
    return path


def load(source, backend: str = "auto", *, weights: str = "fp32", revision: Optional[str] = None,
         cache_dir=None, progress: bool = True, allow_nonfinite: bool = False, device: str = "cpu",
         dtype: str = "float32"):
    """Reads an RWKV-4, -5.2, -6 or -7 checkpoint (see ``tinyrwkv.checkpoints.read_checkpoint`` for
    what ``source`` may be), detects the version from its tensors and builds that model on it
    (``model.config.version`` says which; ``repr(model)`` too); ``backend`` picks the WKV kernels
    ("auto", "numba", "numpy", "cuda"). ``source`` may also name a model shipped in the package
    ("tiny": a 4-layer char-level RWKV-4 trained on the small_tales corpus).

    weights: how the weight matrices are kept (``tinyrwkv.nn.compact``): "fp32" (float32), "bf16"
    (16-bit words, half the memory; read from bf16 checkpoints as is) or "int8" (8-bit + a float32
    scale per output row, a quarter). Vectors stay float32. Compact matrices are converted tensor by
    tensor, block by block, as the file is read: the float32 model is never held whole.

    A weight holding NaN or infinity is refused unless ``allow_nonfinite=True``.
    Raises CheckpointError naming the file, key or shape at fault, or saying what an unsupported
    file looks like.

    ``device="cuda"`` (RWKV-4) returns a ``tinyrwkv.runners.cuda_rwkv4.DeviceRWKV`` instead: the
    weights uploaded once (``dtype`` "float32" or "float16" storage on the device) and every op a
    numba.cuda kernel, with the same forward / step / init_state; ``backend`` is then unused."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"load: device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and weights != "fp32":
        raise ValueError(f"load: device='cuda' stores the weights itself (dtype='float32' or 'float16'); "
                         f"weights must be 'fp32', got {weights!r}")
    source = resolve_named(resolve_shipped(source), cache_dir)
    # every matrix is read straight into one arena (huge pages for decoding's streams: nn.compact.MatrixArena)
    convert = compact_reader(check_format(weights), arena=MatrixArena())
    config, params = read_checkpoint(source, revision=revision, cache_dir=cache_dir, progress=progress,
                                     convert=convert, allow_nonfinite=allow_nonfinite)
    config = RWKVConfig.from_dict(config)
    if device == "cuda":
        if config.version != 4:
            raise ValueError(f"load: device='cuda' runs RWKV-4 models; {source} is RWKV-{config.version}")
        from .runners.cuda_rwkv4 import DeviceRWKV
        return DeviceRWKV(config, params, dtype=dtype)
    return model_class(config.version)(config, params, backend=backend)


def compact_reader(fmt: str, group: Optional[int] = None, arena: Optional[MatrixArena] = None):
    """A ``read_checkpoint`` converter that stores the 2-d ``*.weight`` matrices in ``fmt`` ("fp32",
    "bf16", "int8"; group: int8 inputs per scale, None = per row), allocated from ``arena`` when given,
    and everything else as float32."""
    check_format(fmt)
    empty = np.empty if arena is None else arena.empty

    def convert(name, tensor, f):
        if not is_compactable(name, tensor.shape):
            return read_float32(tensor, f)
        if fmt == "bf16" and tensor.dtype == "bfloat16" and tensor.is_contiguous:
            return BF16Weight(read_raw(tensor, f, out=empty(tensor.shape, np.uint16)))   # the bf16 words as stored
        try:
            return from_row_blocks(fmt, tensor.shape, iter_float32_rows(tensor, f, 1 << 20), group, empty)
        except ValueError as e:                               # e.g. inf / NaN in an int8 matrix
            raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} {tensor.shape}: {e}") from None
    return convert


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
    CheckpointError naming it when it points nowhere), then at the Hugging Face cache (``cache_dir``
    or the default ~/.cache/huggingface/hub): the snapshot folder that holds the repo's config.json
    and weights (*.safetensors or *.bin). Returns a ``pathlib.Path``, or None when the model has not
    been downloaded (``download_command(repo_id)`` says how to get it).
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        path = pathlib.Path(env).expanduser()
        if not path.exists():
            raise CheckpointError(f"{MODEL_ENV}={env}: no such file or folder")
        return path
    return cached_snapshot(repo_id, cache_dir=cache_dir)


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
