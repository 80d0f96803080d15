"""The real dashboard in real Chromium: Start renders its picture, every page in the
sidebar opens without an exception, and each leaves a screenshot in test-artifacts/."""

import pytest
from playwright.sync_api import expect

from helpers_browser import (click_sidebar_link, open_page, screenshot, sidebar_links,
                             wait_for_app)

pytestmark = pytest.mark.browser


def test_start_page_shows_title_block_and_button(streamlit_server, page):
    open_page(page, streamlit_server, name="start")
    expect(page.get_by_role("heading", name="Llama Lab")).to_be_visible()
    chart = page.get_by_test_id("stGraphVizChart")
    expect(chart.locator("svg")).to_be_visible()
    expect(chart.locator("svg")).to_contain_text("RMSNorm")
    expect(chart.locator("svg")).to_contain_text("RoPE")
    expect(page.get_by_role("button", name="Train your first model")).to_be_visible()
    expect(page.get_by_test_id("stSidebar")).to_contain_text("Device:")


def test_swap_redraws_the_block(streamlit_server, page):
    open_page(page, streamlit_server)
    page.get_by_role("radio", name="LayerNorm").click()
    wait_for_app(page)
    svg = page.get_by_test_id("stGraphVizChart").locator("svg")
    expect(svg).to_contain_text("LayerNorm")
    expect(svg).not_to_contain_text("RMSNorm")
    expect(page.get_by_text("not Llama's block")).to_be_visible()
    screenshot(page, "start-layernorm")


def test_every_sidebar_page_opens(streamlit_server, page):
    open_page(page, streamlit_server)
    links = sidebar_links(page)
    # With a single page Streamlit draws no menu; once there are more, Start is in it.
    assert not links or any(title == "Start" for title, _ in links)
    for title, _ in links:
        slug = title.lower().replace(" & ", "-").replace(" ", "-")
        click_sidebar_link(page, title, name=f"page-{slug}")


def test_a_shared_link_is_the_first_request_after_a_restart(page, tmp_path):
    """A teacher's link straight to a page, before anyone opened the root, still opens
    inside the dashboard (its menu and sidebar), not as a bare script."""
    from conftest import running_dashboard

    with running_dashboard(tmp_path, "streamlit-fresh-server.log") as url:
        open_page(page, f"{url}/rotary", name="fresh-server-deep-link")
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar).to_contain_text("Llama Lab")
        expect(sidebar).to_contain_text("Build & train")
        expect(page.get_by_role("heading", name="Rotary", exact=False).first).to_be_visible()
