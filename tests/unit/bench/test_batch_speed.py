"""`bench.batch_speed --against` reads the events/s other commits print."""

from __future__ import annotations

import click
import pytest

from bench.batch_speed import parse_rate


@pytest.mark.parametrize(
    "output",
    [
        "BatchProcessor.process: 21,030 events/s, best of 1 (60,000 events)\n",
        "BatchProcessor.process: 21,030 events/s, best of 1 (60,000 events); stored state "
        "491 B per customer on average, 1,059 B at most\n",
    ],
)
def test_the_summary_line_of_old_and_new_commits(output):
    assert parse_rate(output) == 21_030.0


def test_output_without_a_summary_line_is_an_error_that_shows_it():
    with pytest.raises(click.ClickException, match="Traceback"):
        parse_rate("Traceback (most recent call last): ...")
