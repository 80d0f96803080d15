"""User text shown as the characters typed, never as markup, in HTML and in Plotly.

Run names, student names, samples, prompts and values from a page address are chosen
by whoever typed them. Placed raw into an HTML report they could add links, images or
scripts; placed raw into a Plotly label they could add links too, because Plotly reads
a subset of HTML in every label (legend, title, axis and tick text, hover text,
annotations): <a href>, <b>, <i>, <br>, <sup>, <span style>. Every such place passes
the text through one of these two functions. (The dashboard's Markdown has its own
rules: ``ui.plain_text.md_literal``.)

No streamlit here: the HTML report (llama_core.lab.report) and the dashboard's charts
(ui/) both use them.
"""

from __future__ import annotations

import html
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


__all__ = ["html_literal", "plotly_literal"]
