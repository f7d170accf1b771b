"""A customer's state as the state table stores it, and the states this worker decoded
last, kept so that the next load of the same bytes skips decoding them.

A customer's events come in bursts (one trigger, several agents; a conversation), so most
loads find the very bytes this worker wrote for the customer a moment before.
"""

from __future__ import annotations

import struct

from pipeline.core.state import CustomerState

_WATERMARK = struct.Struct(">q")
#: customers whose decoded state a worker keeps (each a few KiB)
DECODED_STATES = 8192


def pack_stored(offset: int, state: CustomerState) -> bytes:
    """Table value: the input offset the state includes (8 bytes), then the state."""
    return _WATERMARK.pack(offset) + state.to_bytes()


class CorruptState(ValueError):
    """A stored customer state that does not decode (a damaged changelog record, a bad
    restore, a hand-written value): that customer's events are dead-lettered with reason
    `corrupt_state` until the state is repaired or deleted; everyone else's keep flowing."""


CORRUPT_STATE = "corrupt_state"


def unpack_stored(raw: bytes | None) -> tuple[int, CustomerState]:
    if not raw:
        return -1, CustomerState.from_bytes(None)
    try:
        return _WATERMARK.unpack_from(raw)[0], CustomerState.from_bytes(raw[_WATERMARK.size :])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as exc:
        raise CorruptState(
            f"stored state ({len(raw)} bytes) does not decode: {type(exc).__name__}: {exc}"
        ) from None


class DecodedStates:
    """The stored value last packed for each of the `capacity` customers packed most
    recently, with the watermark and state it encodes.

    Only bytes equal to the ones packed count as a hit, so a value written by anyone else
    (another worker before a rebalance, a restore, a transaction that was aborted and
    never applied) is decoded afresh. A hit returns the state the bytes were packed from,
    which decides like its decoded copy (tests/unit/core/test_core_properties_extended.py).
    """

    def __init__(self, capacity: int = DECODED_STATES) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[int, bytes], tuple[bytes, int, CustomerState]] = {}

    def unpack(self, partition: int, key: bytes, raw: bytes | None) -> tuple[int, CustomerState]:
        """`unpack_stored(raw)` for `key` of `partition`."""
        entry = self._entries.get((partition, key))
        if entry is not None and raw is not None and entry[0] == raw:
            return entry[1], entry[2]
        return unpack_stored(raw)

    def pack(self, partition: int, key: bytes, offset: int, state: CustomerState) -> bytes:
        """`pack_stored(offset, state)`, remembered for `key` of `partition`."""
        raw = pack_stored(offset, state)
        entries = self._entries
        entries.pop((partition, key), None)  # re-inserted last: the most recent
        entries[(partition, key)] = (raw, offset, state)
        if len(entries) > self.capacity:
            del entries[next(iter(entries))]
        return raw
