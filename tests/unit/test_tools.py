"""A test whose program is missing skips on a developer's machine and fails under CI."""

from __future__ import annotations

import pytest

from tests import tools


@pytest.mark.parametrize(
    ("in_ci", "outcome"), [(False, pytest.skip.Exception), (True, pytest.fail.Exception)]
)
def test_a_missing_program_skips_only_outside_ci(monkeypatch, in_ci, outcome):
    monkeypatch.setattr(tools, "IN_CI", in_ci)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(outcome, match="no-such-tool is not on PATH: apt-get install it"):
        tools.tool("no-such-tool", "apt-get install it")


def test_chromium_is_found_on_path_not_at_a_fixed_path(monkeypatch, tmp_path):
    browser = tmp_path / "chromium-browser"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tools.chromium() == str(browser)
