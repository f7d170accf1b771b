"""The audit topic's hash chain, one link per run: the audit records a worker writes to one
partition in one go (a transaction, a batch) form a run, and only the run's last record
carries a seal naming the run's length, the previous run's hash and its own. A record
inserted, changed, removed or moved afterwards breaks the chain at the seal of its run, or
at the next one (`tower audit verify`).

The seal lives in a record header, never in the value: the audit record's bytes stay what
replay reads. A run's hash is

    sha256(prev ‖ key₁ ‖ value₁ ‖ … ‖ keyₙ ‖ valueₙ ‖ int64 big-endian lengths)

`prev` being the previous run's hash (32 zero bytes for the partition's first run), the
lengths len(key₁) (-1 for no key), len(value₁), … keeping the records apart. One hash per
run, two updates per record: no header and no digest per record.

Records that no seal covers are outside the chain (written by something else than a
worker, or by a worker stopped mid-run); the next run links to the last sealed one.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

#: the header on a run's last record: its length, the previous run's hash and its own
SEAL_HEADER = "tower-run"
GENESIS = bytes(32)
_SEAL = struct.Struct(">I32s32s")
#: a worker seals a run at this many records at the latest, so `tower audit verify` holds
#: at most this many records in memory while it looks for their seal
MAX_RUN = 10_000

#: record headers as the Kafka client gives and takes them
HeaderList = list[tuple[str, str | bytes | None]]
Headers = HeaderList | Mapping[str, str | bytes | None] | None


class RunHash:
    """A run's hash, fed one record at a time."""

    __slots__ = ("_hash", "_lengths")

    def __init__(self, prev: bytes) -> None:
        self._hash = hashlib.sha256(prev)
        self._lengths: list[int] = []

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key:
            self._hash.update(key)
        if value:
            self._hash.update(value)
        self._lengths += (-1 if key is None else len(key), len(value or b""))

    def __len__(self) -> int:
        return len(self._lengths) // 2

    def digest(self) -> bytes:
        h = self._hash.copy()
        h.update(struct.pack(f">{len(self._lengths)}q", *self._lengths))
        return h.digest()


def run_hash(prev: bytes, records: Iterable[tuple[bytes | None, bytes | None]]) -> bytes:
    """The hash of a run of (key, value) records linked to `prev`."""
    run = RunHash(prev)
    for key, value in records:
        run.add(key, value)
    return run.digest()


class Seal(NamedTuple):
    length: int
    prev: bytes
    hash: bytes

    def header(self) -> list[tuple[str, bytes]]:
        return [(SEAL_HEADER, _SEAL.pack(self.length, self.prev, self.hash))]


class MalformedSeal(ValueError):
    """A seal header that does not hold a run length and two sha256 hashes."""


def seal_of(headers: Headers) -> Seal | None:
    """The seal a record carries, None if it carries none."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, raw in pairs:
        if name == SEAL_HEADER:
            data = raw.encode() if isinstance(raw, str) else raw or b""
            if len(data) != _SEAL.size:
                raise MalformedSeal(f"{SEAL_HEADER} is not {_SEAL.size} bytes: {raw!r}")
            seal = Seal(*_SEAL.unpack(data))
            if seal.length == 0:
                raise MalformedSeal(f"{SEAL_HEADER} names a run of 0 records")
            return seal
    return None


class Output(Protocol):
    """What the chain reads of an output record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


class AuditChain:
    """The last run's hash of each audit partition a worker writes: `seal` gives the seal
    headers of the next runs and moves the tails on. A partition must be `seed`ed from the
    topic's actual tail before its first run; `forget` when its ownership or the
    transaction that wrote its last runs is gone."""

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

    def seal(self, outputs: Sequence[Output], topic: str) -> dict[int, list[tuple[str, bytes]]]:
        """The seal headers of the runs `outputs` write to `topic` (written in this order,
        all or none): output index -> headers, on each partition's last record (and every
        MAX_RUN records)."""
        runs: dict[int, RunHash] = {}
        last: dict[int, int] = {}
        seals: dict[int, list[tuple[str, bytes]]] = {}
        for i, out in enumerate(outputs):
            if out.topic != topic:
                continue
            partition = out.partition
            run = runs.get(partition)
            if run is None:
                run = runs[partition] = RunHash(self._tail[partition])
            run.add(out.key, out.value)
            last[partition] = i
            if len(run) == MAX_RUN:
                seals[i] = self._close(partition, runs.pop(partition))
        for partition, run in runs.items():
            seals[last[partition]] = self._close(partition, run)
        return seals

    def _close(self, partition: int, run: RunHash) -> list[tuple[str, bytes]]:
        prev, digest = self._tail[partition], run.digest()
        self._tail[partition] = digest
        return Seal(len(run), prev, digest).header()


# --- verification ---------------------------------------------------------------------------

#: why a seal breaks the chain
BAD_HEADER = "its seal header is malformed"
WRONG_LINK = (
    "its seal does not name the previous run's hash (a run before it was removed, changed or "
    "moved, or this one was inserted)"
)
SHORT_RUN = (
    "its seal names a run longer than the records since the previous seal (a record removed)"
)
WRONG_HASH = (
    "the records of its run do not hash to its seal (a record changed, inserted, removed or "
    "reordered)"
)


@dataclass(frozen=True)
class Break:
    partition: int
    #: the seal that does not fit, and the first record of the run it closes
    offset: int
    run_start: int
    reason: str


class _Record(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class PartitionCheck:
    """Walks one partition's records in offset order from a known tail: the first break,
    the records outside the chain, and (`finish`) those after the last seal. Not
    `anchored` (the records before were deleted by retention), the first seal's link is
    taken as it is, and the start of a run that retention cut cannot be proven."""

    partition: int
    tail: bytes = GENESIS
    anchored: bool = True
    first_offset: int = 0
    checked: int = 0
    runs: int = 0
    outside: list[int] = field(default_factory=list)
    #: records after the last seal (`finish`): a run still being written, or cut off
    unsealed: list[int] = field(default_factory=list)
    #: records of a run whose start retention deleted
    unprovable: list[int] = field(default_factory=list)
    broken: Break | None = None
    _pending: deque[_Record] = field(default_factory=deque)

    def feed(self, offset: int, key: bytes | None, value: bytes | None, headers: Headers) -> bool:
        """Check one record; False once the chain is broken (stop reading)."""
        if self.broken is not None:
            return False
        self.checked += 1
        pending = self._pending
        try:
            seal = seal_of(headers)
        except MalformedSeal as exc:
            return self._break(offset, offset, f"{BAD_HEADER} ({exc})")
        pending.append(_Record(offset, key, value))
        if seal is None:
            if len(pending) > MAX_RUN:  # no seal covers a run this long
                self.outside.append(pending.popleft().offset)
            return True
        if seal.length > len(pending):
            if not self.anchored:  # the run began before what retention kept
                self.unprovable.extend(r.offset for r in pending)
                return self._sealed(seal)
            return self._break(offset, pending[0].offset, SHORT_RUN)
        while len(pending) > seal.length:
            self.outside.append(pending.popleft().offset)
        if seal.prev != self.tail and self.anchored:
            return self._break(offset, pending[0].offset, WRONG_LINK)
        if run_hash(seal.prev, ((r.key, r.value) for r in pending)) != seal.hash:
            return self._break(offset, pending[0].offset, WRONG_HASH)
        return self._sealed(seal)

    def finish(self) -> PartitionCheck:
        """The partition's end is read: what no seal closed is unsealed."""
        if self.broken is None:
            self.unsealed = [r.offset for r in self._pending]
        self._pending.clear()
        return self

    def _sealed(self, seal: Seal) -> bool:
        self.tail, self.anchored = seal.hash, True
        self.runs += 1
        self._pending.clear()
        return True

    def _break(self, offset: int, run_start: int, reason: str) -> bool:
        self.broken = Break(self.partition, offset, run_start, reason)
        self._pending.clear()
        return False
