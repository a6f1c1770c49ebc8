"""Knobs for the lessons: a slider when a live notebook can show one, a small-multiples figure otherwise.

A lesson describes what one setting of its knobs looks like as a function that draws one panel,

    def draw(ax, w, u): ...                      # ax: a matplotlib Axes; w, u: one setting

and hands it to ``explore`` with the values each knob may take:

    explore(draw, {"w": [-0.05, -0.3, -1, -3], "u": [-1, 0, 1, 2]})

In a live Jupyter front-end with ipywidgets installed, that shows one slider per knob above a panel
that is redrawn as the sliders move. Everywhere else (a script, CI, ``TINYRWKV_FAST=1``, no
ipywidgets) it draws the same ``draw`` at a few settings side by side, so a headless run still shows
what turning the knob does. ``TINYRWKV_KNOBS=static`` or ``=interactive`` overrides the choice.
"""
from __future__ import annotations

import itertools
import os
from typing import Callable, Mapping, Sequence

MAX_STATIC_PANELS = 12          # a fallback figure stays readable: at most this many settings


def interactive_available() -> bool:
    """True when sliders can be shown: ipywidgets imports and a Jupyter kernel with a front-end runs
    this code, and neither ``TINYRWKV_FAST=1`` nor ``TINYRWKV_KNOBS=static`` asks for the static figure."""
    forced = os.environ.get("TINYRWKV_KNOBS", "").lower()
    if forced in ("static", "interactive"):
        return forced == "interactive"
    if os.environ.get("TINYRWKV_FAST") == "1":
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"     # a Jupyter kernel


def _check_knobs(knobs: Mapping[str, Sequence]) -> dict:
    if not knobs:
        raise ValueError("explore: give at least one knob, e.g. {'temperature': [0.5, 1.0, 2.0]}")
    out = {}
    for name, values in knobs.items():
        values = list(values)
        if not values:
            raise ValueError(f"explore: knob {name!r} has no values")
        out[name] = values
    return out


def _spread(values: list, n: int) -> list:
    """n values of ``values`` spread evenly from the first to the last (all of them when n >= len)."""
    if len(values) <= n:
        return values
    idx = sorted({round(i * (len(values) - 1) / (n - 1)) for i in range(n)})
    return [values[i] for i in idx]


def static_settings(knobs: Mapping[str, Sequence], static: Mapping[str, Sequence] | None = None) -> list[dict]:
    """The settings the static figure shows: ``static`` (name -> values) where given, else a few values of
    each knob spread over its range, so that all combinations fit in MAX_STATIC_PANELS panels."""
    knobs = _check_knobs(knobs)
    chosen = {}
    per_knob = max(2, int(MAX_STATIC_PANELS ** (1 / len(knobs))))
    for name, values in knobs.items():
        chosen[name] = list(static[name]) if static and name in static else _spread(values, per_knob)
    settings = [dict(zip(chosen, combo)) for combo in itertools.product(*chosen.values())]
    if len(settings) > MAX_STATIC_PANELS:
        raise ValueError(f"explore: the static figure would have {len(settings)} panels (at most "
                         f"{MAX_STATIC_PANELS}); pass fewer values in static=")
    return settings


def _label(setting: dict) -> str:
    return ", ".join(f"{name} = {value:g}" if isinstance(value, (int, float)) else f"{name} = {value}"
                     for name, value in setting.items())


def static_figure(draw: Callable, knobs: Mapping[str, Sequence], static: Mapping[str, Sequence] | None = None,
                  fig=None, panel_size=(3.4, 2.6), title: str = "", sharey: bool = True):
    """Draws ``draw(ax, **setting)`` once per setting of ``static_settings`` on a grid of panels.

    With two knobs the grid has one row per value of the first knob and one column per value of the
    second, so reading along a row turns one knob. ``fig``: a Figure to draw on (a notebook passes
    ``plt.figure()``), else a new pyplot-free one. Returns the figure.
    """
    settings = static_settings(knobs, static)
    names = list(_check_knobs(knobs))
    if len(names) == 2:
        rows = len({repr(s[names[0]]) for s in settings})
        cols = len(settings) // rows
    else:
        cols = min(len(settings), 4)
        rows = -(-len(settings) // cols)
    if fig is None:
        from matplotlib.figure import Figure
        fig = Figure()
    fig.set_size_inches(panel_size[0] * cols, panel_size[1] * rows + (0.4 if title else 0))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    for ax, setting in zip(axes.ravel(), settings):
        draw(ax, **setting)
        ax.set_title(_label(setting), fontsize=9)
    for ax in axes.ravel()[len(settings):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(f"{title}\n(the static view: a few settings of the knobs; "
                     "in a live notebook with ipywidgets, sliders)", fontsize=10)
    fig.tight_layout()
    return fig


def interactive_widget(draw: Callable, knobs: Mapping[str, Sequence], panel_size=(6.0, 3.6), title: str = ""):
    """One ``ipywidgets.SelectionSlider`` per knob and an output area redrawn with ``draw(ax, **setting)``
    whenever a slider moves. Returns the ``ipywidgets.VBox`` (sliders first, then the output)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    knobs = _check_knobs(knobs)
    sliders = {name: widgets.SelectionSlider(options=values, value=values[len(values) // 2], description=name,
                                             continuous_update=False)
               for name, values in knobs.items()}

    def update(**setting):
        fig, ax = plt.subplots(figsize=panel_size)
        draw(ax, **setting)
        ax.set_title(f"{title}: {_label(setting)}" if title else _label(setting), fontsize=10)
        fig.tight_layout()
        plt.show()

    output = widgets.interactive_output(update, sliders)
    return widgets.VBox([*sliders.values(), output])


def explore(draw: Callable, knobs: Mapping[str, Sequence], *, static: Mapping[str, Sequence] | None = None,
            interactive: bool | None = None, fig=None, title: str = "", panel_size=(3.4, 2.6),
            sharey: bool = True):
    """Shows what turning ``knobs`` does to the picture ``draw(ax, **setting)`` draws.

    knobs:       name -> the values the slider steps through (in order).
    static:      name -> the values the static figure shows (default: a few spread over each knob).
    interactive: None decides with ``interactive_available()``; True / False force the choice.
    fig:         the Figure for the static view (default: a new pyplot-free one).
    sharey:      the static view's panels share their y axis (False when ``draw`` adds twin axes).
    The view is displayed when IPython runs this (a notebook), so a lesson needs no ``plt.show()``.
    Returns the ipywidgets box (interactive) or the matplotlib Figure (static).
    """
    if interactive is None:
        interactive = interactive_available()
    if interactive:
        view = interactive_widget(draw, knobs, title=title)
    else:
        view = static_figure(draw, knobs, static, fig=fig, panel_size=panel_size, title=title, sharey=sharey)
    _show(view)
    return view


def _show(view) -> None:
    """Displays ``view`` when IPython runs this code (a notebook); does nothing in a plain script."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(view)
