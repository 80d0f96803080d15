"""Llama Lab's entry point: `streamlit run dashboard.py`.

Only navigation and the shared sidebar live here; each view is a file under pages/.
A page appears in the menu only once its file exists, so the app runs at every commit.
"""

from pathlib import Path

import streamlit as st
import torch

HERE = Path(__file__).parent

# (file, menu title, icon) in teaching order.
PAGES = [
    ("pages/start.py", "Start", ":material/home:"),
    ("pages/train.py", "Build & train", ":material/model_training:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/attention.py", "Attention", ":material/grid_on:"),
    ("pages/rotary.py", "Rotary", ":material/rotate_right:"),
    ("pages/generate.py", "Generate", ":material/edit_note:"),
    ("pages/ablate.py", "Ablations", ":material/science:"),
    ("pages/ladder.py", "The ladder", ":material/stairs:"),
    ("pages/pitfalls.py", "Pitfalls", ":material/bug_report:"),
]


def device_label() -> str:
    """What torch would train on here, so a class knows what speed to expect."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU, {torch.get_num_threads()} threads"


st.set_page_config(page_title="Llama Lab", layout="wide", page_icon="🦙")

pages = [st.Page(path, title=title, icon=icon, default=(path == "pages/start.py"))
         for path, title, icon in PAGES if (HERE / path).exists()]
current = st.navigation(pages)

with st.sidebar:
    st.caption("**Llama Lab**: build Llama one change at a time")
    st.caption(f"Device: {device_label()}")

current.run()
