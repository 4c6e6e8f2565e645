"""The one headless-Chromium fixture of the suite (the page, drift-report and team browser tests).

Needs Debian's chromium at /usr/bin/chromium (``make system-deps`` installs it); Playwright's
own browser download is not used. tests/conftest.py registers this module as a plugin, so any
test asks for ``browser`` by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 15_000


# Module scope: a Playwright sync session left open for the whole test session would make the
# next file's sync_playwright() on the same xdist worker fail ("Sync API inside the asyncio
# loop"), so each test file gets its own browser.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium driven by Playwright (closed at teardown)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: run `make system-deps`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()
