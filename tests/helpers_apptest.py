"""Reading Plotly charts back from an AppTest page: the specs Streamlit sends, and their
numeric arrays (Plotly ships numpy arrays as base64 typed arrays: {"dtype", "bdata",
"shape"})."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest


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
