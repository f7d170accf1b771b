"""The Faust worker's decisions and their commit protocol (at-least-once): decide a batch,
publish its outputs, await the broker's acknowledgements, and only then write the customer
states and the input positions to the state table, whose changelog Faust writes.

A crash before the state write re-decides the batch from the stored positions and
re-emits identical records, never loses one; no table write follows a stop, so the
clean-stop marker holds. The transactional runtime runs the same steps in one Kafka
transaction (`pipeline/runtime/transactional/engine.py`).

The app gives the producer and consumer Faust makes; tests give fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.exceptions import ConsumerNotStarted

from pipeline.kafka.audit_tail import AuditLinker
from pipeline.kafka.reader import ScanError
from pipeline.kafka.schema_registry import WriterSchemas
from pipeline.processing.batch import (
    BatchProcessor,
    BatchResult,
    InputRecord,
    OutputRecord,
    StateWrite,
    output_headers,
)
from pipeline.processing.input_positions import TopicPartition
from pipeline.processing.input_progress import InputProgress
from pipeline.processing.wakeup_schedule import PendingWakeup, WakeupSchedule, wakeup_deadline_s
from pipeline.runtime import log_format
from pipeline.runtime.faust import compat as faust_compat
from pipeline.runtime.faust.inbox import Inbox
from pipeline.runtime.faust.input_guard import InputGuard
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: fetched records waiting per input topic before the drain loop waits, in batches
INBOX_BATCHES = 4
#: how long the hold releaser waits after a failed release before it tries again
RELEASE_RETRY_S = 1.0


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


class FaustDecider:
    """The input batches of one Faust worker, the holds it releases and the state table
    they write, behind one lock.

    Both input agents and the hold releaser read-modify-write customer states and await
    the broker in between: `state_lock` keeps them, and the rebalance handlers, from
    interleaving on a customer."""

    def __init__(
        self,
        app: Any,
        table: Any,
        settings: Settings,
        processor: BatchProcessor,
        progress: InputProgress,
        *,
        writer_schemas: WriterSchemas | None = None,
        audit_chain: AuditLinker | None = None,
    ) -> None:
        self.app, self.table, self.settings, self.processor = app, table, settings, processor
        self.progress = progress
        self.writer_schemas = writer_schemas
        t = settings.topics
        self.events, self.wakeups = t.events, t.wakeups
        self.event_states = FaustStateStore(table, self.events)
        self.wakeup_states = FaustStateStore(table, self.wakeups)
        self.guard = InputGuard(app, table, processor.metrics, settings)
        #: wake-ups read, released when due (pipeline/processing/wakeup_schedule.py)
        self.schedule = WakeupSchedule()
        self.schedule_changed = asyncio.Event()
        self.state_lock = asyncio.Lock()
        #: set once the worker stops: no table write after it, so the clean-stop marker holds
        self.stopping = asyncio.Event()
        #: the audit partitions' hash chain, a run per batch and partition
        #: (contracts/audit_chain.py)
        self.audit_chain = audit_chain or AuditLinker(settings)
        #: fetched records of each input topic, handed over by the consumer's drain loop
        self.inbox = {
            topic: Inbox(INBOX_BATCHES * settings.batch_size)
            for topic in (self.events, self.wakeups)
        }

    # --- input: the consumer's drain loop hands fetched records over -----------------------

    async def deliver(self, messages: list[Any]) -> None:
        await self.app.flow_control.acquire()  # suspended while partitions are reassigned
        by_topic: dict[str, list[Any]] = {}
        for msg in messages:
            by_topic.setdefault(msg.topic, []).append(msg)
        for topic, records in by_topic.items():
            await self.inbox[topic].put(records)

    async def batches(self, topic: str) -> AsyncIterator[list[Any]]:
        """What has been fetched of the topic, in batches of at most `batch_size`."""
        while True:
            batch = await self.inbox[topic].take(self.settings.batch_size)
            await faust_compat.drain_send_buffer(self.app.producer.buffer)  # the changelog
            yield batch

    # --- decide ----------------------------------------------------------------------------

    async def decide_events(self, batch: Sequence[Any]) -> None:
        """Decide the batch's records that are next in sequence, and commit them."""
        if self.writer_schemas is not None:  # waits while the registry is unreachable
            await self.writer_schemas.wait_for_async(msg.value for msg in batch)
        async with self.state_lock:
            admitted = await self.guard.admit(batch)
            if admitted:
                first = admitted[0]
                store = self.event_states
                with log_format.deciding(self.events, first.partition, first.offset):
                    result = self.processor.process(admitted, store)
                    await self.publish(result, store, next_offsets(self.events, admitted))
                self.progress.decided()
        await self.guard.seek_holes()

    async def read_wakeups(self, batch: Sequence[Any]) -> None:
        """Wake-ups arrive right after their hold opens; the releaser acts at each one's
        own deadline, whatever order they came in."""
        async with self.state_lock:
            admitted = await self.guard.admit(batch)
            for rec in admitted:
                self.schedule.add(rec, wakeup_deadline_s(rec.value))
            if admitted:
                self.progress.decided()
        self.schedule_changed.set()
        await self.guard.seek_holes()

    async def wait_for_due_holds(self) -> None:
        """Until the next hold is due to be checked, or the schedule changes."""
        deadline = self.schedule.next_check(time.time())
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.schedule_changed.wait(), timeout)
        self.schedule_changed.clear()

    async def release_due_holds(self) -> bool:
        """Release the holds that are due; False if that failed (they are scheduled again,
        to be retried after `RELEASE_RETRY_S`)."""
        async with self.state_lock:
            horizon = self.guard.horizon(self.events, self.processor)
            due = self.schedule.pop_due(time.time(), horizon)
            try:
                if due:
                    await self.release(due)
                return True
            except Exception:
                log.exception("releasing %d holds failed; retrying in 1 s", len(due))
                for w in due:
                    self.schedule.add(w.record, w.deadline_s)
        return False

    async def release(self, due: list[PendingWakeup]) -> None:
        """Decide the due wake-ups, each on the states the ones before it wrote, and commit
        them with the wake-up positions the schedule can restart from."""
        store = self.wakeup_states
        pending = PendingWrites(store)
        result = BatchResult([], [])
        for wakeup in due:
            released = self.processor.release(wakeup.record, pending)
            for write in released.state_writes:
                pending.save(write.partition, write.key, write.value)
            result.outputs.extend(released.outputs)
        result.state_writes = [StateWrite(p, k, v) for (p, k), v in pending.writes.items()]
        positions = {}
        for p in {w.record.partition for w in due}:
            read = self.guard.positions.next_offset((self.wakeups, p))
            if read is not None:  # None: revoked meanwhile, the next owner re-reads
                positions[(self.wakeups, p)] = self.schedule.restart_offset(p, read)
        await self.publish(result, store, positions)
        self.progress.decided()

    # --- commit: publish, await acks, write state ------------------------------------------

    async def publish(
        self, result: BatchResult, store: FaustStateStore, positions: dict[TopicPartition, int]
    ) -> None:
        """Outputs first; the state and the input positions only once the broker has
        acknowledged them."""
        if not await self.seed_audit_chain(result.outputs):
            return  # stopping: the outputs are re-emitted after the restart
        try:
            acks = await self.send(result.outputs)
            await self.await_acks(acks)
        except BaseException:
            self.audit_chain.forget()  # a run linked to may be missing: read the tails again
            raise
        if self.stopping.is_set():  # the outputs are re-emitted after the restart, never lost
            return
        self.write_state(store, result.state_writes, positions)

    async def seed_audit_chain(self, outputs: list[OutputRecord]) -> bool:
        """Read the tails of the audit partitions the outputs write that have none yet;
        False if the worker stops meanwhile."""
        while self.audit_chain.missing(outputs):  # the outputs wait for the broker anyway
            try:
                await asyncio.to_thread(self.audit_chain.seed, outputs)
            except ScanError as exc:
                if self.stopping.is_set():  # re-emitted after the restart
                    return False
                log.warning("cannot read the audit chain's tails, retrying: %s", exc)
                await asyncio.sleep(1)
        return True

    async def send(self, outputs: list[OutputRecord]) -> list[Any]:
        """Hand the outputs to the producer, sealed; the futures of their acknowledgements."""
        producer = self.app.producer
        seals = self.audit_chain.seals(outputs)
        return [
            await producer.send(
                out.topic,
                out.key,
                out.value,
                out.partition,
                None,
                output_headers(out, seals.get(i)),
            )
            for i, out in enumerate(outputs)
        ]

    @staticmethod
    async def await_acks(acks: list[Any]) -> None:
        """Until the broker has acknowledged every output; raises the first failure."""
        if acks:
            await asyncio.gather(*acks)

    def write_state(
        self,
        store: FaustStateStore,
        state_writes: list[StateWrite],
        positions: dict[TopicPartition, int],
    ) -> None:
        """The customer states and the next input offsets, in the table (whose changelog
        Faust writes); the positions are mirrored to the group later."""
        for write in [*state_writes, *self.guard.position_writes(positions)]:
            store.save(write.partition, write.key, write.value)
        self.guard.written(positions)

    # --- offsets, rebalances, stop ---------------------------------------------------------

    async def mirror_positions(self) -> None:
        """Report progress, seek over holes and mirror the stored positions to the group."""
        self.progress.observe(self.input_positions())
        self.guard.check_idle()
        await self.guard.probe_holes()  # an answer that is stale by then is still safe to apply
        await self.guard.seek_holes()
        await self.guard.mirror()

    async def on_assigned(self, assigned: set[Any]) -> None:
        async with self.state_lock:
            self.guard.forget(assigned)
            self.audit_chain.forget()
        self.progress.assigned()

    async def on_revoked(self, revoked: set[Any]) -> None:
        async with self.state_lock:  # a release in progress finishes first
            self.guard.forget(revoked)
            self.schedule.drop(tp.partition for tp in revoked if tp.topic == self.wakeups)
            await self.app.producer.flush()  # its writes are on the broker for the next owner
            self.audit_chain.forget()

    async def stop(self) -> None:
        """No table write from now on; what was written is on the broker when this returns."""
        self.stopping.set()
        await self.app.producer.flush()

    # --- what the web pages read -----------------------------------------------------------

    def owned(self) -> set[int] | None:
        if faust_compat.recovering(self.app):
            return None
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.events}

    def input_positions(self) -> dict[TopicPartition, tuple[int, int]]:
        """(next offset to decide, log end as last fetched) per owned input partition;
        none while rebalancing or restoring."""
        if self.owned() is None:
            return {}
        out = {}
        for tp in self.app.consumer.assignment():
            if tp.topic in (self.events, self.wakeups):
                position, end = self.guard.position(tp), self.app.consumer.highwater(tp)
                if position is not None and end is not None:
                    out[(tp.topic, tp.partition)] = (position, end)
        return out

    def liveness(self) -> str:
        self.progress.observe(self.input_positions())
        return self.progress.status()

    def lag(self) -> dict[int, int]:
        out: dict[int, int] = {}
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:  # the pages answer from the worker's first start
            return out
        for tp in assigned:
            position = self.guard.positions.next_offset((tp.topic, tp.partition))
            if tp.topic == self.events and position is not None:
                out[tp.partition] = max(0, (self.app.consumer.highwater(tp) or 0) - position)
        return out

    async def load(self, partition: int, key: bytes) -> bytes | None:
        # no current event in a web request: the RocksDB store looks in every partition
        # database this worker holds, the owned one included
        value: bytes | None = self.table.get(key)
        return value


def next_offsets(topic: str, admitted: Sequence[InputRecord]) -> dict[TopicPartition, int]:
    """Per partition of `topic`, the offset after the last admitted record."""
    out: dict[TopicPartition, int] = {}
    for rec in admitted:
        out[(topic, rec.partition)] = rec.offset + 1
    return out
