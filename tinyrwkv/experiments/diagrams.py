"""The lessons' diagrams as PNG files: figures/diagram_<name>.png for every name in tinyrwkv.diagrams.NAMES.

    python -m tinyrwkv.figures --only diagrams
"""
from __future__ import annotations

from ..diagrams import NAMES, draw
from ._plotting import output_folder


def make_figures(outdir, fast=False) -> dict:
    """Writes every diagram (``fast`` changes nothing: they are cheap); returns {"written": [file names]}."""
    outdir = output_folder(outdir)
    written = []
    for name in NAMES:
        fig = draw(name)
        fig.savefig(outdir / f"diagram_{name}.png", dpi=100)
        written.append(f"diagram_{name}.png")
    return {"written": written}
