"""The drawing vocabulary every diagram shares: a canvas measured in inches, boxes, operator circles,
arrows and labels. Nothing else in ``tinyrwkv/diagrams`` touches matplotlib patches directly.

A canvas of width W and height H inches has data coordinates 0..W by 0..H, so a 10 pt label is
about 0.14 units tall wherever it is drawn and a layout written in these units looks the same at
any size. Figures are built without pyplot (headless-safe); a notebook shows the returned Figure.
"""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

# One colour per kind of thing, the same in every diagram.
COLORS = {
    "input": "#eeeeee",      # tokens, x_t, inputs and outputs
    "linear": "#cfe2f3",     # a matrix multiply (W x, a projection, an embedding)
    "nonlin": "#fce5cd",     # a gate or an activation (sigma, tanh, softmax, relu^2)
    "state": "#d9ead3",      # what a recurrence carries (h_t, c_t, the WKV state a, b, p)
    "norm": "#e6d5f0",       # layer norms
    "mix": "#fff2cc",        # token shift / mixing / attention
    "cache": "#f4cccc",      # a KV cache (grows with T)
    "plain": "#ffffff",
}
EDGE = "#333333"
FONT = 10


@dataclass
class Box:
    """A drawn box: centre (x, y), size (w, h). Its sides give arrow anchors."""
    x: float
    y: float
    w: float
    h: float

    @property
    def left(self):
        return (self.x - self.w / 2, self.y)

    @property
    def right(self):
        return (self.x + self.w / 2, self.y)

    @property
    def top(self):
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self):
        return (self.x, self.y - self.h / 2)

    def at(self, fx, fy):
        """A point on or in the box: fx, fy in [-1, 1] from the centre to the sides."""
        return (self.x + fx * self.w / 2, self.y + fy * self.h / 2)


class Canvas:
    """A blank figure ``width`` x ``height`` inches whose data units are inches, with no axes drawn."""

    def __init__(self, width: float, height: float, title: str | None = None):
        self.fig = Figure(figsize=(width, height))
        self.ax = self.fig.add_axes([0, 0, 1, 1])
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.set_axis_off()
        self.width, self.height = width, height
        if title:
            self.label(width / 2, height - 0.25, title, size=FONT + 3, weight="bold")

    def box(self, x, y, text="", w=1.2, h=0.5, kind="plain", size=FONT, rounded=True, dashed=False,
            textcolor="black", weight="normal") -> Box:
        """A box centred at (x, y), ``w`` x ``h`` inches, filled by ``kind``, with centred ``text``."""
        style = "round,pad=0,rounding_size=0.08" if rounded else "square,pad=0"
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style,
                                         facecolor=COLORS[kind], edgecolor=EDGE, linewidth=1.2,
                                         linestyle="--" if dashed else "-", zorder=2))
        if text:
            self.label(x, y, text, size=size, color=textcolor, weight=weight, zorder=3)
        return Box(x, y, w, h)

    def region(self, x0, y0, x1, y1, text="", kind="plain", text_at="top-left", size=FONT - 1) -> Box:
        """A dashed background rectangle grouping other shapes, titled in a corner."""
        self.ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.12",
                                         facecolor=COLORS[kind], edgecolor="#888888", linewidth=1,
                                         linestyle="--", alpha=0.45, zorder=0))
        if text:
            tx, ha = (x0 + 0.08, "left") if text_at.endswith("left") else (x1 - 0.08, "right")
            ty, va = (y1 - 0.06, "top") if text_at.startswith("top") else (y0 + 0.06, "bottom")
            self.label(tx, ty, text, size=size, ha=ha, va=va, style="italic", color="#444444")
        return Box((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)

    def op(self, x, y, symbol, r=0.17, kind="plain", size=FONT + 1) -> Box:
        """An operator circle (+, x, sigma, ...) of radius ``r`` at (x, y)."""
        self.ax.add_patch(Circle((x, y), r, facecolor=COLORS[kind], edgecolor=EDGE, linewidth=1.2, zorder=2))
        self.label(x, y, symbol, size=size, zorder=3)
        return Box(x, y, 2 * r, 2 * r)

    def arrow(self, start, end, text=None, color=EDGE, bend=0.0, style="-|>", dashed=False, width=1.3,
              text_offset=(0.0, 0.0), text_size=FONT - 1, shrink=0.0, **text_kw):
        """An arrow from point ``start`` to point ``end`` (``bend`` curves it), optionally labelled
        at its midpoint (+ ``text_offset``)."""
        self.ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                          linewidth=width, linestyle="--" if dashed else "-",
                                          connectionstyle=f"arc3,rad={bend}", shrinkA=shrink, shrinkB=shrink,
                                          zorder=1))
        if text:
            mx = (start[0] + end[0]) / 2 + text_offset[0]
            my = (start[1] + end[1]) / 2 + text_offset[1]
            self.label(mx, my, text, size=text_size, color=color if color != EDGE else "black", **text_kw)

    def path(self, points, color=EDGE, dashed=False, width=1.3):
        """An arrow along straight segments through ``points`` (the head at the last one)."""
        for a, b in zip(points[:-2], points[1:-1]):
            self.ax.plot([a[0], b[0]], [a[1], b[1]], color=color, linewidth=width,
                         linestyle="--" if dashed else "-", zorder=1, solid_capstyle="butt")
        self.arrow(points[-2], points[-1], color=color, dashed=dashed, width=width)

    def label(self, x, y, text, size=FONT, ha="center", va="center", **kw):
        """Text at (x, y) (mathtext between $...$ works)."""
        kw.setdefault("zorder", 4)
        return self.ax.text(x, y, text, fontsize=size, ha=ha, va=va, **kw)

    def done(self) -> Figure:
        return self.fig
