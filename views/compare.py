"""Compare: several runs' loss curves on one chart, what differs between them, and
their final numbers against a pinned baseline.

The chosen runs and the baseline live in the URL as ids (?runs=ID&runs=ID&baseline=ID),
written by this page rather than bound, because a bound widget writes its label into
the URL and the chips show run names; the x axis and the loss are bound widgets
(&x=FLOPs&loss=training). So a comparison can be shared as a link and survives a
reload. Ids in a link that this run store does not hold are named in a warning and left
out; the rest are still shown. Unless the link pins one, the baseline is the all-Llama
run (the modifications are measured from it), else the first run picked.
"""

from __future__ import annotations

import streamlit as st

from charts.comparison import (default_baseline, differing_fields, final_metrics_table,
                               latest_metrics, runs_overview, seed_only_difference,
                               side_by_side)
from charts.labels import chip_label, short_label
from charts.loss import compare_figure, run_series
from charts.palette import BASELINE_MARK, METRICS, X_AXES
from llama_core.errors import UserError
from llama_core.lab.hf_runs import imported_from
from llama_core.lab.store import TERMINAL
from ui import state
from ui.figures import fitted_columns
from ui.plain_text import md_literal

POLL_S = 2.0
METRIC_PICKER = {"val_loss": "validation", "train_loss": "training",
                 "val_bpc": "bits per character"}
MAX_SAMPLE_COLUMNS = 3


def pick_from_table() -> None:
    """Callback of 'Compare the ticked runs': the table's ticked rows become the choice."""
    rows = st.session_state.get("cmp_table", {}).get("selection", {}).get("rows", [])
    ids = st.session_state.get("cmp_table_ids", [])
    ticked = [ids[i] for i in rows if i < len(ids)]
    if ticked:
        st.session_state["runs"] = list(dict.fromkeys([*st.session_state.get("runs", []),
                                                       *ticked]))


def runs_table(runs) -> None:
    """Every run in the store, to find ids by name; tick rows to add them."""
    st.session_state["cmp_table_ids"] = [r.id for r in runs]
    table = runs_overview(runs)
    widths = {"run": 95, "name": 140, "status": 80, "seed": 70, "steps": 60,
              "wall time (s)": 95}
    columns = fitted_columns(table.columns, widths)
    columns["final val loss (nats/char)"] = st.column_config.NumberColumn(
        "val loss (nats/char)", format="%.3f", width=columns["final val loss (nats/char)"][
            "width"], help="final validation loss, nats per character")
    columns["wall time (s)"] = st.column_config.NumberColumn(format="%.1f", width=95)
    st.dataframe(table, hide_index=True, key="cmp_table", on_select="rerun",
                 selection_mode="multi-row", height=min(38 * (len(runs) + 1) + 4, 400),
                 column_config=columns)
    st.button("Compare the ticked runs", key="cmp_add", on_click=pick_from_table,
              icon=":material/add:")


def keep_in_url(param: str, value) -> None:
    """Write a choice (an id, or a list of ids) into the page address, or drop it."""
    if value:
        st.query_params[param] = value
    elif param in st.query_params:
        del st.query_params[param]


def results(chosen: list[str], x: str, metric: str, baseline: str | None,
            was_active: bool) -> None:
    """Chart and tables for the chosen runs (the polled fragment's body)."""
    store = state.store()
    runs = []
    for run_id in chosen:
        try:
            runs.append(store.get_run(run_id))
        except UserError:  # deleted since the page was drawn
            continue
    if was_active and all(r.status in TERMINAL for r in runs):
        st.rerun()
    metrics = store.metrics_frame([r.id for r in runs])
    series = run_series(runs, metrics)
    if x == "flops" and any(s["frame"]["flops"].isna().all() for s in series
                            if len(s["frame"])):
        st.warning("Some runs have no valid model config, so their FLOPs are unknown and "
                   "they are missing from this chart.")
    st.plotly_chart(compare_figure(series, x=x, metric=metric, baseline=baseline),
                    key="cmp_chart", width="stretch")
    if metric != "val_bpc" and len({s["tokenizer"] for s in series}) > 1:
        st.warning("These runs read different tokens (characters and byte pairs), so "
                   "their losses per token are not comparable; choose bits per character.")
    if any(r.active for r in runs):
        st.caption("Some runs are still training: their curves grow as you watch.")
    imported = [(r, rec) for r in runs if (rec := imported_from(r)) is not None]
    if imported:
        st.info(" ".join(f"{r.id} was imported from {md_literal(str(rec.get('source')))}: "
                         "trained elsewhere, it has no training curve or final loss here."
                         for r, rec in imported))

    st.subheader("Final numbers")
    table = final_metrics_table(runs, baseline, latest_metrics(metrics))
    labels = {r.id: (f"{BASELINE_MARK} " if r.id == baseline else "") + short_label(r)
              for r in runs}
    numbers = side_by_side(table, labels)
    columns = fitted_columns(numbers.columns, {"metric": 200})
    columns["metric"] = st.column_config.TextColumn("", width=200)
    st.dataframe(numbers, hide_index=True, key="cmp_final", column_config=columns)
    st.caption(f"{BASELINE_MARK} marks the baseline. Δ val loss is a run's final "
               "validation loss minus the baseline's: negative is better. One seed is not "
               "an experiment: differences of a few hundredths of a nat between single "
               "runs are often seed noise; repeat a change over several seeds (a paired "
               "sweep) before believing it.")

    st.subheader("What differs")
    diff = differing_fields(runs)
    if diff.empty:
        st.info("These runs have identical settings, seed included.")
    else:
        if seed_only_difference(diff):
            st.info("These runs differ only in their seed: the gaps between their curves "
                    "are the noise of training.")
        st.dataframe(diff, hide_index=True, key="cmp_diff",
                     column_config=fitted_columns(diff.columns, {"setting": 100, "part": 60}))

    st.subheader("Latest samples")
    for start in range(0, len(runs), MAX_SAMPLE_COLUMNS):
        group = runs[start:start + MAX_SAMPLE_COLUMNS]
        for col, r in zip(st.columns(MAX_SAMPLE_COLUMNS), group):
            samples = store.samples(r.id)
            with col:
                st.markdown((f"{BASELINE_MARK} " if r.id == baseline else "")
                            + f"**{md_literal(short_label(r))}**")
                if samples:
                    st.caption(f"step {samples[-1]['step']:,}")
                    st.code(samples[-1]["text"] or " ", language=None, wrap_lines=True)
                elif imported_from(r) is not None:
                    st.caption("imported: no training samples (Generate writes with it)")
                else:
                    st.caption("no sample yet")


st.title("Compare runs")
st.markdown("Overlay loss curves, pin a baseline, and see exactly which settings differ. "
            "The address of this page holds your choice: share it to share the comparison.")

store = state.store()
all_runs = store.list_runs()
known = {r.id: r for r in all_runs}

# Read the link before the widget: the multiselect silently drops ids it does not know.
requested = [r for r in st.query_params.get_all("runs") if r != ""]
unknown = list(dict.fromkeys(r for r in requested if r not in known))
if unknown:
    named = ", ".join(md_literal(r, limit=40) for r in unknown)  # as typed in the link
    st.warning(f"The link names run{'s' if len(unknown) > 1 else ''} {named} that "
               f"{'are' if len(unknown) > 1 else 'is'} not in this run store, so "
               f"{'they are' if len(unknown) > 1 else 'it is'} left out.")

if "runs" not in st.session_state:  # a fresh page: the link's runs
    st.session_state["runs"] = [r for r in dict.fromkeys(requested) if r in known]
chosen = st.multiselect(
    "Runs to compare", list(known), key="runs", format_func=lambda i: chip_label(known[i]),
    placeholder="Pick runs by name, or tick them in the table below",
    help="Their ids go into the page's address, so the comparison can be shared.")
keep_in_url("runs", chosen)

with st.expander("All runs in the store", expanded=not chosen):
    if all_runs:
        runs_table(all_runs)
    else:
        st.info("No runs yet: train one on the Build & train page.")

if not chosen:
    st.info("Pick two or more runs to compare their curves.")
    st.stop()

a, b = st.columns([3, 2])  # wide enough for every option's name at 1280 px
x = a.segmented_control("x axis", list(X_AXES), key="x", bind="query-params",
                        default="step", required=True,
                        format_func=lambda k: X_AXES[k][0])
metric = b.segmented_control("Loss", list(METRICS), key="loss", bind="query-params",
                             default="val_loss", required=True,
                             format_func=METRIC_PICKER.get,
                             help="Bits per character: the validation loss in the one "
                                  "unit in which runs with different tokenizers compare.")
pinned = st.session_state.get("baseline", st.query_params.get("baseline"))
st.session_state["baseline"] = (pinned if pinned in chosen else
                                default_baseline(known[r] for r in chosen))
baseline = st.columns(2)[0].selectbox("Baseline", chosen, key="baseline",
                       format_func=lambda i: chip_label(known[i]),
                       help="Drawn thick; the others' final validation loss is compared "
                            "with its. Unless you pick one, the all-Llama run.")
keep_in_url("baseline", baseline)
active = any(known[r].active for r in chosen)
st.fragment(run_every=POLL_S if active else None)(results)(
    list(chosen), x or "step", metric or "val_loss", baseline, active)
