"""Opening a dashboard page under AppTest, ending the job manager it started, and
reading Plotly charts back from the page: the specs Streamlit sends, and their numeric
arrays (Plotly ships numpy arrays as base64 typed arrays: {"dtype", "bdata",
"shape"})."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from helpers_browser import REPO


def open_page(view: str, timeout: float = 120, **params) -> AppTest:
    """The dashboard (its navigation and sidebar) on ``view``, e.g. "views/ablate.py",
    with these values in the page address, run once without an exception."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=timeout)
    at.switch_page(view)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def job_manager(runs_dir):
    """The job manager the pages started for this runs folder (one per server)."""
    import ui.state
    return ui.state._manager_for(str(runs_dir))


def stop_jobs(runs_dir) -> None:
    """End the pages' job manager for this runs folder, stopping any run it started,
    and forget it, so the next test's pages start their own."""
    import ui.state
    job_manager(runs_dir).shutdown(stop_runs=True, timeout=30)
    ui.state._manager_for.clear()


def read_table(at: AppTest, index: int = 0):
    """An st.table's frame with its index as a reader sees it (st.table reads Markdown,
    so the pages escape the names there)."""
    from helpers_markdown import as_read

    table = at.table[index].value
    table.index = [as_read(i) for i in table.index]
    return table


def plotly_specs(at: AppTest) -> list[dict]:
    """Every plotly chart on the page, as the figure dict the browser would draw."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def plotly_array(v) -> np.ndarray:
    """A spec's array (a list, or the base64 typed-array form) as numpy, shape restored."""
    if isinstance(v, dict):
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(x) for x in v["shape"].split(",")]) if "shape" in v else a
    return np.asarray(v, dtype=float)


def plotly_values(v):
    """A spec's x or y as a plain list when it was base64-encoded; anything else as is."""
    if isinstance(v, dict) and "bdata" in v:
        return plotly_array(v).tolist()
    return v
