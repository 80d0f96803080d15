"""Paired ablations: a baseline against variants that each change one thing, over seeds.

Every run of a sweep with seed s draws the same training batches and starts from the
same values in every parameter the variants share (see ``Llama.init_weights``), so the
difference between a variant and the baseline on seed s is due to the change alone plus
the noise of training, and the spread of those paired differences over seeds is the
honest error bar.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from ..config import ModelConfig, TrainConfig
from ..presets import build_configs
from ..errors import UserError
from ..stats import Interval, mean_ci, paired_difference, verdict
from .store import COMPLETED

BASELINE = "baseline"

# Each swaps one Llama modification for its predecessor, or removes it.
STANDARD_VARIANTS: dict[str, dict] = {
    "norm=layernorm": {"norm": "layernorm"},
    "norm=none": {"norm": "none"},
    "pos=learned": {"pos": "learned"},
    "pos=none": {"pos": "none"},
    "ffn=gelu": {"ffn": "gelu"},
    "ffn=relu": {"ffn": "relu"},
    "causal=false": {"causal": False},
    "n_layers=2": {"n_layers": 2},
    "n_kv_heads=2": {"n_kv_heads": 2},  # grouped-query: half the key/value heads
    "n_kv_heads=1": {"n_kv_heads": 1},  # multi-query: one key/value head
}


def variants_for(preset: str | None, base: dict | None = None) -> dict[str, dict]:
    """The standard single-modification variants that change something for this
    baseline, resolved to its shape: "fewer layers" is half the baseline's depth (the
    standard ``n_layers=2`` is no change at all for a 2-layer preset), grouped-query
    attention half its key/value heads and multi-query one; a variant the baseline
    already has (``norm=none`` when it has no norm), or that has nothing to act on (key/
    value heads without attention), is left out."""
    model, _ = build_configs(preset, dict(base or {}))
    out: dict[str, dict] = {}
    for changes in STANDARD_VARIANTS.values():
        if "n_layers" in changes:
            if model.n_layers < 2:
                continue
            changes = {"n_layers": model.n_layers // 2}
        if "n_kv_heads" in changes:
            # multi-query: 1; grouped-query: half the key/value heads, 2 at the least
            kv = 1 if changes["n_kv_heads"] == 1 else model.kv_heads // 2
            if not model.attention or model.kv_heads == kv or (
                    changes["n_kv_heads"] != 1 and kv < 2):
                continue
            changes = {"n_kv_heads": kv}
        if all(getattr(model, k) == v for k, v in changes.items()):
            continue
        out[variant_label(changes)] = dict(changes)
    return out


def variant_label(changes: dict) -> str:
    """``{"norm": "layernorm", "pos": "learned"}`` -> ``"norm=layernorm pos=learned"``."""
    if not changes:
        return BASELINE
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                    for k, v in changes.items())


def parse_variant(text: str) -> dict[str, str]:
    """``"norm=layernorm pos=learned"`` -> {"norm": "layernorm", "pos": "learned"}."""
    changes = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UserError(f"A variant is a list of key=value changes, not {text!r}.")
        changes[key] = value
    if not changes:
        raise UserError("A variant needs at least one key=value change.")
    return changes


@dataclass(frozen=True)
class PlannedRun:
    label: str
    seed: int
    model: ModelConfig
    train: TrainConfig


def plan_sweep(preset: str | None, base: dict, variants: list[dict], seeds: list[int],
               include_baseline: bool = True) -> list[PlannedRun]:
    """Every (variant, seed) pair as validated configs, baseline first. An invalid
    variant is refused before anything is queued."""
    if not seeds:
        raise UserError("A sweep needs at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise UserError("Seeds of a sweep must be different from each other.")
    labelled = ([(BASELINE, {})] if include_baseline else []) + [
        (variant_label(v), v) for v in variants]
    labels = [label for label, _ in labelled]
    if len(set(labels)) != len(labels):
        raise UserError("Two variants of the sweep are the same; list each once.")
    plan = []
    for label, changes in labelled:
        for seed in seeds:
            try:
                model, train = build_configs(preset, {**base, **changes, "seed": seed})
            except UserError as e:
                raise UserError(f"Variant {label!r}: {e}") from None
            plan.append(PlannedRun(label, seed, model, train))
    return plan


def new_group_id() -> str:
    return "sw-" + secrets.token_hex(4)


def submit_plan(manager, plan: list[PlannedRun], group: str | None = None,
                owner: str | None = None) -> tuple[str, list[str]]:
    """Queue every planned run under one group id; return (group, run ids). Every run
    is admitted before any is queued, so a refused one leaves no half sweep behind."""
    for p in plan:
        manager.admit(p.model, p.train)
    group = group or new_group_id()
    ids = [manager.submit(p.model, p.train, name=p.label, group=group, owner=owner)
           for p in plan]
    return group, ids


def wait_for(store, run_ids: list[str], poll_s: float = 0.5, on_wait=None) -> None:
    """Block until none of ``run_ids`` is queued or running; ``on_wait(done, total)``
    is called between polls (for a progress line)."""
    pending = set(run_ids)
    while pending:
        pending = {r for r in pending
                   if store.get_run(r).status in ("queued", "running")}
        if pending:
            if on_wait:
                on_wait(len(run_ids) - len(pending), len(run_ids))
            time.sleep(poll_s)


def summarize(runs, metric: str = "final_val_loss") -> list[dict]:
    """One row per variant: its mean final loss ± 95% CI over seeds, the paired
    difference to the baseline ± 95% CI, and a verdict in plain words.

    ``runs`` are store records (``name`` = variant label, ``seed``); only finished or
    stopped runs with a value count.
    """
    by_label: dict[str, dict[int, float]] = {}
    params: dict[str, int | None] = {}
    for run in runs:
        value = run.get(metric)
        if value is None or run.get("status") not in COMPLETED:
            continue
        by_label.setdefault(run.get("name"), {})[run.get("seed")] = value
        params[run.get("name")] = run.get("params")
    baseline = by_label.get(BASELINE)
    rows = []
    for label in sorted(by_label, key=lambda k: (k != BASELINE, k)):
        values = by_label[label]
        interval: Interval = mean_ci(list(values.values()))
        diff = None if label == BASELINE or baseline is None else paired_difference(
            values, baseline)
        rows.append({
            "variant": label, "seeds": interval.n, "params": params.get(label),
            "mean": interval.mean, "ci95": interval.half_width,
            "diff_vs_baseline": None if diff is None else diff.mean,
            "diff_ci95": None if diff is None else diff.half_width,
            "verdict": "baseline" if label == BASELINE else verdict(diff),
        })
    return rows
