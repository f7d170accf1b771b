"""The harness stops watching a contender's output as soon as `check` raises (a contender
that died), instead of waiting out its timeout."""

from __future__ import annotations

import click
import pytest

from bench.common import watch


def test_a_raising_check_ends_the_watch_at_once() -> None:
    def dead() -> None:
        raise click.ClickException("contender exited")

    with pytest.raises(click.ClickException, match="contender exited"):
        # nothing listens on port 1: without the check the watch would end at its
        # timeout with no records, and raise nothing
        watch("127.0.0.1:1", "outputs", 1, 10, 60.0, "contender", 0.0, check=dead)
