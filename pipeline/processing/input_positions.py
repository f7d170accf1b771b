"""Where each input partition stands, kept by the worker itself: the sequence guard.

The Faust runtime does not trust Faust's commit bookkeeping (docs/faust-offsets.md): the
next offset to decide per input partition is stored in the state table with the batch's
state writes, and every delivered record is checked against it before it is decided.
A record below it was decided already; a record past it with the ones in between missing
is not decided: the partition seeks back. Pure: no Faust, no clock of its own.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

TopicPartition = tuple[str, int]

#: state-table keys start with NUL so they can never be a customer id (event keys are ids)
_POSITION_KEY_PREFIX = b"\x00tower:next-offset:"
_OFFSET = struct.Struct(">q")


def position_key(topic: str) -> bytes:
    """The table key of a topic's position (the table partition is the input partition)."""
    return _POSITION_KEY_PREFIX + topic.encode()


def is_position_key(key: bytes) -> bool:
    return key.startswith(_POSITION_KEY_PREFIX)


def pack_position(offset: int) -> bytes:
    return _OFFSET.pack(offset)


def unpack_position(raw: bytes | None) -> int | None:
    return _OFFSET.unpack(raw)[0] if raw else None


class Admission(enum.Enum):
    """Whether the record at an offset goes on to be decided (its value labels the
    not-decided metric otherwise)."""

    DECIDE = "decide"
    #: decided before (a re-delivery after a restart, a rebalance or a seek)
    SKIP = "already_decided"
    #: past a hole: records before it were not delivered; not decided, the partition seeks
    DISCARD = "out_of_sequence"


@dataclass(slots=True)
class PendingSeek:
    target: int
    issued_at: float | None = None
    attempts: int = 0
    #: records past the target kept coming after the seek: ask the broker what is there
    probe: bool = False


class InputPositions:
    """The sequence guard for the input partitions this worker is deciding.

    Only the record at the position is decided, so decisions follow offset order exactly.
    The position moves past offsets that hold no record (transaction markers, compaction,
    retention) only on the broker's word: `probes_due` names the partitions to ask, and
    `probed` takes the answer."""

    def __init__(
        self, probe_after_s: float = 1.0, reseek_after_s: float = 5.0, idle_after_s: float = 5.0
    ) -> None:
        self.probe_after_s = probe_after_s
        self.reseek_after_s = reseek_after_s
        self.idle_after_s = idle_after_s
        self._next: dict[TopicPartition, int] = {}
        self._seeks: dict[TopicPartition, PendingSeek] = {}
        self._progress: dict[TopicPartition, float] = {}

    def known(self, tp: TopicPartition) -> bool:
        return tp in self._next

    def load(
        self, tp: TopicPartition, next_offset: int, now: float = 0.0, delivered: int | None = None
    ) -> None:
        """The stored position, or the partition's first offset if nothing is stored.
        `delivered`: the offset the consumer delivers first; if it is not the position,
        the partition seeks there (records below it would only be skipped)."""
        self._next[tp] = next_offset
        self._progress[tp] = now
        self._seeks.pop(tp, None)
        if delivered is not None and delivered != next_offset:
            self._seeks[tp] = PendingSeek(next_offset)

    def next_offset(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    def classify(self, tp: TopicPartition, offset: int, now: float = 0.0) -> Admission:
        """The admission of the record at `offset`; DECIDE moves the position past it."""
        expected = self._next[tp]
        self._progress[tp] = now
        if offset < expected:
            return Admission.SKIP
        if offset > expected:
            seek = self._seeks.setdefault(tp, PendingSeek(expected))
            if seek.issued_at is not None:
                seek.probe = True
            return Admission.DISCARD
        self._seeks.pop(tp, None)
        self._next[tp] = offset + 1
        return Admission.DECIDE

    def check_idle(self, tp: TopicPartition, highwater: int | None, now: float) -> None:
        """A hole at the end of a partition shows no later record: if the log reaches past
        the position and nothing was delivered for `idle_after_s`, ask the broker."""
        expected = self._next.get(tp)
        if expected is None or highwater is None or highwater <= expected or tp in self._seeks:
            return
        if now - self._progress.get(tp, now) >= self.idle_after_s:
            self._seeks[tp] = PendingSeek(expected, issued_at=now - self.reseek_after_s)

    def seeks_due(self, now: float) -> list[tuple[TopicPartition, int]]:
        """(partition, offset) seeks to issue now."""
        due: list[tuple[TopicPartition, int]] = []
        for tp, seek in self._seeks.items():
            if seek.issued_at is None:
                seek.issued_at = now
                seek.attempts += 1
                self._progress[tp] = now
                due.append((tp, seek.target))
        return due

    def probes_due(self, now: float) -> list[tuple[TopicPartition, int]]:
        """(partition, offset) to ask the broker about: the first record at or after the
        offset. Asked when records past it still come `probe_after_s` after the seek
        (markers in between, or the fetch lost again), or nothing came at all."""
        due = []
        for tp, seek in self._seeks.items():
            if seek.issued_at is None:
                continue
            waited = now - seek.issued_at
            if (seek.probe and waited >= self.probe_after_s) or waited >= self.reseek_after_s:
                due.append((tp, seek.target))
        return due

    def probed(self, tp: TopicPartition, first_record: int | None, end: int) -> None:
        """The broker's answer: the first record at or after the position (None: none
        before `end`, the log end). The position moves over what holds no record; a record
        that exists is fetched again by a new seek."""
        seek = self._seeks.get(tp)
        expected = self._next.get(tp)
        if seek is None or expected is None:
            return
        if first_record is None:
            self._next[tp] = max(expected, end)
            del self._seeks[tp]
            return
        self._next[tp] = max(expected, first_record)
        self._seeks[tp] = PendingSeek(self._next[tp], attempts=seek.attempts)

    def attempts(self, tp: TopicPartition) -> int:
        seek = self._seeks.get(tp)
        return seek.attempts if seek else 0

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked or assigned anew: reload from the table before deciding."""
        for tp in tps:
            key = (tp[0], tp[1])
            self._next.pop(key, None)
            self._seeks.pop(key, None)
            self._progress.pop(key, None)
