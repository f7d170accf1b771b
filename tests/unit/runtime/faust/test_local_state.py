"""The clean-stop marker decides whether the Faust worker keeps its table databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.runtime.faust.local_state import LocalState


def databases(tabledir: Path, *names: str) -> None:
    for name in names:
        (tabledir / name).mkdir(parents=True)
        (tabledir / name / "000001.sst").write_bytes(b"x")


@pytest.mark.parametrize(
    ("marked", "kept"),
    [
        (True, True),  # a clean stop: every table write is on the changelog
        (False, False),  # a crash: the databases may hold writes the changelog lacks
    ],
)
def test_the_databases_are_kept_only_after_a_clean_stop(tmp_path, marked, kept):
    local = LocalState(tmp_path, "customer-state")
    databases(tmp_path, "customer-state-0.db", "customer-state-3.db", "other-0.db")
    if marked:
        local.mark_clean_stop()
    removed = local.open()
    assert [p.name for p in removed] == (
        [] if kept else ["customer-state-0.db", "customer-state-3.db"]
    )
    assert (tmp_path / "customer-state-0.db").exists() is kept
    assert (tmp_path / "other-0.db").exists()  # another table's databases are its own
    assert not local.marker.exists()  # consumed: a crash from here on leaves none


def test_a_start_consumes_the_marker_so_a_crash_after_it_is_not_taken_for_a_clean_stop(
    tmp_path,
):
    local = LocalState(tmp_path, "customer-state")
    databases(tmp_path, "customer-state-1.db")
    local.mark_clean_stop()
    assert local.open() == []
    # the worker crashes: no marker is written, so the next start removes the databases
    assert [p.name for p in local.open()] == ["customer-state-1.db"]


def test_a_first_start_has_nothing_to_remove(tmp_path):
    assert LocalState(tmp_path / "tables", "customer-state").open() == []
