"""The recent decisions of each input partition, by event id: what `GET /api/v1/decisions`
and a waiting ask-and-decide answer from.

The processor hands over each batch's decisions once the batch is decided (one lock per
batch, one dict store per decision, of references it already holds); the answer's dict is
built only when someone asks. Each partition keeps its newest
`size` events, so the index is bounded however long the worker runs. The first final
decision of an event stays: a retry decided later as `duplicate` does not replace it. An
event the API wrote is `SUBMITTED` until decided, a held proposal `HELD` until its hold is
released.

Waiters: a caller registers a callback for an event id that is not decided yet; the
processor calls it with the decision, in the processor's thread (the web server hands it
to its own loop).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.contracts.events import AgentEvent
from pipeline.core.decision import DUPLICATE, HELD, Decision

#: not decided yet: written by the API and not read yet, or held by the policy
SUBMITTED = "submitted"
HELD_BACK = "held"
#: the decision of one event, or why there is none yet
Entry = Decision | str
Waiter = Callable[[Decision], None]


def iso_millis(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC (`2026-01-31T09:00:00.000Z`), None as None."""
    if ms is None:
        return None
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def decision_body(decision: Decision) -> dict[str, Any]:
    """A final decision as the agents' API answers it (schemas/decision.v1.schema.json)."""
    action = decision.action
    return {
        "event_id": decision.event_id,
        "customer_id": decision.customer_id,
        "status": "decided",
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "action": None if action is None else action.to_dict(),
        "not_before": iso_millis(None if action is None else action.not_before),
        "audit_id": decision.decision_id,
        "decision_id": decision.decision_id,
        "policy_version": decision.policy_version,
    }


def recorded_body(audit: Mapping[str, Any], action: Mapping[str, Any] | None) -> dict[str, Any]:
    """A final decision's answer from its audit record and its approved action (as the
    topics keep them), the same shape as `decision_body`."""
    not_before = None if action is None else action.get("not_before")
    return {
        "event_id": audit["event_id"],
        "customer_id": audit["customer_id"],
        "status": "decided",
        "outcome": audit["outcome"],
        "rule": audit.get("rule"),
        "reason": audit.get("reason") or "",
        "action": None if action is None else dict(action),
        "not_before": iso_millis(not_before if isinstance(not_before, int) else None),
        "audit_id": audit["decision_id"],
        "decision_id": audit["decision_id"],
        "policy_version": audit.get("policy_version") or "",
    }


class DecisionIndex:
    """Per input partition, the newest `size` events' decisions; safe to share between the
    processor's thread and the web server's."""

    def __init__(self, size: int = 20000) -> None:
        if size < 1:
            raise ValueError(f"TOWER_DECISION_INDEX_SIZE must be at least 1, not {size}")
        self.size = size
        self._partitions: dict[int, OrderedDict[str, Entry]] = {}
        self._waiters: dict[str, list[Waiter]] = {}
        self._lock = threading.Lock()

    def __call__(self, partition: int, decision: Decision, event: AgentEvent) -> None:
        """Record one decision of `partition`."""
        self.record(((partition, event.event_id, decision),))

    def record(self, decided: Iterable[tuple[int, str, Decision]]) -> None:
        """Record a batch's (input partition, event id, decision), in the order they were
        made: the processor's hook, called once per batch."""
        woken: list[tuple[list[Waiter], Decision]] = []
        with self._lock:
            partitions, waiting, size = self._partitions, self._waiters, self.size
            for partition, event_id, decision in decided:
                entries = partitions.get(partition)
                if entries is None:
                    entries = partitions[partition] = OrderedDict()
                final = decision.outcome != HELD
                known = entries.get(event_id)
                if known is None:
                    entries[event_id] = decision if final else HELD_BACK
                    if len(entries) > size:
                        entries.popitem(last=False)
                # the first final decision stays; a held event waits for its release, not
                # for the `duplicate` of a retry
                elif isinstance(known, Decision) or (
                    known == HELD_BACK and (not final or decision.outcome == DUPLICATE)
                ):
                    continue
                else:
                    self._put(entries, event_id, decision if final else HELD_BACK)
                if final and waiting:
                    waiters = waiting.pop(event_id, None)
                    if waiters:
                        woken.append((waiters, decision))
        for waiters, decision in woken:
            for waiter in waiters:
                waiter(decision)

    def _put(self, entries: OrderedDict[str, Entry], event_id: str, entry: Entry) -> None:
        entries[event_id] = entry
        if len(entries) > self.size:
            entries.popitem(last=False)

    def submitted(self, partition: int, event_id: str) -> None:
        """The API wrote this event: `SUBMITTED` until it is decided."""
        with self._lock:
            entries = self._partitions.setdefault(partition, OrderedDict())
            if event_id not in entries:
                self._put(entries, event_id, SUBMITTED)

    def forget(self, partition: int, event_id: str) -> None:
        """An event the API could not write after all: not known, so a retry writes it."""
        with self._lock:
            entries = self._partitions.get(partition)
            if entries is not None and entries.get(event_id) == SUBMITTED:
                del entries[event_id]

    def find(self, partition: int, event_id: str) -> Entry | bool:
        """The event's final decision, `SUBMITTED` or `HELD_BACK` while it has none yet,
        False if not known."""
        with self._lock:
            return self._entries(partition).get(event_id, False)

    def find_or_wait(self, partition: int, event_id: str, waiter: Waiter) -> Entry | bool:
        """As `find`; when there is no final decision yet, `waiter` is called with it once
        it is made (until `cancel`)."""
        with self._lock:
            found = self._entries(partition).get(event_id, False)
            if not isinstance(found, Decision):
                self._waiters.setdefault(event_id, []).append(waiter)
            return found

    def cancel(self, event_id: str, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(event_id)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[event_id]

    def _entries(self, partition: int) -> OrderedDict[str, Entry]:
        return self._partitions.get(partition) or OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(e) for e in self._partitions.values())
