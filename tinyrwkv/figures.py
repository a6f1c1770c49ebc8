"""One command regenerates every figure the README and the lessons show.

    python -m tinyrwkv.figures --out figures/            # all figures, full size
    python -m tinyrwkv.figures --fast --only gradient_flow

Every module in ``tinyrwkv/experiments/`` that defines ``make_figures(outdir, fast=False) -> dict``
(the numbers behind its plots) is one figure set, named after the module; adding a module there
adds it here. Modules are imported only when their figures are made.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import pkgutil
import sys
import time

from .errors import ParameterError, TinyRWKVError



def _discover() -> dict:
    """name -> module path, for every experiments module whose source defines make_figures."""
    from . import experiments

    found = {}
    for info in pkgutil.iter_modules(experiments.__path__):
        path = pathlib.Path(experiments.__path__[0]) / f"{info.name}.py"
        if path.exists() and "def make_figures(" in path.read_text():
            found[info.name] = f"{experiments.__name__}.{info.name}"
    return found


FIGURES = _discover()


def default_outdir() -> pathlib.Path:
    """$TINYRWKV_FIGURES_DIR, else figures/ at the repository root (or the current directory)."""
    env = os.environ.get("TINYRWKV_FIGURES_DIR")
    if env:
        return pathlib.Path(env)
    repo = pathlib.Path(__file__).resolve().parents[1]
    return repo / "figures" if (repo / "pyproject.toml").exists() else pathlib.Path("figures")


def make_all(outdir=None, fast=False, only=None) -> dict:
    """Runs every figure module (or those in ``only``); returns name -> numbers (or the error)."""
    outdir = pathlib.Path(outdir) if outdir else default_outdir()
    outdir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        raise ParameterError(f"--only: unknown figure set(s) {unknown}; choose from {sorted(FIGURES)}")
    results = {}
    for name, module in FIGURES.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        numbers = importlib.import_module(module).make_figures(outdir, fast=fast)
        results[name] = {"seconds": round(time.perf_counter() - t0, 2), **(numbers or {})}
        print(f"{name}: done in {results[name]['seconds']} s", flush=True)
    return results


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog="tinyrwkv figures", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: figures/)")
    parser.add_argument("--fast", action="store_true", help="small sizes, for CI and quick looks (measured: "
                                                            "~40 s of CPU, ~2 min on a busy 2-core machine)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"some of: {', '.join(FIGURES)}")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the numbers here")
    return parser


def main(argv=None):
    return run_from_args(build_parser().parse_args(argv))


def run_from_args(args) -> int:
    """Runs the figure sets named by parsed arguments (shared by ``python -m`` and ``tinyrwkv figures``)."""
    try:
        results = make_all(args.out, args.fast, args.only)
    except TinyRWKVError as e:
        print(f"tinyrwkv figures: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
