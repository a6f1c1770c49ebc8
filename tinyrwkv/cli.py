"""The ``tinyrwkv`` command.

    tinyrwkv generate --model RWKV/rwkv-4-169m-pile "Hello my name is" --max-new-tokens 10 --temperature 0
    tinyrwkv download RWKV/rwkv-4-169m-pile
    tinyrwkv info RWKV-4-Pile-169M-20220807-8023.pth
    tinyrwkv bench

Subcommands live in one registry, ``COMMANDS``: name -> Command(help, add_arguments, run). To add
one (``compare``, ``figures`` ...), write ``add_arguments(parser)`` and ``run(args) -> int`` and
call ``add_command`` (or add an entry) here; import heavy modules inside ``run``, so that
``tinyrwkv --help`` stays instant.

Errors the user can fix (a missing file, a bad sampling parameter, an unreadable checkpoint) are
the package's own error types (``tinyrwkv.errors.TinyRWKVError``): they end with exit status 2 and
one line on stderr, like argparse's own usage errors, before any other output. Any other exception
is a bug in tinyrwkv and keeps its traceback. Every ``--help`` shows the defaults.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from .errors import ParameterError, TinyRWKVError

EXIT_USAGE = 2


class UsageError(ParameterError):
    """A bad command-line flag; main() prints it as one line and exits with status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with usage errors on ONE line (naming the flag), exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with "(default: X)" after every option whose help does not already say it
    (None and False defaults are left out: the help says what leaving the option out means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


@dataclass
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Dict[str, Command] = {}


def add_command(name: str, help: str, add_arguments, run) -> None:
    """Registers a subcommand (see the module docstring)."""
    COMMANDS[name] = Command(help, add_arguments, run)


# --------------------------------------------------------------------------- generate


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="+", help="text to continue; several prompts run as one batch")
    p.add_argument("--model", required=True,
                   help="'tiny' (shipped), a folder (config.json + weights), .safetensors, .bin or BlinkDL .pth, "
                        "or a Hugging Face repo id (owner/name; cached after `tinyrwkv download`)")
    p.add_argument("--tokenizer", help="tokenizer.json, a folder or a repo id (default: beside the model)")
    p.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; < 1 sharper, > 1 flatter")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep the most likely tokens up to "
                                                            "this probability mass (1 = all)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = no limit)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="divide positive / multiply negative logits of tokens already seen (1 = none)")
    p.add_argument("--presence-penalty", type=float, default=0.0,
                   help="subtract this from the logits of tokens already seen (0 = none)")
    p.add_argument("--seed", type=int, default=None, help="random seed, an integer in [0, 2**64) "
                                                          "(default: a fresh one each run)")
    p.add_argument("--stop", action="append", default=None, help="stop at this string (repeatable)")
    p.add_argument("--backend", default="auto", help="WKV kernels: auto, numba, numpy, cuda")
    _weights_argument(p, "how the weight matrices are kept: fp32, bf16 (half the memory) or int8 (a quarter; "
                         "faster decoding)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: the whole model on the GPU (weights and state on the device; "
                        "the CUDA simulator when NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="weight storage with --device cuda (float16: half the bytes, float32 sums)")
    p.add_argument("--no-stream", action="store_true", help="print the text at the end instead of as it comes")


def default_tokenizer_source(model_source) -> str:
    """Where the tokenizer of ``model_source`` (a local path) lives: its folder, or the folder of its file."""
    path = pathlib.Path(model_source).expanduser()
    return str(path if path.is_dir() else path.parent)


SAMPLING_FLAGS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty",
                  "seed", "stop")


def _flag_error(e: Exception, names=SAMPLING_FLAGS) -> UsageError:
    """"top_p must be ..." -> UsageError("--top-p must be ..."): the message in the flag's spelling."""
    msg = str(e)
    for name in names:
        if msg.startswith(name + " "):
            msg = "--" + name.replace("_", "-") + msg[len(name):]
    return UsageError(msg)


def check_backend(name: str) -> None:
    """UsageError naming --backend when the WKV backend is unknown or unusable here (no GPU)."""
    from .kernels import get_wkv
    try:
        get_wkv(name)
    except (ValueError, RuntimeError) as e:        # unknown name; 'cuda' without a GPU
        raise UsageError(f"--backend {name}: {' '.join(str(e).split())}") from None


def _run_generate(args) -> int:
    # 1. every flag, before any output or any file is read
    from .generation import check_sampling
    try:
        check_sampling(args.max_new_tokens, args.temperature, args.top_p, args.top_k, args.repetition_penalty,
                       args.presence_penalty, args.seed, args.stop)
    except ParameterError as e:
        raise _flag_error(e) from None
    if any(p == "" for p in args.prompt):
        raise UsageError("the prompt is empty: give some text to continue")

    # 2. the model first (a missing path or an offline repo is said at once, naming every missing
    #    piece), then the backend (imports Numba), its tokenizer, then the weights are read
    from .checkpoints.hub import NAMED_FILES, locate, named_tokenizer
    from .loading import resolve_named
    from .tokenizer import resolve_shipped
    model_path = locate(resolve_named(resolve_shipped(args.model)), tokenizer_needed=not args.tokenizer)
    check_backend(args.backend)
    from . import generation, loading, tokenizer
    if args.tokenizer:
        tok = tokenizer.load_tokenizer(args.tokenizer)
    elif args.model in NAMED_FILES and named_tokenizer(args.model):   # e.g. rwkv7-pile-168m: the 20B tokenizer
        tok = tokenizer.load_tokenizer(named_tokenizer(args.model))
    else:
        try:
            tok = tokenizer.load_tokenizer(default_tokenizer_source(model_path))
        except tokenizer.TokenizerError as e:
            raise UsageError(f"{e}; pass --tokenizer (e.g. a 20B_tokenizer.json)") from None
    if args.device == "cuda":
        from .kernels import NO_GPU_MESSAGE, cuda_usable
        if not cuda_usable():
            raise UsageError("--device cuda: " + NO_GPU_MESSAGE)
        if args.weights != "fp32":
            raise UsageError(f"--device cuda keeps the weights itself (--dtype float32 or float16); "
                             f"--weights {args.weights} is for the CPU")
    model = loading.load(model_path, backend=args.backend, weights=args.weights, device=args.device,
                         dtype=args.dtype)
    if tok.vocab_size > model.config.vocab_size:
        raise UsageError(f"the tokenizer has {tok.vocab_size} ids but the model only {model.config.vocab_size}: "
                         f"wrong --tokenizer?")
    for p in args.prompt:                     # a character the tokenizer cannot spell: before any output
        tok.encode(p)
    sampling = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                    top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                    presence_penalty=args.presence_penalty, seed=args.seed, stop=args.stop)
    if len(args.prompt) == 1 and not args.no_stream:
        sys.stdout.write(args.prompt[0])
        sys.stdout.flush()
        generation.generate(model, tok, args.prompt[0], stream=True, **sampling)
        sys.stdout.write("\n")
    else:
        texts = generation.generate(model, tok, list(args.prompt), **sampling)
        for prompt, text in zip(args.prompt, texts):
            sys.stdout.write(prompt + text + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- download, info


def _download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", help="Hugging Face repo id, e.g. RWKV/rwkv-4-169m-pile, or a release known by name: "
                                "rwkv7-pile-168m (BlinkDL/rwkv-7-pile, RWKV-x070-Pile-168M-20241120-ctx4096.pth)")
    p.add_argument("--revision", default=None, help="a branch, tag or commit (default: main)")
    p.add_argument("--cache-dir", default=None, help="where to keep it (default: the Hugging Face cache, "
                                                     "~/.cache/huggingface)")


def _run_download(args) -> int:
    from .checkpoints import hub
    if args.repo in hub.NAMED_FILES:              # a single-file release known by name (e.g. rwkv7-pile-168m)
        print(hub.named_file(args.repo, args.cache_dir, download_if_missing=True))
        return 0
    hub.check_repo_id(args.repo)                  # a malformed id is said before any network access
    why = hub.hub_unreachable()
    if why:                                       # offline: the cached copy if there is one, at once
        folder = hub.cached_snapshot(args.repo, args.revision, args.cache_dir)
        if folder is None:
            raise hub.CheckpointError(f"could not download {args.repo}: the Hugging Face Hub cannot be reached "
                                      f"({why}) and it is not in the cache; run again with internet")
        print("(offline: the cached copy)", file=sys.stderr)
    else:
        folder = hub.download(args.repo, revision=args.revision, cache_dir=args.cache_dir)
    print(folder)
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="repo id, folder, .safetensors, .bin, .pth, 'tiny' (the shipped model) or "
                                  "'rwkv7-pile-168m' (once downloaded)")
    p.add_argument("--no-tensors", action="store_true", help="only the summary, not every tensor")
    p.add_argument("--headers-only", action="store_true",
                   help="read only the headers (default: also read every tensor once to count NaN/inf values)")
    _weights_argument(p, "also print the memory the model takes with its weight matrices in this format")


def _weights_argument(p: argparse.ArgumentParser, help: str) -> None:
    from .nn.compact import FORMATS
    p.add_argument("--weights", choices=FORMATS, default="fp32", help=help + " (default fp32)")


def _run_info(args) -> int:
    from .checkpoints import describe, inspect_checkpoint
    from .tokenizer import resolve_shipped
    from .loading import resolve_named
    info = inspect_checkpoint(resolve_named(resolve_shipped(args.source)), check_values=not args.headers_only)
    lines = describe(info)
    if info["tensors"]:
        from .nn.compact import bytes_in_format
        size = sum(bytes_in_format(t["name"], t["shape"], args.weights) for t in info["tensors"])
        at = next((i + 1 for i, line in enumerate(lines) if line.startswith("parameters:")), len(lines))
        lines.insert(at, f"memory:     {size / 2**20:.1f} MiB with {args.weights} weight matrices "
                        f"(tinyrwkv load(..., weights={args.weights!r}))")
    if args.no_tensors:
        lines = [line for line in lines if not line.startswith("  ")]
    print("\n".join(lines))
    return 1 if info["problems"] else 0


# --------------------------------------------------------------------------- bench


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from .bench import add_arguments
    add_arguments(p)


def _run_bench(args) -> int:
    from .bench import run_from_args
    return run_from_args(args)


add_command("generate", "continue a prompt with an RWKV-4 checkpoint", _generate_arguments, _run_generate)
add_command("download", "download a checkpoint from the Hugging Face Hub into the cache",
            _download_arguments, _run_download)
add_command("info", "shapes, parameter count, dtype and inferred config of a checkpoint", _info_arguments, _run_info)
add_command("bench", "decode and prompt speed at 169M shapes, beside the rwkv package and transformers",
            _bench_arguments, _run_bench)


# --------------------------------------------------------------------------- compare


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    from .compare import add_arguments
    add_arguments(p)


def _run_compare(args) -> int:
    from .compare import run_from_args
    return run_from_args(args)


add_command("compare", "the same text through RWKV, a GPT with a KV cache and an LSTM: state size, "
            "time per token as the context grows, and their outputs. With the tiny model its peers ship "
            "trained: ~2 s of CPU, 12 s on a busy 2-core machine (measured); --train-steps N trains them "
            "here instead (~1-2 s per step)", _compare_arguments, _run_compare)


# --------------------------------------------------------------------------- figures


def _figures_arguments(p: argparse.ArgumentParser) -> None:
    from .figures import build_parser as figures_parser
    figures_parser(p)


def _run_figures(args) -> int:
    from .figures import run_from_args
    return run_from_args(args)


add_command("figures", "regenerate the figures the README and the lessons show (figures/)",
            _figures_arguments, _run_figures)


# --------------------------------------------------------------------------- grade


def _grade_arguments(p: argparse.ArgumentParser) -> None:
    from .grading import add_arguments
    add_arguments(p)


def _run_grade(args) -> int:
    from .grading import GradingError, run_from_args
    try:
        return run_from_args(args)
    except GradingError as e:
        raise UsageError(str(e)) from None


add_command("grade", "run students' notebooks in fresh kernels and write a grade table (CSV and Markdown)",
            _grade_arguments, _run_grade)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tinyrwkv", description="RWKV-4 in NumPy + Numba: run, inspect, measure.",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help,
                                             formatter_class=HelpFormatter))
    return parser


def main(argv: Optional[list] = None) -> int:
    """Entry point of the ``tinyrwkv`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                      # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except TinyRWKVError as e:                   # "fix your input"; anything else is a bug: traceback
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"tinyrwkv {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:                      # e.g. `tinyrwkv generate ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
