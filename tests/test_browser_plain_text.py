"""User text is plain text on every page, in real Chromium against a real server.

Three tiny runs are trained with hostile names (a Markdown link, an HTML image, an HTML
link), owned by a student whose name is an HTML link, in one sweep group. Compare,
Teacher (and its HTML report), Build & train, Generate, Attention, Ablations and the
ladder are opened with those runs and with hostile values in the page address. On
each: no link to evil.example and no <img src=x> anywhere in the document, Plotly's
SVG included (Plotly reads <a href> in its labels and draws an SVG link), and the
names read as typed. Screenshots go to test-artifacts/plain-text-*.png.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from helpers_browser import assert_no_exception, screenshot, wait_for_app
from runs_fixtures import train_tiny_runs
from test_browser_train_compare import open_app_page

pytestmark = pytest.mark.browser

LINK = "[click](http://evil.example)"
IMAGE = "<img src=x onerror=alert(1)>"
ANCHOR = '<a href="http://evil.example">a</a>'
NAMES = (LINK, IMAGE, ANCHOR)
STUDENT = "s-0123456789"
GROUP = "sw-plaintext"
HOSTILE_PARAM = "[x](http://evil.example/param)"

# Every element that would be a link to evil.example or the image x, in HTML or SVG
# (Plotly draws a label's <a href> as an SVG <a> with xlink:href).
EVIL_ELEMENTS = """() => [...document.querySelectorAll('a, img, image')].filter(e => {
    const href = e.getAttribute('href') || e.getAttributeNS('http://www.w3.org/1999/xlink',
                                                            'href') || '';
    const src = e.getAttribute('src') || '';
    return href.includes('evil.example') || src === 'x' || src.includes('evil.example');
}).map(e => e.outerHTML.slice(0, 300))"""

# What a reader sees: the page's text and Plotly's SVG text, without the invisible
# word joiners the Markdown escape adds.
SHOWN_TEXT = """() => (document.body.innerText + '\\n' +
    [...document.querySelectorAll('svg text')].map(t => t.textContent).join('\\n'))
    .replaceAll('\\u2060', '')"""


def check_plain(page: Page, *texts: str, where: str) -> None:
    assert_no_exception(page, where)
    assert page.evaluate(EVIL_ELEMENTS) == [], where
    assert page.locator("img[src='x']").count() == 0, where
    shown = page.evaluate(SHOWN_TEXT)
    missing = [t for t in texts if t not in shown]
    assert not missing, f"{where}: {missing} not shown as typed"
    screenshot(page, f"plain-text-{where}")


def wait_for_legend(page: Page, key: str, count: int) -> None:
    expect(page.locator(f".st-key-{key} .js-plotly-plot .legendtext")).to_have_count(
        count, timeout=60_000)


def url(base: str, path: str, **params) -> str:
    return f"{base}/{path}?{urlencode(params, doseq=True)}"


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    from llama_core.lab.store import RunStore

    runs = tmp_path_factory.mktemp("plain-text-runs")
    store = RunStore(runs / "llama_lab.db")
    ids = train_tiny_runs(store.path, {LINK: {}, IMAGE: {"norm": "layernorm"},
                                       ANCHOR: {"pos": "learned"}},
                          group=GROUP, owner=STUDENT, steps=10, eval_interval=5)
    store.set_student_name(STUDENT, ANCHOR)
    return runs, ids


@pytest.fixture(scope="module")
def server(hostile_runs):
    from conftest import running_dashboard

    with running_dashboard(hostile_runs[0], "plain-text-server.log") as base:
        yield base


def test_compare_and_teacher(server, hostile_runs, page, tmp_path):
    _, ids = hostile_runs
    open_app_page(page, url(server, "compare", runs=[*ids, HOSTILE_PARAM]), "Compare runs")
    wait_for_legend(page, "cmp_chart", 3)
    check_plain(page, *NAMES, HOSTILE_PARAM, where="compare")

    open_app_page(page, url(server, "teacher", runs=[*ids, HOSTILE_PARAM]), "Teacher")
    # The class's box plot: hovering a run's dot shows its owner's name.
    dot = page.locator(".st-key-t_class .js-plotly-plot .point").first
    dot.wait_for(timeout=60_000)
    dot.hover(force=True)
    expect(page.locator(".st-key-t_class .hovertext")).to_have_count(1, timeout=10_000)
    check_plain(page, *NAMES, ANCHOR + f" ({STUDENT})", HOSTILE_PARAM, where="teacher")

    page.get_by_role("radiogroup").get_by_text(f"{IMAGE} ({ids[1]})").click()
    wait_for_app(page)
    page.locator(".st-key-t_reveal button").click()
    wait_for_app(page)
    wait_for_legend(page, "t_curves", 3)
    expect(page.get_by_text("Lowest final validation loss")).to_be_visible()
    page.locator(".st-key-t_prepare button").click()
    wait_for_app(page)
    check_plain(page, *NAMES, where="teacher-revealed")

    with page.expect_download() as info:
        page.locator(".st-key-t_download button").click()
    report = tmp_path / "report.html"
    Path(info.value.path()).replace(report)
    page.goto(report.as_uri())
    expect(page.locator(".js-plotly-plot .legendtext").first).to_be_visible(timeout=30_000)
    check_plain(page, *NAMES, where="report")


def test_train_generate_attention(server, hostile_runs, page):
    _, ids = hostile_runs
    open_app_page(page, url(server, "train", run=ids[0]), "Build & train")
    check_plain(page, LINK, where="train-run")
    open_app_page(page, url(server, "train", run=HOSTILE_PARAM), "Build & train")
    check_plain(page, HOSTILE_PARAM, where="train-bad-link")

    open_app_page(page, url(server, "generate", run=ids[:2]), "Generate")
    check_plain(page, LINK, IMAGE, where="generate")
    open_app_page(page, url(server, "generate", run=[ids[2], HOSTILE_PARAM]), "Generate")
    check_plain(page, ANCHOR, HOSTILE_PARAM, where="generate-bad-link")

    open_app_page(page, url(server, "attention", run=[ids[0], ids[2]]), "Attention")
    wait_for_legend(page, "attention_entropy", 3)  # two runs and the uniform line
    check_plain(page, LINK, ANCHOR, where="attention")


def test_ablations_and_ladder(server, page):
    open_app_page(page, url(server, "ablate", group=GROUP), "Ablations")
    wait_for_legend(page, "ab_chart", 3)
    expect(page.locator(".st-key-ab_params .js-plotly-plot .xtick").first).to_be_attached(
        timeout=60_000)
    check_plain(page, *NAMES, where="ablate")
    page.get_by_role("tab", name="Gradient & activation health").click()
    wait_for_app(page)
    wait_for_legend(page, "ab_depth", 2)
    check_plain(page, LINK, IMAGE, where="ablate-health")

    open_app_page(page, url(server, "ablate", group=HOSTILE_PARAM), "Ablations")
    check_plain(page, HOSTILE_PARAM, where="ablate-bad-link")
    open_app_page(page, url(server, "ladder", ladder=HOSTILE_PARAM),
                  "The ladder: from a character MLP to Llama")
    check_plain(page, HOSTILE_PARAM, where="ladder-bad-link")
