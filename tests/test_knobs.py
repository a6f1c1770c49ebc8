"""tinyrwkv.knobs: the static fallback draws every setting; the interactive path builds real sliders."""
import numpy as np
import pytest

from tinyrwkv import knobs


def record_draw(calls):
    def draw(ax, a, b=0):
        calls.append((a, b))
        ax.plot(np.arange(5), a * np.arange(5) + b)
    return draw


def test_static_figure_draws_every_setting_on_a_grid(monkeypatch):
    calls = []
    fig = knobs.explore(record_draw(calls), {"a": [1, 2, 3, 4, 5], "b": [0, 10, 20]}, interactive=False, title="t")
    assert len(calls) == len(set(calls)) == 9                         # 3 spread values of a x all 3 of b
    assert {a for a, _ in calls} == {1, 3, 5}                         # spread: first, middle, last
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 9 and visible[0].get_title() == "a = 1, b = 0"
    assert fig.axes[0].lines, "draw() drew nothing on the first panel"


def test_static_values_can_be_chosen_and_too_many_panels_is_a_clear_error():
    calls = []
    knobs.explore(record_draw(calls), {"a": range(100)}, static={"a": [7, 9]}, interactive=False)
    assert calls == [(7, 0), (9, 0)]
    with pytest.raises(ValueError, match="panels"):
        knobs.static_settings({"a": range(10), "b": range(10)}, static={"a": range(10), "b": range(10)})
    with pytest.raises(ValueError, match="no values"):
        knobs.static_settings({"a": []})


def test_fast_mode_and_the_override_choose_the_path(monkeypatch):
    monkeypatch.setenv("TINYRWKV_FAST", "1")
    monkeypatch.delenv("TINYRWKV_KNOBS", raising=False)
    assert not knobs.interactive_available()
    monkeypatch.setenv("TINYRWKV_KNOBS", "interactive")
    assert knobs.interactive_available()
    monkeypatch.setenv("TINYRWKV_KNOBS", "static")
    monkeypatch.delenv("TINYRWKV_FAST")
    assert not knobs.interactive_available()
    monkeypatch.delenv("TINYRWKV_KNOBS")
    assert not knobs.interactive_available()                          # pytest is no Jupyter kernel


def test_interactive_path_builds_one_slider_per_knob_and_redraws_on_change():
    widgets = pytest.importorskip("ipywidgets")
    calls = []
    box = knobs.explore(record_draw(calls), {"a": [1, 2, 3], "b": [0, 10]}, interactive=True)
    assert isinstance(box, widgets.VBox)
    sliders = [w for w in box.children if isinstance(w, widgets.SelectionSlider)]
    assert [s.description for s in sliders] == ["a", "b"]
    assert list(sliders[0].options) == [1, 2, 3]
    assert calls == [(2, 10)]                                         # drawn once at the middle setting
    sliders[0].value = 3
    assert calls[-1] == (3, 10)                                       # moving a slider redraws
