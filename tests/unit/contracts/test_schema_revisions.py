"""Schema revisions stay BACKWARD compatible: each one reads what its predecessor wrote."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.contracts import schemas

DATA = Path(__file__).parent / "data"


def test_every_schema_revision_reads_its_predecessor() -> None:
    assert schemas.revision_problems() == []


def test_an_incompatible_revision_is_refused() -> None:
    problems = schemas.revision_problems(DATA / "incompatible_revisions")
    assert len(problems) == 1
    assert problems[0].startswith("audit_record.avsc cannot read audit_record.1.avsc")
    assert "rule" in problems[0]


RECORD = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}


def _with(*fields: dict[str, object]) -> dict[str, object]:
    return {**RECORD, "fields": [*RECORD["fields"], *fields]}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("reader", "writer", "compatible"),
    [
        (RECORD, RECORD, True),
        (_with({"name": "b", "type": "string", "default": ""}), RECORD, True),  # added, default
        (RECORD, _with({"name": "b", "type": "string"}), True),  # removed: ignored
        (_with({"name": "b", "type": "string"}), RECORD, False),  # added without a default
        ({**RECORD, "fields": [{"name": "a", "type": "int"}]}, RECORD, False),  # narrowed
        (RECORD, {**RECORD, "fields": [{"name": "a", "type": "int"}]}, True),  # promoted
    ],
    ids=["same", "added-default", "removed", "added-no-default", "narrowed", "promoted"],
)
def test_backward_problems(reader: object, writer: object, compatible: bool) -> None:
    assert (schemas.backward_problems(reader, writer) == []) is compatible


def test_a_schema_that_does_not_parse_is_a_problem() -> None:
    assert schemas.backward_problems(RECORD, {"type": "record", "name": "R"}) != []


def test_the_shipped_schemas_parse_for_the_checker() -> None:
    for name in schemas.NAMES:
        raw = orjson.loads((schemas.schema_dir() / f"{name}.avsc").read_bytes())
        assert schemas.backward_problems(raw, raw) == []
