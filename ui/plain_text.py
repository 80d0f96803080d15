"""User text shown as the characters typed in the dashboard's Markdown.

Streamlit reads Markdown in far more places than st.markdown: st.caption, st.info,
st.error, st.warning, st.success, titles and headers, st.table cells and headers,
st.metric labels and values, expander and tab labels, radio and segmented-control
options, page_link labels and progress text. A run name such as
``[click](http://evil.example)`` placed there raw becomes a link chosen by whoever
named the run. Every such place passes user text through :func:`md_literal`.
(Selectbox and multiselect options and st.dataframe are plain text already, and
st.code / st.text never read Markdown.)

Backslash escapes stop everything the Markdown parser reads (CommonMark lets every ASCII
punctuation character be escaped): links, images, emphasis, headings, lists, tables,
code, raw HTML, ``$`` math and Streamlit's ``:red[...]`` directives. Some of
Streamlit's Markdown features, though, are searches over the already parsed text,
which escapes cannot reach (Streamlit 1.67, StreamlitMarkdown.tsx and
mdast-util-gfm-autolink-literal):

- bare ``http://...``, ``www....`` and ``name@host.tld`` become links;
- ``:smile:`` emoji, ``:material/icon:`` icons and ``:streamlit:`` become pictures;
- `` -> <- <-> -- >= <= ~= `` between spaces become arrows and signs.

For those, an invisible WORD JOINER (U+2060) goes after the ``:``, the ``@``, the ``www``
or the first sign, so the text reads the same but no longer matches. Line breaks and
runs of spaces read as one space, as HTML shows them anyway (and so a message stays one
paragraph: a user's line can never start a heading, a list or a code block).

The Plotly and HTML counterparts live in llama_core.lab.plain_text (the HTML report uses
them too); ``plotly_literal`` is re-exported here for the pages.
"""

from __future__ import annotations

import re
from typing import Any

from llama_core.lab.plain_text import html_literal, plotly_literal

WORD_JOINER = "\u2060"
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_SIGNS = re.compile(r"(?<!\S)(<->|->|<-|--|>=|<=|~=)(?!\S)")
_WWW = re.compile(r"(?<=www)(?=\.)", re.IGNORECASE)
_AFTER_MARK = re.compile(r"(?<=[:@])(?=[\w+\-/])")
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def shorten(text: Any, limit: int) -> str:
    """At most ``limit`` characters, the last an ellipsis when cut."""
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[:limit - 1] + "…"


def md_literal(text: Any, limit: int | None = None) -> str:
    """``text`` for any place Streamlit reads Markdown, shown as typed.

    ``limit`` shortens the text first (never an escape cut in half)."""
    s = "" if text is None else str(text)
    if limit is not None:
        s = shorten(s, limit)
    s = _SPACES.sub(" ", s)
    s = _SIGNS.sub(lambda m: m[0][0] + WORD_JOINER + m[0][1:], s)
    s = _WWW.sub(WORD_JOINER, s)
    s = _AFTER_MARK.sub(WORD_JOINER, s)
    return _PUNCTUATION.sub(r"\\\1", s)


__all__ = ["md_literal", "plotly_literal", "html_literal", "shorten", "WORD_JOINER"]
