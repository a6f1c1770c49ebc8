"""Diagrams drawn by code, one per idea the lessons teach.

    from tinyrwkv.diagrams import draw, NAMES
    fig = draw("rwkv_block")          # a matplotlib Figure (no pyplot, safe headless); show it in a notebook
    fig.savefig("rwkv_block.png")

``NAMES`` lists every diagram; each is a short function in ``recurrent`` (lessons 00-04),
``attention`` (05-07) or ``systems`` (08-11), built from the one drawing vocabulary in ``_canvas``
(boxes, operator circles, arrows, labels). ``tinyrwkv figures`` writes them all as
``figures/diagram_<name>.png`` (see ``tinyrwkv/experiments/diagrams.py``).
"""
from __future__ import annotations

from . import attention, recurrent, systems

# name -> (drawing function, the lesson(s) that show it)
DIAGRAMS = {
    "course_map": (recurrent.course_map, "00"),
    "rnn_unrolled": (recurrent.rnn_unrolled, "01"),
    "lstm_cell": (recurrent.lstm_cell, "02"),
    "gru_cell": (recurrent.gru_cell, "03"),
    "gnmt_stack": (recurrent.gnmt_stack, "04"),
    "transformer_block": (attention.transformer_block, "05"),
    "rwkv_block": (attention.rwkv_block, "06, 07"),
    "token_shift": (attention.token_shift, "06"),
    "wkv_state": (attention.wkv_state, "06"),
    "parallel_vs_serial": (attention.parallel_vs_serial, "06"),
    "kernel_threads": (systems.kernel_threads, "08"),
    "state_vs_kv_cache": (systems.state_vs_kv_cache, "09"),
    "training_step": (systems.training_step, "10"),
    "side_by_side": (systems.side_by_side, "11"),
}
NAMES = tuple(DIAGRAMS)


def draw(name: str):
    """The diagram ``name`` (one of NAMES) as a new matplotlib Figure; nothing is shown or saved."""
    if name not in DIAGRAMS:
        raise ValueError(f"unknown diagram {name!r}; choose from {', '.join(NAMES)}")
    return DIAGRAMS[name][0]()
