"""The audit topic's hash chain: each record names the chain hash of the record before it in
its partition, so a record inserted, changed or removed afterwards breaks the chain at its
offset (`tower audit verify`).

The chain lives in a record header, never in the value: the audit record's bytes stay what
replay reads. A record's chain hash is sha256(prev || len(key) || key || value), `prev` being
the 32-byte chain hash of the partition's previous chained record (32 zero bytes for the
first). Records without the header (written by something else than a worker) are outside
the chain: the next chained record links to the last chained one before them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: the header that carries the previous chain hash, its 32 bytes as they are (a header's
#: bytes are on the broker for every audit record: hex would double them)
PREV_HEADER = "tower-prev"
GENESIS = bytes(32)
_KEY_LEN = struct.Struct(">q")

#: record headers as the Kafka client gives and takes them
HeaderList = list[tuple[str, str | bytes | None]]
Headers = HeaderList | Mapping[str, str | bytes | None] | None


def record_hash(prev: bytes, key: bytes | None, value: bytes | None) -> bytes:
    """The chain hash of a record linked to `prev` (the key's length keeps key and value
    apart; -1 for no key)."""
    h = hashlib.sha256(prev)
    h.update(_KEY_LEN.pack(-1 if key is None else len(key)))
    if key:
        h.update(key)
    if value:
        h.update(value)
    return h.digest()


class MalformedLink(ValueError):
    """A chain header that is not a 32-byte hash."""


def prev_of(headers: Headers) -> bytes | None:
    """The previous chain hash a record names, None if it has no chain header."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, raw in pairs:
        if name == PREV_HEADER:
            prev = raw.encode() if isinstance(raw, str) else raw or b""
            if len(prev) != len(GENESIS):
                raise MalformedLink(f"{PREV_HEADER} is not a sha256: {raw!r}")
            return prev
    return None


class AuditChain:
    """The chain tail of each audit partition a worker writes: `link` gives the header of
    the next record and moves the tail on. A partition must be `seed`ed from the topic's
    actual tail before its first link; `forget` when its ownership or the transaction that
    wrote its last links is gone."""

    def __init__(self) -> None:
        self._tail: dict[int, bytes] = {}

    def seeded(self, partition: int) -> bool:
        return partition in self._tail

    def unseeded(self, partitions: Iterable[int]) -> set[int]:
        return {p for p in partitions if p not in self._tail}

    def seed(self, partition: int, tail: bytes) -> None:
        self._tail[partition] = tail

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the tails of `partitions` (all of them with None)."""
        if partitions is None:
            self._tail.clear()
        else:
            for p in partitions:
                self._tail.pop(p, None)

    def link(self, partition: int, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        prev = self._tail[partition]
        self._tail[partition] = record_hash(prev, key, value)
        return [(PREV_HEADER, prev)]


# --- verification ---------------------------------------------------------------------------

#: why a record breaks the chain
WRONG_LINK = "its chain header does not name the previous chained record"
BAD_HEADER = "its chain header is malformed"


@dataclass(frozen=True)
class Break:
    partition: int
    offset: int
    reason: str


@dataclass
class PartitionCheck:
    """Walks one partition's records in offset order from a known tail: the first break,
    and the offsets of records outside the chain. Not `anchored` (the records before were
    deleted by retention), the first chained record's link is taken as it is."""

    partition: int
    tail: bytes = GENESIS
    anchored: bool = True
    first_offset: int = 0
    checked: int = 0
    outside: list[int] = field(default_factory=list)
    broken: Break | None = None

    def feed(self, offset: int, key: bytes | None, value: bytes | None, headers: Headers) -> bool:
        """Check one record; False once the chain is broken (stop reading)."""
        if self.broken is not None:
            return False
        self.checked += 1
        try:
            prev = prev_of(headers)
        except MalformedLink as exc:
            self.broken = Break(self.partition, offset, f"{BAD_HEADER} ({exc})")
            return False
        if prev is None:
            self.outside.append(offset)
            return True
        if prev != self.tail and self.anchored:
            self.broken = Break(self.partition, offset, WRONG_LINK)
            return False
        self.tail, self.anchored = record_hash(prev, key, value), True
        return True
