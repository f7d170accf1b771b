"""The Faust internals the runtime relies on are where faust_compat expects them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import faust
from faust.transport import consumer as faust_consumer
from faust.types.tuples import Message
from mode.utils.locks import Event

from pipeline.runtime.faust import compat as faust_compat


def test_faust_is_a_version_the_compat_module_was_checked_against():
    assert faust.__version__ in faust_compat.CHECKED, (
        f"faust-streaming {faust.__version__} is installed; read pipeline/shell/"
        "faust_compat.py and docs/faust-offsets.md against it, then add it to CHECKED"
    )


def test_the_fetcher_runs_the_consumers_drain_loop():
    """`deliver_in_batches` replaces the consumer's `_drain_messages`, which the fetcher
    looks up each time it (re)starts."""
    assert "consumer._drain_messages(self)" in inspect.getsource(faust_consumer.Fetcher)
    assert "wait_first(" in inspect.getsource(faust_consumer.Consumer._drain_messages)


def fetched(topic: str, partition: int, offset: int) -> Message:
    tp = faust.types.TP(topic, partition)
    return Message(topic, partition, offset, 0.0, 0, None, b"key", b"value", None, tp=tp)


def test_a_fetchs_records_of_the_batched_topics_are_delivered_at_once_past_the_read_offset():
    """Per fetch one list of the batched topics' records, in fetch order, including a
    record below the last one delivered (a re-fetch after a seek back), which Faust's
    own drain drops; other topics still go one record at a time to the conductor."""
    fetches = [
        [
            fetched("agent-events", 0, 5),
            fetched("other", 0, 1),
            fetched("agent-events", 1, 7),
            fetched("agent-events", 0, 6),
        ],
        [fetched("agent-events", 0, 3)],
    ]
    per_record: list[Message] = []
    delivered: list[list[tuple[str, int, int]]] = []

    class Fetcher:
        _stopped = Event()

    async def getmany(timeout: float) -> AsyncIterator[tuple[faust.types.TP, Message]]:
        if not fetches:
            Fetcher._stopped.set()
            return
        for message in fetches.pop(0):
            yield message.tp, message

    async def conductor(message: Message) -> None:
        per_record.append(message)

    async def deliver(batch: list[Message]) -> None:
        delivered.append([(m.topic, m.partition, m.offset) for m in batch])

    async def drain() -> None:
        consumer = faust.App("drain-test", broker="kafka://127.0.0.1:1").consumer
        consumer.callback, consumer.getmany = conductor, getmany
        faust_compat.deliver_in_batches(consumer, ["agent-events"], deliver)
        await consumer._drain_messages(Fetcher())

    asyncio.run(drain())
    assert delivered == [
        [("agent-events", 0, 5), ("agent-events", 1, 7), ("agent-events", 0, 6)],
        [("agent-events", 0, 3)],
    ]
    assert [(m.topic, m.offset) for m in per_record] == [("other", 1)]


def test_focus_points_table_accesses_at_a_partition():
    """Faust's table picks the partition database and the changelog partition from the
    current event's message (and checks its topic's partition count)."""
    from faust.streams import current_event

    faust_compat.focus("agent-events", 3)
    event = current_event()
    assert event is not None
    assert (event.message.topic, event.message.partition) == ("agent-events", 3)
    faust_compat.focus("tower-wakeups", 1)
    event = current_event()
    assert event is not None
    assert (event.message.topic, event.message.partition) == ("tower-wakeups", 1)


def test_the_faust_producer_is_idempotent_with_acks_from_all_replicas():
    from faust.transport.drivers import aiokafka as driver

    from pipeline.runtime.faust import compat

    compat.idempotent_producer()
    compat.idempotent_producer()  # applying it twice wraps the original once

    class App:
        in_transaction = False

    producer = object.__new__(driver.Producer)
    producer.app = App()  # type: ignore[attr-defined]
    assert driver.Producer._settings_extra(producer) == {"acks": "all", "enable_idempotence": True}


def test_a_seek_runs_on_the_consumer_thread_not_the_callers():
    """Faust's own `seek` calls aiokafka from the caller's thread, racing the fetcher; the
    guard's seeks are queued on the consumer thread instead."""
    from faust.transport.drivers import aiokafka as driver

    assert "self._thread.seek(" in inspect.getsource(faust_consumer.ThreadDelegateConsumer._seek)
    assert hasattr(driver.AIOKafkaConsumerThread, "call_thread")
    assert hasattr(driver.AIOKafkaConsumerThread, "seek")

    calls = []

    class Thread:
        def seek(self, tp, offset):
            calls.append(("seek", tp, offset))

        async def call_thread(self, fun, *args):
            calls.append(("queued", fun.__name__))
            return fun(*args)

    class Consumer:
        _thread = Thread()

    tp = faust.types.TP("agent-events", 3)
    asyncio.run(faust_compat.seek(Consumer(), tp, 781))
    assert calls == [("queued", "seek"), ("seek", tp, 781)]


def test_the_stack_dump_lists_the_consumer_threads_tasks():
    """What `kill -USR1` prints (mode's `cry`) includes the tasks of Faust's consumer
    thread, where aiokafka fetches."""
    import io
    import threading

    from mode.threads import WorkerThread
    from mode.utils.logging import cry

    faust_compat.dump_consumer_thread_tasks()
    started, stop = threading.Event(), threading.Event()

    async def aiokafka_fetcher_stand_in() -> None:
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)

    class Service:
        thread_loop = asyncio.new_event_loop()

        def _start_thread(self) -> None:
            self.thread_loop.run_until_complete(aiokafka_fetcher_stand_in())

    thread = WorkerThread(Service())
    thread.start()
    try:
        assert started.wait(5)
        out = io.StringIO()
        cry(out)
        assert "TASK aiokafka_fetcher_stand_in" in out.getvalue()
    finally:
        stop.set()
        thread.join(5)
        Service.thread_loop.close()


class _SendsOnTheLoop:
    """Faust's `ProducerBuffer` with its sending task, sends recorded instead of made."""

    def __init__(self) -> None:
        from faust.transport.producer import ProducerBuffer

        class App:
            class conf:
                producer_threaded = False

        self.sent: list[int] = []

        async def send(fut: int) -> None:
            self.sent.append(fut)
            await asyncio.sleep(0)  # a send yields to the loop, as aiokafka's does

        self.buffer = ProducerBuffer()
        self.buffer.app = App()
        self.buffer._send_pending = send  # type: ignore[method-assign]

    async def after_a_batch_of(self, writes: int, wait: bool) -> int:
        """What is still queued after a batch queued `writes` changelog records, twice."""
        await self.buffer.start()
        for _ in range(2):
            for i in range(writes):
                self.buffer.put(i)  # type: ignore[arg-type]  # what a table write queues
            if wait:
                await faust_compat.drain_send_buffer(self.buffer)
            else:
                await self.buffer.wait_until_ebb()
        return int(self.buffer.size)  # its sending task ends with the loop


def test_a_batchs_changelog_records_are_sent_before_the_next_batch():
    """Faust's `wait_until_ebb` waits for 100 sends whatever is queued: once per batch of
    500 writes the queue grows by 400 each batch."""
    max_messages = 100
    assert asyncio.run(_SendsOnTheLoop().after_a_batch_of(500, wait=False)) > 2 * max_messages
    assert asyncio.run(_SendsOnTheLoop().after_a_batch_of(500, wait=True)) <= max_messages


def test_a_buffer_that_is_not_running_is_not_waited_for():
    """Faust's flush raises on it: a stopping worker must not crash there."""
    sends = _SendsOnTheLoop()
    for i in range(500):
        sends.buffer.put(i)  # type: ignore[arg-type]
    asyncio.run(faust_compat.drain_send_buffer(sends.buffer))
    assert sends.buffer.size == 500 and sends.sent == []
