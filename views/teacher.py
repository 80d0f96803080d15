"""Teacher: every run in the room, what the class found, predict-then-reveal, and a
comparison exported as one self-contained HTML report.

- The classroom settings in force ($LLAMA_LAB_CLASSROOM), or why they cannot be used.
- All runs: owner (the name a student gave, and the id of their browser), status,
  config in brief, loss; refreshed while any run is going.
- "What did the class find?": every finished run pooled into one distribution per
  variant (runs with identical settings, seed aside, whatever their names), named by
  the settings that differ, with how many runs and seeds each mean pools and each run
  as a dot.
- Predict which curve wins: pick runs (kept in the URL, ?runs=...), everyone picks a
  prediction, then reveal the curves and the winner.
- Share and export: a link that reopens the comparison, and an HTML download.
"""

from __future__ import annotations

import os

import streamlit as st

from charts.room import (FINDINGS_VARIANT, ROOM_WIDTHS, brief, findings_figure,
                         findings_frame, room_frame)
from llama_core.errors import UserError
from llama_core.lab import classroom
from llama_core.lab.report import comparison_html, loss_figure
from llama_core.lab.store import COMPLETED
from ui import state
from ui.errors import user_errors
from ui.figures import fitted_columns, show_table
from ui.plain_text import md_literal

st.title("Teacher")
st.caption("The whole room at a glance: every run, what the class found, and a "
           "comparison to predict, reveal and share.")

try:
    settings = classroom.current()
except UserError as e:
    settings = None
    st.error(f"{md_literal(e)} Until it is fixed, no new run can be started.")
if settings is not None:
    caps = ", ".join(f"{k} {'≥' if k in classroom.FLOORS else '≤'} {v:g}"
                     for k, v in settings.caps.items()) or "none"
    locked = ", ".join(f"{k} = {v!r}" for k, v in settings.locked.items()) or "none"
    st.info(f"**{md_literal(settings.title)}** ({md_literal(settings.path)}). Presets: "
            + md_literal(f"{', '.join(settings.presets) if settings.presets else 'all'}. "
                         f"Locked: {locked}. Caps: {caps}."))
elif not os.environ.get(classroom.ENV_CLASSROOM):
    st.caption(f"Classroom mode is off: set {classroom.ENV_CLASSROOM} to a settings file "
               "(see classroom.example.toml) to cap model sizes and runs per student.")

if settings is not None and settings.teacher_key:
    key = st.text_input("Teacher key", type="password", key="t_key",
                        help="Set as teacher_key in the classroom settings file.")
    if not settings.teacher_ok(key):
        st.session_state.pop("teacher_key_given", None)
        if key:
            st.error("That is not the teacher key; ask your teacher, or check "
                     "teacher_key in the classroom settings file.")
        st.stop()
    st.session_state["teacher_key_given"] = key  # other pages let the teacher stop runs

store = state.store()


@st.fragment(run_every=2.0 if any(r.active for r in store.list_runs(limit=200)) else None)
def room() -> None:
    runs = store.list_runs(limit=500)
    owners = {r.owner for r in runs}
    going = sum(r.active for r in runs)
    a, b, c = st.columns(3)
    a.metric("Runs", len(runs))
    b.metric("Students", len(owners - {None}))
    c.metric("Running or queued", going)
    if runs:
        table = room_frame(runs, store.student_names())
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config=fitted_columns(table.columns, ROOM_WIDTHS))
    else:
        st.info("No runs yet: students start them on the Build & train page.")


st.subheader("All runs in the room")
room()

# --- What did the class find? ---------------------------------------------------------

st.subheader("What did the class find?")
st.caption("Runs with the same settings (seed aside) are one variant, whatever their "
           "names: two runs both named “baseline” with different settings are two "
           "variants. The baseline is the all-Llama variant.")
finished = [r for r in store.list_runs(status=COMPLETED)
            if r.final_val_loss is not None]
if not finished:
    st.info("Once runs finish, their final losses are pooled here, one distribution per "
            "variant.")
else:
    rows = classroom.class_findings(finished)
    table = findings_frame(rows).set_index(FINDINGS_VARIANT)
    table["named"] = table["named"].map(md_literal)  # st.table reads Markdown
    show_table(table)  # wraps its cells: long settings never push it sideways
    st.caption("Each mean pools the runs in its row (runs), trained with that many "
               "different seeds (seeds); two classmates' runs with the same seed both "
               "count. vs baseline: the mean of (variant − baseline) over the seeds both "
               "have, paired seed by seed; negative is better. — : no error bar from a "
               "single seed, or the baseline itself.")
    st.plotly_chart(findings_figure(rows, store.student_names()), key="t_class",
                    width="stretch")

# --- Predict, reveal, share -----------------------------------------------------------

st.subheader("Predict which curve wins")
known = {r.id: r for r in store.list_runs(limit=500)}
requested = [r for r in st.query_params.get_all("runs") if r]
missing = [r for r in requested if r not in known]
if missing:
    named = md_literal(", ".join(repr(m[:40]) for m in missing))  # from the address
    st.warning(f"The link names run(s) {named} that are not in this run store, so they "
               "are left out.")
chosen = st.multiselect("Runs to compare (by id)", list(known), key="runs",
                        bind="query-params",
                        help="The ids go into this page's address: share it to share the "
                             "comparison.")
if len(chosen) < 2:
    st.info("Pick two or more runs; the class predicts which ends with the lowest "
            "validation loss, then you reveal the curves.")
    st.stop()

runs = [known[r] for r in chosen]
reveal_key = "t_revealed:" + ",".join(chosen)
labels = {r.id: f"{md_literal(r.name)} ({r.id})" for r in runs}  # Markdown, as typed
for r in runs:
    st.markdown(f"- **{labels[r.id]}**: {md_literal(brief(r))}")
guess = st.radio("Which run will end with the lowest validation loss?", chosen, index=None,
                 format_func=labels.get, key="t_guess:" + ",".join(chosen))
if st.button("Reveal", type="primary", disabled=guess is None, key="t_reveal"):
    st.session_state[reveal_key] = True
if not st.session_state.get(reveal_key):
    st.caption("Make a prediction first; the curves stay hidden until you reveal them.")
else:
    st.plotly_chart(loss_figure(store, runs, "val_loss"), key="t_curves", width="stretch")
    done = [r for r in runs if r.final_val_loss is not None]
    if done:
        best = min(done, key=lambda r: r.final_val_loss)
        msg = (f"Lowest final validation loss: **{labels[best.id]}** at "
               f"{best.final_val_loss:.4f}.")
        if len(done) < len(runs):
            msg += " Some runs have not finished yet."
        (st.success if guess == best.id else st.warning)(
            msg + (" Your prediction was right." if guess == best.id else
                   f" You predicted {labels.get(guess, guess)}."))

query = "&".join(f"runs={r}" for r in chosen)
st.markdown(f"Share: [this comparison on the Compare page](./compare?{query}) · "
            f"[this view](./teacher?{query})")
if st.button("Prepare HTML report", key="t_prepare"):
    with user_errors():
        st.session_state["t_report"] = (tuple(chosen), comparison_html(
            store, chosen, title=f"Llama Lab: {', '.join(known[r].name for r in chosen)}"[:200]))
prepared = st.session_state.get("t_report")
if prepared and prepared[0] == tuple(chosen):
    st.download_button("Download the report (one HTML file, opens offline)",
                       prepared[1].encode("utf-8"), file_name="llama-lab-comparison.html",
                       mime="text/html", key="t_download")
