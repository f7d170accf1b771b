"""The check every policy-section test makes of a mistake: one issue, on its line and path,
with a hint that says what is allowed."""

from __future__ import annotations

import pytest

from pipeline.core.policy_document import PolicyError, load_policy

HEAD = "version: 1.0.0\nagents: [care-bot, promo-bot]\n"  # lines 1-2


def assert_one_mistake(body: str, line: int, path: str, hint: str) -> None:
    """`body` after HEAD is refused with one issue at `line` and `path` naming `hint`."""
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + body, "p.yaml")
    issues = err.value.issues
    assert len(issues) == 1, issues
    assert issues[0].line == line
    assert issues[0].path == path
    assert hint in issues[0].message
    assert str(err.value).startswith(f"p.yaml:{line}: {path}: ")
