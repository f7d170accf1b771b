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

Failing closed. Every accepted `active` record is also kept in the worker's data dir
(`policy/active.json`), and read back at start through the same check, signatures
included, so a deleted `policies` topic or a tombstoned `active` key never hands a worker
the built-in default: the running worker ignores the tombstone, a restarted one starts on
the kept record, and both say so (`tower_policy_active_missing` = 1 and a warning). With
`TOWER_POLICY_REQUIRE_APPROVAL` a worker refuses to start at all unless the policy in force
came from a record whose four-eyes signatures verified (`PolicyRefused`).

Each change a worker puts in force while running is audited by that worker
(`policy_applied`, naming the verified signers of a four-eyes change and their key
fingerprints), so the audit trail holds who verified a change, not only who claimed to
make it, and holds it where only the workers may write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from pipeline.contracts.codec import encode_record
from pipeline.contracts.events import Source
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
)
from pipeline.contracts.policy_signatures import (
    NO_APPROVERS,
    ApproverKeys,
    ApproversFileError,
    parse_approvers,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import PolicyError, load_policy, load_policy_file
from pipeline.core.policy_governance import VerifiedApproval, approval_problem, verify_approval
from pipeline.kafka import clients
from pipeline.kafka.reader import offset_of
from pipeline.processing.metrics import TowerMetrics
from pipeline.processing.records import policy_applied_record
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


class PolicyRefused(ValueError):
    """This worker may not run on the policy it has (TOWER_POLICY_REQUIRE_APPROVAL)."""


def active_policy_from_record(
    record: PolicyRecord,
    in_force: Policy,
    deployment: bool = False,
    approvers: ApproverKeys = NO_APPROVERS,
) -> Policy:
    """The policy of an `active` record, if it may replace `in_force`; else one of
    PolicyError, PolicyMismatch or PolicyUnapproved (the same test on worker and CLI).
    `deployment`: TOWER_POLICY_REQUIRE_APPROVAL, approvals required whatever the policies say;
    `approvers`: the keys the four-eyes signatures must verify against."""
    policy = policy_from_record(record)
    problem = approval_problem(record, in_force, policy, deployment, approvers)
    if problem is not None:
        raise PolicyUnapproved(f"{record.policy_version}: {problem}")
    return policy


def load_approvers(path: Path | None) -> ApproverKeys:
    """The approvers file (TOWER_POLICY_APPROVERS_FILE); none configured: no keys."""
    if path is None:
        return NO_APPROVERS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ApproversFileError(
            f"TOWER_POLICY_APPROVERS_FILE {path}: {exc.strerror or exc}"
        ) from None
    try:
        return parse_approvers(text, str(path))
    except ApproversFileError as exc:
        raise ApproversFileError(
            f"TOWER_POLICY_APPROVERS_FILE {exc} (`tower policy keygen` prints each line)"
        ) from None


def kept_record_path(settings: Settings) -> Path:
    """Where a worker keeps the last `active` record it accepted."""
    return settings.data_dir / "policy" / "active.json"


_REJECTIONS: dict[type[Exception], str] = {
    InvalidPolicyRecord: "bad_record",
    PolicyError: "invalid_policy",
    PolicyMismatch: "hash_mismatch",
    PolicyUnapproved: "unapproved",
}
_REJECTED = tuple(_REJECTIONS)


#: (the accepted record, its verified signers, the version it replaced, its offset)
Applied = Callable[[PolicyRecord, VerifiedApproval | None, str, int], None]


class PolicyFollower:
    """Keeps the latest valid `active` policy of the policies topic in memory."""

    def __init__(
        self,
        settings: Settings,
        fallback: Policy,
        metrics: TowerMetrics | None = None,
        on_change: Callable[[Policy], None] | None = None,
        consumer_factory: Callable[[Settings], Any] | None = None,
        approvers: ApproverKeys = NO_APPROVERS,
        keep: Path | None = None,
        on_applied: Applied | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.policies
        self.metrics = metrics or TowerMetrics()
        self.on_change = on_change
        self.approvers = approvers
        #: the file the last accepted `active` record is kept in (None: not kept)
        self.keep = keep
        #: told of each change this worker puts in force once caught up (the audit)
        self.on_applied = on_applied
        self._policy = fallback
        #: the accepted `active` record of the policy in force (None: a file or the default)
        self.record: PolicyRecord | None = None
        #: its verified four-eyes signers, when it carries them
        self.approval: VerifiedApproval | None = None
        #: whether the topic's latest `active` record is a value (not gone or tombstoned)
        self._active_on_topic = False
        self._warned_missing = False
        #: the offset of the latest `active` record read (to notice a recreated topic)
        self._active_offset = -1
        self._consumer_factory = consumer_factory or (
            lambda s: clients.reader(s, "policy-follower", **{"fetch.wait.max.ms": 100})
        )
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Policy:
        return self._policy

    @property
    def active_missing(self) -> bool:
        """True when the topic lost its `active` record and a kept policy is in force."""
        return self.record is not None and not self._active_on_topic

    def restore_kept(self) -> bool:
        """Start from the kept record, if there is one and it passes the check a record from
        the topic would (signatures included); True if it is now in force."""
        if self.keep is None or not self.keep.is_file():
            return False
        where = f"the kept policy {self.keep}"
        try:
            record = decode_policy_record(self.keep.read_bytes())
            policy = self._accept(record)
        except OSError as exc:
            log.error("cannot read %s: %s", where, exc)
            return False
        except _REJECTED as exc:
            log.error("ignoring %s (%s):\n%s", where, _REJECTIONS[type(exc)], exc)
            return False
        self._take(record, policy, keep=False)
        log.warning("starting from %s: %s", where, policy.policy_version)
        return True

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

    def apply(self, key: bytes | None, value: bytes | None, offset: int = -1) -> bool:
        """Handle one record of the topic (at `offset`); True if it changed the policy."""
        if key != ACTIVE_KEY:
            return False  # version/<v> history for replays, pending/<v> proposals
        if not value:  # a tombstone: `active` is gone, the policy in force is not
            self.active_gone("its `active` record was deleted (a tombstone)")
            return False
        self._active_on_topic, self._warned_missing = True, False
        self._show_missing()
        try:
            record = decode_policy_record(value)
            policy = self._accept(record)
        except _REJECTED as exc:
            reason = _REJECTIONS[type(exc)]
            self.metrics.policy_rejected.labels(reason).inc()
            log.error(
                "ignoring published policy (%s), keeping %s:\n%s",
                reason,
                self._policy.policy_version,
                exc,
            )
            return False
        if policy.policy_version == self._policy.policy_version:
            if self.record is None or self.record.policy_version != record.policy_version:
                self._take(record, policy, keep=True)  # e.g. the file's policy, now published
            return False
        old = self._policy.policy_version
        self._take(record, policy, keep=True)
        who = f" ({self.approval.describe()})" if self.approval else ""
        log.warning("policy %s -> %s%s", old, policy.policy_version, who)
        self.metrics.policy_swaps.inc()
        if self.on_change is not None:
            self.on_change(policy)
        if self.on_applied is not None and self._caught_up.is_set():
            try:
                self.on_applied(record, self.approval, old, offset)
            except Exception:  # the audit write failing must not stop the follower
                log.exception(
                    "policy_applied audit record of %s not written", policy.policy_version
                )
        return True

    def active_gone(self, how: str) -> None:
        """The topic has no `active` record any more: keep the policy in force, and say so."""
        self._active_on_topic = False
        self._show_missing()
        if self.record is not None and not self._warned_missing:
            self._warned_missing = True
            log.warning(
                "policies topic %s: %s; keeping the last verified policy %s "
                "(tower_policy_active_missing=1); publish or approve a policy again",
                self.topic,
                how,
                self._policy.policy_version,
            )

    def _accept(self, record: PolicyRecord) -> Policy:
        return active_policy_from_record(
            record, self._policy, self.settings.policy_require_approval, self.approvers
        )

    def _take(self, record: PolicyRecord, policy: Policy, keep: bool) -> None:
        verified = verify_approval(record, self.approvers) if record.approval_signature else None
        self.approval = verified if isinstance(verified, VerifiedApproval) else None
        self.record = record
        self._policy = policy
        if keep and self.keep is not None and self._caught_up.is_set():
            self._write_kept(record)
        self._show_missing()

    def _mark_caught_up(self) -> None:
        """From now on the policy in force is the topic's latest word: keep it."""
        if not self._caught_up.is_set() and self.record is not None and self.keep is not None:
            self._write_kept(self.record)
        self._caught_up.set()

    def _write_kept(self, record: PolicyRecord) -> None:
        """Atomically, so a crash leaves the old record or the new one, never half."""
        assert self.keep is not None
        try:
            self.keep.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.keep.with_suffix(".tmp")
            tmp.write_bytes(encode_policy_record(record))
            os.replace(tmp, self.keep)
        except OSError as exc:
            log.error("cannot keep the policy in force in %s: %s", self.keep, exc)

    def _show_missing(self) -> None:
        self.metrics.policy_active_missing.set(1 if self.active_missing else 0)

    def _run(self) -> None:
        consumer = self._consumer_factory(self.settings)
        tp = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
        try:
            consumer.assign([tp])
            end = self._end_offset(consumer, tp)
            if end is None or end <= 0:
                self._mark_caught_up()
            next_check = time.monotonic() + TOPIC_CHECK_S
            while not self._stopping.is_set():
                if self._active_on_topic and time.monotonic() >= next_check:
                    next_check = time.monotonic() + TOPIC_CHECK_S
                    self._check_topic(consumer, tp)
                msg = consumer.poll(0.2)
                if msg is None:
                    if end is not None and not self._caught_up.is_set():
                        position = consumer.position([tp])[0].offset
                        if position >= end:
                            self._mark_caught_up()
                    continue
                error = msg.error()
                if error:
                    if error.code() in _TOPIC_GONE:
                        if self._active_on_topic:
                            self.active_gone(f"the topic is gone ({error.str()})")
                    else:
                        log.debug("policies topic: %s", error)
                    continue
                self.apply(msg.key(), msg.value(), offset_of(msg))
                if msg.key() == ACTIVE_KEY:
                    self._active_offset = offset_of(msg)
                if end is not None and offset_of(msg) + 1 >= end:
                    self._mark_caught_up()
        except Exception:  # a dead follower must be loud, the worker keeps its policy
            log.exception("policy follower stopped; the policy in force stays")
            self._mark_caught_up()
        finally:
            consumer.close()

    def _check_topic(self, consumer: Any, tp: TopicPartition) -> None:
        """A deleted topic sends its assigned readers no record and often no error: ask.
        Gone, or recreated without the `active` record read last, is the same loss."""
        try:
            topic = consumer.list_topics(self.topic, timeout=2.0).topics.get(self.topic)
            if topic is None or topic.error is not None:
                self.active_gone("the topic was deleted")
                return
            _low, high = consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
        except KafkaException as exc:
            log.debug("policies topic not checked: %s", exc)
            return
        if 0 <= high <= self._active_offset:
            self.active_gone("the topic was recreated without it")

    @staticmethod
    def _end_offset(consumer: Any, tp: TopicPartition) -> int | None:
        """The end offset at start, or None when the topic cannot be read (not created yet)."""
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
        except KafkaException:
            return None
        return high if high >= 0 else None


#: how often a worker asks whether the policies topic still holds its `active` record
TOPIC_CHECK_S = 5.0

_TOPIC_GONE = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)


class AppliedAudit:
    """Writes the `policy_applied` audit record of each change this worker puts in force,
    on the follower's thread (a change is rare; the batches never wait for it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = clients.member_client_id(settings)
        self._producer: Any = None

    def __call__(
        self, record: PolicyRecord, approval: VerifiedApproval | None, old: str, offset: int
    ) -> None:
        s = self.settings
        at = int(time.time() * 1000)
        value = encode_policy_record(record).decode()
        source = Source(s.topics.policies, 0, offset, record.published_at)
        audit = policy_applied_record(
            approval,
            old,
            record.policy_version,
            self.worker,
            at,
            source,
            value,
            record.published_by,
        )
        try:
            if self._producer is None:
                self._producer = clients.producer(s)
            self._producer.produce(
                s.topics.audit,
                key=b"-",
                value=encode_record("audit_record", audit, s.output_format),
            )
            left = self._producer.flush(10.0)
        except (KafkaException, BufferError) as exc:
            log.error(
                "policy_applied audit record of %s not written: %s", record.policy_version, exc
            )
            return
        if left:
            log.error("policy_applied audit record of %s unsent after 10s", record.policy_version)


def start_policy_follower(settings: Settings, metrics: TowerMetrics) -> PolicyFollower:
    """Follow the policies topic on this worker, starting from the kept record of the last
    run, else TOWER_POLICY_FILE, else the built-in default; the `tower_policy_info` gauge
    always names the version in force. PolicyRefused (one line) when the deployment
    requires approval and no verified policy is in force once the topic is read."""
    require = settings.policy_require_approval
    if require and settings.policy_approvers_file is None:
        raise PolicyRefused(
            "TOWER_POLICY_REQUIRE_APPROVAL is set but TOWER_POLICY_APPROVERS_FILE is not: "
            "without the approvers' public keys no policy can be verified"
        )
    approvers = load_approvers(settings.policy_approvers_file)
    initial = load_policy_file(settings.policy_file) if settings.policy_file else DEFAULT_POLICY

    def show(p: Policy) -> None:
        metrics.policy_info.clear()
        metrics.policy_info.labels(p.policy_version).set(1)

    follower = PolicyFollower(
        settings,
        initial,
        metrics,
        on_change=show,
        approvers=approvers,
        keep=kept_record_path(settings),
        on_applied=AppliedAudit(settings),
    )
    follower.restore_kept()
    show(follower.current())
    follower.start(wait_s=settings.policy_wait_s)
    if follower.active_missing:
        follower.active_gone("it has no `active` record")
    if require and follower.approval is None:
        follower.stop()
        source = "TOWER_POLICY_FILE" if settings.policy_file else "the built-in default"
        raise PolicyRefused(
            f"TOWER_POLICY_REQUIRE_APPROVAL is set but no approved policy is in force "
            f"({source}, {follower.current().policy_version}, was not signed by two "
            f"approvers): approve one with `tower policy propose FILE --key KEY` and "
            f"`tower policy approve VERSION --key KEY`"
        )
    return follower
