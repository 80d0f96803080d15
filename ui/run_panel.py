"""The run being watched on Build & train: its live loss chart beside its status, its
Stop button, and once it has ended, its numbers, samples and links.

Why here and not in the page: the panel is redrawn by a fragment twice a second while
the run is active, and it reads only the run store, so it stays one function the page
calls. Everything it shows comes from the store, which the training process writes
(every step's loss a few times a second, every evaluation, how the run ended).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from charts.components import config_of
from charts.labels import origin, short_label
from charts.live_loss import SMOOTH_STEPS, live_loss_figure, step_frame
from charts.loss import curve_frame
from charts.numbers import duration, finite, rough_duration
from charts.records import settings_frame
from charts.run_status import STATUS_TEXT, progress_text
from charts.units import loss_unit_of, token_unit_of
from llama_core.errors import UserError
from llama_core.lab.hf_runs import imported_from
from llama_core.lab.store import TERMINAL
from llama_core.speed import mfu, peak_flops
from ui import state
from ui.errors import user_errors
from ui.plain_text import md_literal

APP_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5  # the fragment's redraw while a run is active: two updates a second
STOP_WAIT_S = 3.0  # how long Stop waits for the run to end before redrawing anyway
FIRST_STEP_WAIT_S = 1.0  # how long Launch waits for the run's first step before redrawing
CHART_KEY = "tr_loss_chart"

GAP_NOTE = (f"Training loss: each light point is one step's batch, the bold line their "
            f"average over the {SMOOTH_STEPS} steps around each one. Validation loss: fixed "
            "held-out text at each evaluation, dropout off. "
            "Early on the two sit close together; when training falls clearly below "
            "validation, the model is starting to memorise its training text.")


def step_position(run, rows: list) -> dict:
    """Where the run is from its own per-step rows: step, elapsed seconds, steps per
    second over the whole run so far (evaluations included, so it does not swing), and
    the fraction done."""
    tc = run.train_config or {}
    total = int(tc.get("steps") or 1)
    budget = finite(tc.get("time_budget"))
    step, seconds = (int(rows[-1][0]), float(rows[-1][1] or 0.0)) if rows else (0, 0.0)
    elapsed = max(seconds, time.time() - run.started) if run.started else seconds
    rate = step / seconds if step and seconds > 0 else None
    left = (total - step) / rate if rate else None
    fraction = step / total
    if budget:
        fraction = max(fraction, min(elapsed / budget, 1.0))
        by_time = max(budget - elapsed, 0.0)
        left = by_time if left is None else min(left, by_time)
    return {"step": step, "total": total, "elapsed": elapsed, "rate": rate,
            "left": left, "fraction": max(0.0, min(fraction, 1.0)), "budget": budget}


def steady_time_left(run_id: str, left: float | None) -> float | None:
    """The time left as shown: it counts down with the clock and eases towards the
    run's measured rate, so it never jumps (a slow evaluation would otherwise add
    seconds at once). Kept per run in the session."""
    if left is None:
        return None
    now = time.monotonic()
    shown = st.session_state.setdefault("tr_time_left", {})
    before = shown.get(run_id)
    if before is None:
        value = left
    else:
        counted_down = max(before[0] - (now - before[1]), 0.0)
        value = counted_down + 0.25 * (left - counted_down)
    shown[run_id] = (value, now)
    return value


def status_text(run, pos: dict, left: float | None, queued: list) -> str:
    if run.status == "queued" or not pos["step"]:
        return progress_text(run, None, {}, queued) if run.status == "queued" else \
            "Starting: the curve begins at the first step…"
    goal = (f"a {duration(pos['budget'])} budget" if pos["budget"]
            else f"{pos['total']:,}")
    parts = [f"step {pos['step']:,} of {goal}", f"{duration(pos['elapsed'])} elapsed"]
    if left is not None:
        parts.append(f"about {rough_duration(left)} left")
    if pos["rate"]:
        parts.append(f"{pos['rate']:,.1f} steps/s")
    return " · ".join(parts)


def wait_for_first_step(run_id: str) -> None:
    """Hold the redraw a Launch click causes until the run has stored its first step (at
    most FIRST_STEP_WAIT_S), so the chart opens with its first point. Drawing at once
    would miss that point by a poll (half a second) and slow the step too: the page, the
    browser and the training process share the cores. A run still waiting for a free
    slot is not waited for."""
    wait_on_run(run_id, lambda run: run.steps > 0 or not run.holds_slot, FIRST_STEP_WAIT_S,
                every=0.02)


def wait_on_run(run_id: str, done, seconds: float, every: float = 0.05) -> None:
    """Read the run from the store every ``every`` seconds until ``done(run)`` or
    ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done(state.store().get_run(run_id)):
        time.sleep(every)


def stop_and_wait(run_id: str) -> None:
    """Ask the run to stop, then wait (briefly) for its process to save and end, so the
    page shows it stopped within a second instead of at the next poll."""
    with user_errors():
        state.stop_run(run_id)
        wait_on_run(run_id, lambda run: run.status in TERMINAL, STOP_WAIT_S)
        st.rerun()


def run_panel(run_id: str, was_active: bool) -> None:
    """The run in the URL: live while active (this is the polled fragment's body)."""
    store = state.store()
    try:
        run = store.get_run(run_id)
    except UserError:
        st.warning(f"The run {md_literal(repr(run_id[:40]))} in this page's address is not "
                   "in the run store (it may have been deleted); launch a new run below.")
        return
    if was_active and run.status in TERMINAL:
        st.rerun()  # a full rerun draws the finished view and stops the polling
    rows = store.step_losses(run_id)
    metrics = store.metrics(run_id)
    evals = curve_frame(metrics)
    where = rows or [(m["step"], m["seconds"], None) for m in metrics[-1:]]
    st.markdown(f"**{md_literal(short_label(run))}** · {origin(run)} · "
                f"**{STATUS_TEXT.get(run.status, run.status)}**")
    if imported_from(run) is not None:
        imported_panel(run)
        return
    chart, side = st.columns([5, 2], gap="medium")
    with side:
        if run.active:
            pos = step_position(run, where)
            left = steady_time_left(run_id, pos["left"])
            queued = store.list_runs(status="queued") if run.status == "queued" else []
            st.progress(pos["fraction"], text=status_text(run, pos, left, queued))
            if not state.may_control(run):
                st.caption("Someone else started this run: you can watch it, but only "
                           "they or the teacher can stop it.")
            elif st.button("Stop this run", key="tr_stop", icon=":material/stop_circle:",
                           width="stretch"):
                stop_and_wait(run_id)
        else:
            ending(run)
        x = st.segmented_control("x axis", ["step", "seconds"], key="tr_x",
                                 default="step", required=True,
                                 format_func={"step": "steps", "seconds": "seconds"}.get)
    with chart:
        vocab = run.model_config.get("vocab_size")
        st.plotly_chart(live_loss_figure(step_frame(rows), evals, x=x or "step",
                                         vocab_size=vocab, loss_unit=loss_unit_of(run)),
                        key=CHART_KEY, width="stretch",
                        config={"displayModeBar": False})  # redrawn twice a second
        st.caption(GAP_NOTE)
    if not run.active:
        final_numbers(run, evals)
        page_links(run_id)
    show_samples(run_id)
    with st.expander("This run's settings"):
        st.dataframe(settings_frame(run), hide_index=True, key="tr_run_settings")


def imported_panel(run) -> None:
    """An imported model in place of the training panel: it was trained elsewhere, so
    there is no curve, no step count and no training time to show, only where it came
    from and the pages that look into it."""
    record = imported_from(run)
    source = str(record.get("source") or "a Hugging Face folder")
    st.info(f"Imported from **{md_literal(source)}**: trained elsewhere, so it has no "
            "training curve, steps or "
            "samples here. Its weights were stored as "
            f"{md_literal(str(record.get('stored_as') or '—'))} and are loaded as "
            f"{md_literal(str(record.get('loaded_as') or '—'))}; it reads "
            f"{token_unit_of(run)}.")
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{run.params:,}" if run.params else "—",
                   help="in scalars")
    cols[1].metric("Vocabulary", f"{run.model_config.get('vocab_size', 0):,}",
                   help=f"in {token_unit_of(run)}")
    cols[2].metric("Context window", f"{run.model_config.get('context_window', 0):,}",
                   help=f"in {token_unit_of(run)}")
    cols[3].metric("Layers", f"{run.model_config.get('n_layers', 0):,}")
    page_links(run.id)
    with st.expander("This run's settings"):
        st.dataframe(settings_frame(run), hide_index=True, key="tr_run_settings")


def ending(run) -> None:
    """How the run ended, in one box: green only for a run that finished and learned."""
    if run.status == "finished":
        st.success(f"Finished in {duration(run.wall_s)}.")
    elif run.status == "diverged":
        st.error(md_literal(run.error or "The loss blew up; lower the learning rate."))
    elif run.error:
        (st.info if run.status == "stopped" else st.warning)(md_literal(run.error))
    elif run.status == "stopped":
        st.info("Stopped before its end: the numbers are from the step it stopped at, "
                "and its model was saved there.")


def page_links(run_id: str) -> None:
    """Buttons to the pages that look at a finished run, for those that exist."""
    targets = [("views/compare.py", "Compare it with other runs", ":material/compare_arrows:",
                {"runs": run_id}),
               ("views/attention.py", "Look at its attention", ":material/grid_on:",
                {"run": run_id}),
               ("views/generate.py", "Generate text with it", ":material/edit_note:",
                {"run": run_id})]
    cols = st.columns(len(targets))
    for col, (path, label, icon, params) in zip(cols, targets):
        if not (APP_ROOT / path).exists():
            continue
        try:
            col.page_link(path, label=label, icon=icon, query_params=params)
        except StreamlitAPIException:  # the page exists but is not in the menu yet
            pass


def show_samples(run_id: str) -> None:
    samples = state.store().samples(run_id)
    if not samples:
        return
    latest = samples[-1]
    st.markdown(f"**What it writes now** (sample at step {latest['step']:,}, "
                "starting from a new line)")
    st.code(latest["text"] or " ", language=None, wrap_lines=True)
    if len(samples) > 1:
        with st.expander(f"Every sample so far ({len(samples)}), newest first"):
            for s in reversed(samples[:-1]):
                st.caption(f"step {s['step']:,}")
                st.code(s["text"] or " ", language=None, wrap_lines=True)


def final_bpc(run, evals) -> float | None:
    """The run's last validation loss in bits per character (the unit in which runs with
    different tokenizers compare): its metrics' own, else, for a character run (one
    token is one character), its loss over ln 2."""
    reported = evals["val_bpc"].dropna() if "val_bpc" in evals else []
    if len(reported):
        return float(reported.iloc[-1])
    if token_unit_of(run) == "characters" and run.final_val_loss is not None:
        return run.final_val_loss / math.log(2)
    return None


def final_numbers(run, evals) -> None:
    loss_unit, unit = loss_unit_of(run), token_unit_of(run)
    bpc = final_bpc(run, evals)
    rows = [("Final validation loss", f"{run.final_val_loss:.3f}" if run.final_val_loss
             is not None else "—", loss_unit),
            ("Final training loss", f"{run.final_train_loss:.3f}" if run.final_train_loss
             is not None else "—", loss_unit),
            ("Bits per character", f"{bpc:.3f}" if bpc is not None else "—",
             "validation bits per character of text (log2): the unit in which runs with "
             "different tokenizers compare"),
            ("Steps", f"{run.steps:,}", "optimizer steps"),
            ("Tokens", f"{run.tokens:,}", f"{unit} seen in training"),
            ("Wall time", duration(run.wall_s), "seconds of training"),
            ("Speed (tokens/s)", f"{run.tokens_per_s:,.0f}" if run.tokens_per_s else "—",
             "training tokens per second" if unit == "tokens" else
             "training tokens (characters) per second"),
            ("Parameters", f"{run.params:,}" if run.params else "—", "scalars"),
            ("Device", md_literal(run.device or "—"), None)]
    cfg = config_of(run.model_config)
    utilisation = (mfu(run.tokens_per_s, cfg, run.device)
                   if run.tokens_per_s and run.device and cfg is not None else None)
    rows.append(("Model FLOPs utilisation", f"{utilisation:.0%}" if utilisation else "—",
                 f"percent of {peak_flops(run.device or 'cpu')[1]} (achieved training "
                 "FLOP/s ÷ that peak)"))
    for start in range(0, len(rows), 4):
        for col, (label, value, help_) in zip(st.columns(4), rows[start:start + 4]):
            col.metric(label, value, help=f"in {help_}" if help_ else None)


def jump_to_run() -> None:
    """Scroll the page to "Your run" (once, after Launch): the button sits at the foot
    of the builder, and the browser would otherwise keep that scroll position, leaving
    the new run's chart above the screen. The script is ours, with no user text."""
    st.html("<script>for (const ms of [50, 300, 800]) setTimeout(() => document"
            ".getElementById('your-run')?.scrollIntoView({block: 'start'}), ms);</script>",
            unsafe_allow_javascript=True)
