"""The per-batch work of a worker: decode, decide, and assemble output records.

Kept apart from Faust so that the same code runs under the Faust agent, in benchmarks and
in tests without a broker. Per batch each customer's state is read once and written once.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import orjson
from opentelemetry.trace import Span, Tracer

from pipeline.contracts.codec import (
    REGISTRY_MAGIC,
    InvalidEvent,
    SchemaLookup,
    avro_header,
    decode_event,
    encode_record,
)
from pipeline.contracts.events import AgentEvent, Source
from pipeline.contracts.trace_context import (
    InvalidTraceContext,
    TraceHeaders,
    from_text,
    to_text,
    trace_headers,
)
from pipeline.core import experience, experiments
from pipeline.core.arbitration import decide, release
from pipeline.core.audit_minimisation import minimised_reason
from pipeline.core.decision import EMITTING, HELD, Decision
from pipeline.core.hold_windows import held_events
from pipeline.core.policy import Policy
from pipeline.core.state import CustomerState, Exposure
from pipeline.processing import tracing
from pipeline.processing.metrics import Tally, TowerMetrics
from pipeline.processing.records import audit_avro, audit_record, dead_letter_record
from pipeline.settings import Settings

AVRO_MAGIC = b"\xc3\x01"


#: a record's headers as the Kafka clients give them
Headers = Sequence[tuple[str, bytes | None]]


class InputRecord(msgspec.Struct, frozen=True):
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp_ms: int | None
    headers: Headers | None = None


class OutputRecord(msgspec.Struct, frozen=True):
    topic: str
    key: bytes | None
    value: bytes
    partition: int
    #: the trace context of the input that caused it (contracts/trace_context.py)
    headers: TraceHeaders | None = None


def output_headers(
    out: OutputRecord, more: list[tuple[str, bytes]] | None
) -> list[tuple[str, bytes]] | None:
    """The headers a runtime writes with `out`: its trace context, then `more` (the audit
    chain's)."""
    if out.headers is None:
        return more
    return [*out.headers, *more] if more else list(out.headers)


class StateWrite(msgspec.Struct, frozen=True):
    partition: int
    key: bytes
    value: bytes


@dataclass(slots=True)
class BatchResult:
    """Outputs to publish first, then the state writes to apply once they are acknowledged.

    That order is the at-least-once contract: a crash between the two re-decides the batch
    from the old state and re-emits the same records (same ids), never loses one.
    """

    outputs: list[OutputRecord]
    state_writes: list[StateWrite]


_WATERMARK = struct.Struct(">q")


def pack_stored(offset: int, state: CustomerState) -> bytes:
    """Table value: the input offset the state includes (8 bytes), then the state."""
    return _WATERMARK.pack(offset) + state.to_bytes()


class CorruptState(ValueError):
    """A stored customer state that does not decode (a damaged changelog record, a bad
    restore, a hand-written value): that customer's events are dead-lettered with reason
    `corrupt_state` until the state is repaired or deleted; everyone else's keep flowing."""


CORRUPT_STATE = "corrupt_state"


def unpack_stored(raw: bytes | None) -> tuple[int, CustomerState]:
    if not raw:
        return -1, CustomerState.from_bytes(None)
    try:
        return _WATERMARK.unpack_from(raw)[0], CustomerState.from_bytes(raw[_WATERMARK.size :])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as exc:
        raise CorruptState(
            f"stored state ({len(raw)} bytes) does not decode: {type(exc).__name__}: {exc}"
        ) from None


class DecisionKeeper(Protocol):
    """Keeps final decisions with the state: `record` each, then `writes` per batch
    (`kept_decisions.KeptDecisions`)."""

    def record(self, partition: int, decision: Decision) -> None: ...

    def writes(self, store: StateStore) -> list[tuple[int, bytes, bytes]]: ...


class StateStore(Protocol):
    """Where customer states live: a Faust table in the worker, a dict in tests."""

    def load(self, partition: int, key: bytes) -> bytes | None: ...

    def save(self, partition: int, key: bytes, value: bytes) -> None: ...


class DictStateStore:
    """In-memory store for tests and the pure benchmark."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def load(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(key)

    def save(self, partition: int, key: bytes, value: bytes) -> None:
        self.data[key] = value


class DecisionRecorder(Protocol):
    """Where a batch's decisions go once it is decided (`DecisionIndex.record`)."""

    def record(self, decided: Iterable[tuple[int, str, Decision]]) -> None: ...


class BatchProcessor:
    """Everything between raw input records and raw output records, for one batch."""

    def __init__(
        self,
        settings: Settings,
        policy: Callable[[], Policy],
        metrics: TowerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = metrics or TowerMetrics()
        self.clock = clock
        t = settings.topics
        self._source_topic = t.events
        self._approved, self._audit, self._deadletter = t.approved, t.audit, t.deadletter
        self._wakeups = t.wakeups
        self._fmt = settings.output_format
        #: writer schemas of registry-framed input (pipeline/kafka/schema_registry.py);
        #: None: such input is refused
        self.schema_lookup: SchemaLookup | None = None
        #: schema name -> its registry id, for TOWER_OUTPUT_FORMAT=registry-avro
        self.registry_ids: dict[str, int] = {}
        #: called with every decision (the web views' live feed); None costs nothing
        self.feed: Callable[[Decision, AgentEvent, int], None] | None = None
        #: given each batch's decisions once it is decided (the agents' API's index of
        #: recent decisions, processing/decision_index.py); None costs nothing
        self.index: DecisionRecorder | None = None
        #: the batch's (input partition, event id, decision) for `index`, in order
        self._decided: list[tuple[int, str, Decision]] = []
        #: keeps the final decisions with the state (processing/kept_decisions.py), so a
        #: worker taking a partition on answers for it; None costs nothing
        self.kept: DecisionKeeper | None = None
        #: where the per-batch spans go: the configured OpenTelemetry SDK's, if any
        self.tracer: Tracer = tracing.TRACER
        self._tally = Tally()  # counters of the batch in progress, applied at its end
        #: partition -> newest event time (ms) of its input decided so far: how far the
        #: partition's event time has come, for holds while a backlog is worked off
        self.event_time: dict[int, int] = {}

    def process(self, records: Sequence[InputRecord], store: StateStore) -> BatchResult:
        """Decide a batch, in one tracing span (a no-op without an OpenTelemetry SDK)."""
        span = tracing.start_batch(self.tracer, self._source_topic, len(records))
        try:
            return self._process(records, store, span if span.is_recording() else None)
        finally:
            span.end()

    def _process(
        self, records: Sequence[InputRecord], store: StateStore, span: Span | None
    ) -> BatchResult:
        started = time.perf_counter()
        now_ms = int(self.clock() * 1000)
        self._decided = []  # none of a batch that raised
        out: list[OutputRecord] = []
        groups: dict[
            tuple[int, bytes], list[tuple[AgentEvent, InputRecord, TraceHeaders | None]]
        ] = {}
        m, tally = self.metrics, self._tally
        for rec in records:
            fmt = _input_format(rec.value)
            trace = self._trace(rec) if rec.headers else None
            if trace is not None and span is not None:
                tracing.link(span, trace)
            try:
                event = decode_event(
                    rec.key, rec.value, self.settings.max_event_bytes, self.schema_lookup
                )
            except InvalidEvent as exc:
                tally.add(m.events_in, "invalid", fmt)
                tally.add(m.dead_letters, exc.reason)
                out.append(self._dead_letter(rec, exc.reason, exc.detail, now_ms, trace=trace))
                continue
            tally.add(m.events_in, event.kind, fmt)
            groups.setdefault((rec.partition, rec.key or b""), []).append((event, rec, trace))
            if event.occurred_at > self.event_time.get(rec.partition, -1):
                self.event_time[rec.partition] = event.occurred_at

        policy = self.policy()
        m.label_values.follow(policy)
        writes: list[StateWrite] = []
        for (partition, key), items in groups.items():
            try:
                watermark, state = unpack_stored(store.load(partition, key))
            except CorruptState as exc:
                detail = (
                    f"{exc}; every event of customer {key.decode(errors='replace')!r} is "
                    "dead-lettered until its state is repaired or deleted (a tombstone for "
                    "the key on the changelog topic starts it afresh)"
                )
                for _, rec, trace in items:
                    tally.add(m.dead_letters, CORRUPT_STATE)
                    out.append(self._dead_letter(rec, CORRUPT_STATE, detail, now_ms, trace=trace))
                continue
            start = state
            last = watermark
            for event, rec, trace in items:
                if rec.offset <= watermark:
                    # This very record was decided and published before a crash: records
                    # are decided in offset order (the runtimes' sequence guarantee), the
                    # state includes every one up to its watermark, and their outputs
                    # were acknowledged before that state was written. A replay at a new
                    # offset is decided (and gets its `duplicate` audit).
                    tally.add(m.reprocessed)
                    continue
                if state.holds:
                    source = Source(self._source_topic, rec.partition, rec.offset, rec.timestamp_ms)
                    state = self._release_due(state, event, policy, source, rec.key, now_ms, out)
                state = self._decide_one(state, event, rec, trace, policy, now_ms, out)
                last = max(last, rec.offset)
            if last != watermark or state is not start:
                writes.append(StateWrite(partition, key, pack_stored(last, state)))
        if self.kept is not None:
            writes.extend(StateWrite(*w) for w in self.kept.writes(store))

        tally.flush()
        self._hand_over()
        if records:
            m.batch_size.observe(len(records))
            per_event = (time.perf_counter() - started) / len(records)
            m.decision_latency.observe(per_event)
            newest = max((r.timestamp_ms or 0) for r in records)
            if newest:
                m.end_to_end_lag.observe(max(0.0, now_ms - newest) / 1000)
        return BatchResult(out, writes)

    def process_and_save(self, records: Sequence[InputRecord], store: StateStore) -> BatchResult:
        """For synchronous callers (tests, benchmarks) whose outputs need no acknowledgement."""
        result = self.process(records, store)
        for w in result.state_writes:
            store.save(w.partition, w.key, w.value)
        return result

    def _decide_one(
        self,
        state: CustomerState,
        event: AgentEvent,
        rec: InputRecord,
        trace: TraceHeaders | None,
        policy: Policy,
        now_ms: int,
        out: list[OutputRecord],
    ) -> CustomerState:
        """Decide one event, append its output records to `out`, return the new state."""
        exposures = state.exposures
        decision, state = decide(state, event, policy, event.occurred_at)
        state = self._observe(state, exposures, event, decision, policy)
        if trace is not None and decision.outcome == HELD:
            # its release, maybe after a restart, carries it on (`_release`)
            state = state.evolve(carried={**state.carried, event.event_id: to_text(trace)})
        source = Source(self._source_topic, rec.partition, rec.offset, rec.timestamp_ms)
        self._emit(decision, event, policy, source, rec.key, now_ms, out, trace)
        return state

    def _emit(
        self,
        decision: Decision,
        event: AgentEvent,
        policy: Policy,
        source: Source,
        key: bytes | None,
        now_ms: int,
        out: list[OutputRecord],
        trace: TraceHeaders | None = None,
    ) -> None:
        """Count the decision and append its records: action, wake-up, audit (kept at the
        deciding policy's `audit` levels), each with the input's trace context."""
        m, tally = self.metrics, self._tally
        tally.add(m.decisions, decision.outcome, decision.rule or "-")
        if self.feed is not None:
            # the live page shows the reason as the audit keeps it, not more
            levels = policy.audit
            shown = decision
            if levels.input != "full":
                reason = minimised_reason(decision.reason, decision.rule, levels)
                shown = msgspec.structs.replace(decision, reason=reason)
            self.feed(shown, event, now_ms)
        agent = m.label_values.agent  # the label's allow-list
        if event.kind == "proposal" and decision.outcome != HELD:
            tally.add(m.proposals, agent(event.agent))
        partition = source.partition
        if self.kept is not None:  # before the index: it may ask what the index knew
            self.kept.record(partition, decision)
        if self.index is not None:
            self._decided.append((partition, event.event_id, decision))
        if decision.action is not None and decision.outcome in EMITTING:
            tally.add(m.approved, event.channel or "-", agent(event.agent))
            out.append(
                OutputRecord(
                    self._approved,
                    key,
                    self._encode("approved_action", decision.action.to_dict()),
                    partition,
                    trace,
                )
            )
        wakeup = decision.wakeup
        if wakeup is not None:
            body = {
                "customer_id": event.customer_id,
                "hold_id": wakeup.hold_id,
                "deadline": wakeup.deadline,
            }
            out.append(OutputRecord(self._wakeups, key, orjson.dumps(body), partition, trace))
        header = None if policy.audit.minimised else self._avro_header("audit_record")
        if header is not None:
            value = header + audit_avro(decision, event, source, now_ms)
        else:
            audit = audit_record(decision, event, source, now_ms, policy.audit)
            value = self._encode("audit_record", audit)
        out.append(OutputRecord(self._audit, key, value, partition, trace))

    def release(self, wakeup: InputRecord, store: StateStore) -> BatchResult:
        """Release the hold a wake-up record names (at its deadline, in event time).

        The final audit records of the held proposals cite the wake-up record as their
        source (or the customer's later input that released it first, see
        `_release_due`); their `held` audit records cite the input. A wake-up for a hold
        that is already gone (released before, or before a crash) produces nothing.
        """
        now_ms = int(self.clock() * 1000)
        try:
            body = orjson.loads(wakeup.value or b"")
            customer_id, hold_id = str(body["customer_id"]), str(body["hold_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.metrics.dead_letters.labels("bad_wakeup").inc()
            dead = self._dead_letter(wakeup, "bad_wakeup", str(exc), now_ms, self._wakeups)
            return BatchResult([dead], [])
        key = customer_id.encode()
        try:
            watermark, state = unpack_stored(store.load(wakeup.partition, key))
        except CorruptState as exc:
            self.metrics.dead_letters.labels(CORRUPT_STATE).inc()
            dead = self._dead_letter(wakeup, CORRUPT_STATE, str(exc), now_ms, self._wakeups)
            return BatchResult([dead], [])
        if hold_id not in state.holds:
            return BatchResult([], [])
        source = Source(self._wakeups, wakeup.partition, wakeup.offset, wakeup.timestamp_ms)
        out: list[OutputRecord] = []
        self._decided = []
        policy = self.policy()
        self.metrics.label_values.follow(policy)
        state = self._release(state, customer_id, hold_id, policy, source, key, now_ms, out)
        self._tally.flush()
        self._hand_over()
        writes = [StateWrite(wakeup.partition, key, pack_stored(watermark, state))]
        if self.kept is not None:
            writes.extend(StateWrite(*w) for w in self.kept.writes(store))
        return BatchResult(out, writes)

    def _release_due(
        self,
        state: CustomerState,
        event: AgentEvent,
        policy: Policy,
        source: Source,
        key: bytes | None,
        now_ms: int,
        out: list[OutputRecord],
    ) -> CustomerState:
        """Release the customer's holds whose deadline the event's time has passed, before
        deciding it: in event time they closed first, so the outcome does not depend on
        whether their wake-ups were read before this event (`whatif.final_decisions` and
        replays see the same order). Their wake-ups then find nothing to release."""
        for hold_id, hold in list(state.holds.items()):
            if hold.deadline <= event.occurred_at:
                state = self._release(
                    state, event.customer_id, hold_id, policy, source, key, now_ms, out
                )
        return state

    def _release(
        self,
        state: CustomerState,
        customer_id: str,
        hold_id: str,
        policy: Policy,
        source: Source,
        key: bytes | None,
        now_ms: int,
        out: list[OutputRecord],
    ) -> CustomerState:
        hold = state.holds[hold_id]
        exposures = state.exposures
        carried = state.carried
        decisions, state = release(state, customer_id, hold_id, policy)
        events = {e.event_id: e for e in held_events(customer_id, hold)}
        for decision in decisions:
            event = events[decision.event_id]
            state = self._observe(state, exposures, event, decision, policy)
            if decision.experiments:
                exposures = experiments.expose(exposures, decision.experiments, decision.decided_at)
            # each released proposal's records carry its own trace context (the winner's
            # action and audit the winner's), kept in the state since it was held
            text = carried.get(decision.event_id)
            trace = from_text(text) if text is not None else None
            self._emit(decision, event, policy, source, key, now_ms, out, trace)
        if carried:
            kept = {k: v for k, v in carried.items() if k not in events}
            if len(kept) != len(carried):
                state = state.evolve(carried=kept)
        return state

    def _hand_over(self) -> None:
        """The batch's decisions to the index, in one call."""
        decided = self._decided
        if decided:
            self._decided = []
            if self.index is not None:
                self.index.record(decided)

    def _observe(
        self,
        state: CustomerState,
        exposures: Mapping[str, Exposure],
        event: AgentEvent,
        decision: Decision,
        policy: Policy,
    ) -> CustomerState:
        """Experience metrics (core/experience.py) and the experiments' per-arm counters
        (core/experiments.py, given the exposures before the decision): computed after
        `decide`, from the state it returned, so the decision rules never depend on them."""
        journey, observations = experience.observe(state.journey, event, decision)
        if journey is not state.journey:
            state = state.evolve(journey=journey)
        if exposures or decision.experiments:
            observations += experiments.observe(exposures, event, decision, observations, policy)
        self.metrics.experience.record(observations, self._tally)
        return state

    def _avro_header(self, name: str) -> bytes | None:
        """The header of `name` values when they are Avro; None when they are JSON."""
        return avro_header(name, self._fmt, self.registry_ids.get(name))

    def _encode(self, name: str, record: Mapping[str, object]) -> bytes:
        return encode_record(name, record, self._fmt, self.registry_ids.get(name))

    def _dead_letter(
        self,
        rec: InputRecord,
        reason: str,
        detail: str,
        now_ms: int,
        topic: str | None = None,
        trace: TraceHeaders | None = None,
    ) -> OutputRecord:
        source = Source(topic or self._source_topic, rec.partition, rec.offset, rec.timestamp_ms)
        levels = self.policy().audit
        record = dead_letter_record(reason, detail, rec.key, rec.value, source, now_ms, levels)
        return OutputRecord(
            self._deadletter,
            rec.key,
            self._encode("dead_letter", record),
            rec.partition,
            trace,
        )

    def _trace(self, rec: InputRecord) -> TraceHeaders | None:
        """The input's trace context to carry; a malformed one is counted and left behind."""
        try:
            return trace_headers(rec.headers)
        except InvalidTraceContext:
            self._tally.add(self.metrics.trace_context_invalid)
            return None


def _input_format(value: bytes | None) -> str:
    """The `format` label of an input record."""
    if value is not None and value[:2] == AVRO_MAGIC:
        return "avro"
    if value and value[0] == REGISTRY_MAGIC:
        return "registry-avro"
    return "json"
