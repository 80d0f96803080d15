"""Reading Markdown back from an AppTest page as a reader sees it.

AppTest hands back the Markdown a page wrote; user text in it is escaped by
ui.plain_text.md_literal (every ASCII punctuation character backslash-escaped, an
invisible word joiner where Streamlit would otherwise draw a link, an emoji or an
arrow). The browser shows the characters as typed; so does ``as_read``.
"""

from __future__ import annotations

import re

from ui.plain_text import WORD_JOINER


def as_read(markdown: str) -> str:
    """Each backslash escape as its character, the word joiners dropped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(markdown)).replace(WORD_JOINER, "")
