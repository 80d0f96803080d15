"""Runs queued as one group from a page, and what a student does with a finished
group's records: queue them again, and take them away as files (metrics as CSV,
configs as JSON, everything as JSON)."""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import streamlit as st

from charts.records import configs_json
from llama_core.config import ModelConfig, TrainConfig
from llama_core.errors import UserError
from llama_core.lab.sweeps import new_group_id
from ui.state import job_manager, owner_id


def queue_in_group(runs: Iterable[tuple[str, ModelConfig, TrainConfig]], param: str,
                   prefix: str, error_key: str) -> None:
    """A button callback's work: queue ``runs`` (name, model, train), as this
    browser's, in the group the page's address names under ``param`` (a new
    "<prefix>..." group on first use), then put the group in the address.

    ``runs`` may build its configs lazily: a UserError from building or queueing one
    stops there and is kept under ``error_key`` for the page to show when it reruns (a
    callback draws nothing)."""
    group = st.query_params.get(param) or new_group_id().replace("sw-", prefix)
    manager = job_manager()
    try:
        for name, model, train in runs:
            manager.submit(model, train, name=name, group=group, owner=owner_id())
    except UserError as e:
        st.session_state[error_key] = str(e)
        return
    st.session_state.pop(error_key, None)
    st.query_params[param] = group


def resubmit(runs: Sequence, owner: str | None = None, group: str | None = None
             ) -> tuple[str, list[str]]:
    """Queue the same configs again (same seeds, names) as a new group: a record
    re-run. Returns (group, run ids)."""
    manager = job_manager()
    group = group or new_group_id()
    ids = [manager.submit(r.model_config, r.train_config, name=r.name, group=group,
                          owner=owner) for r in runs]
    return group, ids


def export_buttons(source, runs: Sequence, stem: str, key: str) -> None:
    """Download buttons for the runs of ``source`` (the run store or the class set)."""
    ids = [r.id for r in runs]
    a, b, c = st.columns(3)
    a.download_button("Metrics (CSV)", source.export(ids, "csv"), file_name=f"{stem}-metrics.csv",
                      mime="text/csv", key=f"{key}_csv", icon=":material/download:",
                      on_click="ignore")
    b.download_button("Configs (JSON)", json.dumps(configs_json(runs), indent=1, default=str),
                      file_name=f"{stem}-configs.json", mime="application/json",
                      key=f"{key}_cfg", icon=":material/download:", on_click="ignore")
    c.download_button("Everything (JSON)", source.export(ids, "json"),
                      file_name=f"{stem}-runs.json", mime="application/json",
                      key=f"{key}_json", icon=":material/download:", on_click="ignore")
