"""Headless Chromium for the dashboard tests: Debian's /usr/bin/chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers.env import require

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this
# closed network refuses (/work/.library/env/machines/python-svc.md).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    require(CHROMIUM.exists(), "needs Debian's chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def log_in(browser: Browser, url: str, key: str) -> Page:
    """A new page of the gateway at ``url``, logged in with ``key`` (on the dashboard)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url + "/login")
    page.fill("[data-testid=api-key]", key)
    page.click("[data-testid=login]")
    expect(page).to_have_url(url + "/")
    return page
