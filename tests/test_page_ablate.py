"""The Ablations page under AppTest: the class set on first load (bands, verdicts,
parameters, health, records), the form's time estimate (llama_core's), a new ablation
queued from the form under one group id in the URL and summarised when it finishes, and
a record re-run with the same configs."""

from __future__ import annotations

import json
import re

from streamlit.testing.v1 import AppTest

from helpers_apptest import job_manager, open_page, plotly_values as plain, read_table
from helpers_markdown import as_read
from llama_core.config import model_from_dict, train_from_dict
from llama_core.lab import classset
from llama_core.lab.store import RunStore


def open_ablate(**params) -> AppTest:
    return open_page("views/ablate.py", **params)


def chart(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def chart_config(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.config)


def test_first_load_shows_the_class_set_with_bands_and_verdicts(app_runs):
    at = open_ablate()
    assert at.query_params["group"] == "classset-ablation"
    spec = chart(at)
    bands = {t["legendgroup"] for t in spec["data"] if t.get("fill") == "tonexty"}
    assert bands == {"baseline", "norm=layernorm", "norm=none", "pos=learned", "pos=none",
                     "ffn=gelu", "ffn=relu", "causal=false", "n_layers=1",
                     "n_kv_heads=2", "n_kv_heads=1"}
    config = chart_config(at)
    assert config["displayModeBar"] is True
    assert config["toImageButtonOptions"]["format"] == "png"
    table = read_table(at)
    assert table.loc["baseline", "verdict"] == "baseline"
    assert table.loc["norm=none", "verdict"] == "worse"
    assert set(table["verdict"]) <= {"baseline", "better", "worse", "within seed noise"}
    assert "reads the answer" in table.loc["causal=false", "note"]
    assert table.loc["ffn=gelu", "Δ parameters"].startswith("-")


def test_zoom_leaves_out_the_variants_that_see_the_future(app_runs):
    at = open_ablate()
    at.toggle(key="ab_zoom").set_value(True).run()
    names = {t["name"] for t in chart(at)["data"]}
    assert not any(n.startswith("causal=false") for n in names)
    assert any(n.startswith("pos=none") for n in names)


def test_compute_tab_counts_parameters_and_flops_with_the_corpus_vocabulary(app_runs):
    at = open_ablate()
    comp = next(d.value for d in at.dataframe if "component" in d.value.columns)
    total = comp[(comp["quantity"] == "parameters") & (comp["component"] == "total")]
    runs = classset.load().list_runs(group="classset-ablation")
    recorded = {r.name: r.params for r in runs}
    for variant, params in recorded.items():
        assert int(total[variant].iloc[0]) == params  # the page agrees with training
    assert (comp["quantity"] == "FLOPs per token").sum() == 6


def test_health_tab_compares_depth_8_without_norm(app_runs):
    at = open_ablate(group="classset-health")
    assert at.multiselect(key="ab_health_classset-health").value == ["baseline", "norm=none"]
    specs = [chart(at, i) for i in range(len(at.get("plotly_chart")))]
    depth = next(s for s in specs if "gradient norm of the layer's weights" in json.dumps(
        s["layout"].get("annotations", [])))
    names = {t.get("name") for t in depth["data"]}
    assert {"baseline", "norm=none"} <= names
    layers = max(max(plain(t["x"])) for t in depth["data"] if t.get("name") == "baseline")
    assert layers == 7  # eight layers, 0..7


def test_an_unknown_group_in_the_link_is_a_warning(app_runs):
    at = open_ablate(group="sw-nothere")
    assert any("sw-nothere" in as_read(w.value) for w in at.warning)
    assert at.query_params["group"] == "classset-ablation"


def test_the_time_estimate_is_llama_cores_from_the_class_set_speeds(app_runs):
    """The form's rough time: llama_core.speed.estimate for every planned run, fed the
    class set's measured one-thread speeds, plus start-up, over the job manager's slots."""
    from charts.components import config_of
    from llama_core.lab.sweeps import plan_sweep
    from llama_core.speed import estimate
    from ui.estimates import RUN_OVERHEAD_S

    at = open_ablate()
    at.number_input(key="ab_steps").set_value(3000)
    at.number_input(key="ab_seeds").set_value(3)
    at.run()
    caption = next(c.value for c in at.caption if "Rough time" in c.value)
    shown = re.search(r"about ([0-9.]+) min", caption)[1]
    past = [(config_of(r.model_config), r.tokens_per_s)
            for r in classset.load().list_runs(group="classset-ablation")]
    variants = classset.variants_for("tiny")
    plan = plan_sweep("tiny", {"steps": 3000, "time_budget": None},
                      [variants["norm=layernorm"], variants["ffn=gelu"]], [0, 1, 2])
    seconds = sum(estimate(p.model, p.train, "cpu", past)["seconds"] + RUN_OVERHEAD_S
                  for p in plan) / job_manager(app_runs).max_concurrent
    assert len(plan) == 9 and shown == f"{seconds / 60:.1f}"


def test_start_an_ablation_from_the_form_and_read_its_verdicts(app_runs):
    at = open_ablate()
    at.number_input(key="ab_steps").set_value(20)
    at.number_input(key="ab_seeds").set_value(2)
    at.multiselect(key="ab_variants").set_value(["ffn=gelu"])
    at.checkbox(key="ab_match").check()
    at.run()
    assert "4 runs: 2 variants (baseline included) × 2 seeds" in " ".join(
        c.value for c in at.caption)
    at.button(key="ab_start").click().run()
    assert not at.exception, at.exception
    group = at.query_params["group"]
    assert group.startswith("sw-")
    store = RunStore(app_runs / "llama_lab.db")
    runs = store.list_runs(group=group)
    assert sorted((r.name, r.seed) for r in runs) == [
        ("baseline", 0), ("baseline", 1), ("ffn=gelu", 0), ("ffn=gelu", 1)]
    for r in runs:
        assert r.train_config["steps"] == 20 and r.model_config["ffn_multiple_of"] == 1
    manager = job_manager(app_runs)
    for r in runs:
        assert manager.wait(r.id, timeout=240) == "finished"
    at.run()
    at.run()  # the fragment notices the end and reruns the page
    assert not at.exception, at.exception
    table = read_table(at)
    assert list(table.index) == ["baseline", "ffn=gelu"]
    assert table.loc["ffn=gelu", "verdict"] in ("better", "worse", "within seed noise")
    assert table.loc["ffn=gelu", "seeds"] == 2
    fills = [t for t in chart(at)["data"] if t.get("fill") == "tonexty"]
    assert len(fills) == 2
    # matched: SwiGLU at floor(8d/3) = 170 hidden units is within 1% of GELU's 4d
    params = {r.name: r.params for r in store.list_runs(group=group)}
    assert abs(params["baseline"] - params["ffn=gelu"]) / params["ffn=gelu"] < 0.01


def test_records_export_and_rerun_a_class_set_record(app_runs):
    at = open_ablate()
    records = next(d.value for d in at.dataframe if "code version" in d.value.columns)
    assert len(records) == 33 and set(records["device"]) == {"cpu"}
    assert len(at.get("download_button")) == 3
    target = classset.load().list_runs(group="classset-ablation")[0]
    at.selectbox(key="ab_rerun_pick").set_value(target.id)
    at.button(key="ab_rerun_one").click().run()
    assert not at.exception, at.exception
    group = at.query_params["group"]
    store = RunStore(app_runs / "llama_lab.db")
    (run,) = store.list_runs(group=group)
    # A record made before a field existed is re-run with that field's default.
    assert model_from_dict(run.model_config) == model_from_dict(target.model_config)
    assert train_from_dict(run.train_config) == train_from_dict(target.train_config)
    assert (run.name, run.seed) == (target.name, target.seed)


def test_a_started_sweep_is_the_one_shown_and_sweeps_read_by_their_variants(app_runs):
    """With another sweep already in the store, starting one shows the one just started,
    and the list names sweeps by what they compare and when, not by their ids."""
    from llama_core.presets import build_configs

    store = RunStore(app_runs / "llama_lab.db")
    for name, changes in (("baseline", {}), ("pos=learned", {"pos": "learned"})):
        rid = store.create_run(*build_configs("tiny", {"steps": 5, **changes}), name=name,
                               group="sw-older")
        store.finish_run(rid, "finished", {"final_val_loss": 3.0})
    at = open_ablate(group="sw-older")
    at.number_input(key="ab_steps").set_value(5)
    at.number_input(key="ab_seeds").set_value(1)
    at.multiselect(key="ab_variants").set_value(["ffn=gelu"])
    at.run()
    started = []
    for _ in range(2):  # the same sweep twice, within the same minute
        at.button(key="ab_start").click().run()
        assert not at.exception, at.exception
        started.append(at.query_params["group"])
        picker = at.selectbox(key="ab_source")
        assert picker.value == started[-1]
    assert len(set(started)) == 2 and "sw-older" not in started
    shown = picker.options[picker.index]
    assert shown.startswith("ffn=gelu vs baseline · 2 runs · started "), shown
    assert len(set(picker.options)) == len(picker.options)  # a label finds one sweep
    assert not any("sw-" in o for o in picker.options), picker.options
    assert any(o.startswith("pos=learned vs baseline · 2 runs") for o in picker.options)
