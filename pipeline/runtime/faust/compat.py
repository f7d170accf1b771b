"""Every use of faust-streaming's private API, in one place, checked against its versions.

The Faust runtime owns its input offsets (pipeline/processing/input_positions.py); doing
that needs things Faust has no public API for. A Faust release outside `CHECKED` may have
moved any of them: tests/unit/runtime/faust/test_faust_compat.py fails on it, and the
worker logs a warning at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

log = logging.getLogger(__name__)

#: faust-streaming versions whose consumer and stream internals this module was read against
CHECKED = frozenset({"0.15.3"})


def check_version() -> bool:
    if faust.__version__ in CHECKED:
        return True
    log.warning(
        "faust-streaming %s is not one pipeline/runtime/faust/compat.py was checked against "
        "(%s): the input-offset guard may not hold",
        faust.__version__,
        ", ".join(sorted(CHECKED)),
    )
    return False


Handler = Callable[..., Awaitable[None]]


def connect(signal: Any) -> Callable[[Handler], Handler]:
    """`signal.connect` as a decorator typed for `async def h(sender, **kwargs)` handlers
    (mode's signal types want a positional-only signature Faust itself does not use)."""

    def register(handler: Handler) -> Handler:
        signal.connect(handler)
        return handler

    return register


def recovering(app: faust.App) -> bool:
    """True while the app rebalances or restores its tables: not ready to answer."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
    return bool(app.rebalancing or recovery.in_recovery or not recovery.completed.is_set())


def focus(event: Any) -> None:
    """Make `event` the stream's current event: a table access then reads and writes the
    partition database and changelog partition of that event's partition."""
    _current_event.set(weakref.ref(event))


class UnfilteredReads(defaultdict[Any, int | None]):
    """Faust's per-partition read offset, blind for the topics the worker positions itself.

    `Consumer._drain_messages` silently drops a fetched record below the last offset it
    delivered (the read offset). After the worker seeks a partition back to fill a hole,
    the re-fetched records are exactly such records, so for these topics it must see none.
    """

    def __init__(self, topics: Iterable[str], data: Mapping[Any, int | None]) -> None:
        super().__init__(lambda: None, data)
        self.topics = frozenset(topics)

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self.topics:
            return None
        return super().__getitem__(tp)


def unfilter_reads(consumer: Any, topics: Iterable[str]) -> None:
    """Install `UnfilteredReads` before the fetcher's drain loop binds `__getitem__`."""
    current = consumer._read_offset
    if not isinstance(current, UnfilteredReads):
        consumer._read_offset = UnfilteredReads(topics, current)


def unfiltered(consumer: Any) -> bool:
    return isinstance(consumer._read_offset, UnfilteredReads)


async def commit(consumer: Any, offsets: Mapping[tuple[str, int], int]) -> bool:
    """Commit offsets to the group directly: Faust's `commit()` only commits what streams
    acked, and acks are off for the topics the worker positions itself."""
    return bool(await consumer._commit({TP(t, p): o for (t, p), o in offsets.items()}))


async def seek(consumer: Any, tp: TP, offset: int) -> None:
    """Seek a partition on the consumer's own thread.

    Faust's `Consumer.seek` calls aiokafka from the caller's thread, while aiokafka's
    fetcher runs on the consumer thread's loop. The two race on the fetcher's buffer: the
    fetcher can write the old position back over the seek, or fail on a buffered result
    the seek just removed (`KeyError` in `Fetcher.fetched_records`), which stops the
    fetcher and crashes the worker. Queued on the thread, the seek runs between the
    fetcher's steps.
    """
    thread = consumer._thread
    await thread.call_thread(thread.seek, tp, offset)


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Cap how long the broker may hold the worker consumer's fetch requests.

    Faust creates its consumer with `fetch_max_wait_ms=1500` and no setting for it.
    aiokafka leaves a partition out of the next fetch while records of it are still
    buffered, so once they are taken, new records of that partition wait for the fetch
    in flight, which the broker holds up to that long when the partitions in it are idle:
    up to 1.5 s added to a decision. A short cap costs a few idle fetches per second.
    """
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    create = getattr(thread._create_worker_consumer, "__wrapped__", thread._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the fetcher starts
        return consumer

    create_worker_consumer.__wrapped__ = create  # type: ignore[attr-defined]
    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def idempotent_producer() -> None:
    """Make Faust's producer idempotent as well as acks=all.

    Faust asks aiokafka for idempotence only inside transactions (`_settings_extra`); the
    worker's outputs and changelog need it always: without it a retry after a broker
    failover can write a record twice or reorder a partition's records.
    """
    from faust.transport.drivers import aiokafka as driver

    producer = driver.Producer
    extra = getattr(producer._settings_extra, "__wrapped__", producer._settings_extra)

    def settings_extra(self: Any) -> Mapping[str, Any]:
        return {**extra(self), "acks": "all", "enable_idempotence": True}

    settings_extra.__wrapped__ = extra  # type: ignore[attr-defined]
    producer._settings_extra = settings_extra  # type: ignore[method-assign]


def dump_consumer_thread_tasks() -> None:
    """`kill -USR1` runs mode's `cry`, which lists the tasks of each thread that has a
    `loop`. Faust's consumer thread has none, so the dump lacked aiokafka's fetcher and
    metadata tasks, which is where a worker that stopped fetching is stuck."""
    from mode.threads import WorkerThread

    if not hasattr(WorkerThread, "loop"):
        WorkerThread.loop = property(lambda thread: thread.service.thread_loop)  # type: ignore[attr-defined]


async def take_available(
    stream: Any, max_: int, within: float, caught_up: Callable[[Any], bool]
) -> AsyncIterator[list[Any]]:
    """Faust's `Stream.take_events`, except that a batch also ends when nothing more is
    queued and `caught_up(event)` says the event was the last one the partition had: at
    light load a decision does not wait `within` for a batch to fill, under a backlog
    batches still fill up to `max_`.

    With `take_events` a short `within` costs throughput (each batch waits for its acks,
    and small batches wait often) and a long one costs latency on every batch. Copied
    from faust-streaming 0.15.3 `take_events`; the one change is the flush condition.
    """
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    channel_it = aiter(stream.channel)
    queue = channel_it.queue
    enable_acks = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer.append(value)
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_available found current_event is None")
            events.append(event)
            if len(buffer) >= max_ or (queue.empty() and caught_up(event)):
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("Error adding to the batch: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)
            if buffer:
                buffer_consuming = stream.loop.create_future()
                try:
                    yield list(events)
                finally:
                    buffer.clear()
                    for event in events:
                        await stream.ack(event)
                    events.clear()
                    done = buffer_consuming
                    if done is not None and not done.done():
                        done.set_result(None)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def partition_database(store: Any, partition: int) -> Any:
    """One partition's database of Faust's RocksDB store (rocksdict, raw mode), opened if
    it is not yet; Faust has no public accessor for it."""
    return store._db_for_partition(partition)
