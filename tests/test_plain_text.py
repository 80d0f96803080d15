"""User text stays plain text: the Markdown, Plotly and HTML escapes on hostile strings,
and the charts and the HTML report built from runs with hostile names.

The Markdown checks model Streamlit 1.67's renderer in two steps, as it works: the
CommonMark parser first (every ASCII punctuation character must arrive backslash-
escaped), then the searches Streamlit and remark-gfm run over the parsed text, which
escapes cannot reach (their regular expressions are copied from StreamlitMarkdown.tsx
and mdast-util-gfm-autolink-literal). tests/test_browser_plain_text.py checks the same
in the real renderer.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from llama_core.lab.plain_text import html_literal, plotly_literal
from ui.plain_text import WORD_JOINER, md_literal, shorten

HOSTILE = [
    "[x](http://evil)",
    "![i](http://evil/i.png)",
    "<img src=x onerror=alert(1)>",
    '<a href="http://evil">x</a>',
    "**bold** _it_ ~strike~",
    ":red[x] :blue-background[y] :small[z] :help[tip]",
    ":material/home: :material_home: :smile: :+1: :streamlit:",
    "$x$ and $$y$$",
    "back\\slash \\* \\[x](http://evil)\\",
    "line one\n# heading\n- item\n\n    code\n> quote\n1. one\n===",
    "`code` ``two`` | a | b |",
    "www.evil.example and mail@evil.example and HTTPS://EVIL.EXAMPLE/x",
    "<http://evil.example> [ref]: http://evil.example",
    "a -> b <- c <-> d -- e >= f <= g ~= h",
    "&amp; &lt;b&gt; &#60;a&#62;",
    "%{x} 100% %{customdata[0]}",
    ":::note\nfenced\n:::",
]
PUNCTUATION = r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"""

# Searches Streamlit 1.67 and remark-gfm run over parsed text (JavaScript regexes: \w
# and \s are ASCII there, hence re.ASCII).
TEXT_SEARCHES = [
    re.compile(r"(https?://|www(?=\.))([-.\w]+)", re.I | re.A),    # autolink literal
    re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.A),         # e-mail literal
    re.compile(r":(?!material/|streamlit:)[\w+-][\w_+-]*:", re.A),  # emoji shortcodes
    re.compile(r":material_(\w+):", re.A),                         # material icons
    re.compile(r":streamlit:"),                                    # the logo
    re.compile(r"(^|[ \t\n\r\f\v])(<->|->|<-|--|>=|<=|~=)([ \t\n\r\f\v]|$)"),  # arrows
]


def parsed_text(markdown: str) -> str:
    """What the CommonMark parser leaves of escaped text: each escape its character."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def bare_punctuation(markdown: str) -> list[str]:
    """ASCII punctuation the parser would read as syntax (not backslash-escaped)."""
    return [tok for tok in re.findall(r"\\[!-/:-@\[-`{-~]|.", markdown, re.S)
            if len(tok) == 1 and tok in PUNCTUATION]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_literal_leaves_no_syntax(text):
    out = md_literal(text)
    assert bare_punctuation(out) == []
    assert "\n" not in out and "\r" not in out  # one paragraph: no heading, list, code
    assert ":material/" not in out  # Streamlit rewrites this in the raw source
    seen = parsed_text(out)
    for search in TEXT_SEARCHES:
        assert not search.search(seen), (search.pattern, seen)


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_literal_reads_as_typed(text):
    """Once parsed, the text is the user's own, with line breaks and space runs as one
    space (as HTML shows them) and invisible word joiners."""
    shown = parsed_text(md_literal(text)).replace(WORD_JOINER, "")
    assert shown == re.sub(r"[ \t\r\n\f\v]+", " ", text)


def test_word_joiners_only_where_a_search_would_match():
    assert md_literal("plain name 3") == "plain name 3"
    assert WORD_JOINER not in md_literal("note: a - b, x->y, e@ (see: this)")
    assert md_literal("http://e.x") == "http\\:" + WORD_JOINER + "\\/\\/e\\.x"


def test_markdown_literal_shortens_before_escaping():
    out = md_literal("[" * 50, limit=10)
    assert parsed_text(out) == "[" * 9 + "…"
    assert shorten("abc", 3) == "abc" and shorten("abcd", 3) == "ab…"
    assert md_literal(None) == "" and md_literal(12.5) == "12\\.5"


def plotly_decoded(label: str) -> str:
    """What Plotly shows for a label: its entities decoded (svg_text_utils)."""
    named = {"lt": "<", "gt": ">", "amp": "&", "nbsp": "\xa0", "mu": "μ", "times": "×",
             "plusmn": "±", "deg": "°"}

    def one(m):
        ref = m.group(1)
        if ref.startswith("#"):
            return chr(int(ref[2:], 16) if ref[1] == "x" else int(ref[1:]))
        return named.get(ref, m.group(0))
    return re.sub(r"&(#\d+|#x[\da-fA-F]+|[a-z]+);", one, label)


@pytest.mark.parametrize("text", HOSTILE)
def test_plotly_literal_forms_no_tag_and_reads_as_typed(text):
    out = plotly_literal(text)
    assert "<" not in out and ">" not in out  # no <a>, <b>, <br>, <span> of Plotly's
    assert "%{" not in out  # no hovertemplate variable
    assert "&quot;" not in out  # Plotly would show it as is
    assert plotly_decoded(out) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_html_literal(text):
    out = html_literal(text)
    assert "<" not in out and ">" not in out and '"' not in out
    assert html.unescape(out) == text


# --- Charts and the report with hostile run names -----------------------------------

EVIL = '<a href="http://evil.example">a</a> <img src=x onerror=alert(1)> <b>b</b>'


IDS = ("legendgroup", "meta")  # identifiers, never shown


def figure_strings(fig) -> list[str]:
    """Every string a figure's spec shows (names, titles, ticks, hover text...)."""
    out = []

    def walk(x):
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in IDS:
                    walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, np.ndarray) and x.dtype.kind in "OUS":
            walk(x.tolist())
    walk(fig.to_plotly_json())
    return out


def assert_no_user_markup(fig) -> None:
    strings = figure_strings(fig)
    assert not [s for s in strings if re.search(r"<(a|img|b)[ >]", s)], strings
    assert any(plotly_decoded(s).find(EVIL[:30]) >= 0 for s in strings), \
        "the name is not shown at all"


def test_loss_and_ablation_charts_escape_names():
    from charts.bands import band_figure
    from charts.components import params_figure
    from charts.health import depth_profile_figure, health_over_steps_figure
    from charts.loss import compare_figure, curve_frame
    from charts.verdicts import summary_display
    from ui.figures import markdown_index

    frame = curve_frame([{"step": 1, "val_loss": 3.0, "train_loss": 3.1},
                         {"step": 2, "val_loss": 2.5, "train_loss": 2.6}])
    assert_no_user_markup(compare_figure(
        [{"run_id": "r1", "label": EVIL, "frame": frame},
         {"run_id": "r2", "label": "baseline", "frame": frame}], baseline="r1"))

    bands = pd.DataFrame({"variant": [EVIL] * 2, "step": [1, 2], "x": [1.0, 2.0],
                          "mean": [3.0, 2.5], "low": [2.9, 2.4], "high": [3.1, 2.6],
                          "n": [2, 2]})
    curves = pd.DataFrame({"variant": [EVIL] * 2, "seed": [0, 0], "step": [1, 2],
                           "val_loss": [3.0, 2.5]})
    assert_no_user_markup(band_figure(bands, curves=curves))

    from llama_core.config import ModelConfig
    assert_no_user_markup(params_figure({EVIL: ModelConfig(vocab_size=65)}))

    health = pd.DataFrame({"variant": [EVIL] * 4, "run_id": ["r1"] * 4, "seed": [0] * 4,
                           "step": [1, 1, 2, 2], "layer": [0, 1, 0, 1],
                           "grad_norm": [1.0, 2.0, 1.5, 2.5],
                           "residual_rms": [1.0, 1.2, 1.1, 1.3]})
    assert_no_user_markup(depth_profile_figure(health))
    assert_no_user_markup(health_over_steps_figure(health, [EVIL]))

    table = markdown_index(summary_display(pd.DataFrame({"variant": [EVIL], "seeds": [2]})))
    assert bare_punctuation(table.index[0]) == []


def test_inspect_charts_escape_names_and_characters():
    from charts.attention import attention_heatmap, head_bars
    from charts.generation import next_char_bars

    assert_no_user_markup(head_bars({EVIL: np.ones((2, 2))}, "entropy", "nats"))
    step = pd.DataFrame({"character": ["<", "&", "a"], "probability": [0.5, 0.3, 0.2],
                         "chosen": [True, False, False]})
    fig = next_char_bars(step, "title")
    ticks = fig.layout.xaxis.ticktext
    assert "<" not in "".join(ticks) and [plotly_decoded(t) for t in ticks] == ["<", "&", "a"]
    heat = attention_heatmap(np.full((3, 3), 1 / 3), "<a>", "one head")
    assert "".join(heat.layout.xaxis.ticktext) == "&lt;a&gt;"


class Tags(HTMLParser):
    """Start tags of a page outside its scripts (html.parser reads script bodies as
    text, as a browser does)."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_shows_hostile_names_as_text(tmp_path):
    """The exported HTML report: no tag of a run's name in the page, and its charts'
    names escaped for Plotly (whose labels would read <a href> as a link)."""
    from llama_core.lab.report import comparison_html, loss_figure
    from llama_core.lab.store import RunStore
    from runs_fixtures import TINY
    from llama_core.presets import build_configs
    from llama_core.training import as_trained

    store = RunStore(tmp_path / "llama_lab.db")
    model, train = build_configs("tiny", TINY)
    ids = [store.create_run(as_trained(model, train), train, name=name, owner=name)
           for name in (EVIL, "[click](http://evil.example)")]
    for i, run_id in enumerate(ids):
        store.add_metric(run_id, {"step": 1, "val_loss": 3.0 + i, "train_loss": 3.1,
                                  "sample": EVIL})
    page = comparison_html(store, ids, title=EVIL, share_url="javascript:alert(1)",
                           include_plotlyjs=False)
    parser = Tags()
    parser.feed(page)
    assert not [t for t, a in parser.tags if t == "img"]
    assert [a.get("href") for t, a in parser.tags if t == "a"] == []
    assert html_literal(EVIL) in page
    assert_no_user_markup(loss_figure(store, [store.get_run(r) for r in ids]))
