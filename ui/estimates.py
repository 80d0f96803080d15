"""How long a run or a sweep will take, said before it starts. One run: timed steps of
its shape on this machine (llama_core.speed.timed_estimate, cached per shape, device
and thread count), plus the runs queued ahead of it; shapes too big to time fall back
to llama_core.speed.estimate, fed the FLOP/s that recent finished runs on the same
device reached. A sweep: estimate over the class set's CPU runs."""

from __future__ import annotations

import time

import streamlit as st
import torch

from charts.components import config_of
from llama_core.config import ModelConfig, TrainConfig, train_from_dict
from llama_core.speed import estimate, timed_estimate
from ui.state import job_manager, store

RUN_OVERHEAD_S = 1.5  # evaluation, samples and start-up, per run of a sweep


@st.cache_data(show_spinner=False)
def cuda_available() -> bool:
    return torch.cuda.is_available()


def target_device(train: TrainConfig) -> str:
    """What "auto" will pick, named as the store names devices."""
    if train.device == "cpu" or not cuda_available():
        return "cpu"
    return torch.cuda.get_device_name()


@st.cache_data(ttl=30, show_spinner=False)
def past_speeds(device: str) -> list[tuple[ModelConfig, float]]:
    """(config, measured tokens/s) of recent finished runs on this device."""
    out = []
    for run in store().list_runs(status="finished", limit=50):
        cfg = config_of(run.model_config)
        if run.tokens_per_s and (run.device or "") == device and cfg is not None:
            out.append((cfg, run.tokens_per_s))
    return out


def run_estimate(model: ModelConfig, train: TrainConfig) -> dict:
    """Seconds from Launch to the end of a run on the device it will train on: its own
    time (timed, else predicted from past runs' FLOP/s) plus ``queue_s``, the time until
    a training slot frees up. Returns seconds, tokens_per_s, basis, queue_s."""
    device = target_device(train)
    manager = job_manager()
    own = (timed_estimate(model, train, device, manager.threads)
           or estimate(model, train, device, past_speeds(device)))
    queue = queue_ahead_s()
    return {**own, "seconds": own["seconds"] + queue, "queue_s": queue}


def queue_ahead_s() -> float:
    """Seconds until a new run would get a training slot: nothing while one is free;
    else the remaining time of the runs ahead (running ones at their own rate so far,
    queued ones predicted), shared over the slots."""
    manager = job_manager()
    active = store().list_runs(status=["running", "queued"])
    if len(active) < manager.max_concurrent:
        return 0.0
    left = 0.0
    for run in active:
        cfg = config_of(run.model_config)
        if cfg is None:
            continue
        total = int(run.train_config.get("steps") or 0)
        if run.status == "running" and run.steps and run.started:
            spent = max(time.time() - run.started, 1e-3)
            left += spent / run.steps * max(total - run.steps, 0)
        else:
            try:
                left += estimate(cfg, train_from_dict(run.train_config), "cpu",
                                 past_speeds("cpu"))["seconds"]
            except Exception:  # a damaged stored config: leave it out of the sum
                continue
    return left / manager.max_concurrent


def sweep_seconds(plan, class_set) -> float | None:
    """Wall-clock seconds for a planned sweep on this machine's CPU, from the class
    set's measured one-thread speeds, with the runs shared over the job manager's
    slots; None without any measured speed to go on."""
    past = [(cfg, r.tokens_per_s) for r in class_set.list_runs(group="classset-ablation")
            if r.tokens_per_s and (cfg := config_of(r.model_config)) is not None]
    if not past:
        return None
    total = sum(estimate(p.model, p.train, "cpu", past)["seconds"] + RUN_OVERHEAD_S
                for p in plan)
    return total / max(1, job_manager().max_concurrent)
