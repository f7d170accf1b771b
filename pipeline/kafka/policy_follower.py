"""Hot reload: every worker follows the compacted `policies` topic and swaps policy in place.

Why not a Faust GlobalTable: faust-streaming has an open bug where a GlobalTable stops
updating on the other workers once several instances run (faust-streaming issue #283), which
would leave workers deciding under different policies. Instead each worker runs its own
confluent-kafka consumer in a daemon thread, `assign()`ed to partition 0 from the beginning
(no consumer group, nothing committed), so every worker sees every record.

The decision path only reads `current()`: a plain attribute read of an immutable `Policy`,
replaced atomically by the thread. `BatchProcessor` calls it once per batch, so a swap
takes effect between two batches and a batch is never decided under two policies.
A published document that fails validation (or does not hash to the version it claims), or
that skipped the four-eyes approval the policy in force or the new one requires
(`pipeline.core.policy_governance`), is logged, counted in `tower_policy_rejected_total`,
and ignored: the policy in force stays. `pending/` proposals are never applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import PolicyError, load_policy, load_policy_file
from pipeline.core.policy_governance import approval_problem
from pipeline.kafka import clients
from pipeline.kafka.reader import offset_of
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class PolicyMismatch(ValueError):
    """A record whose document does not hash to the policy_version it names."""


def policy_from_record(record: PolicyRecord) -> Policy:
    """The validated policy of a record; PolicyError or PolicyMismatch if it cannot be used."""
    policy = load_policy(record.document, f"policies:{record.policy_version}")
    if policy.policy_version != record.policy_version:
        raise PolicyMismatch(
            f"document hashes to {policy.policy_version}, record claims {record.policy_version}"
        )
    return policy


class PolicyUnapproved(ValueError):
    """An `active` record that needed a four-eyes approval and does not carry a valid one."""


def active_policy_from_record(
    record: PolicyRecord, in_force: Policy, deployment: bool = False
) -> Policy:
    """The policy of an `active` record, if it may replace `in_force`; else one of
    PolicyError, PolicyMismatch or PolicyUnapproved (the same test on worker and CLI).
    `deployment`: TOWER_POLICY_REQUIRE_APPROVAL, approvals required whatever the policies say."""
    policy = policy_from_record(record)
    problem = approval_problem(record, in_force, policy, deployment)
    if problem is not None:
        raise PolicyUnapproved(f"{record.policy_version}: {problem}")
    return policy


class PolicyFollower:
    """Keeps the latest valid `active` policy of the policies topic in memory."""

    def __init__(
        self,
        settings: Settings,
        fallback: Policy,
        metrics: TowerMetrics | None = None,
        on_change: Callable[[Policy], None] | None = None,
        consumer_factory: Callable[[Settings], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.policies
        self.metrics = metrics or TowerMetrics()
        self.on_change = on_change
        self._policy = fallback
        self._consumer_factory = consumer_factory or (
            lambda s: clients.reader(s, "policy-follower", **{"fetch.wait.max.ms": 100})
        )
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Policy:
        return self._policy

    def start(self, wait_s: float = 5.0) -> bool:
        """Start following; block up to `wait_s` to catch up. True if caught up in time."""
        self._thread = threading.Thread(target=self._run, name="policy-follower", daemon=True)
        self._thread.start()
        caught_up = self._caught_up.wait(wait_s)
        if not caught_up:
            log.warning(
                "policy topic %s not read within %.1fs; starting with %s",
                self.topic,
                wait_s,
                self._policy.policy_version,
            )
        return caught_up

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Handle one record of the topic; True if it changed the policy in force."""
        if key != ACTIVE_KEY:
            return False  # version/<v> history for replays, pending/<v> proposals
        try:
            policy = active_policy_from_record(
                decode_policy_record(value),
                self._policy,
                self.settings.policy_require_approval,
            )
        except (InvalidPolicyRecord, PolicyError, PolicyMismatch, PolicyUnapproved) as exc:
            reason = {
                InvalidPolicyRecord: "bad_record",
                PolicyError: "invalid_policy",
                PolicyMismatch: "hash_mismatch",
                PolicyUnapproved: "unapproved",
            }[type(exc)]
            self.metrics.policy_rejected.labels(reason).inc()
            log.error(
                "ignoring published policy (%s), keeping %s:\n%s",
                reason,
                self._policy.policy_version,
                exc,
            )
            return False
        if policy.policy_version == self._policy.policy_version:
            return False
        log.warning("policy %s -> %s", self._policy.policy_version, policy.policy_version)
        self._policy = policy
        self.metrics.policy_swaps.inc()
        if self.on_change is not None:
            self.on_change(policy)
        return True

    def _run(self) -> None:
        consumer = self._consumer_factory(self.settings)
        tp = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
        try:
            consumer.assign([tp])
            end = self._end_offset(consumer, tp)
            if end is None or end <= 0:
                self._caught_up.set()
            while not self._stopping.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    if end is not None and not self._caught_up.is_set():
                        position = consumer.position([tp])[0].offset
                        if position >= end:
                            self._caught_up.set()
                    continue
                if msg.error():
                    log.debug("policies topic: %s", msg.error())
                    continue
                self.apply(msg.key(), msg.value())
                if end is not None and offset_of(msg) + 1 >= end:
                    self._caught_up.set()
        except Exception:  # a dead follower must be loud, the worker keeps its policy
            log.exception("policy follower stopped; the policy in force stays")
            self._caught_up.set()
        finally:
            consumer.close()

    @staticmethod
    def _end_offset(consumer: Any, tp: TopicPartition) -> int | None:
        """The end offset at start, or None when the topic cannot be read (not created yet)."""
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
        except KafkaException:
            return None
        return high if high >= 0 else None


def start_policy_follower(settings: Settings, metrics: TowerMetrics) -> PolicyFollower:
    """Follow the policies topic on this worker, starting from TOWER_POLICY_FILE or the
    built-in default; the `tower_policy_info` gauge always names the version in force."""
    initial = load_policy_file(settings.policy_file) if settings.policy_file else DEFAULT_POLICY

    def show(p: Policy) -> None:
        metrics.policy_info.clear()
        metrics.policy_info.labels(p.policy_version).set(1)

    show(initial)
    follower = PolicyFollower(settings, initial, metrics, on_change=show)
    follower.start(wait_s=settings.policy_wait_s)
    return follower
