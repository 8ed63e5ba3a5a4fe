"""A real headless browser for the explorer tests: the distribution's chromium, driven by Playwright.

Never a downloaded browser: ``/usr/bin/chromium`` (Debian's package; ``.ci/run`` installs it when missing).
:class:`Tab` keeps every console error and uncaught exception the page raised, so a test can say exactly
which it expects (usually none).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("PROVAULT_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",  # CI runs as root, where chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000


@dataclass
class Tab:
    page: object  # playwright.sync_api.Page
    errors: list[str] = field(default_factory=list)

    def take_errors(self) -> list[str]:
        taken, self.errors[:] = list(self.errors), []
        return taken


@contextlib.contextmanager
def browser_tab(*, width: int = 1400, height: int = 900) -> Iterator[Tab]:
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does when it can)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            tab = Tab(page)
            page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))
            yield tab
        finally:
            browser.close()
