"""Facts about a model being built that cost a file read or a model build, computed
once per server: the vocabulary a corpus gives, and every module's shapes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from charts.components import shapes_table
from llama_core.corpora import check_offered, corpus_text
from llama_core.data import CharTokenizer


@st.cache_data(show_spinner="Reading the corpus…", max_entries=8)
def _vocab_of(name: str) -> int:
    return CharTokenizer.from_text(corpus_text(name)).vocab_size


def corpus_vocab(name: str) -> int:
    """Characters in an offered corpus's vocabulary (what a run's vocab_size will be).
    A name from a page is checked before any file is opened: never a server path."""
    return _vocab_of(check_offered(name))


@st.cache_data(show_spinner=False, max_entries=64)
def module_shapes(model_config: dict, batch_size: int) -> pd.DataFrame:
    """charts.components.shapes_table, once per (config, batch size)."""
    return shapes_table(model_config, batch_size)
