"""Decisions as the topics keep them: for an event the worker's index does not know (decided
before this worker took its partition on, or beyond the index), its first final audit
record among the newest offsets of the customer's audit partition, with its action from
approved-actions. A restart or a rebalance thus loses no answer inside that horizon."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from pipeline.contracts.codec import decode_record
from pipeline.core.decision import DUPLICATE, HELD
from pipeline.kafka.reader import ScanError, TailReader
from pipeline.kafka.schema_registry import RegistryUnavailable, lookup_for
from pipeline.processing.decision_index import recorded_body
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class RecordedDecisions:
    """`(partition, customer_id, event_id)` -> the decision's answer body, or None; blocking
    (run it in a thread). Reads the newest `TOWER_DECISION_INDEX_SIZE` offsets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.depth = settings.decision_index_size
        self.audit = TailReader(settings, "decisions")
        self.actions = TailReader(settings, "actions")

    def __call__(self, partition: int, customer_id: str, event_id: str) -> dict[str, Any] | None:
        key = customer_id.encode()
        try:
            audit = self._first_final(partition, key, event_id)
            if audit is None:
                return None
            action = None
            if audit.get("action_id"):
                action = self._action(partition, key, str(audit["action_id"]))
        except ScanError as exc:
            log.warning("recorded decisions of partition %d cannot be read: %s", partition, exc)
            return None
        return recorded_body(audit, action)

    def _decoded(self, name: str, value: bytes | None) -> dict[str, Any] | None:
        try:
            return decode_record(name, value or b"", lookup_for(self.settings))
        except (ValueError, RegistryUnavailable):
            return None  # not ours to judge here; `tower audit` reports bad records

    def _first_final(self, partition: int, key: bytes, event_id: str) -> dict[str, Any] | None:
        topic = self.settings.topics.audit
        for rec in self.audit.read(topic, partition, self.depth, lambda k: k == key):
            audit = self._decoded("audit_record", rec.value)
            final = audit is not None and audit.get("outcome") not in (HELD, DUPLICATE)
            if final and audit is not None and audit.get("event_id") == event_id:
                return audit
        return None

    def _action(self, partition: int, key: bytes, action_id: str) -> dict[str, Any] | None:
        topic = self.settings.topics.approved
        for rec in self.actions.read(topic, partition, self.depth, lambda k: k == key):
            action = self._decoded("approved_action", rec.value)
            if action is not None and action.get("action_id") == action_id:
                return action
        return None

    async def close(self, app: web.Application) -> None:
        await asyncio.to_thread(self.audit.close)
        await asyncio.to_thread(self.actions.close)
