"""The final decisions of each input partition's newest events, kept with the customers'
states: in the same store and changelog, so a worker that takes a partition on (after a
restart or a rebalance) answers `GET /api/v1/decisions/...` for it without reading topics.

Per partition the entries are numbered in the order decided. Entry n lives in chunk
n // CHUNK, stored under slot (n // CHUNK) % slots, so newer chunks overwrite the oldest and
the kept decisions stay bounded (the newest `size` at least) without deletes. A head key
holds the number of entries written. A batch adds one write per chunk it touches and one
for the head, per partition: a few writes per batch, not one per decision. Keys start
with a zero byte (never a customer id) and name their partition, so they cannot meet a
customer's key, nor another partition's.

The store's writes follow the batch's outputs (the runtimes' rule for all state writes),
so a kept decision is one the topics hold too. The horizon is counted from the head the
store holds: a decision answered from memory before its batch's state is written leaves
the horizon a few decisions longer meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from pipeline.core.decision import DUPLICATE, HELD, ApprovedAction, Decision
from pipeline.processing.decision_index import decision_body

#: entries per stored chunk: small enough that rewriting the newest chunk on every batch
#: costs little, large enough that a batch touches one or two
CHUNK = 64
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


def head_key(partition: int) -> bytes:
    return PREFIX + b"%d:head" % partition


def chunk_key(partition: int, slot: int) -> bytes:
    return PREFIX + b"%d:%d" % (partition, slot)


def slots_for(size: int) -> int:
    """Slots that keep at least `size` entries (the newest chunk is only partly full)."""
    return -(-size // CHUNK) + 1


def _head(raw: bytes | None) -> int:
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0  # unreadable: start over rather than stop deciding


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

    def __init__(self, size: int) -> None:
        self.slots = slots_for(size)
        self._new: dict[int, list[Decision]] = {}

    def record(self, partition: int, decision: Decision) -> None:
        # held: not final yet (its release is); duplicate: a retry, whose first is kept
        if decision.outcome == HELD or decision.outcome == DUPLICATE:
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
        n = _head(store.load(partition, head_key(partition)))
        number = n // CHUNK
        ids: list[str] = []
        entries: list[msgspec.Raw | Entry] = []
        if n % CHUNK:  # the newest chunk is partly full: add to it
            kept = _chunk(store.load(partition, chunk_key(partition, number % self.slots)))
            if kept is not None and kept.first == number * CHUNK:
                ids, entries = kept.event_ids, [*kept.entries]
        for d in decisions:
            if len(ids) == CHUNK:
                out.append(self._chunk_write(partition, number, ids, entries))
                number, ids, entries = number + 1, [], []
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
        out.append(self._chunk_write(partition, number, ids, entries))
        out.append((partition, head_key(partition), b"%d" % (n + len(decisions))))

    def _chunk_write(
        self, partition: int, number: int, ids: list[str], entries: list[msgspec.Raw | Entry]
    ) -> Write:
        value = _encode(Chunk(number * CHUNK, ids, entries))
        return partition, chunk_key(partition, number % self.slots), value


async def find_kept(
    load: Callable[[int, bytes], Awaitable[bytes | None]],
    size: int,
    partition: int,
    event_id: str,
) -> dict[str, Any] | None:
    """The kept answer of `event_id` among the newest `size` of `partition`, or None."""
    n = _head(await load(partition, head_key(partition)))
    oldest = n - size
    slots = slots_for(size)
    newest = (n - 1) // CHUNK
    for number in range(newest, max(-1, newest - slots), -1):
        chunk = _chunk(await load(partition, chunk_key(partition, number % slots)))
        if chunk is None or chunk.first != number * CHUNK:
            continue  # not written (a batch decided again), or unreadable
        for i in range(len(chunk.event_ids) - 1, -1, -1):
            if chunk.first + i < oldest:
                return None
            if chunk.event_ids[i] == event_id:
                try:
                    return _decode_entry(chunk.entries[i]).body()
                except (msgspec.DecodeError, ValueError):
                    return None
    return None
