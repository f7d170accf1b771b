"""The Faust worker: thin wiring of topics, the state table and the web views around
`BatchProcessor`.

The worker owns its input offsets (docs/faust-offsets.md): acks are off for agent-events
and tower-wakeups, so Faust never commits them. Per input partition the next offset to
decide is a state-table entry, written with the batch's state writes once the broker has
acknowledged the batch's outputs; every delivered record passes the sequence guard
(`InputPositions`) before it is decided, and the offsets are mirrored to the consumer
group for lag monitors. The consumer hands each fetch's input records over at once
(`faust_compat.deliver_in_batches`), so no per-record cost of Faust's streams is paid,
and they are decided in batches (at-least-once: a crash re-emits identical records, never
loses one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted

from pipeline.kafka import clients
from pipeline.kafka.audit_tail import AuditLinker
from pipeline.kafka.changelog_restore import restore_partitions
from pipeline.kafka.policy_follower import start_policy_follower
from pipeline.kafka.reader import ScanError, first_record_at
from pipeline.kafka.schema_registry import attach as attach_schema_registry
from pipeline.kafka.topics import STATE_TABLE
from pipeline.processing.batch import (
    BatchProcessor,
    BatchResult,
    InputRecord,
    StateWrite,
    output_headers,
)
from pipeline.processing.input_positions import (
    Admission,
    InputPositions,
    TopicPartition,
    pack_position,
    position_key,
    unpack_position,
)
from pipeline.processing.input_progress import InputProgress
from pipeline.processing.metrics import TowerMetrics
from pipeline.processing.wakeup_schedule import PendingWakeup, WakeupSchedule, wakeup_deadline_s
from pipeline.runtime import gc_tuning, log_format
from pipeline.runtime.faust import aiokafka_compat
from pipeline.runtime.faust import compat as faust_compat
from pipeline.runtime.faust.connection import faust_connection
from pipeline.runtime.faust.inbox import Inbox
from pipeline.runtime.faust.local_state import LocalState
from pipeline.runtime.faust.restoring_table import RestoringTable
from pipeline.settings import Settings
from pipeline.web import server
from pipeline.web.server import WorkerPort, build_app

log = logging.getLogger(__name__)

#: Per partition database. Faust's defaults (a 2 GiB block cache, three 64 MiB memtables)
#: are far too much for states this small, and a worker's memory kept growing for minutes
#: while they filled; small ones fill in seconds, so the worker's RSS levels off early.
ROCKSDB_OPTIONS = {
    "block_cache_size": 4 * 1024 * 1024,
    "block_cache_compressed_size": 0,
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
}
#: longest the broker holds a fetch of the worker's consumer (see faust_compat)
FETCH_MAX_WAIT_MS = 20
#: fetched records waiting per input topic before the drain loop waits, in batches
INBOX_BATCHES = 4
#: how often input positions are mirrored to the group and overdue seeks retried
MIRROR_INTERVAL_S = 1.0


class FaustStateStore:
    """Reads and writes the state table for a given source partition.

    Faust picks the RocksDB partition database and the changelog partition from the
    stream's current event, so each access first points it at the customer's partition.
    """

    def __init__(self, table: Any, topic: str) -> None:
        self.table, self.topic = table, topic

    def load(self, partition: int, key: bytes) -> bytes | None:
        faust_compat.focus(self.topic, partition)
        return self.table.get(key)

    def save(self, partition: int, key: bytes, value: bytes) -> None:
        faust_compat.focus(self.topic, partition)
        self.table[key] = value


class PendingWrites:
    """A store that keeps writes aside until the outputs they follow are acknowledged, so
    several wake-ups of one customer released together each see the one before."""

    def __init__(self, base: FaustStateStore) -> None:
        self.base = base
        self.writes: dict[tuple[int, bytes], bytes] = {}

    def load(self, partition: int, key: bytes) -> bytes | None:
        if (partition, key) in self.writes:
            return self.writes[(partition, key)]
        return self.base.load(partition, key)

    def save(self, partition: int, key: bytes, value: bytes) -> None:
        self.writes[(partition, key)] = value


class SendErrors(faust.Sensor):
    """Writes the broker did not take: a changelog write among them means the table's
    databases hold what the changelog lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.first: BaseException | None = None

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.count += 1
        self.first = self.first or exc


class InputGuard:
    """The Faust side of `InputPositions`: loads positions from the table, issues seeks,
    and mirrors stored positions to the consumer group."""

    def __init__(
        self, app: faust.App, table: Any, metrics: TowerMetrics, settings: Settings
    ) -> None:
        self.app, self.table, self.metrics, self.settings = app, table, metrics, settings
        self.positions = InputPositions()
        #: positions written to the table since the last mirror
        self.stored: dict[TopicPartition, int] = {}

    async def admit(self, batch: Sequence[Any]) -> list[InputRecord]:
        """The records of the batch's messages that are next in sequence."""
        assigned = self.app.consumer.assignment()
        now = time.monotonic()
        admitted = []
        for msg in batch:
            if msg.tp not in assigned:  # left over from before a rebalance: not ours now
                self.metrics.input_not_decided.labels("not_assigned").inc()
                continue
            tp = (msg.topic, msg.partition)
            if not self.positions.known(tp):
                await self._load(msg)
            admission = self.positions.classify(tp, msg.offset, now)
            if admission is Admission.DECIDE:
                admitted.append(input_record(msg))
            else:
                self.metrics.input_not_decided.labels(admission.value).inc()
        return admitted

    async def _load(self, msg: Any) -> None:
        """The stored position; if none, the partition's first offset (nothing of it was
        ever decided, so deciding starts at its beginning, wherever Faust started). Faust
        seeks a new assignment to the group's offset, which the mirror keeps at or below
        the stored one; where the first record delivered is not at it, the guard seeks."""
        faust_compat.focus(msg.topic, msg.partition)
        stored = unpack_position(self.table.get(position_key(msg.topic)))
        if stored is None:
            stored = (await self.app.consumer.earliest_offsets(msg.tp))[msg.tp]
        self.positions.load((msg.topic, msg.partition), stored, time.monotonic(), msg.offset)

    def position_writes(self, next_offsets: dict[TopicPartition, int]) -> list[StateWrite]:
        return [
            StateWrite(p, position_key(topic), pack_position(offset))
            for (topic, p), offset in next_offsets.items()
        ]

    def written(self, next_offsets: dict[TopicPartition, int]) -> None:
        self.stored.update(next_offsets)

    def horizon(self, topic: str, processor: BatchProcessor) -> Callable[[int], float]:
        """For `WakeupSchedule.pop_due` (which asks only of partitions with pending
        wake-ups, so owned ones): infinite for a partition of `topic` decided up to its
        log end (as far as fetched), else the event time its input has reached."""
        consumer = self.app.consumer

        def until(partition: int) -> float:
            end = consumer.highwater(faust.types.TP(topic, partition))
            position = self.positions.next_offset((topic, partition))
            if position is None and end is not None:  # none delivered since the assignment
                faust_compat.focus(topic, partition)
                position = unpack_position(self.table.get(position_key(topic))) or 0
            if end is not None and position is not None and position >= end:
                return math.inf
            return processor.event_time.get(partition, -1) / 1000

        return until

    def position(self, tp: Any) -> int | None:
        """The next offset to decide of an assigned partition: the sequence guard's, else
        (nothing delivered since the assignment) the stored one."""
        position = self.positions.next_offset((tp.topic, tp.partition))
        if position is None:
            faust_compat.focus(tp.topic, tp.partition)
            position = unpack_position(self.table.get(position_key(tp.topic)))
        return position

    def check_idle(self) -> None:
        consumer, now = self.app.consumer, time.monotonic()
        for tp in consumer.assignment():
            self.positions.check_idle((tp.topic, tp.partition), consumer.highwater(tp), now)

    async def probe_holes(self) -> None:
        """Partitions whose seek did not bring the missing record: ask the broker."""
        for (topic, partition), offset in self.positions.probes_due(time.monotonic()):
            try:
                first, end = await asyncio.to_thread(
                    first_record_at, self.settings, topic, partition, offset
                )
            except ScanError as exc:  # the brokers are down: the probe stays due
                log.warning("%s/%d: asking the broker failed, retrying: %s", topic, partition, exc)
                continue
            log.warning(
                "%s/%d: offset %d not delivered after a seek; the broker's first record "
                "at or after it: %s (log end %d)",
                topic,
                partition,
                offset,
                first,
                end,
            )
            self.positions.probed((topic, partition), first, end)

    async def seek_holes(self) -> None:
        for (topic, partition), offset in self.positions.seeks_due(time.monotonic()):
            attempts = self.positions.attempts((topic, partition))
            level = logging.WARNING if attempts > 1 else logging.INFO
            log.log(
                level,
                "%s/%d: records missing before the next delivered one; seeking "
                "back to %d (attempt %d)",
                topic,
                partition,
                offset,
                attempts,
            )
            self.metrics.input_seeks.inc()
            try:
                await faust_compat.seek(self.app.consumer, faust.types.TP(topic, partition), offset)
            except Exception as exc:  # e.g. revoked meanwhile; retried if still needed
                log.warning("seek %s/%d to %d failed: %r", topic, partition, offset, exc)

    async def mirror(self) -> None:
        """Commit the stored positions to the group, once the changelog writes holding
        them are on the broker (so the group never runs ahead of the table)."""
        if not self.stored:
            return
        offsets, self.stored = self.stored, {}
        await self.app.producer.flush()
        assignment = self.app.consumer.assignment()
        owned = {tp: o for tp, o in offsets.items() if faust.types.TP(*tp) in assignment}
        if owned:
            try:
                await faust_compat.commit(self.app.consumer, owned)
            except Exception as exc:  # a rebalance in progress: the next mirror catches up
                log.info("mirroring input positions to the group failed: %r", exc)

    def forget(self, tps: Iterable[Any]) -> None:
        self.positions.forget(tps)
        for tp in tps:
            self.stored.pop((tp.topic, tp.partition), None)


def create_app(settings: Settings, **faust_options: Any) -> faust.App:
    """Build the worker app; `faust_options` override Faust settings (tests, benchmarks).

    The policy is the one published on the policies topic (followed while the app runs, see
    `PolicyFollower`); until one is published: `TOWER_POLICY_FILE`, else the built-in
    default. Waits up to `settings.policy_wait_s` to read the published one.
    """
    faust_compat.check_version()
    faust_compat.cap_fetch_wait(FETCH_MAX_WAIT_MS)
    faust_compat.idempotent_producer()
    aiokafka_compat.close_connections_on_failed_writes()
    aiokafka_compat.no_topic_auto_creation()
    faust_compat.dump_consumer_thread_tasks()
    compression = None if settings.compression == "none" else settings.compression
    options: dict[str, Any] = {
        **faust_connection(settings),
        "store": "rocksdb://",
        "Table": RestoringTable,
        "datadir": str(settings.data_dir),
        # the pages are the shared server's (pipeline/web/server.py), not Faust's
        "web_enabled": False,
        "canonical_url": settings.advertised_url,
        "broker_client_id": clients.member_client_id(settings),
        "topic_partitions": settings.partitions,
        # `tower topics create` makes every topic, the changelog included; the worker
        # checks them before it starts (kafka/startup_checks.py) and creates none
        "topic_allow_declare": False,
        # the leader topic elects a leader for `on_leader` tasks and timers: none here
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        # static membership: a restarted worker takes its partitions back at once; a
        # stopped one hands them over after the session timeout (static members send no
        # LeaveGroup), so that is short
        "consumer_group_instance_id": settings.member_id("faust"),
        "broker_session_timeout": 10.0,
        "stream_buffer_maxsize": 16384,
        "broker_commit_every": 10_000,
        "broker_commit_interval": 1.0,
        "table_standby_replicas": 0,
        "producer_linger_ms": 5,
        "producer_max_batch_size": 512 * 1024,
        # aiokafka compresses on the event loop, with cramjam (zstd level 3)
        "producer_compression_type": compression,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    options.update(faust_options)
    app = faust.App(settings.app_id, **options)
    metrics = TowerMetrics()
    follower = start_policy_follower(settings, metrics)
    processor = BatchProcessor(settings, policy=follower.current, metrics=metrics)
    # no watchdog: the web server runs in this loop, so a blocked loop answers nothing
    progress = InputProgress(metrics, settings.liveness_stall_s)
    writer_schemas = attach_schema_registry(settings, processor)

    @faust_compat.connect(app.on_before_shutdown)
    async def stop_policy_follower(sender: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(follower.stop)

    t = settings.topics
    # acks=False: Faust neither tracks nor commits these topics; the worker does
    events_topic = app.topic(
        t.events, key_type=bytes, value_type=bytes, partitions=settings.partitions, acks=False
    )
    wakeups_topic = app.topic(
        t.wakeups, key_type=bytes, value_type=bytes, partitions=settings.partitions, acks=False
    )
    # subscribed, but their records come to the worker in batches past Faust's streams
    # (`deliver` below, installed by faust_compat.deliver_in_batches)
    app.topics.add(events_topic)
    app.topics.add(wakeups_topic)
    state = app.Table(
        STATE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=ROCKSDB_OPTIONS,
    )
    # aiokafka sends no heartbeats while a rebalance's callbacks run, and the bulk restore
    # runs in one: at half the session timeout it stops, and Faust's recovery (which runs
    # after, with heartbeats) reads the rest
    cast(RestoringTable, state).restore = functools.partial(
        restore_partitions, settings, budget_s=app.conf.broker_session_timeout / 2
    )
    local_state = LocalState(Path(app.conf.tabledir), STATE_TABLE)
    removed = local_state.open()
    #: set once the worker stops: no table write after it, so the clean-stop marker holds
    stopping = asyncio.Event()
    send_errors = SendErrors()
    app.sensors.add(send_errors)
    guard = InputGuard(app, state, metrics, settings)
    schedule = WakeupSchedule()
    schedule_changed = asyncio.Event()
    # Both agents and the hold releaser read-modify-write customer states and await the
    # broker in between: one lock keeps them from interleaving on a customer.
    state_lock = asyncio.Lock()
    #: the audit partitions' hash chain, a run per batch and partition (contracts/audit_chain.py)
    audit_chain = AuditLinker(settings)

    async def publish(
        result: BatchResult, store: FaustStateStore, positions: dict[TopicPartition, int]
    ) -> None:
        """Outputs first; the state and the input positions only once the broker has
        acknowledged them."""
        producer = app.producer
        while audit_chain.missing(result.outputs):  # the outputs wait for the broker anyway
            try:
                await asyncio.to_thread(audit_chain.seed, result.outputs)
            except ScanError as exc:
                if stopping.is_set():  # re-emitted after the restart
                    return
                log.warning("cannot read the audit chain's tails, retrying: %s", exc)
                await asyncio.sleep(1)
        seals = audit_chain.seals(result.outputs)
        try:
            acks = [
                await producer.send(
                    out.topic,
                    out.key,
                    out.value,
                    out.partition,
                    None,
                    output_headers(out, seals.get(i)),
                )
                for i, out in enumerate(result.outputs)
            ]
            if acks:
                await asyncio.gather(*acks)
        except BaseException:
            audit_chain.forget()  # a run linked to may be missing: read the tails again
            raise
        if stopping.is_set():  # the outputs are re-emitted after the restart, never lost
            return
        for write in [*result.state_writes, *guard.position_writes(positions)]:
            store.save(write.partition, write.key, write.value)
        guard.written(positions)

    @faust_compat.connect(app.on_before_shutdown)
    async def mark_clean_stop(sender: Any, **kwargs: Any) -> None:
        stopping.set()
        await app.producer.flush()
        if send_errors.count:
            log.warning(
                "%d writes to the broker failed: no clean-stop marker, so the next start "
                "restores the table from the changelog (first failure: %r)",
                send_errors.count,
                send_errors.first,
            )
            return
        local_state.mark_clean_stop()

    @app.task
    async def report_local_state() -> None:
        if removed:
            log.warning(
                "the worker did not stop cleanly last time (no %s): removed its %d local "
                "table databases, which may hold writes the changelog never got; the "
                "table is restored from the changelog",
                local_state.marker.name,
                len(removed),
            )

    @faust_compat.connect(app.on_partitions_assigned)
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        # before the fetcher's drain loop starts (it starts when the recovery completes)
        faust_compat.deliver_in_batches(app.consumer, (t.events, t.wakeups), deliver)
        async with state_lock:
            guard.forget(assigned)
            audit_chain.forget()
        progress.assigned()
        await serve_pages()

    @faust_compat.connect(app.on_partitions_revoked)
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        async with state_lock:  # a release in progress finishes first
            guard.forget(revoked)
            schedule.drop(tp.partition for tp in revoked if tp.topic == t.wakeups)
            await app.producer.flush()  # its writes are on the broker for the next owner
            audit_chain.forget()

    #: fetched records of each input topic, handed over by the consumer's drain loop
    inbox = {topic: Inbox(INBOX_BATCHES * settings.batch_size) for topic in (t.events, t.wakeups)}

    async def deliver(messages: list[Any]) -> None:
        await app.flow_control.acquire()  # suspended while partitions are reassigned
        by_topic: dict[str, list[Any]] = {}
        for msg in messages:
            by_topic.setdefault(msg.topic, []).append(msg)
        for topic, records in by_topic.items():
            await inbox[topic].put(records)

    async def batches(topic: str) -> AsyncIterator[list[Any]]:
        """What has been fetched of the topic, in batches of at most `batch_size`."""
        while True:
            batch = await inbox[topic].take(settings.batch_size)
            await faust_compat.drain_send_buffer(app.producer.buffer)  # the changelog
            yield batch

    @app.task
    async def decide_events() -> None:
        store = FaustStateStore(state, t.events)
        async for batch in batches(t.events):
            if writer_schemas is not None:  # waits while the registry is unreachable
                await writer_schemas.wait_for_async(msg.value for msg in batch)
            async with state_lock:
                admitted = await guard.admit(batch)
                if admitted:
                    first = admitted[0]
                    with log_format.deciding(t.events, first.partition, first.offset):
                        result = processor.process(admitted, store)
                        await publish(result, store, next_offsets(t.events, admitted))
                    progress.decided()
            await guard.seek_holes()

    @app.task
    async def read_wakeups() -> None:
        """Wake-ups arrive right after their hold opens; the releaser acts at each one's
        own deadline, whatever order they came in."""
        async for batch in batches(t.wakeups):
            async with state_lock:
                admitted = await guard.admit(batch)
                for rec in admitted:
                    schedule.add(rec, wakeup_deadline_s(rec.value))
                if admitted:
                    progress.decided()
            schedule_changed.set()
            await guard.seek_holes()

    async def release(due: list[PendingWakeup]) -> None:
        store = FaustStateStore(state, t.wakeups)
        pending = PendingWrites(store)
        result = BatchResult([], [])
        for wakeup in due:
            released = processor.release(wakeup.record, pending)
            for write in released.state_writes:
                pending.save(write.partition, write.key, write.value)
            result.outputs.extend(released.outputs)
        result.state_writes = [StateWrite(p, k, v) for (p, k), v in pending.writes.items()]
        positions = {}
        for p in {w.record.partition for w in due}:
            read = guard.positions.next_offset((t.wakeups, p))
            if read is not None:  # None: revoked meanwhile, the next owner re-reads
                positions[(t.wakeups, p)] = schedule.restart_offset(p, read)
        await publish(result, store, positions)
        progress.decided()

    @app.task
    async def release_due_holds() -> None:
        while True:
            deadline = schedule.next_check(time.time())
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(schedule_changed.wait(), timeout)
            schedule_changed.clear()
            async with state_lock:
                due = schedule.pop_due(time.time(), guard.horizon(t.events, processor))
                try:
                    if due:
                        await release(due)
                    continue
                except Exception:
                    log.exception("releasing %d holds failed; retrying in 1 s", len(due))
                    for w in due:
                        schedule.add(w.record, w.deadline_s)
            await asyncio.sleep(1.0)

    @app.timer(MIRROR_INTERVAL_S)
    async def mirror_positions() -> None:
        progress.observe(input_positions())
        guard.check_idle()
        await guard.probe_holes()  # an answer that is stale by then is still safe to apply
        await guard.seek_holes()
        await guard.mirror()

    def owned() -> set[int] | None:
        if faust_compat.recovering(app):
            return None
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == t.events}

    def input_positions() -> dict[TopicPartition, tuple[int, int]]:
        """(next offset to decide, log end as last fetched) per owned input partition;
        none while rebalancing or restoring."""
        if owned() is None:
            return {}
        out = {}
        for tp in app.consumer.assignment():
            if tp.topic in (t.events, t.wakeups):
                position, end = guard.position(tp), app.consumer.highwater(tp)
                if position is not None and end is not None:
                    out[(tp.topic, tp.partition)] = (position, end)
        return out

    def liveness() -> str:
        progress.observe(input_positions())
        return progress.status()

    def lag() -> dict[int, int]:
        out: dict[int, int] = {}
        try:
            assigned = app.consumer.assignment()
        except ConsumerNotStarted:  # the pages answer from the worker's first start
            return out
        for tp in assigned:
            position = guard.positions.next_offset((tp.topic, tp.partition))
            if tp.topic == t.events and position is not None:
                out[tp.partition] = max(0, (app.consumer.highwater(tp) or 0) - position)
        return out

    async def load(partition: int, key: bytes) -> bytes | None:
        # no current event in a web request: the RocksDB store looks in every partition
        # database this worker holds, the owned one included
        value: bytes | None = state.get(key)
        return value

    port = WorkerPort(
        runtime="faust",
        settings=settings,
        processor=processor,
        registry=metrics.registry,
        owned=owned,
        load=load,
        lag=lag,
        liveness=liveness,
    )
    pages = build_app(port)

    serving: list[Any] = []

    async def serve_pages() -> None:
        """Before the app starts (TowerFaustWorker.on_first_start), else at the first
        assignment: Faust starts its tasks only once the first recovery is over, and
        /readyz should say 503 while the worker joins and restores, not refuse."""
        if serving:
            return
        serving.append(None)
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)
        runner = await server.start(pages, settings.web_host, settings.web_port)

        @faust_compat.connect(app.on_before_shutdown)
        async def stop_pages(sender: Any, **kwargs: Any) -> None:
            await runner.cleanup()

    app.task(serve_pages)  # a worker with no partitions serves too
    app.tower_serve_pages = serve_pages  # type: ignore[attr-defined]

    return app


def next_offsets(topic: str, admitted: Sequence[InputRecord]) -> dict[TopicPartition, int]:
    """Per partition of `topic`, the offset after the last admitted record."""
    out: dict[TopicPartition, int] = {}
    for rec in admitted:
        out[(topic, rec.partition)] = rec.offset + 1
    return out


def input_record(msg: Any) -> InputRecord:
    ts = msg.timestamp
    return InputRecord(
        msg.key, msg.value, msg.partition, msg.offset, int(ts * 1000) if ts else None, msg.headers
    )


def use_event_loop(name: str) -> None:
    """Install the event loop policy before Faust creates a loop (its consumer thread's
    loop included): much of the worker's time is the loop and aiokafka, which uvloop runs
    on less CPU than asyncio's. Without uvloop installed the worker says
    so and uses asyncio's."""
    if name != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed: the worker uses asyncio's event loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class TowerFaustWorker(faust.Worker):
    """Faust's worker with the tower's log format (`TOWER_LOG_FORMAT`) on the handlers it
    sets up, serving the web pages from its first start."""

    settings: Settings | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        if self.settings is not None:
            log_format.use_format(logger, self.settings)

    async def on_first_start(self) -> None:
        """The pages and probes answer before the app joins its group (`/readyz` says 503
        until the partitions are assigned and restored)."""
        await super().on_first_start()
        serve = getattr(self.app, "tower_serve_pages", None)
        if serve is not None:
            await serve()


def faust_worker(app: faust.App, loglevel: str, settings: Settings | None = None) -> faust.Worker:
    """Faust's worker without its terminal spinner. At WARNING and above the spinner sets
    the root logger to DEBUG and spins on every record, so each debug call of aiokafka,
    mode and Faust builds a record, on the worker's hot path. A service log needs no
    spinner."""
    worker = TowerFaustWorker(app, loglevel=loglevel, quiet=True)
    worker.settings = settings
    worker.spinner = None
    return worker


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_event_loop(settings.event_loop)
    app = create_app(settings)
    worker = faust_worker(app, loglevel, settings)
    gc_tuning.tune_for_batches()
    worker.execute_from_commandline()
