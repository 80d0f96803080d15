"""The ladder page under AppTest: the class set's seven rungs on first load, our table
beside the write-up's published numbers (exactly as TEACHING.md gives them, labelled as
theirs), and a rung trained live joining the chart under a group id in the URL."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from helpers_apptest import job_manager, open_page
from helpers_markdown import as_read
from llama_core.presets import LADDER
from llama_core.lab.store import RunStore


def open_ladder(**params) -> AppTest:
    return open_page("views/ladder.py", **params)


def trace_names(at: AppTest) -> list[str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [t["name"] for t in spec["data"] if t.get("showlegend") is not False]


def test_first_load_draws_every_rung_from_the_class_set(app_runs):
    at = open_ladder()
    names = trace_names(at)
    assert len(names) == 7 and all(n.endswith("· class set (3 seeds)") for n in names)
    assert names[0].startswith("1. embedding + MLP") and names[-1].startswith("7. 4 stacked")
    ours = at.table[0].value
    assert len(ours) == 7
    assert list(ours["steps"]) == ["300"] * 7
    assert ours["val loss, class set (mean ± 95% CI)"].str.endswith("(n=3)").all()


def test_their_numbers_are_the_write_ups_exactly_and_labelled_theirs(app_runs):
    at = open_ladder()
    theirs = at.table[1].value
    rows = [(i.replace("\\", ""), *theirs.loc[i, ["params", "steps", "val loss"]])
            for i in theirs.index]
    assert rows == [
        ("embedding + MLP (softmax applied twice: a bug)", "33,217", "1,000", "3.94"),
        ("embedding + MLP", "33,217", "1,000", "2.51"),
        ("+ RMSNorm", "35,265", "1,000", "2.50"),
        ("+ RoPE multi-head attention, no mask", "559,681", "1,000",
         "0.16 (leak: it reads the answer)"),
        ("+ causal mask", "559,681", "1,000 / 6,000", "2.08 / 1.90"),
        ("+ SwiGLU", "592,706", "5,000", "1.90"),
        ("Llama, 4 blocks", "2,370,246", "5,000 / 25,000", "1.55 / 1.00"),
    ]
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Not ours" in text
    assert "normalises over the whole (sequence, width) block" in text
    assert "final 1.00 is suspect" in text
    assert "0.16 without a mask is a leak" in text


def test_zoom_leaves_out_the_rung_that_reads_the_answer(app_runs):
    at = open_ladder()
    at.toggle(key="ld_zoom").set_value(True).run()
    names = trace_names(at)
    assert len(names) == 6 and not any(n.startswith("3.") for n in names)


def test_training_a_rung_adds_its_curve(app_runs):
    at = open_ladder()
    at.number_input(key="ld_steps").set_value(20)
    at.button(key="ld_train").click().run()
    assert not at.exception, at.exception
    group = at.query_params["ladder"]
    assert group.startswith("ld-")
    store = RunStore(app_runs / "llama_lab.db")
    (run,) = store.list_runs(group=group)
    assert run.name == LADDER[0] and run.train_config["steps"] == 20
    assert job_manager(app_runs).wait(run.id, timeout=240) == "finished"
    at.run()
    at.run()
    assert not at.exception, at.exception
    names = trace_names(at)
    assert "1. embedding + MLP · yours (1 seed)" in names
    assert "1. embedding + MLP · class set (3 seeds)" in names
    ours = at.table[0].value
    assert ours["val loss, yours"].iloc[0] == f"{store.get_run(run.id).final_val_loss:.3f}"


def test_an_unknown_ladder_in_the_link_is_a_warning(app_runs):
    at = open_ladder(ladder="ld-nothere")
    assert any("ld-nothere" in as_read(w.value) for w in at.warning)
    assert "ladder" not in at.query_params
