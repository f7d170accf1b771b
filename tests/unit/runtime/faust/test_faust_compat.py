"""The Faust internals the runtime relies on are where faust_compat expects them."""

from __future__ import annotations

import inspect

import faust
from faust.transport import consumer as faust_consumer

from pipeline.runtime.faust import compat as faust_compat


def test_faust_is_a_version_the_compat_module_was_checked_against():
    assert faust.__version__ in faust_compat.CHECKED, (
        f"faust-streaming {faust.__version__} is installed; read pipeline/shell/"
        "faust_compat.py and docs/faust-offsets.md against it, then add it to CHECKED"
    )


def test_the_drain_loop_reads_offsets_through_the_consumers_mapping():
    """UnfilteredReads works only while `_drain_messages` binds `_read_offset.__getitem__`
    and skips a record when that returns a number above its offset."""
    source = inspect.getsource(faust_consumer.Consumer._drain_messages)
    assert "self._read_offset.__getitem__" in source
    assert "r_offset is None or offset >= r_offset" in source
    assert hasattr(faust_consumer.Consumer, "_commit")


def test_unfiltered_reads_hide_only_the_owned_topics():
    class FakeConsumer:
        _read_offset: dict = {}

    c = FakeConsumer()
    c._read_offset = {faust.types.TP("other", 0): 7}
    faust_compat.unfilter_reads(c, ["agent-events"])
    assert faust_compat.unfiltered(c)
    assert c._read_offset[faust.types.TP("agent-events", 0)] is None
    c._read_offset[faust.types.TP("agent-events", 0)] = 42  # Faust still writes it
    assert c._read_offset[faust.types.TP("agent-events", 0)] is None
    assert c._read_offset[faust.types.TP("other", 0)] == 7


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
    import asyncio

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
    import asyncio
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
