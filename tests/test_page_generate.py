"""The Generate page (AppTest): runs side by side continue the same prompt with the same
seed (the exact text llama_core.generate.generate_text gives), bars of the next-character
probabilities at each step, and unknown characters named with the rest of the page kept."""

from __future__ import annotations


import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from helpers_apptest import plotly_array as array, plotly_specs as bars
from helpers_browser import REPO
from helpers_markdown import as_read
from llama_core.lab.store import RunStore
from llama_core.checkpoint import load_checkpoint
from llama_core.generate import generate_text
from runs_fixtures import trained_store
from charts.generation import CHOSEN
from llama_core.generation_steps import generate_with_probs

PAGE = str(REPO / "views" / "generate.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_store(tmp_path_factory, "generate-runs",
                         {"rope": {}, "learned": {"pos": "learned"},
                          "layernorm": {"norm": "layernorm"}, "gelu": {"ffn": "gelu"}})


@pytest.fixture
def app(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))

    def make(*names, **widgets) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=120)
        if names:
            at.query_params["run"] = [ids[n] for n in names]
        at.run()
        for key, value in widgets.items():
            widget = at.text_input(key=key) if key == "generate_prompt" else None
            if widget is not None:
                widget.input(value)
            elif key in ("generate_top_k", "generate_seed"):
                at.number_input(key=key).set_value(value)
            else:
                at.slider(key=key).set_value(value)
        if widgets:
            at.run()
        assert not at.exception, at.exception
        return at
    make.ids = ids
    make.folder = folder
    return make


def checkpoint(app, name):
    store = RunStore(app.folder / "llama_lab.db")
    return load_checkpoint(store.checkpoint_path(app.ids[name]))


def test_no_run_gives_one_helpful_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert len(at.info) == 1 and "No finished run" in at.info[0].value


def test_two_runs_side_by_side_same_prompt_same_seed(app):
    at = app("rope", "learned", generate_prompt="ROMEO:", generate_length=40,
             generate_seed=7)
    assert len(at.code) == 2
    for code, name in zip(at.code, ("rope", "learned")):
        model, tok, _ = checkpoint(app, name)
        expected = generate_text(model, tok, "ROMEO:", 40, temperature=0.8, seed=7)
        assert code.value == "ROMEO:" + expected
    assert len(bars(at)) == 2


def test_generation_with_probabilities_matches_generate_text(app):
    model, tok, _ = checkpoint(app, "rope")
    for temperature, top_k in ((0.8, None), (1.3, 5), (0.0, None)):
        text, table = generate_with_probs(model, tok, "To be", 25, temperature, top_k, 3)
        assert text == generate_text(model, tok, "To be", 25, temperature, top_k, 3)
        assert table["step"].nunique() == 25
        chosen = table[table["chosen"]]
        assert "".join(chosen["character"]) == text
        if top_k:
            # Only the top k can be drawn, and their probabilities sum to 1.
            for _, step in table.groupby("step"):
                assert (step["probability"] > 0).sum() <= top_k


def test_probability_bars_for_a_step(app):
    at = app("rope", generate_top_k=5, generate_length=20)
    [spec] = bars(at)
    bar = spec["data"][0]
    p = array(bar["y"])
    assert len(p) == 5 and np.isclose(p.sum(), 1, atol=1e-5)  # top-5: all the mass
    assert list(p) == sorted(p, reverse=True)
    assert bar["marker"]["color"].count(CHOSEN) == 1  # the character drawn
    assert spec["layout"]["yaxis"]["title"]["text"] == "probability"
    assert "step 1" in spec["layout"]["title"]["text"]
    at.slider(key="generate_step").set_value(12).run()
    assert not at.exception
    assert "step 12" in bars(at)[0]["layout"]["title"]["text"]


def test_unknown_characters_named_with_the_page_intact(app):
    at = app("rope", "learned", generate_prompt="Zoë says ¡hola!")
    assert len(at.error) == 1
    msg = as_read(at.error[0].value)
    assert "'ë'" in msg and "'¡'" in msg
    assert at.text_input(key="generate_prompt").value == "Zoë says ¡hola!"
    assert at.slider(key="generate_temperature") and at.slider(key="generate_length")
    assert len(at.subheader) >= 2  # both runs still have their column
    assert not at.code and not at.get("plotly_chart")


def test_empty_prompt_and_seed_change(app):
    at = app("rope", generate_prompt="")
    assert any("Type a prompt" in i.value for i in at.info) and not at.error
    a = app("rope", generate_seed=1, generate_length=60).code[0].value
    b = app("rope", generate_seed=2, generate_length=60).code[0].value
    assert a != b and a.startswith("ROMEO:") and b.startswith("ROMEO:")


def rows_of_charts(at: AppTest) -> list[int]:
    """How many plotly charts each row of columns on the page holds."""
    rows = []

    def walk(node):
        kids = list(getattr(node, "children", {}).values())
        if kids and all(getattr(k, "type", "") == "column" for k in kids):
            charts = [len([e for e in _leaves(k) if e.type == "plotly_chart"]) for k in kids]
            if sum(charts):
                rows.append(sum(1 for c in charts if c))
        for k in kids:
            walk(k)

    walk(at._tree)
    return rows


def _leaves(node):
    kids = getattr(node, "children", None)
    if not kids:
        yield node
        return
    for k in kids.values():
        yield from _leaves(k)


def test_four_runs_are_two_by_two_with_titles_that_fit(app):
    """Four runs four across at 1280 px cut every title and pile the ticks up: they go
    two to a row, and each title line fits a half-width chart."""
    at = app("rope", "learned", "layernorm", "gelu")
    specs = bars(at)
    assert len(specs) == 4
    assert rows_of_charts(at) == [2, 2]
    for spec in specs:
        for line in as_read(spec["layout"]["title"]["text"]).split("<br>"):
            assert len(line) <= 34, line
