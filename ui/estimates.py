"""How long a run or a sweep will take, said before it starts. Every estimate is
llama_core.speed.estimate, fed the FLOP/s that earlier runs reached: recent finished
runs on the same device for one run, the class set's CPU runs for a sweep."""

from __future__ import annotations

import streamlit as st
import torch

from charts.components import config_of
from llama_core.config import ModelConfig, TrainConfig
from llama_core.speed import estimate
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
    """llama_core.speed.estimate for a run on the device it will train on."""
    device = target_device(train)
    return estimate(model, train, device, past_speeds(device))


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
