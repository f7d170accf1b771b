"""The programs some tests run (a browser, Prometheus, promtool, helm, Java), found on PATH
rather than at one distribution's path. Without one, such a test skips on a developer's
machine but FAILS under CI (`CI` set, as `.ci/run` does): a green CI run means every test
ran."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

#: set by .ci/run (and by the usual CI services)
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
#: the names Chromium goes by on PATH (Debian, Ubuntu and Fedora, Chrome)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def missing(what: str) -> NoReturn:
    """Skip the test, or fail it under CI, because `what` (and how to get it) is missing."""
    if IN_CI:
        pytest.fail(f"{what}; CI is set, so a test that needs it fails instead of skipping")
    pytest.skip(what)


def tool(name: str, install: str) -> str:
    """The path of `name` on PATH (else skip, or fail under CI, saying how to install it)."""
    return shutil.which(name) or missing(f"{name} is not on PATH: {install}")


def chromium() -> str:
    """A Chromium for Playwright to drive: one on PATH, else Playwright's own download."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install playwright)")
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    with sync_playwright() as p:
        bundled = p.chromium.executable_path
    if bundled and Path(bundled).is_file():
        return bundled
    missing(
        "no Chromium: apt-get install -y chromium (or playwright install chromium); "
        f"looked for {', '.join(CHROMIUM_NAMES)} on PATH and Playwright's download"
    )
