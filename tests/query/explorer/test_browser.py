"""The explorer in a real headless browser (Debian's chromium through Playwright), with screenshots checked.

One walk through what an auditor does: refused until signed in, a trace opened, a node clicked and
expanded, its inclusion proof checked in the page, a downstream view and an impact list, markup from an
event shown as text, a bad id answered with a clear message, signed out.  Console errors are collected
throughout and must be exactly the ones a step expects.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from tests.browserkit import browser_tab
from tests.query.explorer.conftest import HOSTILE_ID, HOSTILE_LABEL
from tests.query.explorer.explorerkit import Running
from tests.query.provstory import Story

pytestmark = [pytest.mark.postgres, pytest.mark.browser]

# PROV's conventional fills, as app.js draws them
ENTITY, ACTIVITY, AGENT = (0xFF, 0xFC, 0x87), (0x9F, 0xB1, 0xFC), (0xFE, 0xD3, 0x7F)


def pixels_of(path: Path, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    with Image.open(path) as img:
        data = img.convert("RGB").tobytes()
    r, g, b = colour
    return sum(
        1
        for at in range(0, len(data), 3)
        if abs(data[at] - r) <= tolerance and abs(data[at + 1] - g) <= tolerance and abs(data[at + 2] - b) <= tolerance
    )


def settle(page) -> None:
    page.wait_for_selector("body[data-busy='0']")


def open_node(page, node: str, *, direction: str = "upstream", depth: str = "3") -> int:
    page.fill("#start", node)
    page.select_option("#direction", direction)
    page.fill("#depth", depth)
    page.click("#open")
    settle(page)
    return int(page.get_attribute("#graph", "data-nodes") or "0")


def click_node(page, node: str) -> None:
    x, y = page.evaluate(
        "id => { const p = window.provaultExplorer.cy.getElementById(id).renderedPosition(); return [p.x, p.y]; }",
        node,
    )
    box = page.locator("#graph").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    settle(page)


def test_an_auditor_walks_a_trace_in_the_browser(explorer: Running, world: Story, tmp_path: Path) -> None:
    i = world.ids
    with browser_tab() as tab:
        page = tab.page
        # Refused until signed in: the page sends the browser to the sign-in form, the API answers 401.
        shared = f"#id={urllib.parse.quote(i.model)}&depth=2"
        page.goto(f"{explorer.base}/{shared}")
        assert page.url == f"{explorer.base}/login{shared}"
        api = page.request.get(f"{explorer.base}/api/graph?id={urllib.parse.quote(i.model)}")
        assert api.status == 401
        page.fill("#token", "pvt_not-a-token")
        page.click("#sign-in")
        page.wait_for_url("**/login?error=token")
        assert page.text_content("#login-error") == "That token is not valid: it is unknown, revoked or mistyped."
        assert tab.take_errors() == []

        page.fill("#token", explorer.token())
        page.click("#sign-in")
        page.wait_for_selector("body[data-ready='1']")
        settle(page)
        assert page.text_content("#whoami").startswith("signed in as ")
        # The shared link's view opens once signed in.
        assert page.input_value("#start") == i.model and int(page.get_attribute("#graph", "data-nodes")) >= 4

        # Search, then open a result.
        page.fill("#search", "reviews")
        page.click("#search-go")
        settle(page)
        assert page.locator("#results li[data-id]").count() == 1
        page.click(f"#results li[data-id='{i.dataset}']")
        settle(page)
        assert page.input_value("#start") == i.dataset and int(page.get_attribute("#graph", "data-nodes")) >= 2

        # A trace from the model, one hop; a click on its run shows the run and expands it.
        first = open_node(page, i.model, depth="1")
        assert first >= 2 and page.locator("#bundle-link").is_visible()
        assert page.text_content("#details h2") == "sentiment"  # the start node's details
        click_node(page, i.run)
        expanded = int(page.get_attribute("#graph", "data-nodes"))
        assert expanded > first
        assert page.evaluate("id => window.provaultExplorer.cy.getElementById(id).hasClass('expanded')", i.run)
        assert page.locator("#details #node-facts td").first.text_content() == i.run
        box = page.locator("#graph").bounding_box()
        page.mouse.click(box["x"] + 4, box["y"] + 4)  # on the background: unselects, so fills show as drawn
        shot = tmp_path / "trace.png"
        page.locator("#graph").screenshot(path=str(shot), caret="initial")  # "hide" would inject a <style>
        for name, colour in (("entity", ENTITY), ("activity", ACTIVITY), ("agent", AGENT)):
            assert pixels_of(shot, colour) > 300, f"no {name} drawn in {shot}"

        # The run's entry: its inclusion proof and the checkpoint signature, checked by the page itself.
        page.click("#node-entries button.check")
        result = page.wait_for_selector(".proof-result[data-verdict]")
        assert result.get_attribute("data-verdict") == "verified", result.text_content()
        assert "is in the signed log" in result.text_content()

        # Downstream of the dataset, and its impact list.
        assert open_node(page, i.dataset, direction="downstream", depth="5") >= 4
        page.click("#impact-go")
        settle(page)
        assert page.locator("#impact").is_visible()
        counts = page.locator("#impact-counts tbody").text_content()
        assert "provault:Model" in counts and "served predictions" in counts
        page.screenshot(path=str(tmp_path / "impact.png"), full_page=True, caret="initial")
        assert tab.take_errors() == []

        # Markup from an event is text: nothing runs, nothing is injected.
        open_node(page, HOSTILE_ID, depth="1")
        assert page.text_content("#details h2") == HOSTILE_LABEL
        assert page.locator("#details img, #details script").count() == 0
        assert page.title() == "provault explorer"
        assert tab.take_errors() == []

        # A bad id: a clear message on the page, and the one failed request the browser logs for it.
        missing = "sha256:" + "99" * 32
        assert open_node(page, missing) == 0
        assert page.text_content("#messages p.error") == f"no node, prediction or key '{missing}' as of seq 9"
        assert "search finds nodes by label" in page.text_content("#messages p.hint")
        assert tab.take_errors() == ["Failed to load resource: the server responded with a status of 404 (Not Found)"]

        # The page's state is in its URL: a shared link opens the same view.
        page.goto(f"{explorer.base}/{shared}")
        settle(page)
        assert page.input_value("#start") == i.model and int(page.get_attribute("#graph", "data-nodes")) >= 4

        # Signed out, the explorer is closed again.
        page.click("#sign-out")
        page.wait_for_url("**/login")
        page.goto(f"{explorer.base}/")
        assert page.url == f"{explorer.base}/login"
        assert tab.take_errors() == []
