"""The integration tests' shared browser: one Chromium per test, driven by Playwright."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

with contextlib.suppress(ImportError):  # without it, tests.tools.chromium says what to do
    from playwright.sync_api import sync_playwright

#: headless in a container: no sandbox, no GPU, nothing fetched in the background
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Any]:
    """A Playwright `Browser`: skipped without Chromium, failed under CI (`chromium_path`)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()
