"""The command line every experiment module shares (no ``make_figures`` here, so it is not a figure set).

    python -m tinyrwkv.experiments.NAME --out figures/ [--fast]

writes the module's figures to --out and prints the numbers behind them as JSON.
"""
from __future__ import annotations

import argparse
import json
import pathlib


def experiment_main(make_figures, description: str, fast_help: str, argv=None, **modes):
    """Parses ``--out DIR`` (default figures/) and ``--fast``, runs ``make_figures(out, fast=...)``
    and prints what it returns as JSON.

    modes: further flags, name -> help text (e.g. ``retrain="rerun the full comparison"``); each is
    passed to make_figures as a keyword and excludes --fast and the others.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures"), help="output folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help=fast_help)
    for name, help_text in modes.items():
        mode.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", help=help_text)
    args = parser.parse_args(argv)
    numbers = make_figures(args.out, fast=args.fast, **{name: getattr(args, name) for name in modes})
    print(json.dumps(numbers, indent=1, default=float))
