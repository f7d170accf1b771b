"""The Faust worker: thin wiring of topics, the state table and the web views around
`BatchProcessor`.

The agent takes events in batches (`take_events`) so Faust's per-message cost is paid
once per batch, not once per output: outputs go straight to the app's producer; the batch's
state writes (changelog) follow only once the broker acknowledged them, and Faust commits
offsets after both (at-least-once: a crash re-emits identical records, never loses one).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import faust
import orjson
from faust.streams import _current_event
from prometheus_client import generate_latest

from pipeline.settings import Settings
from pipeline.shell.batch import BatchProcessor, BatchResult, InputRecord
from pipeline.shell.metrics import TowerMetrics
from pipeline.shell.policy_follower import start_policy_follower
from pipeline.shell.web import register_views

STATE_TABLE = "customer-state"
#: aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
#: Faust's RocksDB default is a 2 GiB block cache per partition database: far too much.
ROCKSDB_OPTIONS = {"block_cache_size": 64 * 1024 * 1024, "block_cache_compressed_size": 0}


class FaustStateStore:
    """Reads and writes the state table for a given source partition.

    Faust picks the RocksDB partition database and the changelog partition from the
    *current event*; in a batch the current event is the batch's last one, which may belong
    to another partition, so each access first points the context at an event of the
    customer's own partition.
    """

    def __init__(self, table: Any, events_by_partition: dict[int, Any]) -> None:
        self.table = table
        self.events = events_by_partition

    def _focus(self, partition: int) -> None:
        _current_event.set(weakref.ref(self.events[partition]))

    def load(self, partition: int, key: bytes) -> bytes | None:
        self._focus(partition)
        return self.table.get(key)

    def save(self, partition: int, key: bytes, value: bytes) -> None:
        self._focus(partition)
        self.table[key] = value


def create_app(settings: Settings, **faust_options: Any) -> faust.App:
    """Build the worker app; `faust_options` override Faust settings (tests, benchmarks).

    The policy is the one published on the policies topic (followed while the app runs, see
    `PolicyFollower`); until one is published: `TOWER_POLICY_FILE`, else the built-in
    default. Waits up to `settings.policy_wait_s` to read the published one.
    """
    options: dict[str, Any] = {
        "broker": settings.broker_url,
        "store": "rocksdb://",
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "stream_buffer_maxsize": 16384,
        "broker_commit_every": 10_000,
        "broker_commit_interval": 1.0,
        "table_standby_replicas": 0,
        "producer_linger_ms": 5,
        "producer_max_batch_size": 512 * 1024,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": settings.processing_guarantee,
    }
    options.update(faust_options)
    app = faust.App(settings.app_id, **options)
    metrics = TowerMetrics()
    follower = start_policy_follower(settings, metrics)
    processor = BatchProcessor(settings, policy=follower.current, metrics=metrics)
    app.tower_metrics = metrics  # type: ignore[attr-defined]
    app.tower_processor = processor  # type: ignore[attr-defined]
    app.tower_policy = follower  # type: ignore[attr-defined]

    @app.on_before_shutdown.connect
    async def stop_policy_follower(sender: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(follower.stop)

    t = settings.topics
    events_topic = app.topic(
        t.events, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    state = app.Table(
        STATE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=ROCKSDB_OPTIONS,
    )
    app.tower_state = state  # type: ignore[attr-defined]

    wakeups_topic = app.topic(
        t.wakeups, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    # Both agents read-modify-write customer states and await the broker in between: one
    # lock keeps a release from interleaving with a batch of the same customer.
    state_lock = asyncio.Lock()

    async def publish(result: BatchResult, store: FaustStateStore) -> None:
        """Outputs first; the state only once the broker has acknowledged them."""
        producer = app.producer
        if app.in_transaction:  # exactly_once: route sends into the partition's transaction
            producer = app.consumer.transactions
        acks = [
            await producer.send(out.topic, out.key, out.value, out.partition, None, None)
            for out in result.outputs
        ]
        if acks:
            await asyncio.gather(*acks)
        for write in result.state_writes:
            store.save(write.partition, write.key, write.value)

    @app.agent(events_topic, name="tower-decide")
    async def decide_events(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, settings.batch_within_s):
            records = [input_record(ev.message) for ev in batch]
            store = FaustStateStore(state, {ev.message.partition: ev for ev in batch})
            async with state_lock:
                await publish(processor.process(records, store), store)

    @app.agent(wakeups_topic, name="tower-release-holds")
    async def release_holds(stream: faust.StreamT) -> None:
        """Wake-ups arrive right after their hold opens; each waits for its deadline."""
        async for ev in stream.events():
            record = input_record(ev.message)
            await asyncio.sleep(max(0.0, wakeup_deadline_s(record.value) - time.time()))
            store = FaustStateStore(state, {record.partition: ev})
            async with state_lock:
                await publish(processor.release(record, store), store)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    async def health_view(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "policy_version": follower.current().policy_version})

    app.tower_feed = register_views(app, state, processor, settings)  # type: ignore[attr-defined]
    return app


def input_record(msg: Any) -> InputRecord:
    ts = msg.timestamp
    return InputRecord(
        msg.key, msg.value, msg.partition, msg.offset, int(ts * 1000) if ts else None
    )


def wakeup_deadline_s(value: bytes | None) -> float:
    """The wall-clock second a wake-up is due (event time of the deadline); 0 if unreadable,
    so a malformed wake-up is dead-lettered at once instead of stalling the stream."""
    try:
        return float(orjson.loads(value or b"")["deadline"]) / 1000
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
