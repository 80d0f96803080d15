"""What the command line prints: JSON for scripts, and lines and tables for a person.

Text meant for a person passes through ``terminal_text``: a run's name cannot send
escape codes to a terminal.
"""

from __future__ import annotations

import json

from ..plain_text import terminal_text


def print_result(obj, as_json: bool, sentence: str | None = None) -> None:
    """A command's answer: one JSON line for a script; for a person, ``sentence``, or
    without one the object laid out as indented JSON."""
    if as_json:
        print(json.dumps(obj, indent=None, default=str))
    elif sentence is not None:
        say(sentence)
    else:
        print(json.dumps(obj, indent=2, default=str))


def say(text, file=None) -> None:
    """Print a line for a person, control characters shown as escapes."""
    print(terminal_text(text), file=file)


def cell(value) -> str:
    """A table cell: '-' for nothing, four decimals for a small number."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return terminal_text(value)


def print_table(rows: list[dict], columns: list[str] | tuple[str, ...]) -> None:
    columns = [terminal_text(c) for c in columns]
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
