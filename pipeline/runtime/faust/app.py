"""The Faust worker: thin wiring of topics, the state table, Faust's agents and timers and
the web views around `FaustDecider` (pipeline/runtime/faust/decider.py), which decides and
commits.

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
import functools
import logging
from pathlib import Path
from typing import Any, cast

import faust

from pipeline.kafka import clients
from pipeline.kafka.changelog_restore import restore_partitions
from pipeline.kafka.policy_follower import start_policy_follower
from pipeline.kafka.schema_registry import attach as attach_schema_registry
from pipeline.kafka.topics import STATE_TABLE
from pipeline.processing.batch import BatchProcessor
from pipeline.processing.input_progress import InputProgress
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime import gc_tuning, log_format
from pipeline.runtime.faust import aiokafka_compat
from pipeline.runtime.faust import compat as faust_compat
from pipeline.runtime.faust.connection import faust_connection
from pipeline.runtime.faust.decider import RELEASE_RETRY_S, FaustDecider
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
#: how often input positions are mirrored to the group and overdue seeks retried
MIRROR_INTERVAL_S = 1.0


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
    decider = FaustDecider(app, state, settings, processor, progress, writer_schemas=writer_schemas)
    send_errors = SendErrors()
    app.sensors.add(send_errors)

    @faust_compat.connect(app.on_before_shutdown)
    async def mark_clean_stop(sender: Any, **kwargs: Any) -> None:
        await decider.stop()
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
        faust_compat.deliver_in_batches(app.consumer, (t.events, t.wakeups), decider.deliver)
        await decider.on_assigned(assigned)
        await serve_pages()

    @faust_compat.connect(app.on_partitions_revoked)
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        await decider.on_revoked(revoked)

    @app.task
    async def decide_events() -> None:
        async for batch in decider.batches(t.events):
            await decider.decide_events(batch)

    @app.task
    async def read_wakeups() -> None:
        async for batch in decider.batches(t.wakeups):
            await decider.read_wakeups(batch)

    @app.task
    async def release_due_holds() -> None:
        while True:
            await decider.wait_for_due_holds()
            if not await decider.release_due_holds():
                await asyncio.sleep(RELEASE_RETRY_S)

    @app.timer(MIRROR_INTERVAL_S)
    async def mirror_positions() -> None:
        await decider.mirror_positions()

    port = WorkerPort(
        runtime="faust",
        settings=settings,
        processor=processor,
        registry=metrics.registry,
        owned=decider.owned,
        load=decider.load,
        lag=decider.lag,
        liveness=decider.liveness,
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
