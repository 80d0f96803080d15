"""Text that leaves Llama Lab for a terminal or a spreadsheet, made inert.

Run names, groups, paths and errors can hold anything a browser or a script sent. In
a terminal, an escape sequence in a name could recolour, hide or rewrite what the
command printed; in a spreadsheet, a cell that starts with ``=`` runs as a formula.
So every line the command line prints goes through ``terminal_text`` and every CSV
cell Llama Lab writes goes through ``spreadsheet_cell``.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def terminal_text(text: Any) -> str:
    """``text`` with every character that is not printable (control characters such as
    ESC, newlines, bidirectional overrides) shown as its escape, e.g. ``\\x1b``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will show, never evaluate: text that starts like a
    formula gets a leading ``'``; numbers (and text that is just a number, like -1.5)
    are left as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value
