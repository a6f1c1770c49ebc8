"""A small helper the figure modules share (no ``make_figures`` here, so it is not a figure set)."""
from __future__ import annotations


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
