"""Debian's Chromium driven by pip's Playwright (never `playwright install`), for the browser tests."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(width: int, height: int, timeout_ms: int) -> Iterator[Page]:
    """A page in a fresh headless Chromium; fails (never skips) when Chromium is missing."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: apt-get install -y chromium (never `playwright install`)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()
