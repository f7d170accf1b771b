"""Every use of faust-streaming's private API, in one place, checked against its versions.

The Faust runtime owns its input offsets (pipeline/processing/input_positions.py); doing
that needs things Faust has no public API for. A Faust release outside `CHECKED` may have
moved any of them: tests/unit/runtime/faust/test_faust_compat.py fails on it, and the
worker logs a warning at start-up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
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


class _PartitionEvent:
    """What a table access reads of the stream's current event: its message's topic and
    partition."""

    __slots__ = ("__weakref__", "message", "partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.message, self.topic, self.partition = self, topic, partition


#: one per input partition, kept alive for the weak reference Faust holds
_partition_events: dict[tuple[str, int], _PartitionEvent] = {}


def focus(topic: str, partition: int) -> None:
    """Point table accesses at an input partition: they then read and write that
    partition's database and changelog partition (Faust takes both from the stream's
    current event)."""
    event = _partition_events.get((topic, partition))
    if event is None:
        event = _partition_events[(topic, partition)] = _PartitionEvent(topic, partition)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]  # what tables read of it


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


Deliver = Callable[[list[Any]], Awaitable[None]]


def deliver_in_batches(consumer: Any, topics: Iterable[str], deliver: Deliver) -> None:
    """Hand each fetch's records of `topics` to `deliver` as one list, past Faust's
    per-record path. The fetcher looks the drain loop up each time it (re)starts, so
    installing this before its first start is enough."""
    consumer._drain_messages = functools.partial(
        _drain_in_batches, consumer, frozenset(topics), deliver
    )


async def _drain_in_batches(
    self: Any, topics: frozenset[str], deliver: Deliver, fetcher: Any
) -> None:
    """Faust's `Consumer._drain_messages`, except for records of `topics`.

    Faust hands every record to the conductor through `wait_first`, which creates four
    futures and waits on them, then the conductor decodes it into an event and queues it
    for a stream, which takes it back one at a time. The worker decides in batches and
    positions these topics itself, so their records of one fetch go to `deliver` at once,
    unfiltered: Faust drops a record below the last offset it delivered, and after the
    sequence guard seeks back, the records fetched again are exactly such records. Records
    of other topics take Faust's path, unchanged from faust-streaming 0.15.3.
    """
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every = 100
    num_since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                batch = []
                async for tp, message in ait:
                    if tp.topic in topics:
                        batch.append(message)
                        continue
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                if batch:
                    await self.wait_first(deliver(batch), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def drain_send_buffer(buffer: Any) -> None:
    """Wait until Faust's producer buffer is back to its limit (`max_messages`).

    Table writes queue their changelog records there, and a background task sends them.
    Faust's own `wait_until_ebb` waits for at most `max_messages` sends, which kept up when
    its conductor called it for every record; called once per batch it does not, and the
    changelog fell behind the table without bound under a backlog (the queued messages
    held in memory, and a killed worker's restore finding the table further back). A
    buffer that is not running (the worker stopping) is not waited for: it cannot flush."""
    while buffer.size > buffer.max_messages and buffer.state == "running":
        await buffer.flush_atmost(buffer.size - buffer.max_messages)


def partition_database(store: Any, partition: int) -> Any:
    """One partition's database of Faust's RocksDB store (rocksdict, raw mode), opened if
    it is not yet; Faust has no public accessor for it."""
    return store._db_for_partition(partition)
