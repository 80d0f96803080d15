"""The Pitfalls page under AppTest: every bug labelled as a bug, its probe firing with
the bug switched on and silent with it off (on the page's own freshly built models),
the class set's bug-vs-correct comparison, and the probes run on trained checkpoints."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from helpers_browser import REPO
from helpers_markdown import as_read
from llama_core.lab import classset
from llama_core.lab.store import RunStore
from llama_core.pitfalls import PITFALLS
from runs_fixtures import train_tiny_runs


@pytest.fixture
def app_runs(runs_dir):
    yield runs_dir
    import ui.state
    ui.state._manager_for(str(runs_dir)).shutdown(stop_runs=True, timeout=30)
    ui.state._manager_for.clear()


def open_pitfalls(**params) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120)
    at.switch_page("views/pitfalls.py")
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def page_texts(at: AppTest, kind: str) -> list[str]:
    return [as_read(e.value) for e in getattr(at, kind)]


def verdict_table(at: AppTest):
    table = at.table[0].value
    table.index = [as_read(i) for i in table.index]  # st.table cells are Markdown
    return table


def test_the_page_offers_every_pitfall_of_the_registry_by_its_title(app_runs):
    at = open_pitfalls()
    menu = at.get("button_group")[0]
    assert menu.options == [p.title for p in PITFALLS.values()]
    assert menu.value == next(iter(PITFALLS))
    for p in PITFALLS.values():
        at.get("button_group")[0].set_value(p.name).run()
        assert not at.exception, at.exception
        assert at.query_params["bug"] == p.name
        assert any(h.value.endswith(f"BUG: {p.title}") for h in at.subheader)


@pytest.mark.parametrize("bug", list(PITFALLS))
def test_each_probe_fires_with_the_bug_on_and_is_silent_with_it_off(app_runs, bug):
    at = open_pitfalls(bug=bug)
    assert any("BUG:" in h.value for h in at.subheader)
    # Framed as deliberate bugs (an info box), never a red failure banner at the top.
    assert any("deliberate bugs, switched on on purpose" in i for i in page_texts(at, "info"))
    assert not any("deliberate" in e for e in page_texts(at, "error"))
    assert at.toggle(key=f"pf_on_{bug}").value is True
    fired = [e for e in page_texts(at, "error") if "FIRED" in e]
    assert fired and "with the bug ON" in fired[0]
    assert not any("silent" in s for s in page_texts(at, "success"))
    at.toggle(key=f"pf_on_{bug}").set_value(False).run()
    assert not at.exception, at.exception
    assert not any("FIRED" in e for e in page_texts(at, "error"))
    silent = [s for s in page_texts(at, "success") if "silent" in s]
    assert silent and "a fresh correct model" in silent[0]


def test_the_class_set_comparison_shows_the_bug_against_the_correct_model(app_runs):
    at = open_pitfalls(bug="causal_off")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = {t.get("name") for s in specs for t in s["data"]}
    assert "correct model (3 seeds)" in names and "BUG: causal=false (3 seeds)" in names
    table = verdict_table(at)
    assert "reads the answer" in table.loc["BUG: causal=false", "note"]
    assert table.loc["BUG: causal=false", "verdict"] == "better"  # too good: the leak
    assert len(at.code) >= 2  # the samples, side by side


def test_rope_unrotated_is_compared_with_no_positions_at_all(app_runs):
    at = open_pitfalls(bug="rope_unrotated")
    table = verdict_table(at)
    assert {"correct model", "BUG: bug=rope_unrotated", "pos=none"} <= set(table.index)
    assert (table.loc["BUG: bug=rope_unrotated", "val loss (mean ± 95% CI)"]
            == table.loc["pos=none", "val loss (mean ± 95% CI)"])


def test_probes_run_on_trained_checkpoints(app_runs):
    db = app_runs / "llama_lab.db"
    train_tiny_runs(db, {"baseline": {}, "bug=norm_over_sequence":
                         {"bug": "norm_over_sequence"}}, seeds=(0,), group="pf-test")
    at = open_pitfalls(bug="norm_over_sequence", pitgroup="pf-test")
    fired = [e for e in page_texts(at, "error") if "trained run" in e]
    silent = [s for s in page_texts(at, "success") if "trained run" in s]
    assert len(fired) == 1 and "bug=norm_over_sequence" in fired[0] and "FIRED" in fired[0]
    assert len(silent) == 1 and "baseline" in silent[0] and "silent" in silent[0]


def test_train_it_yourself_queues_the_bug_and_the_correct_model_on_one_seed(app_runs):
    at = open_pitfalls(bug="dropout_at_eval")
    at.number_input(key="pf_seed").set_value(4)
    at.button(key="pf_train").click().run()
    assert not at.exception, at.exception
    group = at.query_params["pitgroup"]
    runs = RunStore(app_runs / "llama_lab.db").list_runs(group=group)
    assert sorted(r.name for r in runs) == ["dropout=0.1", "dropout=0.1 bug=dropout_at_eval"]
    assert {r.seed for r in runs} == {4}
    for r in runs:
        assert r.model_config["dropout"] == 0.1
        assert r.model_config["context_window"] == classset.PITFALL_BASE["context_window"]
        assert r.train_config["steps"] == classset.PITFALL_BASE["steps"]
    import ui.state
    manager = ui.state._manager_for(str(app_runs))
    for r in runs:
        manager.stop(r.id)
