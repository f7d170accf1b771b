"""Avro schemas of the topic values, loaded once from `schemas/` (the source of truth),
which the package carries as `pipeline.schemas`.

Each schema is identified on the wire by the CRC-64-AVRO fingerprint of its
Parsing Canonical Form, as the Avro single-object encoding requires. A schema changes only
by adding fields with defaults; its earlier revisions stay in `schemas/revisions/`
(`<name>.<n>.avsc`) so that records written before the change still decode, resolved
against the current schema.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.errors import AvroException
from avro.schema import parse as avro_parse
from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from pipeline.contracts.avro_writer import Writer, compile_writer

NAMES: tuple[str, ...] = ("agent_event", "approved_action", "audit_record", "dead_letter")

_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _rabin_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) as in the Avro spec; ours so the byte order is never in doubt."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(b ^ fp) & 0xFF]
    return fp


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """A parsed schema with its wire identity."""

    name: str
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian, as written after the C3 01 magic
    #: compiled encoder (pipeline/contracts/avro_writer.py); None: use fastavro's writer
    writer: Writer | None = None
    #: the schema's JSON as read from its file
    raw: Any = None


def schema_dir() -> Path:
    """`TOWER_SCHEMA_DIR` wins, to run with schemas other than the package's; otherwise the
    package's own: in a wheel its copy of `schemas/`, in an editable install the folder."""
    override = os.environ.get("TOWER_SCHEMA_DIR")
    if override:
        return Path(override)
    try:
        shipped = resources.files("pipeline.schemas")
    except ModuleNotFoundError:
        shipped = None
    if not isinstance(shipped, Path):  # not installed, or imported from an archive
        raise FileNotFoundError(
            "the package's schemas (pipeline.schemas) are not installed: install the package "
            "(`make install` in a checkout) or set TOWER_SCHEMA_DIR to a copy of schemas/"
        )
    return shipped


@cache
def get(name: str) -> SchemaInfo:
    """Parse once; schema work must never happen per record."""
    if name not in NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    raw = orjson.loads((schema_dir() / f"{name}.avsc").read_bytes())
    parsed = parse_schema(raw)
    canonical = to_parsing_canonical_form(raw)
    fp = _fingerprint(raw)
    try:
        writer: Writer | None = compile_writer(raw)
    except NotImplementedError:  # a type the compiled writer does not cover
        writer = None
    return SchemaInfo(name, parsed, canonical, fp, writer, raw)


def _fingerprint(raw: Any) -> bytes:
    return crc64_avro(to_parsing_canonical_form(raw).encode("utf-8")).to_bytes(8, "little")


@cache
def revisions(name: str) -> dict[bytes, Any]:
    """Earlier revisions of schema `name` by fingerprint, parsed: the writer schemas of
    records written before its newest fields were added."""
    out: dict[bytes, Any] = {}
    for path in sorted((schema_dir() / "revisions").glob(f"{name}.*.avsc")):
        raw = orjson.loads(path.read_bytes())
        out[_fingerprint(raw)] = parse_schema(raw)
    return out


@cache
def by_fingerprint() -> dict[bytes, str]:
    """Reverse lookup so a reader can tell which schema (any revision) wrote a record."""
    out = {fp: n for n in NAMES for fp in revisions(n)}
    out.update({get(n).fingerprint: n for n in NAMES})
    return out


def name_for(fingerprint: bytes) -> str | None:
    """Schema name for 8 fingerprint bytes, or None if none of ours."""
    return by_fingerprint().get(fingerprint)


# --- compatibility ---------------------------------------------------------------------


def backward_problems(reader: Any, writer: Any) -> list[str]:
    """Why a reader on schema `reader` cannot read data written with `writer` (both as
    parsed JSON); empty when it can.

    Apache Avro's port of Java's SchemaCompatibility decides it, the rules every schema
    registry applies, so the tower never accepts what a registry would refuse.
    """
    try:
        parsed_reader = avro_parse(orjson.dumps(reader).decode())
        parsed_writer = avro_parse(orjson.dumps(writer).decode())
    except (AvroException, TypeError, ValueError) as exc:
        return [f"the schema does not parse: {exc}"]
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(parsed_reader, parsed_writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({i.value.replace("_", " ") for i in result.incompatibilities})
    where = sorted(result.locations - {"/"}) or ["/"]
    return [f"{', '.join(kinds)} ({'; '.join(sorted(result.messages))}) at {', '.join(where)}"]


def revision_problems(directory: Path | None = None) -> list[str]:
    """Every schema's revisions (`revisions/<name>.<n>.avsc` in order of n, then
    `<name>.avsc`) checked BACKWARD: each one reads what its predecessor wrote.

    One line per problem, naming both files; empty when all of them hold.
    """
    root = directory or schema_dir()
    out: list[str] = []
    for name in sorted({p.name.split(".")[0] for p in root.glob("*.avsc")}):
        chain = sorted(
            (root / "revisions").glob(f"{name}.*.avsc"), key=lambda p: int(p.name.split(".")[1])
        )
        chain.append(root / f"{name}.avsc")
        for older, newer in itertools.pairwise(chain):
            problems = backward_problems(
                orjson.loads(newer.read_bytes()), orjson.loads(older.read_bytes())
            )
            out += [f"{newer.name} cannot read {older.name}: {p}" for p in problems]
    return out
