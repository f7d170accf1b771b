"""The transactional engine's commit, abort and recover paths, on fake Kafka clients.

`FakeKafka` is a small in-memory broker: a log per (topic, partition) whose records are
plain or belong to a transaction (open, committed, aborted), read_committed views of them,
the group's committed offsets, and a record of every client call. Tests script a failure
per call (`fail`) and run code on a call (`hooks`). The processor, the RocksDB stores and
the restore are the real ones; a run ends on the second empty poll in a row (the first
lets the engine settle the commit in flight)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pipeline.contracts.audit_chain import GENESIS, PartitionCheck, seal_of
from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.decision import Decision
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.processing.batch import BatchProcessor
from pipeline.runtime.transactional import engine as engine_module
from pipeline.runtime.transactional.changelog import changelog_topic
from pipeline.runtime.transactional.engine import (
    CommitStuck,
    ConsumerFenced,
    TransactionalEngine,
)
from pipeline.runtime.transactional.state_store import CHECKPOINT_KEY, PartitionDB
from pipeline.settings import Settings
from tests.factories import T0, consent, proposal

SETTINGS = Settings(output_format="json", partitions=2)
T = SETTINGS.topics
EVENTS, WAKEUPS = T.events, T.wakeups
CHANGELOG = changelog_topic(SETTINGS.app_id)
OUTPUT_TOPICS = (T.approved, T.audit, T.deadletter, T.wakeups)
#: the client calls that make up transactions
TXN_CALLS = {"begin", "produce", "send_offsets", "commit", "abort"}
#: bounds a wait on the other thread of a test, so that a bug fails instead of hanging
GUARD_S = 10.0


def abortable() -> KafkaException:
    return KafkaException(
        KafkaError(KafkaError.ILLEGAL_GENERATION, "fenced generation", txn_requires_abort=True)
    )


def fatal() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, "producer fenced", fatal=True))


# --- the fake broker and clients --------------------------------------------------------


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the producing transaction; None for a plain record
    txn: int | None = None
    headers: list[tuple[str, bytes]] | None = None


class FakeMessage:
    """What confluent-kafka's Message offers the engine and the restore."""

    def __init__(
        self, topic: str, partition: int, offset: int, key: bytes | None = None, value=None
    ) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value
        self._err: KafkaError | None = None

    @classmethod
    def of(cls, rec: Rec) -> FakeMessage:
        return cls(rec.topic, rec.partition, rec.offset, rec.key, rec.value)

    @classmethod
    def eof(cls, topic: str, partition: int, offset: int) -> FakeMessage:
        msg = cls(topic, partition, offset)
        msg._err = KafkaError(KafkaError._PARTITION_EOF)
        return msg

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def error(self) -> KafkaError | None:
        return self._err

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, T0

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None


class FakeKafka:
    """The broker the fake clients share, and the record of their calls."""

    def __init__(self, partitions: Sequence[int] = (0, 1)) -> None:
        #: what the group assigns on subscribe
        self.partitions = list(partitions)
        self.logs: dict[tuple[str, int], list[Rec]] = defaultdict(list)
        self.txns: dict[int, str] = {}  # transaction -> "open" | "committed" | "aborted"
        self.group_offsets: dict[tuple[str, int], int] = {}
        self.calls: list[tuple[Any, ...]] = []
        #: name -> failures raised by its next calls, in order (None: that call succeeds)
        self.fail: dict[str, list[BaseException | None]] = {}
        #: name -> run at each call, before its failure (if any) and its effect
        self.hooks: dict[str, Callable[[], None]] = {}
        self.consumer: FakeConsumer | None = None
        self._lock = threading.Lock()

    def call(self, name: str, *args: Any) -> None:
        """Record a client call, run its hook, raise its scripted failure."""
        self.calls.append((name, *args))
        hook = self.hooks.get(name)
        if hook is not None:
            hook()
        failures = self.fail.get(name)
        if failures:
            exc = failures.pop(0)
            if exc is not None:
                raise exc

    def names(self, wanted: Iterable[str] = TXN_CALLS) -> list[str]:
        wanted = set(wanted)
        return [c[0] for c in self.calls if c[0] in wanted]

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        txn=None,
        headers=None,
    ) -> Rec:
        with self._lock:
            log = self.logs[(topic, partition)]
            rec = Rec(topic, partition, len(log), key, value, txn, headers)
            log.append(rec)
            return rec

    def begin(self) -> int:
        with self._lock:
            txn = len(self.txns) + 1
            self.txns[txn] = "open"
            return txn

    def end(self, txn: int | None, offsets: dict[tuple[str, int], int] | None) -> None:
        """Commit `txn` with the group's `offsets`, or abort it (offsets None)."""
        with self._lock:
            if txn is not None:
                self.txns[txn] = "aborted" if offsets is None else "committed"
            self.group_offsets.update(offsets or {})

    def stable_end(self, topic: str, partition: int) -> int:
        """The last stable offset: a read_committed reader's end of the partition."""
        with self._lock:
            log = self.logs[(topic, partition)]
            open_ = (r.offset for r in log if r.txn is not None and self.txns[r.txn] == "open")
            return min(open_, default=len(log))

    def visible(self, topic: str, partition: int) -> list[Rec]:
        """What a read_committed reader sees."""
        end = self.stable_end(topic, partition)
        with self._lock:
            log = self.logs[(topic, partition)][:end]
            return [r for r in log if r.txn is None or self.txns[r.txn] == "committed"]

    def published(self, topics: Iterable[str] = OUTPUT_TOPICS) -> dict[str, list[tuple]]:
        """Committed records per topic: (partition, key, value) in log order."""
        return {
            t: [(r.partition, r.key, r.value) for p in (0, 1) for r in self.visible(t, p)]
            for t in topics
        }

    def changelog(self) -> dict[int, dict[bytes, bytes]]:
        """The compacted changelog: partition -> key -> latest committed value."""
        return {p: {r.key: r.value for r in self.visible(CHANGELOG, p)} for p in (0, 1)}


class FakeConsumer:
    """The group consumer: reads the committed views, runs scripted rebalances."""

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka, self.config = kafka, config
        kafka.consumer = self
        #: (topic, partition) -> next offset, for the assigned partitions
        self.positions: dict[tuple[str, int], int] = {}
        #: rebalance steps for the next consume or poll: ("revoke" | "lost" | "assign", parts)
        self.rebalances: list[tuple[str, list[int]]] = []
        self.callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self.topics: list[str] = []
        #: called at the second empty poll in a row; the tests stop the engine
        self.on_idle: Callable[[], None] = lambda: None
        self._idle = 0

    def subscribe(self, topics: list[str], on_assign, on_revoke, on_lost) -> None:
        self.kafka.call("subscribe", tuple(topics))
        self.topics = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.rebalances.append(("assign", self.kafka.partitions))

    def _tps(self, partitions: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.topics for p in partitions]

    def _rebalance(self) -> None:
        while self.rebalances:
            kind, partitions = self.rebalances.pop(0)
            tps = self._tps(partitions)
            self.kafka.call(kind, tuple(partitions))
            self.callbacks[kind](self, tps)
            self.kafka.call(f"{kind}ed")  # the engine's callback returned
            for tp in tps:
                key = (tp.topic, tp.partition)
                if kind == "assign":  # from the committed offset, or the earliest
                    self.positions[key] = max(self.kafka.group_offsets.get(key, 0), 0)
                else:
                    self.positions.pop(key, None)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self._rebalance()
        out: list[FakeMessage] = []
        for (topic, p), pos in sorted(self.positions.items()):
            for rec in self.kafka.visible(topic, p):
                if rec.offset >= pos and len(out) < num_messages:
                    out.append(FakeMessage.of(rec))
                    self.positions[(topic, p)] = rec.offset + 1
        if out:
            self._idle = 0
        return out

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        msgs = self.consume(1, 0)
        if msgs:
            return msgs[0]
        self._idle += 1
        if self._idle >= 2:
            self.on_idle()
        return None

    def committed(self, partitions: list[TopicPartition], timeout: float = -1):
        self.kafka.call("committed", tuple((tp.topic, tp.partition) for tp in partitions))
        offsets = self.kafka.group_offsets
        return [
            TopicPartition(
                tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), OFFSET_INVALID)
            )
            for tp in partitions
        ]

    def seek(self, tp: TopicPartition) -> None:
        self.kafka.call("seek", tp.topic, tp.partition, tp.offset)
        self.positions[(tp.topic, tp.partition)] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self.positions)]

    def get_watermark_offsets(self, tp: TopicPartition, timeout=None, cached=False):
        return 0, self.kafka.stable_end(tp.topic, tp.partition)

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        """Like the real one: a subscribed consumer's partitions are revoked on close."""
        self.kafka.call("close")
        partitions = sorted({p for _, p in self.positions})
        if partitions:
            self.rebalances.append(("revoke", partitions))
            self._rebalance()


class FakeProducer:
    """The transactional producer: records go to the log as part of the open transaction."""

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka, self.config = kafka, config
        self.txn: int | None = None
        self._offsets: dict[tuple[str, int], int] = {}
        self._reports: list[tuple[Callable[..., None], FakeMessage]] = []
        self._lock = threading.Lock()

    def _serve(self) -> None:
        """Delivery reports, served by poll, flush and commit (which flushes first)."""
        with self._lock:
            reports, self._reports = self._reports, []
        for cb, msg in reports:
            cb(None, msg)

    def init_transactions(self, timeout: float = -1) -> None:
        self.kafka.call("init")

    def begin_transaction(self) -> None:
        self.kafka.call("begin")
        self.txn = self.kafka.begin()

    def produce(
        self, topic, value=None, key=None, partition=-1, on_delivery=None, headers=None
    ) -> None:
        self.kafka.call("produce", topic, partition, key)
        rec = self.kafka.append(topic, partition, key, value, self.txn, headers)
        if on_delivery is not None:
            with self._lock:
                self._reports.append((on_delivery, FakeMessage.of(rec)))

    def poll(self, timeout: float = -1) -> int:
        self.kafka.call("poll", timeout)
        self._serve()
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.kafka.call("flush")
        self._serve()
        return 0

    def send_offsets_to_transaction(self, offsets, group, timeout=-1) -> None:
        sent = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        self.kafka.call("send_offsets", sent)
        self._offsets = sent

    def commit_transaction(self, timeout: float = -1) -> None:
        self._serve()
        self.kafka.call("commit")
        self.kafka.end(self.txn, self._offsets)
        self.txn, self._offsets = None, {}

    def abort_transaction(self, timeout: float = -1) -> None:
        self.kafka.call("abort")
        self.kafka.end(self.txn, None)
        self.txn, self._offsets = None, {}


class FakeRestoreConsumer:
    """The restore's assign()-only reader of the changelog, with partition EOFs."""

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.positions: dict[tuple[str, int], int] = {}

    def get_watermark_offsets(self, tp: TopicPartition, timeout=None, cached=False):
        return 0, self.kafka.stable_end(tp.topic, tp.partition)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.kafka.call("restore", {tp.partition: tp.offset for tp in tps})
        self.positions = {(tp.topic, tp.partition): tp.offset for tp in tps}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for (topic, p), pos in list(self.positions.items()):
            out += [FakeMessage.of(r) for r in self.kafka.visible(topic, p) if r.offset >= pos]
            out.append(FakeMessage.eof(topic, p, self.kafka.stable_end(topic, p)))
            del self.positions[(topic, p)]
        return out

    def unassign(self) -> None:
        self.positions = {}

    def close(self) -> None:
        pass


# --- harness -----------------------------------------------------------------------------


def journey(customer: str, proposals: int) -> list[AgentEvent]:
    """A consent, then proposals on one day: the fourth and later are over the daily cap."""
    return [consent(True, customer=customer, at=T0)] + [
        proposal(customer, T0 + i * 1000, trigger=f"{customer}-{i}")
        for i in range(1, proposals + 1)
    ]


#: c1's events on partition 0, c2's on partition 1
TWO_CUSTOMERS = {0: journey("c1", 4), 1: journey("c2", 2)}


def engine_on(
    kafka: FakeKafka,
    data_dir: Path,
    inputs: dict[int, list[AgentEvent]],
    batch_size: int = 500,
    feed: Callable[[Decision, AgentEvent, int], None] | None = None,
    transaction_max_records: int = 5_000,
) -> TransactionalEngine:
    """An engine on `kafka` with `inputs` (partition -> events) on its events topic."""
    for partition, events in inputs.items():
        for ev in events:
            kafka.append(EVENTS, partition, ev.customer_id.encode(), encode_event(ev, "json"))
    settings = replace(
        SETTINGS,
        data_dir=data_dir,
        batch_size=batch_size,
        transaction_max_records=transaction_max_records,
    )
    processor = BatchProcessor(settings, policy=lambda: DEFAULT_POLICY, clock=lambda: 1.0)
    processor.feed = feed
    engine = TransactionalEngine(
        settings,
        processor,
        consumer_factory=lambda config: FakeConsumer(kafka, config),
        producer_factory=lambda config: FakeProducer(kafka, config),
        restore_consumer_factory=lambda bootstrap: FakeRestoreConsumer(kafka),
        audit_tails=lambda _settings, topic, partitions: {
            p: chain_tail(kafka.visible(topic, p)) for p in partitions
        },
    )
    assert kafka.consumer is not None
    kafka.consumer.on_idle = engine.stop
    return engine


def clean_run(tmp_path: Path, inputs: dict[int, list[AgentEvent]]) -> tuple[FakeKafka, Path]:
    """The same inputs through an engine on a broker that never fails; and its data dir."""
    kafka, data_dir = FakeKafka(), tmp_path / "clean"
    engine_on(kafka, data_dir, inputs).run()
    assert kafka.names({"abort"}) == []
    return kafka, data_dir


def local(data_dir: Path) -> dict[int, dict[bytes, bytes]]:
    """The partition databases of a stopped engine, checkpoint included."""
    out = {}
    for p in (0, 1):
        db = PartitionDB(data_dir / "native" / str(p))
        out[p] = dict(db.db.items())
        db.close()
    return out


def states(dbs: dict[int, dict[bytes, bytes]]) -> dict[int, dict[bytes, bytes]]:
    return {p: {k: v for k, v in d.items() if k != CHECKPOINT_KEY} for p, d in dbs.items()}


def open_dbs(engine: TransactionalEngine) -> dict[int, dict[bytes, bytes]]:
    """The running engine's partition databases, checkpoint included."""
    return {p: dict(db.db.items()) for p, db in sorted(engine.stores.dbs.items())}


def assert_same_as_clean_run(
    kafka: FakeKafka, data_dir: Path, clean: tuple[FakeKafka, Path]
) -> None:
    """Outputs, changelog and local states as if nothing had failed."""
    clean_kafka, clean_dir = clean
    assert kafka.published() == clean_kafka.published()
    for p in (0, 1):  # the committed audit records link up, whatever was aborted
        check = PartitionCheck(p)
        for r in kafka.visible(SETTINGS.topics.audit, p):
            check.feed(r.offset, r.key, r.value, r.headers)
        check.finish()
        assert check.broken is None and not check.outside and not check.unsealed, check
    assert kafka.changelog() == clean_kafka.changelog()
    assert states(local(data_dir)) == states(local(clean_dir))


def chain_tail(records: list[Rec]) -> bytes:
    """What the engine reads from a read_committed audit partition before its next run."""
    tail = GENESIS
    for r in records:
        seal = seal_of(r.headers)
        if seal is not None:
            tail = seal.hash
    return tail


def rewound_to(kafka: FakeKafka) -> set[tuple[str, int, int]]:
    """The seeks after the first abort: (topic, partition, offset)."""
    after = kafka.calls[kafka.calls.index(("abort",)) :]
    return {c[1:] for c in after if c[0] == "seek"}


#: every assigned partition back to its start (nothing committed yet)
TO_THE_START = {(t, p, OFFSET_BEGINNING) for t in (EVENTS, WAKEUPS) for p in (0, 1)}


# --- tests ---------------------------------------------------------------------------------


def test_a_batch_commits_outputs_changelog_and_offsets_in_one_transaction(tmp_path: Path):
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    at_commit: list[dict[int, dict[bytes, bytes]]] = []
    kafka.hooks["commit"] = lambda: at_commit.append(open_dbs(engine))
    engine.run()

    names = kafka.names()
    produced = [c[1:3] for c in kafka.calls if c[0] == "produce"]
    assert names == ["begin"] + ["produce"] * len(produced) + ["send_offsets", "commit"]
    # the decisions' outputs, then one changelog record per customer, all in the transaction
    assert [t for t, _ in produced if t != CHANGELOG] == [t for t, _ in produced][:-2]
    assert produced[-2:] == [(CHANGELOG, 0), (CHANGELOG, 1)]
    sent = next(c[1] for c in kafka.calls if c[0] == "send_offsets")
    assert sent == {(EVENTS, 0): 5, (EVENTS, 1): 3}  # last offset + 1 per partition
    assert kafka.group_offsets == sent

    published = kafka.published()
    assert len(published[T.audit]) == 8  # one per event
    assert len(published[T.approved]) == 3 + 2  # c1's fourth proposal is over the cap
    # nothing local while the commit ran; afterwards the states with their checkpoints
    assert at_commit == [{0: {}, 1: {}}]
    after = local(data_dir)
    assert states(after) == kafka.changelog()
    assert after[0][CHECKPOINT_KEY] == after[1][CHECKPOINT_KEY] == b"1"
    assert (engine.transactions, engine.aborts) == (1, 0)


def test_the_next_batch_is_decided_on_the_commit_in_flight(tmp_path: Path):
    """c1's consent and two proposals commit in batch 1; batch 2 (two more proposals) is
    decided while batch 1's transaction is still open and nothing of it is on disk: the
    consent and the cap count come from the overlay of the batch in flight."""
    kafka = FakeKafka()
    held = threading.Event()
    kafka.hooks["commit"] = lambda: held.wait(GUARD_S)  # batch 1's commit waits for batch 2
    outcomes: list[str] = []
    #: per decision of batch 2: its outcome, batch 1's transaction, c1's state on disk
    batch_2: list[tuple[str, str, bytes | None]] = []

    def on_decision(decision: Decision, event: AgentEvent, now_ms: int) -> None:
        outcomes.append(decision.outcome)
        if len(outcomes) > 3:
            batch_2.append((decision.outcome, kafka.txns[1], engine.stores.load(0, b"c1")))
        if len(outcomes) == 5:
            held.set()

    inputs = {0: journey("c1", 4)}
    engine = engine_on(kafka, tmp_path / "worker", inputs, batch_size=3, feed=on_decision)
    engine.run()

    assert batch_2 == [("approved", "open", None), ("suppressed", "open", None)]
    assert kafka.names({"begin", "commit"}) == ["begin", "commit"] * 2
    assert (engine.transactions, engine.aborts) == (2, 0)
    assert_same_as_clean_run(kafka, tmp_path / "worker", clean_run(tmp_path, inputs))


@pytest.mark.parametrize(
    ("max_pending", "transactions"),
    [
        (5_000, 2),  # B and C, both decided while A commits, become one transaction
        (3, 3),  # B alone reaches the cap: the loop waits for A, then C goes alone
    ],
)
def test_records_decided_while_a_commit_is_in_flight_form_the_next_transaction(
    tmp_path: Path, max_pending: int, transactions: int
):
    """The commit interval adapts to the load: batch A's commit is held until batches B
    and C (3 events each) are decided; what was decided meanwhile is produced together once
    A committed, up to `TOWER_TRANSACTION_MAX_RECORDS`."""
    kafka = FakeKafka()
    held = threading.Event()
    commits: list[int] = []

    def hold_the_first_commit() -> None:
        commits.append(1)
        if len(commits) == 1:
            held.wait(GUARD_S)

    kafka.hooks["commit"] = hold_the_first_commit
    decided: list[str] = []

    def on_decision(decision: Decision, event: AgentEvent, now_ms: int) -> None:
        decided.append(decision.outcome)
        if len(decided) == 3 + max_pending or len(decided) == 9:
            held.set()  # B (and C, without a cap) decided on A's open transaction

    inputs = {0: journey("c1", 8)}  # 9 events, batches of 3
    data_dir = tmp_path / "worker"
    engine = engine_on(
        kafka, data_dir, inputs, batch_size=3, feed=on_decision, transaction_max_records=max_pending
    )
    engine.run()

    assert kafka.names({"begin", "commit"}) == ["begin", "commit"] * transactions
    assert (engine.transactions, engine.aborts) == (transactions, 0)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, inputs))


def test_a_failed_commit_redoes_it_and_the_batch_decided_on_it(tmp_path: Path):
    """Batch A commits, B's commit fails while C is decided on B's overlay: C is never
    produced, B and C are redone from A's offsets and local state."""
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    inputs = {0: journey("c1", 8)}  # 9 events, batches of 3
    engine = engine_on(kafka, data_dir, inputs, batch_size=3)
    kafka.fail["commit"] = [None, abortable()]
    at_abort: list[tuple[dict[int, dict[bytes, bytes]], dict[int, dict[bytes, bytes]]]] = []
    kafka.hooks["abort"] = lambda: at_abort.append((open_dbs(engine), kafka.changelog()))
    engine.run()

    assert kafka.names({"begin", "commit", "abort"}) == [
        *("begin", "commit"),  # A
        *("begin", "commit"),  # B: fails; C is decided, not begun
        "abort",
        *("begin", "commit") * 2,  # B and C again
    ]
    aborted = kafka.calls.index(("abort",))
    assert kafka.calls[aborted - 1] == ("commit",)  # B's: nothing of C produced after it
    # rewound to A's committed offset; partitions without a committed offset to the start
    assert rewound_to(kafka) == {
        (EVENTS, 0, 3),
        (EVENTS, 1, OFFSET_BEGINNING),
        (WAKEUPS, 0, OFFSET_BEGINNING),
        (WAKEUPS, 1, OFFSET_BEGINNING),
    }
    # at the abort, the databases hold A's committed state only, checkpoint after A
    (dbs, changelog_at_abort), *_ = at_abort
    assert states(dbs) == changelog_at_abort and dbs[0][CHECKPOINT_KEY] == b"1"
    assert (engine.transactions, engine.aborts) == (3, 1)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, inputs))


@pytest.mark.parametrize("call", ["begin", "produce", "send_offsets", "commit"])
def test_an_abortable_error_aborts_rewinds_and_redoes(tmp_path: Path, call: str):
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    kafka.fail[call] = [abortable()]
    engine.run()

    assert kafka.names({"abort"}) == ["abort"]
    assert rewound_to(kafka) == TO_THE_START
    assert (engine.transactions, engine.aborts) == (1, 1)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, TWO_CUSTOMERS))


@pytest.mark.parametrize("call", ["begin", "produce", "send_offsets", "commit"])
def test_a_fatal_error_ends_the_run_without_abort(tmp_path: Path, call: str):
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    kafka.fail[call] = [fatal()]
    with pytest.raises(KafkaException) as raised:
        engine.run()

    assert raised.value.args[0].code() == KafkaError._FENCED
    assert kafka.names({"abort", "seek"}) == []
    assert "close" in kafka.names({"close"})  # the consumer left the group
    assert states(local(data_dir)) == {0: {}, 1: {}}  # nothing of the fenced batch
    assert kafka.published() == {t: [] for t in OUTPUT_TOPICS}
    assert engine.transactions == 0


#: rebalances while batch 1's commit is in flight: the steps, and the step that settles it
REBALANCES: list[tuple[str, list[tuple[str, list[int]]]]] = [
    ("revoke", [("revoke", [0, 1]), ("assign", [0, 1])]),
    ("lost", [("lost", [0, 1]), ("assign", [0, 1])]),
    ("assign", [("assign", [0, 1])]),
]


@pytest.mark.parametrize(("first", "steps"), REBALANCES, ids=[r[0] for r in REBALANCES])
def test_a_rebalance_callback_settles_the_commit_in_flight_first(
    tmp_path: Path, first: str, steps: list[tuple[str, list[int]]]
):
    """The commit is held until the callback starts; when the callback returns it has
    waited for it and written its states, before closing (or restoring) the databases."""
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    entered, release = threading.Event(), threading.Event()
    scheduled: list[bool] = []
    at_callback: list[tuple[str, int]] = []

    def hold_commit() -> None:
        entered.set()
        release.wait(GUARD_S)

    def schedule() -> None:
        if not scheduled:  # batch 1 begins: the next consume rebalances
            assert kafka.consumer is not None
            kafka.consumer.rebalances.extend(steps)
            scheduled.append(True)

    def callback_starts() -> None:
        if scheduled and not at_callback:
            assert entered.wait(GUARD_S)
            at_callback.append((kafka.txns[1], engine.transactions))
            release.set()

    def callback_returned() -> None:
        if len(at_callback) == 1:
            at_callback.append((kafka.txns[1], engine.transactions))

    kafka.hooks.update(
        {
            "begin": schedule,
            "commit": hold_commit,
            first: callback_starts,
            f"{first}ed": callback_returned,
        }
    )
    engine.run()

    assert at_callback == [("open", 0), ("committed", 1)]
    dbs = local(data_dir)
    assert states(dbs) == kafka.changelog()
    assert dbs[0][CHECKPOINT_KEY] == dbs[1][CHECKPOINT_KEY] == b"1"
    assert "restore" not in kafka.names({"restore"})  # the databases were complete
    assert (engine.transactions, engine.aborts) == (1, 0)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, TWO_CUSTOMERS))


def test_a_failed_commit_noticed_in_a_callback_is_recovered_in_the_loop(tmp_path: Path):
    """The callbacks only settle; the loop aborts and rewinds, dropping the batch it read
    after the rebalance too."""
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    kafka.fail["commit"] = [abortable()]
    after_callbacks: list[tuple[bool, list[str]]] = []

    def schedule() -> None:
        if kafka.names({"begin"}) == ["begin"]:  # batch 1: the next consume rebalances
            assert kafka.consumer is not None
            kafka.consumer.rebalances.extend([("revoke", [0, 1]), ("assign", [0, 1])])

    def assigned() -> None:
        if kafka.names({"begin"}) == ["begin"]:
            after_callbacks.append((engine._failed is not None, kafka.names({"abort"})))

    kafka.hooks.update({"begin": schedule, "assigned": assigned})
    engine.run()

    # noticed in the callbacks, aborted only after them, in the loop; then redone
    assert after_callbacks == [(True, [])]
    main_thread = kafka.names({"begin", "revoke", "assign", "abort"})
    assert main_thread == [
        *("assign", "begin", "revoke", "assign", "abort", "begin"),
        "revoke",  # on close
    ]
    assert kafka.names({"commit"}) == ["commit"] * 2
    assert rewound_to(kafka) == TO_THE_START
    assert (engine.transactions, engine.aborts) == (1, 1)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, TWO_CUSTOMERS))


def test_a_full_producer_queue_is_retried_after_poll(tmp_path: Path):
    kafka = FakeKafka()
    data_dir = tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS)
    kafka.fail["produce"] = [BufferError(), BufferError()]
    engine.run()

    first = kafka.calls.index(next(c for c in kafka.calls if c[0] == "produce"))
    assert [c[0] for c in kafka.calls[first : first + 5]] == ["produce", "poll"] * 2 + ["produce"]
    assert kafka.calls[first + 1] == ("poll", 0.05)
    assert len({c for c in kafka.calls[first : first + 5] if c[0] == "produce"}) == 1  # same
    assert (engine.transactions, engine.aborts) == (1, 0)
    assert_same_as_clean_run(kafka, data_dir, clean_run(tmp_path, TWO_CUSTOMERS))


def test_a_fenced_consumer_ends_the_run_and_a_new_engine_finishes_the_work(tmp_path: Path):
    """A fatal consumer error (a static member fenced, as after a coordinator failover) ends
    `run` with ConsumerFenced; the worker's next engine, with new clients on the same data
    dir, finishes with the outputs of a run that never failed."""
    clean = clean_run(tmp_path, TWO_CUSTOMERS)
    kafka, data_dir = FakeKafka(), tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS, batch_size=2)
    consumer = kafka.consumer
    assert consumer is not None
    real_consume, calls = consumer.consume, []

    def consume(num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        calls.append(1)
        if len(calls) == 3:
            fenced = FakeMessage(EVENTS, 0, -1)
            # as librdkafka delivers it: code _FATAL, the fatal flag unset
            fenced._err = KafkaError(KafkaError._FATAL, "Fatal error: Static consumer fenced")
            return [fenced]
        return real_consume(num_messages, timeout)

    consumer.consume = consume  # type: ignore[method-assign]
    with pytest.raises(ConsumerFenced):
        engine.run()
    assert "close" in kafka.names({"close"})
    engine_on(kafka, data_dir, {}, batch_size=2).run()  # the inputs are already on `kafka`
    assert_same_as_clean_run(kafka, data_dir, clean)


def test_a_commit_that_never_returns_ends_the_run_and_a_new_engine_finishes_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """librdkafka's send_offsets_to_transaction can block past its timeout while the
    group coordinator is down: the loop gives up on it instead of waiting for ever, and
    the worker's next engine (whose producer fences the stuck one) finishes the work."""
    monkeypatch.setattr(engine_module, "COMMIT_WAIT_S", 0.2)
    clean = clean_run(tmp_path, TWO_CUSTOMERS)
    kafka, data_dir = FakeKafka(), tmp_path / "worker"
    engine = engine_on(kafka, data_dir, TWO_CUSTOMERS, batch_size=2)
    released, sends = threading.Event(), []

    def blocks_on_the_second() -> None:
        sends.append(1)
        if len(sends) == 2:
            released.wait(10)  # until the test ends: then fenced, as a newer producer does
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    kafka.hooks["send_offsets"] = blocks_on_the_second
    try:
        with pytest.raises(CommitStuck):
            engine.run()
        stuck = engine.producer
        # as the broker does when the new producer calls init_transactions
        kafka.hooks = {"init": lambda: kafka.end(stuck.txn, None)}
        engine_on(kafka, data_dir, {}, batch_size=2).run()
        assert_same_as_clean_run(kafka, data_dir, clean)
    finally:
        released.set()
