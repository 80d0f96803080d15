"""Where a run is, in the words and numbers of its progress bar.

The store gets a metric row only at each evaluation, so between two of them the step is
extrapolated from the last row's training rate and the time since it was written.
"""

from __future__ import annotations

import time

from charts.numbers import duration, finite

STATUS_TEXT = {
    "queued": "waiting for a free training slot",
    "running": "training",
    "finished": "finished",
    "stopped": "stopped",
    "failed": "failed",
    "interrupted": "interrupted",
    "diverged": "diverged",
}


def live_progress(run, last: dict | None, now: float | None = None) -> dict:
    """The run's estimated position now, from its newest metric row ``last`` (the row
    was written at run start + its ``seconds``). Returns fraction (0..1), step
    (estimated), total_steps, eta_s (None while unknown), tokens_per_s, elapsed_s and
    budget_s."""
    now = time.time() if now is None else now
    tc = run.train_config or {}
    total = int(tc.get("steps") or 1)
    budget = finite(tc.get("time_budget"))
    tokens_per_step = int(tc.get("batch_size") or 1) * int(
        (run.model_config or {}).get("context_window") or 1)
    elapsed = max(0.0, now - run.started) if run.started else 0.0
    step = float(last["step"]) if last else 0.0
    rate = finite(last.get("tokens_per_s")) if last else None
    steps_per_s = rate / tokens_per_step if rate else None
    if last and steps_per_s:
        since = max(0.0, elapsed - (finite(last.get("seconds")) or 0.0))
        step = min(float(total), step + since * steps_per_s)
    frac = step / total
    eta = (total - step) / steps_per_s if steps_per_s else None
    if budget:
        frac = max(frac, min(elapsed / budget, 1.0))
        left = max(budget - elapsed, 0.0)
        eta = left if eta is None else min(eta, left)
    return {"fraction": max(0.0, min(frac, 1.0)), "step": int(step), "total_steps": total,
            "eta_s": eta, "tokens_per_s": rate, "elapsed_s": elapsed, "budget_s": budget}


def progress_text(run, last: dict | None, progress: dict, queued: list) -> str:
    """What an active run is doing, in one line: waiting (with the runs ``queued``
    ahead of it), starting, or its step, time and speed so far (``progress`` from
    :func:`live_progress`)."""
    if run.status == "queued" and run.pid:
        return "Starting its training process…"
    if run.status == "queued":
        ahead = sum(1 for r in queued if r.created < run.created)
        return ("Waiting for a free training slot" +
                (f" ({ahead} run{'s' if ahead != 1 else ''} ahead of it)" if ahead
                 else "") + "…")
    if last is None:
        return (f"Starting: the first numbers arrive at step "
                f"{run.train_config.get('eval_interval', '?'):,}…")
    p = progress
    goal = (f"a {duration(p['budget_s'])} budget" if p["budget_s"]
            else f"{p['total_steps']:,}")
    parts = [f"step ≈ {p['step']:,} of {goal}", f"{duration(p['elapsed_s'])} elapsed"]
    if p["eta_s"] is not None:
        parts.append(f"about {duration(p['eta_s'])} left")
    if p["tokens_per_s"]:
        parts.append(f"{p['tokens_per_s']:,.0f} tokens/s")
    return " · ".join(parts)
