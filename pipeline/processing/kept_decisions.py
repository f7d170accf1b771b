"""The final decisions of each input partition's newest events, kept with the customers'
states: in the same store and changelog, so a worker that takes a partition on (after a
restart or a rebalance) answers `GET /api/v1/decisions/...` for it without reading topics.

Per partition the entries are numbered in the order decided, in chunks of CHUNK. The
newest chunk is stored under the partition's `current` key; a full one moves to slot
(its number % slots) when the next entry comes, so newer chunks overwrite the oldest and
the kept decisions stay bounded (the newest `size` at least) without deletes. A batch
reads and writes the current chunk once per partition, plus one write per chunk it fills:
not a write per decision. Keys start with a zero byte (never a customer id) and name
their partition, so they cannot meet a customer's key, nor another partition's.

The store's writes follow the batch's outputs (the runtimes' rule for all state writes),
so a kept decision is one the topics hold too. The horizon is counted from the current
chunk the store holds: a decision answered from memory before its batch's state is
written leaves the horizon a few decisions longer meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from pipeline.core.decision import DUPLICATE, HELD, ApprovedAction, Decision
from pipeline.processing.decision_index import decision_body

#: entries per stored chunk: small enough that rewriting the current chunk on every batch
#: costs little (bytes on the changelog), large enough that a lookup reads few chunks
CHUNK = 16
PREFIX = b"\x00tower:decisions:"


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """What an answer needs of a decision (`decision_body`); encoded in C, no dicts."""

    event_id: str
    decision_id: str
    customer_id: str
    outcome: str
    rule: str | None
    reason: str
    policy_version: str
    action: ApprovedAction | None

    def body(self) -> dict[str, Any]:
        decision = Decision(
            self.decision_id,
            self.event_id,
            self.customer_id,
            self.outcome,
            self.rule,
            self.reason,
            (),
            self.policy_version,
            0,
            self.action,
        )
        return decision_body(decision)


class Chunk(msgspec.Struct, array_like=True):
    """Entries `first`..: their event ids and the entries, each still encoded (`Entry`)
    when read, so adding to a chunk decodes none of them; new ones as `Entry`."""

    first: int
    event_ids: list[str]
    entries: list[msgspec.Raw | Entry]


class ReadChunk(msgspec.Struct, array_like=True):
    first: int
    event_ids: list[str]
    entries: list[msgspec.Raw]


_encode = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(ReadChunk).decode
_decode_entry = msgspec.msgpack.Decoder(Entry).decode


class Store(Protocol):
    def load(self, partition: int, key: bytes) -> bytes | None: ...


#: (partition, key, value): a state write
Write = tuple[int, bytes, bytes]


def current_key(partition: int) -> bytes:
    return PREFIX + b"%d:current" % partition


def chunk_key(partition: int, slot: int) -> bytes:
    return PREFIX + b"%d:%d" % (partition, slot)


def slots_for(size: int) -> int:
    """Slots for full chunks that, with the current one, keep at least `size` entries."""
    return -(-size // CHUNK)


def _chunk(raw: bytes | None) -> ReadChunk | None:
    if raw is None:
        return None
    try:
        return _decode_chunk(raw)
    except (msgspec.DecodeError, ValueError):
        return None


class KeptDecisions:
    """The processor's hook: `record` each decision, then `writes` at the end of a batch
    gives the state writes that keep the batch's final decisions."""

    def __init__(self, size: int, wanted: Callable[[int, str], bool] | None = None) -> None:
        self.slots = slots_for(size)
        #: (partition, event id) -> whether to keep its decision (None: every one)
        self.wanted = wanted
        self._new: dict[int, list[Decision]] = {}

    def record(self, partition: int, decision: Decision) -> None:
        # held: not final yet (its release is); duplicate: a retry, whose first is kept
        if decision.outcome == HELD or decision.outcome == DUPLICATE:
            return
        if self.wanted is not None and not self.wanted(partition, decision.event_id):
            return
        new = self._new.get(partition)
        if new is None:
            self._new[partition] = [decision]
        else:
            new.append(decision)

    def writes(self, store: Store) -> list[Write]:
        """The state writes keeping the decisions recorded since the last call, on top of
        what `store` holds."""
        new, self._new = self._new, {}
        out: list[Write] = []
        for partition, decisions in new.items():
            self._write(partition, decisions, store, out)
        return out

    def _write(
        self, partition: int, decisions: list[Decision], store: Store, out: list[Write]
    ) -> None:
        first, ids, entries = 0, list[str](), list[msgspec.Raw | Entry]()
        current = _chunk(store.load(partition, current_key(partition)))
        if current is not None:
            first, ids, entries = current.first, current.event_ids, [*current.entries]
        for d in decisions:
            if len(ids) == CHUNK:  # full: to its slot, and a new current chunk
                slot = chunk_key(partition, (first // CHUNK) % self.slots)
                out.append((partition, slot, _encode(Chunk(first, ids, entries))))
                first, ids, entries = first + CHUNK, [], []
            ids.append(d.event_id)
            entries.append(
                Entry(
                    d.event_id,
                    d.decision_id,
                    d.customer_id,
                    d.outcome,
                    d.rule,
                    d.reason,
                    d.policy_version,
                    d.action,
                )
            )
        out.append((partition, current_key(partition), _encode(Chunk(first, ids, entries))))


async def find_kept(
    load: Callable[[int, bytes], Awaitable[bytes | None]],
    size: int,
    partition: int,
    event_id: str,
) -> dict[str, Any] | None:
    """The kept answer of `event_id` among the newest `size` of `partition`, or None."""
    chunk = _chunk(await load(partition, current_key(partition)))
    if chunk is None:
        return None
    oldest = chunk.first + len(chunk.event_ids) - size
    newest = chunk.first // CHUNK
    slots = slots_for(size)
    number = newest
    while True:
        if chunk is not None and chunk.first == number * CHUNK:  # else unreadable or gone
            for i in range(len(chunk.event_ids) - 1, -1, -1):
                if chunk.first + i < oldest:
                    return None
                if chunk.event_ids[i] == event_id:
                    try:
                        return _decode_entry(chunk.entries[i]).body()
                    except (msgspec.DecodeError, ValueError):
                        return None
        number -= 1
        if number < 0 or number <= newest - slots - 1:
            return None
        chunk = _chunk(await load(partition, chunk_key(partition, number % slots)))
