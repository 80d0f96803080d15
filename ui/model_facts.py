"""Facts about a model being built that cost a file read or a model build, computed
once per server: the vocabulary a corpus gives, and every module's shapes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from charts.components import shapes_table
from llama_core.config import byte_pair_vocab
from llama_core.corpora import check_offered, corpus_text
from llama_core.data import CharTokenizer


@st.cache_data(show_spinner="Reading the corpus…", max_entries=8)
def _vocab_of(name: str) -> int:
    return CharTokenizer.from_text(corpus_text(name)).vocab_size


def corpus_vocab(name: str, tokenizer: str = "char") -> int:
    """The vocabulary a run on an offered corpus will have: its characters, or the
    byte-pair size asked for (at most that: learning stops when no pair repeats). A name
    from a page is checked before any file is opened: never a server path."""
    return byte_pair_vocab(tokenizer) or _vocab_of(check_offered(name))


@st.cache_data(show_spinner=False, max_entries=64)
def module_shapes(model_config: dict, batch_size: int) -> pd.DataFrame:
    """charts.components.shapes_table, once per (config, batch size)."""
    return shapes_table(model_config, batch_size)
