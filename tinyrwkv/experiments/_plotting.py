"""Small helpers the figure modules share (no ``make_figures`` here, so it is not a figure set)."""
from __future__ import annotations

import pathlib


def figure(fig, size):
    """``fig`` resized to ``size`` (inches), or a new pyplot-free Figure when ``fig`` is None.

    The figures command runs headless and never touches pyplot; a notebook passes ``plt.figure()``
    so that the plot shows inline.
    """
    if fig is None:
        from matplotlib.figure import Figure
        return Figure(figsize=size)
    fig.set_size_inches(*size)
    return fig


def finish(fig, path=None, dpi=110):
    """Lays ``fig`` out tightly, saves it to ``path`` when one is given (a notebook passes none),
    and returns it."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def output_folder(outdir) -> pathlib.Path:
    """``outdir`` as a Path, created (with its parents) if it does not exist yet."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir
