"""User text made inert for each medium it leaves Llama Lab in: HTML, Plotly, a
terminal, a spreadsheet.

Run names, student names, groups, samples, prompts, paths, errors and values from a
page address are chosen by whoever typed them, a browser or a script. Placed raw:

- into an HTML report they could add links, images or scripts;
- into a Plotly label they could add links too, because Plotly reads a subset of HTML
  in every label (legend, title, axis and tick text, hover text, annotations): <a href>,
  <b>, <i>, <br>, <sup>, <span style>;
- into a terminal an escape sequence could recolour, hide or rewrite what the command
  line printed;
- into a spreadsheet a cell that starts with ``=`` runs as a formula.

So every such place passes the text through the one function for its medium. (The
dashboard's Markdown has its own rules: ``ui.plain_text.md_literal``.) No streamlit
here: the HTML report, the dashboard's charts, the command line and the store's CSV
export all use them.
"""

from __future__ import annotations

import html
import re
from typing import Any


def html_literal(text: Any) -> str:
    """Text for an HTML page or attribute: ``& < > " '`` as entities."""
    return html.escape("" if text is None else str(text), quote=True)


def plotly_literal(text: Any) -> str:
    """Text for any Plotly label, shown exactly as typed.

    ``& < >`` become the three entities Plotly decodes back (quotes are left alone:
    Plotly would show ``&quot;`` as it is), so no tag of Plotly's can form. ``%``
    becomes ``&#37;`` so that a name put inside a hovertemplate cannot read as a
    ``%{...}`` variable; Plotly shows it as ``%``."""
    s = html.escape("" if text is None else str(text), quote=False)
    return s.replace("%", "&#37;")


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_text(text: Any) -> str:
    """``text`` with every character that is not printable (control characters such as
    ESC, newlines, bidirectional overrides) shown as its escape, e.g. ``\\x1b``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will show, never evaluate: text that starts like a
    formula gets a leading ``'``; numbers (and text that is just a number, like -1.5)
    are left as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value
