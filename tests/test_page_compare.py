"""Compare under AppTest with real finished runs: the URL picks the runs, the chart's
traces are exactly those runs on every x axis, the baseline is emphasised and the Δ
column follows it, the differing-fields table lists exactly what differs, and unknown
ids in the URL are a warning naming them. Plus the pure builders behind the page."""

from __future__ import annotations

import json
import types

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers_apptest import open_page, plotly_values, stop_jobs
from helpers_markdown import as_read
from llama_core import inspect as lc_inspect
from llama_core.config import model_from_dict
from llama_core.lab.store import RunStore
from runs_fixtures import train_tiny_runs
from charts.comparison import differing_fields, final_metrics_table, seed_only_difference
from charts.loss import compare_figure, curve_frame, downsample


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three finished tiny runs in one store: baseline and layernorm with seed 0, and
    the baseline again with seed 1."""
    path = tmp_path_factory.mktemp("compare-page-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMA_LAB_RUNS", str(path))
        store = RunStore(path / "llama_lab.db")
        base, layernorm = train_tiny_runs(store.path, {"baseline": {},
                                                       "layernorm": {"norm": "layernorm"}})
        (base_seed1,) = train_tiny_runs(store.path, seeds=(1,))
        yield types.SimpleNamespace(store=store, base=base, layernorm=layernorm,
                                    base_seed1=base_seed1)
        stop_jobs(path)


def open_compare(ids=(), **params) -> AppTest:
    return open_page("views/compare.py", 60, **({"runs": list(ids)} if ids else {}), **params)


def traces(at: AppTest) -> list[dict]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    out = []
    for t in spec["data"]:
        t = dict(t, x=plotly_values(t.get("x")), y=plotly_values(t.get("y")))
        out.append(t)
    return out


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def final_numbers(at: AppTest) -> dict[str, dict[str, str]]:
    """The side-by-side table as {run id: {metric: shown value}} (headers start with
    the run id, after a star for the baseline)."""
    df = frame_with(at, "metric").set_index("metric")
    return {col.lstrip("★ ").split(" · ")[0]: df[col].to_dict() for col in df.columns}


def test_two_runs_from_the_url_are_the_charts_traces(runs):
    at = open_compare([runs.base, runs.layernorm])
    assert at.multiselect(key="runs").value == [runs.base, runs.layernorm]
    ts = traces(at)
    assert sorted(t["meta"] for t in ts) == sorted([runs.base,
                                                                    runs.layernorm])
    for t in ts:
        assert t["x"] == [10, 20, 30]
        run_id = t["meta"]
        vals = [m["val_loss"] for m in runs.store.metrics(run_id)]
        assert t["y"] == pytest.approx(vals)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "training step"
    assert "nats per character" in spec["layout"]["yaxis"]["title"]["text"]
    assert not at.warning


def test_x_axis_and_loss_switch_units(runs):
    at = open_compare([runs.base, runs.layernorm])
    at.segmented_control(key="x").set_value("flops").run()
    assert not at.exception
    run = runs.store.get_run(runs.base)
    per_token = lc_inspect.flops_per_token(
        model_from_dict(run.model_config))["training_flops_per_token"]
    base_trace = next(t for t in traces(at) if t["meta"] == runs.base)
    tokens = [m["tokens"] for m in runs.store.metrics(runs.base)]
    assert base_trace["x"] == pytest.approx([t * per_token for t in tokens])
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "training compute (FLOPs)"
    # The browser writes a bound widget's value (as its label) into the URL; a URL
    # value seeds the widget.
    shared = open_compare([runs.base, runs.layernorm], x="FLOPs", loss="training",
                          baseline=runs.layernorm)
    assert shared.segmented_control(key="x").value == "flops"
    assert shared.segmented_control(key="loss").value == "train_loss"
    assert shared.selectbox(key="baseline").value == runs.layernorm

    at.segmented_control(key="x").set_value("seconds").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "training time (s)"
    at.segmented_control(key="loss").set_value("train_loss").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"] == "training loss (nats per character)"


def test_baseline_is_emphasised_and_deltas_follow_it(runs):
    at = open_compare([runs.base, runs.layernorm])
    assert at.selectbox(key="baseline").value == runs.base
    widths = {t["meta"]: t["line"]["width"] for t in traces(at)}
    assert widths[runs.base] > widths[runs.layernorm]
    table = final_numbers(at)
    b = runs.store.get_run(runs.base).final_val_loss
    ln = runs.store.get_run(runs.layernorm).final_val_loss
    delta = "Δ val loss vs baseline (nats/char)"
    assert table[runs.base][delta] == "+0.000"
    assert table[runs.layernorm][delta] == f"{ln - b:+.3f}"
    for metric in ("final train loss (nats/char)", "steps", "tokens", "wall time (s)",
                   "tokens/s", "parameters"):
        for run_id in (runs.base, runs.layernorm):
            assert table[run_id][metric] != "—", metric
    assert table[runs.base]["steps"] == "30"

    at.selectbox(key="baseline").set_value(runs.layernorm).run()
    assert not at.exception
    widths = {t["meta"]: t["line"]["width"] for t in traces(at)}
    assert widths[runs.layernorm] > widths[runs.base]
    table = final_numbers(at)
    assert table[runs.base][delta] == f"{b - ln:+.3f}"
    assert table[runs.layernorm][delta] == "+0.000"


def url_values(at: AppTest, param: str) -> list[str]:
    value = at.query_params[param]
    return list(value) if isinstance(value, list) else [value]


def test_default_baseline_is_the_llama_run_and_chips_name_runs(runs):
    """Picked with the layernorm run first, the baseline is still the all-Llama run; the
    chips and the baseline's options read run names, while the URL keeps ids."""
    at = open_compare([runs.layernorm, runs.base])
    assert at.selectbox(key="baseline").value == runs.base
    assert url_values(at, "baseline") == [runs.base]
    assert url_values(at, "runs") == [runs.layernorm, runs.base]
    chips = at.multiselect(key="runs").options
    assert any(c.startswith("layernorm · seed 0 · ") for c in chips), chips
    assert not any(c == runs.base for c in chips)
    assert at.selectbox(key="baseline").options[0].startswith("layernorm · ")
    # No Llama run picked: the first run picked.
    alone = open_compare([runs.layernorm])
    assert alone.selectbox(key="baseline").value == runs.layernorm
    # A baseline the user picks wins, and goes into the URL.
    at.selectbox(key="baseline").set_value(runs.layernorm).run()
    assert at.selectbox(key="baseline").value == runs.layernorm
    assert url_values(at, "baseline") == [runs.layernorm]


def test_differing_fields_are_exactly_those_that_differ(runs):
    at = open_compare([runs.base, runs.layernorm])
    diff = frame_with(at, "setting")
    assert diff["setting"].tolist() == ["norm"]
    assert diff.iloc[0, 2:].tolist() == ["rmsnorm", "layernorm"]

    at = open_compare([runs.base, runs.layernorm, runs.base_seed1])
    assert frame_with(at, "setting")["setting"].tolist() == ["norm", "seed"]

    at = open_compare([runs.base, runs.base_seed1])
    assert frame_with(at, "setting")["setting"].tolist() == ["seed"]
    assert any("differ only in their seed" in i.value for i in at.info)


def test_latest_samples_side_by_side(runs):
    at = open_compare([runs.base, runs.layernorm])
    shown = [c.value for c in at.code]
    for run_id in (runs.base, runs.layernorm):
        assert runs.store.samples(run_id)[-1]["text"].rstrip("\n") in shown


@pytest.mark.parametrize("bad", [["rnothere"], ["rnothere", "../../x"], ["NOT AN ID`"]])
def test_unknown_ids_in_the_url_are_named_and_the_rest_still_shown(runs, bad):
    at = open_compare([runs.base, *bad, runs.layernorm])
    assert not at.error
    (warning,) = at.warning
    for b in bad:
        assert b in as_read(warning.value)  # named as typed
    assert at.multiselect(key="runs").value == [runs.base, runs.layernorm]
    assert len(traces(at)) == 2


def test_only_unknown_ids_leave_nothing_chosen(runs):
    at = open_compare(["rgone"])
    assert "rgone" in at.warning[0].value
    assert not at.get("plotly_chart")
    assert any("Pick two or more runs" in i.value for i in at.info)


def test_no_choice_lists_the_runs_to_pick_from(runs):
    at = open_compare()
    table = frame_with(at, "final val loss (nats/char)")
    assert {runs.base, runs.layernorm, runs.base_seed1} <= set(table["run"])
    at.multiselect(key="runs").select(runs.base).select(runs.base_seed1).run()
    assert not at.exception
    assert len(traces(at)) == 2


# --- The pure builders --------------------------------------------------------------

def _run(id_, name, model, train, **kw):
    base = dict(id=id_, name=name, model_config=model, train_config=train, status="finished",
                final_val_loss=None, final_train_loss=None, wall_s=None, tokens_per_s=None,
                steps=0, tokens=0, params=None, seed=train.get("seed"))
    return types.SimpleNamespace(**{**base, **kw})


def test_differing_fields_handles_missing_and_typed_values():
    a = _run("ra", "a", {"norm": "rmsnorm", "d_model": 64, "causal": True},
             {"lr": 0.001, "seed": 0})
    b = _run("rb", "b", {"norm": "rmsnorm", "d_model": 64, "causal": False},
             {"lr": 0.001, "seed": 0, "time_budget": 60.0})
    diff = differing_fields([a, b])
    assert diff["setting"].tolist() == ["causal", "time_budget"]
    assert diff.iloc[0, 2:].tolist() == ["true", "false"]
    assert diff.iloc[1, 2:].tolist() == ["—", "60"]
    assert differing_fields([a]).empty
    assert not seed_only_difference(diff)


def test_final_table_uses_latest_metrics_for_a_run_still_training():
    a = _run("ra", "a", {}, {}, final_val_loss=2.0, steps=100, tokens=1000)
    b = _run("rb", "b", {}, {}, status="running")
    table = final_metrics_table([a, b], "ra", {"rb": {"val_loss": 2.5, "step": 40,
                                                      "tokens": 400, "seconds": 3.0}})
    row = table.set_index("run").loc["rb"]
    assert row["final val loss (nats/char)"] == 2.5
    assert row["Δ val loss vs baseline (nats/char)"] == pytest.approx(0.5)
    assert row["steps"] == 40 and row["status"] == "running"


def test_compare_figure_draws_the_baseline_on_top_and_keeps_legend_order():
    frames = [{"run_id": f"r{i}", "label": f"r{i} · run {i}",
               "frame": curve_frame([{"step": s, "tokens": s * 10, "val_loss": 3 - s / 100}
                                     for s in (10, 20)], 1e6)} for i in range(3)]
    fig = compare_figure(frames, x="flops", baseline="r0")
    assert fig.data[-1].name == "★ r0 · run 0" and fig.data[-1].meta == "r0"
    assert [t.legendrank for t in fig.data] == [1001, 1002, 1000]
    assert list(fig.data[-1].x) == [1e8, 2e8]
    with pytest.raises(ValueError):
        compare_figure(frames, x="hours")


def test_downsample_keeps_the_last_point():
    df = pd.DataFrame({"step": range(10_001)})
    small = downsample(df, 2000)
    assert len(small) <= 2001 and small["step"].iloc[-1] == 10_000
