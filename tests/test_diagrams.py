"""Every lesson diagram draws headless, is labelled, keeps its labels apart and inside the figure, and
``tinyrwkv figures --only diagrams`` writes each one as a PNG."""
import itertools

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinyrwkv import cli
from tinyrwkv.diagrams import NAMES, draw

LESSON_DIAGRAMS = {"course_map", "rnn_unrolled", "lstm_cell", "gru_cell", "gnmt_stack", "transformer_block",
                   "rwkv_block", "token_shift", "wkv_state", "parallel_vs_serial", "kernel_threads",
                   "state_vs_kv_cache", "training_step", "side_by_side"}


def text_boxes(fig):
    """(text, window bbox) of every non-empty label, after a draw."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts + fig.axes[0].texts
            if t.get_text().strip()]


def overlapping_labels(fig, slack=1.0):
    """Pairs of labels whose boxes intersect by more than ``slack`` pixels each way."""
    boxes = text_boxes(fig)
    bad = []
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        dx = min(a.x1, b.x1) - max(a.x0, b.x0)
        dy = min(a.y1, b.y1) - max(a.y0, b.y0)
        if dx > slack and dy > slack:
            bad.append((ta, tb))
    return bad


def test_names_cover_every_lesson_diagram():
    assert LESSON_DIAGRAMS <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))


@pytest.fixture(scope="module")
def figures():
    return {name: draw(name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_diagram_is_labelled_with_separate_labels_inside_the_figure(figures, name):
    fig = figures[name]
    assert isinstance(fig, Figure)
    boxes = text_boxes(fig)
    assert len(boxes) >= 5, f"{name}: only {len(boxes)} labels"
    assert overlapping_labels(fig) == [], f"{name}: overlapping labels"
    W, H = fig.bbox.width, fig.bbox.height
    outside = [t for t, b in boxes if b.x0 < -1 or b.y0 < -1 or b.x1 > W + 1 or b.y1 > H + 1]
    assert outside == [], f"{name}: labels cut off at the edge: {outside}"
    assert len(fig.axes[0].patches) >= 3, f"{name}: no shapes drawn"


def test_overlap_check_catches_two_labels_on_top_of_each_other():
    from tinyrwkv.diagrams._canvas import Canvas
    c = Canvas(3, 2)
    c.label(1.5, 1.0, "first label")
    c.label(1.6, 1.02, "second label")
    assert overlapping_labels(c.done()) == [("first label", "second label")]


def test_unknown_name_names_the_choices():
    with pytest.raises(ValueError, match="unknown diagram 'rwkv'.*rwkv_block"):
        draw("rwkv")


def test_tinyrwkv_figures_writes_every_diagram_png(tmp_path, figures, monkeypatch):
    from tinyrwkv.experiments import diagrams as figure_set
    monkeypatch.setattr(figure_set, "draw", figures.__getitem__)     # drawn once already, by the fixture
    assert cli.main(["figures", "--only", "diagrams", "--out", str(tmp_path)]) == 0
    for name in NAMES:
        png = tmp_path / f"diagram_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png.name} missing or not a PNG"
        assert png.stat().st_size > 10_000
