"""Per-customer state: everything the rules remember about one customer, bounded in size.

The core never mutates a state it was given; `decide` returns a new one (copy on write of the
parts that changed). Serialisation is compact JSON so the changelog stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import orjson


class Contact(NamedTuple):
    """An approved contact, kept as long as the longest frequency-cap window needs it."""

    at: int
    channel: str
    category: str
    department: str


class TriggerMemo(NamedTuple):
    """The approved decision a trigger already produced (for duplicate merge)."""

    at: int
    decision_id: str
    action_id: str | None


class ConsentMark(NamedTuple):
    at: int
    granted: bool


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Bounded memory of one customer; every collection is pruned by time or count."""

    consents: dict[str, ConsentMark] = field(default_factory=dict)  # "channel:purpose"
    contacts: tuple[Contact, ...] = ()
    triggers: dict[str, TriggerMemo] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # event_id -> decision_id, oldest first
    events: int = 0

    def evolve(self, **changes: Any) -> CustomerState:
        return replace(self, **changes)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "c": {k: [m.at, m.granted] for k, m in self.consents.items()},
                "k": [list(c) for c in self.contacts],
                "t": {k: list(m) for k, m in self.triggers.items()},
                "s": self.seen,
                "n": self.events,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> CustomerState:
        if not raw:
            return EMPTY_STATE
        d = orjson.loads(raw)
        return cls(
            consents={k: ConsentMark(v[0], v[1]) for k, v in d.get("c", {}).items()},
            contacts=tuple(Contact(*c) for c in d.get("k", ())),
            triggers={k: TriggerMemo(*v) for k, v in d.get("t", {}).items()},
            seen=d.get("s", {}),
            events=d.get("n", 0),
        )


EMPTY_STATE = CustomerState()
