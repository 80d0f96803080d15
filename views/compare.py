"""Compare: several runs' loss curves on one chart, what differs between them, and
their final numbers against a pinned baseline.

The chosen runs live in the URL (?runs=ID&runs=ID, through the multiselect's
bind="query-params"), as do the x axis, the loss and the baseline
(&x=FLOPs&loss=training&baseline=ID: a bound widget writes its option's label), so a
comparison can be shared as a link and survives a reload. The run pickers show bare ids
because a bound widget's URL value is its label: an id-only label keeps links short and
lets a teacher type one by hand. Ids in a link that this run store does not
hold are named in a warning and left out; the rest are still shown.
"""

from __future__ import annotations

import streamlit as st

from charts.comparison import (differing_fields, final_metrics_table, latest_metrics,
                               runs_overview, seed_only_difference, side_by_side)
from charts.labels import short_label
from charts.loss import compare_figure, run_series
from charts.palette import BASELINE_MARK, METRICS, X_AXES
from llama_core.errors import UserError
from llama_core.lab.store import TERMINAL
from ui import state
from ui.plain_text import md_literal

POLL_S = 2.0
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
    st.dataframe(runs_overview(runs), hide_index=True, key="cmp_table", on_select="rerun",
                 selection_mode="multi-row", height=min(38 * (len(runs) + 1) + 4, 400),
                 column_config={"final val loss (nats/char)": st.column_config.NumberColumn(
                     format="%.3f"), "wall time (s)": st.column_config.NumberColumn(
                     format="%.1f")})
    st.button("Compare the ticked runs", key="cmp_add", on_click=pick_from_table,
              icon=":material/add:")


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
    if any(r.active for r in runs):
        st.caption("Some runs are still training: their curves grow as you watch.")

    st.subheader("Final numbers")
    table = final_metrics_table(runs, baseline, latest_metrics(metrics))
    labels = {r.id: (f"{BASELINE_MARK} " if r.id == baseline else "") + short_label(r)
              for r in runs}
    st.dataframe(side_by_side(table, labels), hide_index=True, key="cmp_final",
                 column_config={"metric": st.column_config.TextColumn("", width="medium")})
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
        st.dataframe(diff, hide_index=True, key="cmp_diff")

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

chosen = st.multiselect(
    "Runs to compare (by id)", list(known), key="runs", bind="query-params",
    placeholder="Pick runs by id, or tick them in the table below",
    help="Ids go into the page's address. Names are in the legend and tables.")

with st.expander("All runs in the store", expanded=not chosen):
    if all_runs:
        runs_table(all_runs)
    else:
        st.info("No runs yet: train one on the Build & train page.")

if not chosen:
    st.info("Pick two or more runs to compare their curves.")
    st.stop()

a, b, c = st.columns([3, 2, 3])
x = a.segmented_control("x axis", list(X_AXES), key="x", bind="query-params",
                        default="step", required=True,
                        format_func=lambda k: X_AXES[k][0])
metric = b.segmented_control("Loss", list(METRICS), key="loss", bind="query-params",
                             default="val_loss", required=True,
                             format_func=lambda k: METRICS[k].split()[0])
baseline = c.selectbox("Baseline", chosen, key="baseline", bind="query-params",
                       help="Drawn thick; the others' final validation loss is compared "
                            "with its.")
active = any(known[r].active for r in chosen)
st.fragment(run_every=POLL_S if active else None)(results)(
    list(chosen), x or "step", metric or "val_loss", baseline, active)
