"""The transactional runtime's worker loop: consume a batch, decide it, and publish outputs,
state changelog and consumed offsets in ONE Kafka transaction (exactly-once, KIP-447 fencing).

Assignment is eager with the range assignor: range gives partition p of agent-events and
of tower-wakeups to the same worker (both touch the states of partition p), and eager
revocation only happens inside `consume()`, i.e. between two transactions, so a revoke
never finds half-written state. Restores run in the assignment callback, before the first
record of a partition is decided.

Pipelining: a transaction's commit (send_offsets_to_transaction + commit_transaction,
network waits that release the GIL) runs on a helper thread while the main thread consumes
and decides what arrives meanwhile, on top of the in-flight transaction's state. All of it
becomes the next transaction, produced once that commit succeeded; if it failed, both are
redone from the committed offsets. So the commit interval adapts to the load: one commit
per polled batch when records trickle in, and under load as many records per transaction
as arrive during one commit (up to `TOWER_TRANSACTION_MAX_RECORDS`), where committing each small
batch on its own would leave the main thread waiting for commits. Rebalance callbacks wait
for the commit in flight and drop the decided records not yet produced (consumed again
from the committed offsets) before touching the databases.

Errors: an abortable transaction error (e.g. a rebalance fenced the group generation) is
aborted, the consumer is rewound to the committed offsets, and the batch is decided again
from the untouched local state. A fatal error (producer fenced by a newer instance) ends
the process: the state it could write is owned by someone else now. A fatal consumer
error (a static member fenced, e.g. by the group coordinator after a broker failover
treating the member's own rejoin as a newer instance) ends `run` with `ConsumerFenced`:
the worker then starts the engine again with new clients (runtime/transactional/worker.py).
So does a commit that never returns (`CommitStuck`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Histogram

from pipeline.kafka import clients
from pipeline.kafka.audit_tail import AuditLinker, TailReader, chain_tails
from pipeline.kafka.changelog_restore import restore_consumer, restore_partitions
from pipeline.kafka.reader import ScanError
from pipeline.kafka.schema_registry import WriterSchemas
from pipeline.processing.batch import (
    BatchProcessor,
    BatchResult,
    InputRecord,
    OutputRecord,
    output_headers,
)
from pipeline.processing.input_progress import InputProgress
from pipeline.processing.wakeup_schedule import WakeupSchedule
from pipeline.runtime.log_format import deciding
from pipeline.runtime.transactional.changelog import changelog_topic
from pipeline.runtime.transactional.polling import take_available
from pipeline.runtime.transactional.state_store import LocalStores, OverlayStore
from pipeline.runtime.transactional.wakeups import BatchPlan, Polled, plan_batch
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: how often the loop measures the lag /healthz and the lag gauges show
LAG_EVERY_S = 1.0
#: how long a poll waits for more records while a commit is in flight and records decided
#: since wait for it: short, so the next transaction starts soon after the commit ends
PENDING_POLL_S = 0.002
#: Longest the loop waits for a commit in flight. Its calls time out after 30 + 60 s, but
#: librdkafka's `send_offsets_to_transaction` can block past its timeout while the group
#: coordinator is down (confluentinc/librdkafka#5456 and #5511).
COMMIT_WAIT_S = 150.0


class _InFlight:
    """A batch whose transaction is being committed on a helper thread."""

    def __init__(self, overlay: OverlayStore) -> None:
        self.overlay = overlay
        self.error: KafkaException | None = None
        self._thread: threading.Thread | None = None

    def start(
        self,
        producer: Producer,
        offsets: list[TopicPartition],
        group: Any,
        timer: Histogram,
    ) -> None:
        def commit() -> None:
            try:
                started = time.perf_counter()
                producer.send_offsets_to_transaction(offsets, group, 30)
                sent = time.perf_counter()
                producer.commit_transaction(60)
                timer.labels("send").observe(sent - started)
                timer.labels("commit").observe(time.perf_counter() - sent)
            except KafkaException as exc:
                self.error = exc

        self._thread = threading.Thread(target=commit, name="tower-commit", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def wait(self) -> KafkaException | None:
        if self._thread is not None:
            self._thread.join(COMMIT_WAIT_S)
            if self._thread.is_alive():
                raise CommitStuck(f"a transaction commit still runs after {COMMIT_WAIT_S:.0f} s")
        return self.error


class _Pending:
    """Records decided but not produced yet: the next transaction, grown while the one
    before it commits."""

    def __init__(self, overlay: OverlayStore) -> None:
        self.overlay = overlay
        self.outputs: list[OutputRecord] = []
        #: (topic, partition) -> offset to commit
        self.offsets: dict[tuple[str, int], int] = {}
        self.records = 0


def instance_id(settings: Settings) -> str:
    """The transactional id and static group member id (`Settings.member_id`).

    A restarted worker fences its killed predecessor at once (`init_transactions` aborts
    the open transaction) instead of leaving read_committed readers stuck until the
    transaction times out."""
    return settings.member_id("transactional")


class ConsumerFenced(Exception):
    """The consumer hit a fatal error: it can no longer consume, a new one must take over."""


class CommitStuck(ConsumerFenced):
    """A commit never returned: new clients take over, and the new producer's
    `init_transactions` fences the stuck one (its transaction is aborted, never applied
    to the local state)."""


class TransactionalEngine:
    """One consumer, one transactional producer, local RocksDB per assigned partition.

    The client factories are for tests (fake clients); the real classes by default."""

    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        *,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        restore_consumer_factory: Callable[[Settings], Consumer] = restore_consumer,
        progress: InputProgress | None = None,
        audit_tails: TailReader = chain_tails,
        writer_schemas: WriterSchemas | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.writer_schemas = writer_schemas
        #: lag gauges and liveness; the loop reports each turn (the web server's thread
        #: watches it: a loop stuck in a call stops reporting)
        self.progress = progress or InputProgress(
            processor.metrics, settings.liveness_stall_s, watchdog=True
        )
        t = settings.topics
        self.events, self.wakeups = t.events, t.wakeups
        self.changelog = changelog_topic(settings.app_id)
        self.stores = LocalStores(settings.data_dir)
        #: wake-ups read, released when due (pipeline/processing/wakeup_schedule.py)
        self.schedule = WakeupSchedule()
        #: wake-up partition -> next offset to read
        self.wakeups_read: dict[int, int] = {}
        #: event partition -> next offset to consume (committed one after an assignment)
        self.events_next: dict[int, int] = {}
        #: wake-up partition -> next offset to consume (for the lag gauges only)
        self.wakeups_next: dict[int, int] = {}
        self.transactions = 0
        self.aborts = 0
        self._stopping = False
        self._rebalancing = False
        self._assigned_once = False
        self._lag: dict[int, int] = {}
        self._lag_at = -math.inf
        self._delivered: dict[int, int] = {}
        self._inflight: _InFlight | None = None
        self._pending: _Pending | None = None
        #: a failed commit noticed inside a rebalance callback, recovered in the loop
        self._failed: KafkaException | None = None
        self._restore_consumer = restore_consumer_factory
        #: the audit hash chain, a run per transaction and partition; only committed runs are
        #: linked to (read_committed tails)
        self.audit_chain = AuditLinker(settings, audit_tails)
        self.consumer = consumer_factory(
            {
                **clients.connection(settings),
                # the web URL, so other workers find this one's pages (kafka/group_owners.py)
                "client.id": clients.member_client_id(settings),
                "group.id": settings.app_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                # static membership: a restarted worker takes its partitions back at once
                # instead of waiting for the killed one's session to expire
                "group.instance.id": instance_id(settings),
                "session.timeout.ms": 10_000,
            }
        )
        self.producer = producer_factory(
            {
                **clients.connection(settings),
                "transactional.id": instance_id(settings),
                "transaction.timeout.ms": 30_000,
                "linger.ms": 5,
                "batch.size": 512 * 1024,
                # back-to-back transactions: the coordinator answers CONCURRENT_TRANSACTIONS
                # while it finishes the previous one; librdkafka's default 100 ms backoff (up
                # to 1 s, growing) then lands on every batch's latency
                # (confluent-kafka-python#967, KAFKA-5477)
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 25,
                "compression.type": settings.compression,
            }
        )

    def stop(self) -> None:
        """Ask the loop to end after the transaction in flight (signal-handler safe)."""
        self._stopping = True

    def owned(self) -> set[int] | None:
        """The partitions whose states are restored here; None before the first assignment
        and from a revocation until the states of the next assignment are restored (for the
        web server's thread)."""
        if self._rebalancing or not self._assigned_once:
            return None
        return set(self.stores.dbs)

    def lag(self) -> dict[int, int]:
        """Per owned input partition: records not yet decided, as of the loop's last look
        (the web server's thread asks; a call on the consumer from there would wait for
        the loop's poll to return)."""
        return dict(self._lag)

    def _measure_lag(self, now: float) -> None:
        """At most once a second, from the loop's thread: log end as last fetched minus the
        next offset to decide."""
        if now - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        lag = {}
        positions = {}
        for topic, nexts in ((self.events, self.events_next), (self.wakeups, self.wakeups_next)):
            for p, position in nexts.items():
                _, end = self.consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                if end >= 0:
                    positions[(topic, p)] = (position, end)
                    if topic == self.events:
                        lag[p] = max(0, end - position)
        self._lag = lag
        self.progress.observe(positions)

    # --- rebalance callbacks (run inside consume(), between transactions) ---------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._settle_in_callback()
        numbers = {tp.partition for tp in partitions}
        self._rebalancing = True
        dbs = {p: self.stores.open(p) for p in numbers}
        restore_partitions(self.settings, self.changelog, dbs, self._restore_consumer)
        self._rebalancing, self._assigned_once = False, True
        self._forget_wakeups(numbers)
        inputs = [TopicPartition(t, p) for t in (self.events, self.wakeups) for p in numbers]
        for tp in consumer.committed(inputs, timeout=30):
            nexts = self.events_next if tp.topic == self.events else self.wakeups_next
            nexts[tp.partition] = max(tp.offset, 0)
        self.progress.assigned()
        self._lag_at = -math.inf  # the new partitions' gauges at the next turn

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._rebalancing = True  # eager rebalancing: an assignment follows
        self._settle_in_callback()
        # eager: every partition is revoked, and an assigned one is consumed again from its
        # committed offset, so what was decided but not produced is simply decided again
        self._pending = None
        numbers = {tp.partition for tp in partitions}
        self.audit_chain.forget(numbers)
        for p in numbers:
            self.stores.close(p)
            self.events_next.pop(p, None)
            self.wakeups_next.pop(p, None)
            self._lag.pop(p, None)
        self._forget_wakeups(numbers)

    def _forget_wakeups(self, partitions: set[int]) -> None:
        """They will be read again from the committed offsets."""
        self.schedule.drop(partitions)
        for p in partitions:
            self.wakeups_read.pop(p, None)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.producer.init_transactions(60)
        self.consumer.subscribe(
            [self.events, self.wakeups],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stopping:
                self.progress.beat()
                self._measure_lag(time.monotonic())
                committing = self._pending is not None  # and a commit in flight
                wait = PENDING_POLL_S if committing else self._wait_s(time.time())
                msgs = take_available(self.consumer, self.settings.batch_size, wait)
                batch = self._polled(msgs)
                if self._failed is not None:  # the batch read past it is redone too
                    exc, self._failed = self._failed, None
                    self._recover(exc)
                    continue
                plan = plan_batch(
                    batch,
                    self.events,
                    self.wakeups,
                    time.time(),
                    self.schedule,
                    self.wakeups_read,
                    self._horizon,
                )
                if plan.events or plan.due_wakeups:
                    self._decide(plan)
                pending, inflight = self._pending, self._inflight
                if pending is None:
                    self._settle()  # idle: make the transaction in flight durable locally now
                elif (
                    inflight is None
                    or inflight.done()
                    or pending.records >= self.settings.transaction_max_records
                ):
                    self._publish()
            if self._pending is not None:
                self._publish()
        finally:
            self._settle(recover=False)
            try:
                self.consumer.close()  # revokes: closes the partition databases
            except (KafkaException, RuntimeError) as exc:  # a fenced consumer cannot leave
                log.warning("consumer close: %s", exc)
            self.stores.close_all()
            self.producer.flush(10)

    def _polled(self, msgs: list[Message]) -> list[Polled]:
        out = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                # librdkafka reports a fatal consumer error as code _FATAL, fatal() unset
                if err.fatal() or err.code() == KafkaError._FATAL:
                    raise ConsumerFenced(str(err))
                log.warning("consume: %s", err)
                continue
            ts_type, ts = msg.timestamp()
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            # optional in the client's types: set on every consumed message
            assert topic is not None and partition is not None and offset is not None
            if topic == self.events:
                self.events_next[partition] = offset + 1
            else:
                self.wakeups_next[partition] = offset + 1
            # a consumed message's headers are a list of (name, bytes) or None
            headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            record = InputRecord(
                msg.key(), msg.value(), partition, offset, ts if ts_type else None, headers
            )
            out.append(Polled(topic, record))
        return out

    def _horizon(self, partition: int) -> float:
        """Infinite if `partition`'s events are consumed (so decided in this batch) to the
        log end, else the event time they have reached (`WakeupSchedule.pop_due`)."""
        tp = TopicPartition(self.events, partition)
        _, end = self.consumer.get_watermark_offsets(tp, cached=True)
        if end >= 0 and self.events_next.get(partition, -1) >= end:
            return math.inf
        return self.processor.event_time.get(partition, -1) / 1000

    def _wait_s(self, now: float) -> float:
        """How long to wait for records: no longer than until the next hold is checked."""
        deadline = self.schedule.next_check(now)
        if deadline is None:
            return self.settings.batch_within_s
        return max(0.0, min(self.settings.batch_within_s, deadline - now))

    def _decide(self, plan: BatchPlan) -> None:
        """Decide a polled batch into the pending transaction, on top of its earlier records
        and of the transaction in flight."""
        schemas = self.writer_schemas
        values = [r.value for r in plan.events]
        # waits while the registry is unreachable; stopping meanwhile: decided again from the
        # committed offsets at the restart
        if schemas is not None and not schemas.wait_for(values, lambda: self._stopping):
            return
        pending = self._pending
        if pending is None:
            inflight = self._inflight
            overlay = OverlayStore(self.stores, under=inflight.overlay if inflight else None)
            pending = self._pending = _Pending(overlay)
        first = plan.events[0] if plan.events else plan.due_wakeups[0]
        with deciding(self.events if plan.events else self.wakeups, first.partition, first.offset):
            if plan.events:
                self._add(pending, self.processor.process(plan.events, pending.overlay))
            for wakeup in plan.due_wakeups:  # after the batch's events, seeing their effects
                self._add(pending, self.processor.release(wakeup, pending.overlay))
        self.progress.decided()
        pending.offsets.update(plan.offsets)  # a later batch's offsets supersede
        pending.records += len(plan.events) + len(plan.due_wakeups)

    @staticmethod
    def _add(pending: _Pending, result: BatchResult) -> None:
        for write in result.state_writes:
            pending.overlay.save(write.partition, write.key, write.value)
        pending.outputs.extend(result.outputs)

    def _publish(self) -> None:
        """Produce the pending transaction once the one in flight committed, and start its
        commit."""
        pending, self._pending = self._pending, None
        assert pending is not None
        if not self._settle():
            return  # the one before failed: this one was decided on its state, redo both
        overlay = pending.overlay
        overlay.under = None  # what it read through is in the databases now
        self._delivered = {}
        try:
            self.audit_chain.seed(pending.outputs)
        except ScanError as exc:
            log.warning("cannot read the audit chain's tails, deciding again: %s", exc)
            self._rewind()
            return
        try:
            seals = self.audit_chain.seals(pending.outputs)
            self.producer.begin_transaction()
            for i, out in enumerate(pending.outputs):
                self._produce(
                    out.topic,
                    out.key,
                    out.value,
                    out.partition,
                    headers=output_headers(out, seals.get(i)),
                )
            for (partition, key), value in overlay.writes.items():
                self._produce(self.changelog, key, value, partition, self._on_changelog)
        except KafkaException as exc:
            self._recover(exc)
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.offsets.items()]
        self._inflight = _InFlight(overlay)
        self._inflight.start(
            self.producer,
            offsets,
            self.consumer.consumer_group_metadata(),
            self.processor.metrics.transaction_seconds,
        )

    def _settle(self, recover: bool = True) -> bool:
        """Wait for the commit in flight; apply its writes locally if it succeeded.

        False if it failed: then (with `recover`) the transaction is aborted and the
        consumer rewound to the committed offsets."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return True
        error = inflight.wait()
        if error is None:
            self.producer.poll(0)  # any delivery report not yet served
            self.transactions += 1
            inflight.overlay.commit_to({p: o + 1 for p, o in self._delivered.items()})
            return True
        if recover:
            self._recover(error)
        return False

    def _settle_in_callback(self) -> None:
        """Rebalance callbacks run inside consume(): settle, leave recovery to the loop."""
        inflight = self._inflight
        if inflight is not None and not self._settle(recover=False):
            self._failed = inflight.error

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        cb: Any = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        while True:
            try:
                if cb is not None:
                    self.producer.produce(topic, value, key, partition, on_delivery=cb)
                elif headers is not None:
                    self.producer.produce(topic, value, key, partition, headers=list(headers))
                else:
                    self.producer.produce(topic, value, key, partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _on_changelog(self, err: KafkaError | None, msg: Message) -> None:
        p, offset = msg.partition(), msg.offset()
        if err is None and p is not None and offset is not None:
            self._delivered[p] = max(self._delivered.get(p, -1), offset)

    def _recover(self, exc: KafkaException) -> None:
        """Abort and decide the batch again from the committed offsets, or give up."""
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.fatal():
            log.error("fatal transaction error, exiting: %s", err)
            raise exc
        self.aborts += 1
        self._pending = None  # decided on the aborted state: decided again
        self.audit_chain.forget()  # the aborted runs were linked to
        log.warning("transaction aborted, rewinding to the committed offsets: %s", err)
        self.producer.abort_transaction(60)
        self._rewind()

    def _rewind(self) -> None:
        """Consume again from the committed offsets."""
        self._pending = None
        assignment = self.consumer.assignment()
        self._forget_wakeups({tp.partition for tp in assignment})
        for tp in self.consumer.committed(assignment, timeout=30):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            nexts = self.events_next if tp.topic == self.events else self.wakeups_next
            nexts[tp.partition] = max(tp.offset, 0)
