"""The Faust worker's commit protocol (decide, publish, await acks, write state), on fake
Faust clients: no broker, no Faust app.

`Timeline` records, in order, what the fakes were asked: outputs sent ("send"), the
broker's acknowledgements ("ack", "refused"), state-table writes ("write"), producer
flushes ("flush") and commits to the group ("commit"). The producer holds each send's
acknowledgement until the test answers it, so a test can act while a batch awaits its
acks. The processor, the sequence guard, the wake-up schedule and the audit chain are the
real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from pipeline.contracts.audit_chain import GENESIS
from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.policy import DEFAULT_POLICY, HoldWindows, Policy
from pipeline.kafka.audit_tail import AuditLinker
from pipeline.kafka.reader import ScanError
from pipeline.processing.batch import BatchProcessor
from pipeline.processing.input_positions import position_key, unpack_position
from pipeline.processing.input_progress import InputProgress
from pipeline.runtime.faust.decider import FaustDecider
from pipeline.settings import Settings
from tests.factories import T0, consent, proposal

SETTINGS = Settings(output_format="json", partitions=2)
T = SETTINGS.topics
EVENTS, WAKEUPS = T.events, T.wakeups
#: holds every proposal for 5 s, so each parks a hold and sends a wake-up
HOLDING = Policy(holds=HoldWindows(hold_ms={"message": 5_000}))
#: bounds a wait on the decider, so that a bug fails instead of hanging
GUARD_S = 10.0


class Timeline(list[tuple[Any, ...]]):
    def names(self) -> list[str]:
        return [entry[0] for entry in self]

    def first(self, name: str) -> int:
        return self.names().index(name)

    def last(self, name: str) -> int:
        return len(self) - 1 - self.names()[::-1].index(name)


@dataclass
class FakeMessage:
    """What the decider reads of Faust's `Message`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class FakeTable:
    """The state table: one dict per partition database, picked (as Faust does) by the
    current event the decider points the table at."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.dbs: dict[int, dict[bytes, bytes]] = {}

    @staticmethod
    def _partition() -> int:
        event = faust.current_event()
        assert event is not None, "a table access without a current event"
        return event.message.partition

    def get(self, key: bytes) -> bytes | None:
        return self.dbs.get(self._partition(), {}).get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        partition = self._partition()
        self.timeline.append(("write", partition, key))
        self.dbs.setdefault(partition, {})[key] = value

    def position(self, topic: str, partition: int) -> int | None:
        return unpack_position(self.dbs.get(partition, {}).get(position_key(topic)))


class FakeProducer:
    """Sends return a future per output; the test acknowledges or refuses them."""

    def __init__(self, timeline: Timeline, auto_ack: bool = False) -> None:
        self.timeline, self.auto_ack = timeline, auto_ack
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.unanswered: list[asyncio.Future[None]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[None]:
        self.timeline.append(("send", topic, partition))
        self.sent.append((topic, key, value, partition))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            self.timeline.append(("ack",))
            ack.set_result(None)
        else:
            self.unanswered.append(ack)
        return ack

    def ack_all(self) -> None:
        for ack in self.unanswered:
            self.timeline.append(("ack",))
            ack.set_result(None)
        self.unanswered = []

    def refuse_one(self, exc: BaseException) -> None:
        """The broker refuses one output (the last one sent), acknowledges the rest."""
        *rest, refused = self.unanswered
        self.unanswered = rest
        self.ack_all()
        self.timeline.append(("refused",))
        refused.set_exception(exc)

    async def flush(self) -> None:
        self.timeline.append(("flush",))

    def outputs(self, topic: str) -> list[tuple[str, bytes | None, bytes | None, int | None]]:
        return [s for s in self.sent if s[0] == topic]


class FakeConsumer:
    def __init__(self, timeline: Timeline, partitions: Sequence[int] = (0, 1)) -> None:
        self.timeline = timeline
        self.assigned = {TP(t, p) for t in (EVENTS, WAKEUPS) for p in partitions}
        #: log end per partition, as last fetched
        self.ends: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, 0)

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.timeline.append(("commit", dict(offsets)))
        return True


class Recovered:
    """The table recovery of an app that has restored its tables."""

    in_recovery = False

    def __init__(self) -> None:
        self.completed = asyncio.Event()
        self.completed.set()


@dataclass
class FakeApp:
    producer: FakeProducer
    consumer: FakeConsumer
    rebalancing: bool = False
    tables: Any = field(default_factory=lambda: SimpleNamespace(recovery=Recovered()))


@dataclass
class Worker:
    """A decider on fake clients, and what they saw."""

    decider: FaustDecider
    app: FakeApp
    table: FakeTable
    timeline: Timeline

    @property
    def producer(self) -> FakeProducer:
        return self.app.producer


def genesis_tails(settings: Settings, topic: str, partitions: set[int]) -> dict[int, bytes]:
    """The audit partitions' tails: empty ones."""
    return dict.fromkeys(partitions, GENESIS)


def worker(
    table: FakeTable | None = None,
    policy: Policy = DEFAULT_POLICY,
    auto_ack: bool = False,
    read_tails: Callable[..., dict[int, bytes]] | None = None,
) -> Worker:
    """A decider on fake clients; a restarted worker is one on the same `table`."""
    timeline = Timeline() if table is None else table.timeline
    table = table or FakeTable(timeline)
    app = FakeApp(FakeProducer(timeline, auto_ack), FakeConsumer(timeline))
    processor = BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)
    audit_chain = AuditLinker(SETTINGS, read_tails or genesis_tails)
    decider = FaustDecider(
        app,
        table,
        SETTINGS,
        processor,
        InputProgress(processor.metrics, SETTINGS.liveness_stall_s),
        audit_chain=audit_chain,
    )
    return Worker(decider, app, table, timeline)


def messages(topic: str, partition: int, events: Sequence[AgentEvent]) -> list[FakeMessage]:
    return [
        FakeMessage(topic, partition, offset, ev.customer_id.encode(), encode_event(ev, "json"))
        for offset, ev in enumerate(events)
    ]


#: c1's consent and two proposals on partition 0, c2's consent and a proposal on partition 1
BATCH = messages(
    EVENTS,
    0,
    [consent(True, customer="c1", at=T0)]
    + [proposal("c1", T0 + i * 1000, trigger=f"c1-{i}") for i in (1, 2)],
) + messages(EVENTS, 1, [consent(True, customer="c2", at=T0), proposal("c2", T0 + 1000)])


async def until(condition: Callable[[], bool]) -> None:
    """Let the decider's tasks run until `condition` holds."""
    async with asyncio.timeout(GUARD_S):
        while not condition():
            await asyncio.sleep(0)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def all_sent(w: Worker, n: int) -> Callable[[], bool]:
    return lambda: len(w.producer.unanswered) == n


# --- tests ---------------------------------------------------------------------------------


def test_state_and_positions_are_written_only_after_every_output_is_acknowledged():
    """Catches a state or position write before the broker acknowledged the batch's
    outputs: a crash between the two would skip records whose outputs never landed."""

    async def test() -> None:
        w = worker()
        deciding = asyncio.create_task(w.decider.decide_events(BATCH))
        await until(all_sent(w, 5 + 3))  # an audit record per event, an action per proposal
        assert "write" not in w.timeline.names()
        w.producer.ack_all()
        await deciding
        assert w.timeline.last("ack") < w.timeline.first("write")
        assert w.table.position(EVENTS, 0) == 3 and w.table.position(EVENTS, 1) == 2
        assert w.decider.guard.stored == {(EVENTS, 0): 3, (EVENTS, 1): 2}  # to be mirrored

    run(test)


def test_an_output_the_broker_refuses_fails_the_batch_and_writes_nothing():
    """Catches a refused output being taken as sent (e.g. ack errors swallowed): the
    batch's states and positions would be written and its lost output never re-sent. The
    audit chain is re-read, since the run it linked to never landed."""

    async def test() -> None:
        w = worker()
        deciding = asyncio.create_task(w.decider.decide_events(BATCH))
        await until(all_sent(w, 8))
        w.producer.refuse_one(KafkaTimeoutError())
        with pytest.raises(KafkaTimeoutError):
            await deciding
        assert "write" not in w.timeline.names()
        assert w.decider.guard.stored == {}  # nothing for the mirror to commit
        await w.decider.mirror_positions()
        assert "commit" not in w.timeline.names()
        assert w.decider.audit_chain.chain.unseeded([0, 1]) == {0, 1}  # read again

        # the restarted worker decides the whole batch again, to the same outputs
        first_run = list(w.producer.sent)
        again = worker(w.table, auto_ack=True)
        await again.decider.decide_events(BATCH)
        assert again.producer.sent == first_run
        assert again.table.position(EVENTS, 0) == 3

    run(test)


def test_a_crash_between_publishing_and_the_state_write_re_emits_the_batch_identically():
    """Catches the state or positions written before the acks arrive: the worker dies
    (its task is cancelled) while the outputs are in flight, so the table must still say
    the batch was never decided, and the restarted worker re-emits identical records
    (at-least-once: a duplicate, never a loss)."""

    async def test() -> None:
        w = worker()
        deciding = asyncio.create_task(w.decider.decide_events(BATCH))
        await until(all_sent(w, 8))
        deciding.cancel()  # the crash
        with pytest.raises(asyncio.CancelledError):
            await deciding
        assert "write" not in w.timeline.names()
        assert w.table.dbs == {}

        first_run = list(w.producer.sent)
        again = worker(w.table, auto_ack=True)
        await again.decider.decide_events(BATCH)
        assert again.producer.sent == first_run
        assert again.table.position(EVENTS, 0) == 3 and again.table.position(EVENTS, 1) == 2

    run(test)


def test_a_revocation_during_a_batch_waits_for_its_state_write_then_flushes_it():
    """Catches a revocation that does not wait for the batch in flight: it would forget
    the positions while the batch still writes them, and flush the producer before the
    batch's changelog writes exist, so the next owner restores a table without them and
    decides the batch again on stale state."""

    async def test() -> None:
        w = worker()
        deciding = asyncio.create_task(w.decider.decide_events(BATCH))
        await until(all_sent(w, 8))
        revoked = {TP(EVENTS, 0), TP(WAKEUPS, 0)}
        revoking = asyncio.create_task(w.decider.on_revoked(revoked))
        for _ in range(100):  # give the revocation every chance to run ahead
            await asyncio.sleep(0)
        assert not revoking.done() and "flush" not in w.timeline.names()
        w.producer.ack_all()
        await deciding
        await revoking
        assert w.timeline.last("write") < w.timeline.first("flush")
        assert not w.decider.guard.positions.known((EVENTS, 0))
        assert w.decider.guard.stored == {(EVENTS, 1): 2}  # the revoked one is not mirrored

    run(test)


def test_positions_reach_the_group_only_after_the_table_writes_are_flushed():
    """Catches a mirror that commits to the group before the changelog writes holding the
    positions are on the broker: after a crash, a new owner would start from the group's
    offset, past records whose states its restored table lacks. A partition revoked since
    is not committed (its new owner commits it)."""

    async def test() -> None:
        w = worker(auto_ack=True)
        await w.decider.decide_events(BATCH)
        w.app.consumer.assigned.discard(TP(EVENTS, 1))  # revoked before the mirror
        await w.decider.mirror_positions()
        assert w.timeline.last("write") < w.timeline.first("flush") < w.timeline.first("commit")
        (commit,) = [entry for entry in w.timeline if entry[0] == "commit"]
        assert commit[1] == {TP(EVENTS, 0): 3}
        assert w.decider.guard.stored == {}  # mirrored once
        await w.decider.mirror_positions()
        assert w.timeline.names().count("commit") == 1

    run(test)


def test_records_left_over_from_a_revoked_partition_are_not_decided():
    """Catches deciding records fetched before a rebalance for a partition that is not
    ours any more: the new owner decides them too, from its own positions."""

    async def test() -> None:
        w = worker(auto_ack=True)
        w.app.consumer.assigned = {TP(EVENTS, 1), TP(WAKEUPS, 1)}  # partition 0 went away
        await w.decider.decide_events(BATCH)
        assert {p for topic, _, _, p in w.producer.sent if topic == T.audit} == {1}
        assert set(w.table.dbs) == {1}
        not_assigned = w.decider.processor.metrics.registry.get_sample_value(
            "tower_input_not_decided_total", {"reason": "not_assigned"}
        )
        assert not_assigned == 3

    run(test)


def test_a_stop_while_a_batch_awaits_its_acks_leaves_the_table_untouched():
    """Catches a table write after the stop: the clean-stop marker would then claim a
    table whose last writes may never reach the changelog. The outputs are re-emitted
    after the restart."""

    async def test() -> None:
        w = worker()
        deciding = asyncio.create_task(w.decider.decide_events(BATCH))
        await until(all_sent(w, 8))
        await w.decider.stop()
        w.producer.ack_all()
        await deciding  # no error: the batch just ends
        assert "write" not in w.timeline.names() and w.table.dbs == {}
        assert w.decider.guard.stored == {}

    run(test)


def test_a_stop_while_the_audit_tails_cannot_be_read_sends_nothing():
    """Catches a batch sent unsealed (or a worker that never stops) when the audit
    chain's tails cannot be read and the worker stops meanwhile."""

    async def test() -> None:
        box: list[Worker] = []

        def brokers_down(*args: Any) -> dict[int, bytes]:
            box[0].decider.stopping.set()  # the stop comes while the read fails
            raise ScanError("cannot read t-audit: _ALL_BROKERS_DOWN")

        w = worker(read_tails=brokers_down)
        box.append(w)
        await w.decider.decide_events(BATCH)
        assert w.producer.sent == [] and w.table.dbs == {}

    run(test)


def test_a_release_whose_outputs_are_refused_is_scheduled_again_and_writes_nothing():
    """Catches a failed release that loses its holds (never released) or writes the
    released state (the hold marked done though its action never went out)."""

    async def test() -> None:
        w = worker(policy=HOLDING, auto_ack=True)
        (event,) = messages(EVENTS, 0, [proposal("c9", T0, trigger="t", category="service")])
        await w.decider.decide_events([event])
        ((_, key, wake_value, partition),) = w.producer.outputs(WAKEUPS)
        await w.decider.read_wakeups([FakeMessage(WAKEUPS, partition or 0, 0, key, wake_value)])
        w.app.consumer.ends = {TP(EVENTS, 0): 1, TP(WAKEUPS, 0): 1}  # decided to the log end
        writes_before = w.timeline.names().count("write")

        w.producer.auto_ack = False
        before = len(w.producer.sent)
        releasing = asyncio.create_task(w.decider.release_due_holds())
        await until(lambda: bool(w.producer.unanswered))
        w.producer.refuse_one(KafkaTimeoutError())
        assert await releasing is False
        assert w.timeline.names().count("write") == writes_before
        assert len(w.decider.schedule) == 1  # scheduled again
        refused = w.producer.sent[before:]
        assert T.approved in {topic for topic, *_ in refused}

        w.producer.auto_ack = True
        assert await w.decider.release_due_holds() is True
        assert len(w.decider.schedule) == 0
        assert w.table.position(WAKEUPS, 0) == 1
        assert w.producer.sent[before + len(refused) :] == refused  # the same records again

    run(test)


def test_a_release_for_a_partition_revoked_meanwhile_writes_no_position_for_it():
    """Catches a wake-up position written for a partition the worker no longer owns: it
    would overwrite the new owner's position in the table's changelog."""

    async def test() -> None:
        w = worker(policy=HOLDING, auto_ack=True)
        (event,) = messages(EVENTS, 0, [proposal("c9", T0, trigger="t", category="service")])
        await w.decider.decide_events([event])
        ((_, key, wake_value, partition),) = w.producer.outputs(WAKEUPS)
        await w.decider.read_wakeups([FakeMessage(WAKEUPS, partition or 0, 0, key, wake_value)])
        due = w.decider.schedule.pop_due(float("inf"))
        w.decider.guard.forget({TP(WAKEUPS, 0)})  # revoked meanwhile
        await w.decider.release(due)
        assert w.table.position(WAKEUPS, 0) is None

    run(test)
