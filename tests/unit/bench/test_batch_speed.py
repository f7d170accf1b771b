"""`bench.batch_speed --against` reads the events/s other commits print."""

from __future__ import annotations

import click
import pytest

from bench.batch_speed import parse_rate
from bench.common import stage_shares


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


ROOT = "BatchProcessor.process (pipeline/processing/batch.py:149)"
STACKS = {
    # the stage is the first listed frame below the root: encoding inside _emit, not emit
    f"main (b.py:1);{ROOT};_emit (batch.py:2);encode_record (codec.py:3)": 5,
    f"main (b.py:1);{ROOT};_decide_one (batch.py:4);decide (arbitration.py:5)": 3,
    f"main (b.py:1);{ROOT}": 2,  # the root's own work: other
    "main (b.py:1);batches (b.py:9)": 40,  # outside the root: not counted
}


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ({"encode": "encode_record", "decide": "decide ("}, {"encode": 50, "decide": 30}),
        ({"emit": "_emit", "encode": "encode_record"}, {"emit": 50, "encode": 0}),
    ],
)
def test_stage_shares_count_samples_under_the_root_by_their_first_stage(tmp_path, stages, expected):
    folded = tmp_path / "p.folded"
    folded.write_text("".join(f"{stack} {n}\n" for stack, n in STACKS.items()))
    shares = stage_shares(folded, "BatchProcessor.process ", stages)
    assert shares == {**expected, "other": pytest.approx(100 - sum(expected.values()))}
