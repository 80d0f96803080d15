"""Llama Lab's entry point: `streamlit run dashboard.py`.

Only navigation and the shared sidebar live here; each view is a file under views/.
A page appears in the menu only once its file exists, so the app runs at every commit.
"""

import os
from pathlib import Path

import streamlit as st
import torch

from llama_core.lab.classroom import ENV_CLASSROOM
from ui.state import name_box, remember_owner

HERE = Path(__file__).parent

# (file, menu title, icon) in teaching order.
PAGES = [
    ("views/start.py", "Start", ":material/home:"),
    ("views/train.py", "Build & train", ":material/model_training:"),
    ("views/compare.py", "Compare", ":material/compare_arrows:"),
    ("views/attention.py", "Attention", ":material/grid_on:"),
    ("views/rotary.py", "Rotary", ":material/rotate_right:"),
    ("views/generate.py", "Generate", ":material/edit_note:"),
    ("views/inference.py", "Inference", ":material/speed:"),
    ("views/ablate.py", "Ablations", ":material/science:"),
    ("views/ladder.py", "The ladder", ":material/stairs:"),
    ("views/pitfalls.py", "Pitfalls", ":material/bug_report:"),
    ("views/teacher.py", "Teacher", ":material/school:"),
]


def device_label() -> str:
    """What torch would train on here, so a class knows what speed to expect."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU, {torch.get_num_threads()} threads"


st.set_page_config(page_title="Llama Lab", layout="wide", page_icon="🦙")

pages = [st.Page(path, title=title, icon=icon, default=(path == "views/start.py"))
         for path, title, icon in PAGES if (HERE / path).exists()]
current = st.navigation(pages)

with st.sidebar:
    st.caption("**Llama Lab**: build Llama one change at a time")
    st.caption(f"Device: {device_label()}")
    remember_owner()
    if os.environ.get(ENV_CLASSROOM):
        name_box()

current.run()
