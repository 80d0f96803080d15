"""The Attention page (AppTest) on real tiny runs: every layer and head drawn with the
prompt's characters on both axes (rows = query, columns = key), two runs and their
difference, per-head statistics in nats and positions, future attention for a run with
the causal mask off, and one-sentence messages for a user's mistakes."""

from __future__ import annotations


import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from helpers_apptest import plotly_array as array, plotly_specs
from helpers_browser import REPO
from helpers_markdown import as_read
from runs_fixtures import trained_store

PAGE = str(REPO / "views" / "attention.py")
CONTEXT = 16  # runs_fixtures.TINY


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny finished runs in one store: name -> run id."""
    return trained_store(tmp_path_factory, "attention-runs", {
        "causal": {}, "nomask": {"causal": False}, "wide": {"n_heads": 4, "n_layers": 1},
        "noattn": {"attention": False, "pos": "none"}, "long": {"context_window": 32}})


@pytest.fixture
def app(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))

    def make(*run_names, prompt: str | None = None) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=120)
        if run_names:
            at.query_params["run"] = [ids[n] for n in run_names]
        at.run()
        if prompt is not None:
            at.text_input(key="attention_prompt").input(prompt).run()
        assert not at.exception, at.exception
        return at
    make.ids = ids
    return make


def titled(at: AppTest, words: str) -> list[dict]:
    return [s for s in plotly_specs(at) if words in s["layout"]["title"]["text"]]


def axis_titles(spec: dict, letter: str) -> str:
    return " ".join(((ax.get("title") or {}).get("text") or "")
                    for name, ax in spec["layout"].items() if name.startswith(letter + "axis"))


def test_no_run_gives_one_helpful_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert len(at.info) == 1 and "No finished run" in at.info[0].value
    assert "Build & train" in at.info[0].value
    assert not at.get("plotly_chart")


def test_every_layer_and_head_with_prompt_characters_on_both_axes(app):
    at = app("causal", prompt="ROMEO: to be")
    grid = titled(at, "every layer and head")
    assert len(grid) == 1
    spec = grid[0]
    heatmaps = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2 * 2  # 2 layers x 2 heads
    assert "rows = query position, columns = key position" in spec["layout"]["title"]["text"]
    assert "query" in axis_titles(spec, "y") and "key" in axis_titles(spec, "x")
    labels = spec["layout"]["xaxis"]["ticktext"]
    assert "".join(labels) == "ROMEO:␣to␣be"  # every character, spaces made visible
    assert spec["layout"]["yaxis"]["ticktext"] == labels
    assert spec["layout"]["yaxis"]["autorange"] == "reversed"  # query 0 at the top
    z = array(heatmaps[0]["z"])
    assert z.shape == (12, 12)
    # Causal: rows sum to 1 over the visible keys, masked future cells are blank.
    assert np.allclose(np.nansum(z, axis=1), 1, atol=1e-5)
    assert np.isnan(z[0, 1:]).all() and not np.isnan(np.tril(z)).any()
    assert at.query_params["run"] in (app.ids["causal"], [app.ids["causal"]])  # in the URL


def test_one_head_up_close_names_query_and_key(app):
    at = app("causal", prompt="abc")
    [spec] = titled(at, "layer 0, head 0")
    assert "query" in spec["layout"]["yaxis"]["title"]["text"]
    assert "key" in spec["layout"]["xaxis"]["title"]["text"]
    assert spec["layout"]["xaxis"]["ticktext"] == ["a", "b", "c"]
    at.selectbox(key="attention_layer").select(1).run()
    at.selectbox(key="attention_head").select(1).run()
    assert not at.exception
    assert titled(at, "layer 1, head 1")


def test_head_statistics_carry_units_and_uniform_reference(app):
    at = app("causal", prompt="To be, or not")
    [entropy] = titled(at, "Entropy")
    [distance] = titled(at, "distance")
    assert "nats" in entropy["layout"]["yaxis"]["title"]["text"]
    assert "positions" in distance["layout"]["yaxis"]["title"]["text"]
    assert entropy["data"][0]["x"] == ["L0 H0", "L0 H1", "L1 H0", "L1 H1"]
    values = array(entropy["data"][0]["y"])
    T = 13
    assert ((values >= 0) & (values <= np.log(T) + 1e-6)).all()
    # The dashed reference: uniform causal attention, mean over rows of log(q + 1).
    [ref] = [t for t in entropy["data"] if t["name"] == "uniform attention"]
    assert np.isclose(array(ref["y"])[0], np.mean(np.log(np.arange(1, T + 1))))
    assert "0%" in " ".join(c.value for c in at.caption)  # causal: nothing on the future


def test_two_runs_side_by_side_with_their_difference_and_future_attention(app):
    at = app("causal", "nomask", prompt="To be, or not")
    grids = titled(at, "every layer and head")
    assert len(grids) == 2
    [diff] = titled(at, "difference in attention probability")
    assert len(diff["data"]) == 4 and "query" in axis_titles(diff, "y")
    assert diff["layout"]["coloraxis"]["cmid"] == 0
    # The no-mask run's grid shows the future (no blank triangle).
    nomask = next(s for s in grids if app.ids["nomask"] in s["layout"]["title"]["text"])
    assert not np.isnan(array(nomask["data"][0]["z"])).any()
    [future] = titled(at, "keys after the query")
    assert "fraction" in future["layout"]["yaxis"]["title"]["text"]
    by_run = {t["name"]: array(t["y"]) for t in future["data"]}
    causal = next(v for k, v in by_run.items() if app.ids["causal"] in k)
    nomask_f = next(v for k, v in by_run.items() if app.ids["nomask"] in k)
    assert np.all(causal == 0) and np.all(nomask_f > 0) and np.all(nomask_f < 1)
    assert len(at.multiselect(key="attention_runs").value) == 2


def test_difference_is_refused_for_different_shapes(app):
    at = app("causal", "wide", prompt="abc")
    assert not titled(at, "difference in attention probability")
    assert any("different shapes" in i.value for i in at.info)
    assert len(titled(at, "every layer and head")) == 2


def test_unknown_characters_are_named_and_the_page_stays(app):
    at = app("causal", prompt="naïve café")
    assert len(at.error) == 1
    assert "'ï'" in as_read(at.error[0].value) and "'é'" in as_read(at.error[0].value)
    assert at.text_input(key="attention_prompt").value == "naïve café"
    assert at.multiselect(key="attention_runs")  # the controls are still there
    assert not at.get("plotly_chart")


def test_long_prompt_is_cut_to_the_context_window(app):
    prompt = "First Citizen: before we proceed any further"
    at = app("causal", prompt=prompt)
    text = prompt[-CONTEXT:]
    assert any(f"last {CONTEXT} characters" in i.value and text in i.value for i in at.info)
    [grid] = titled(at, "every layer and head")
    ax = grid["layout"]["xaxis"]
    assert ax["ticktext"] == [text[i].replace(" ", "␣") for i in ax["tickvals"]]
    assert array(grid["data"][0]["z"]).shape == (CONTEXT, CONTEXT)
    [close] = titled(at, "layer 0, head 0")  # up close: every character labelled
    assert "".join(close["layout"]["xaxis"]["ticktext"]) == text.replace(" ", "␣")


def test_empty_prompt_and_run_without_attention(app):
    at = app("causal", prompt="")
    assert any("Type a prompt" in i.value for i in at.info) and not at.error
    at = app("noattn", prompt="abc")
    assert len(at.error) == 1 and "no attention layers" in at.error[0].value


def test_a_link_to_a_run_without_checkpoint_is_named(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = ["rdeadbeef", ids["nomask"]]
    at.run()
    assert not at.exception
    assert any("rdeadbeef" in i.value and "no finished checkpoint" in i.value
               for i in at.info)
    assert at.multiselect(key="attention_runs").value == [ids["nomask"]]


def test_side_by_side_close_ups_are_the_same_size_and_legends_clear_the_titles(app):
    """Two runs reading prompts of different lengths (contexts 16 and 32): their one-head
    close-ups get one height and the same fixed margins, so they are drawn at the same
    size in equal columns; the per-head charts' legends sit below the plot, not in the
    title."""
    at = app("causal", "long", prompt="To be, or not to be, that is the question")
    close = titled(at, "layer 0, head 0")
    assert len(close) == 2
    assert close[0]["layout"]["height"] == close[1]["layout"]["height"]
    assert close[0]["layout"]["margin"] == close[1]["layout"]["margin"]
    assert close[0]["layout"]["margin"]["autoexpand"] is False
    grids = titled(at, "every layer and head")
    assert len(grids) == 2
    assert grids[0]["layout"]["margin"] == grids[1]["layout"]["margin"]
    for spec in titled(at, "per head"):
        legend = spec["layout"]["legend"]
        assert legend["yanchor"] == "top" and legend["y"] < 0
