"""The Rotary page (AppTest): the three explanations render with no run at all, carry
their units and the right numbers, and a trained RoPE run's layer-0 logits do not change
when its prompt moves; learned and absent positions say why the check does not apply."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from helpers_apptest import plotly_array as array, plotly_specs
from helpers_browser import REPO
from helpers_markdown import as_read
from runs_fixtures import trained_store

PAGE = str(REPO / "views" / "rotary.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_store(tmp_path_factory, "rotary-runs",
                         {"rope": {}, "learned": {"pos": "learned"}, "nopos": {"pos": "none"}})


@pytest.fixture
def empty(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(tmp_path))


@pytest.fixture
def app(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))

    def make(run_name: str) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=120)
        at.query_params["run"] = ids[run_name]
        at.run()
        assert not at.exception, at.exception
        return at
    return make


def spec_titled(at: AppTest, words: str) -> dict:
    found = [s for s in plotly_specs(at) if words in s["layout"]["title"]["text"]]
    assert len(found) == 1, words
    return found[0]


def metric_logits(at: AppTest) -> float:
    [m] = at.metric
    assert m.value.endswith("logits")
    return float(re.match(r"([-+0-9.e]+)", m.value).group(1))


def test_renders_with_no_run_at_all(empty):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 4  # spectrum, circle, distance, scaling
    assert sum("No finished run yet" in i.value for i in at.info) == 2
    assert not at.error


def test_spectrum_two_thetas_log_scale_with_units(empty):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    spec = spec_titled(at, "frequency spectrum")
    lay = spec["layout"]
    assert lay["yaxis"]["type"] == "log" and lay["yaxis2"]["type"] == "log"
    assert "radians per position" in lay["yaxis"]["title"]["text"]
    assert "positions" in lay["yaxis2"]["title"]["text"]
    freq = {t["name"]: array(t["y"]) for t in spec["data"] if t.get("showlegend") is not False}
    assert set(freq) == {"θ = 10000", "θ = 500000"}
    i = np.arange(16)  # head size 32 by default: 16 pairs
    assert np.allclose(freq["θ = 10000"], 10000.0 ** (-2 * i / 32))
    assert np.allclose(freq["θ = 500000"], 500000.0 ** (-2 * i / 32))
    wave = [array(t["y"]) for t in spec["data"] if t.get("showlegend") is False]
    assert np.allclose(wave[0], 2 * math.pi / freq["θ = 10000"])
    # Changing a theta and the head size redraws.
    at.number_input(key="rotary_theta_b").set_value(100.0)
    at.selectbox(key="rotary_head_dim").select(8).run()
    assert not at.exception
    spec = spec_titled(at, "frequency spectrum")
    freq = {t["name"]: array(t["y"]) for t in spec["data"] if t.get("showlegend") is not False}
    assert np.allclose(freq["θ = 100"], 100.0 ** (-2 * np.arange(4) / 8))


def test_off_by_one_bug_turns_faster_than_one_radian(empty):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.toggle(key="rotary_bug").set_value(True).run()
    spec = spec_titled(at, "frequency spectrum")
    bug = [t for t in spec["data"] if "bug" in t["name"] and t.get("showlegend") is not False]
    assert array(bug[0]["y"])[0] > 1


def test_one_pair_turns_on_the_unit_circle(empty):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.slider(key="rotary_pair").set_value(0).run()
    spec = spec_titled(at, "turning with position")
    points = [t for t in spec["data"] if t.get("name", "").startswith("θ")]
    assert len(points) == 2  # one circle per theta
    x, y = array(points[0]["x"]), array(points[0]["y"])
    assert np.allclose(x ** 2 + y ** 2, 1)
    assert np.allclose(np.arctan2(y, x)[:4], [0, 1, 2, 3])  # pair 0: 1 rad per position
    assert spec["layout"]["yaxis"]["scaleanchor"] == "x"  # a circle, not an ellipse


def test_score_depends_only_on_relative_distance(empty):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    spec = spec_titled(at, "against the distance")
    assert "m − n" in spec["layout"]["xaxis"]["title"]["text"]
    assert "positions" in spec["layout"]["xaxis"]["title"]["text"]
    curves = [array(t["y"]) for t in spec["data"]]
    assert len(curves) == 4
    for c in curves[1:]:
        assert np.allclose(c, curves[0], atol=1e-9)
    assert np.ptp(curves[0]) > 0.1  # it does depend on the distance


def test_rope_run_is_invariant_to_a_shift(app):
    at = app("rope")
    change = metric_logits(at)
    assert change < 1e-4
    spec = spec_titled(at, "attention logits")
    a, b = (array(t["z"]) for t in spec["data"])
    assert np.allclose(a, b, atol=1e-4)
    assert "query" in spec["layout"]["yaxis"]["title"]["text"]
    assert "key" in spec["layout"]["xaxis"]["title"]["text"]
    at.slider(key="rotary_shift").set_value(3).run()
    assert not at.exception and metric_logits(at) < 1e-4


def test_learned_positions_say_why_it_does_not_apply_and_show_the_change(app):
    at = app("learned")
    assert any("does not apply" in i.value for i in at.info)
    assert metric_logits(at) > 1e-3


def test_no_positions_and_unknown_characters(app):
    at = app("nopos")
    assert any("no positional encoding" in i.value for i in at.info)
    assert not at.metric
    at = app("rope")
    at.text_input(key="rotary_prompt").input("Zoë").run()
    assert not at.exception
    assert len(at.error) == 1 and "'ë'" in as_read(at.error[0].value)
    assert len(at.get("plotly_chart")) == 5  # the explanations and the length view stay


# --- RoPE scaling and length (issue 14) ------------------------------------------------

def test_scaled_frequencies_against_unscaled_llama3_keeps_the_fast_pairs(empty):
    """Llama 3.1's defaults on the page (theta B 500,000, factor 8, original 8,192): the
    llama3 line equals the unscaled one for wavelengths under 8192/4 positions and the
    unscaled one divided by 8 above 8192; linear divides every pair by 8."""
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    spec = spec_titled(at, "RoPE scaling")
    lines = {t["name"]: array(t["y"]) for t in spec["data"] if t.get("xaxis", "x") == "x"}
    assert set(lines) == {"unscaled", "linear", "llama3"}
    base = 500000.0 ** (-2 * np.arange(16) / 32)
    assert np.allclose(lines["unscaled"], base)
    assert np.allclose(lines["linear"], base / 8)
    wavelength = 2 * math.pi / base
    fast, slow = wavelength < 8192 / 4, wavelength > 8192
    assert fast.any() and slow.any()
    assert np.allclose(lines["llama3"][fast], base[fast])
    assert np.allclose(lines["llama3"][slow], base[slow] / 8)
    middle = ~fast & ~slow
    assert ((lines["llama3"][middle] < base[middle])
            & (lines["llama3"][middle] > base[middle] / 8)).all()
    assert "radians per position" in spec["layout"]["yaxis"]["title"]["text"]
    at.selectbox(key="rotary_scale_factor").set_value(4).run()
    lines = {t["name"]: array(t["y"]) for t in spec_titled(at, "RoPE scaling")["data"]
             if t.get("xaxis", "x") == "x"}
    assert np.allclose(lines["linear"], base / 4)


def test_length_view_reads_rope_and_no_positions_past_the_context_learned_stops(app):
    at = app("rope")
    spec = spec_titled(at, "Loss at each position, reading 2×")
    by_run = {}
    for t in spec["data"]:
        run, reading = t["name"].rsplit(", ", 1)
        by_run.setdefault(run.split(" · ")[1], {})[reading] = (array(t["x"]), array(t["y"]))
    assert set(by_run) == {"rope", "learned", "nopos"}
    assert set(by_run["rope"]) == {"unscaled", "linear", "llama3"}
    assert set(by_run["learned"]) == {"unscaled"} and set(by_run["nopos"]) == {"unscaled"}
    assert by_run["rope"]["unscaled"][0].max() == 31  # context 16, read at 32
    assert by_run["nopos"]["unscaled"][0].max() == 31
    assert by_run["learned"]["unscaled"][0].max() == 15  # its table has 16 rows
    for run in by_run.values():
        for _, y in run.values():
            assert np.isfinite(y).all() and (y > 0).all()
    assert "nats per character" in spec["layout"]["yaxis"]["title"]["text"]
    assert "position" in spec["layout"]["xaxis"]["title"]["text"]
    assert "Learned positions cannot go past their table" in " ".join(
        as_read(m.value) for m in at.markdown)
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    learned = table[table["run"].str.endswith("learned")]
    assert learned["beyond them (nats/char)"].isna().all()
    at.segmented_control(key="rotary_length_factor").set_value(4).run()
    spec = spec_titled(at, "reading 4×")
    assert max(array(t["x"]).max() for t in spec["data"]) == 63


def test_learned_positions_are_refused_past_their_table_in_one_sentence():
    from llama_core.config import ModelConfig
    from llama_core.errors import UserError
    from llama_core.lengths import longer_reader
    from llama_core.model import Llama

    model = Llama(ModelConfig(vocab_size=20, context_window=8, d_model=16, n_layers=1,
                              n_heads=2, pos="learned"))
    with pytest.raises(UserError, match="cannot go past their table: it has 8 rows"):
        longer_reader(model, 16)
