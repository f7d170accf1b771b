"""Prometheus metrics of the worker. Labels are bounded: no customer ids, ever."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from pipeline.core import experience as xp
from pipeline.core import experiments as ex
from pipeline.core.experience import Observation
from pipeline.processing.label_values import AllowedValues, LabelValues


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class TowerMetrics:
    """One set of metrics per worker; a private registry keeps tests independent."""

    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
        # python_gc_*, python_info
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        #: the allow-lists of the agent, journey and step labels (label_values.py)
        self.label_values = LabelValues()
        self.events_in = Counter(
            "tower_events_in",
            "Input records read, by kind and wire format",
            ["kind", "format"],
            registry=r,
        )
        self.decisions = Counter(
            "tower_decisions",
            "Decisions by outcome and deciding rule",
            ["outcome", "rule"],
            registry=r,
        )
        self.approved = Counter(
            "tower_approved_actions",
            "Actions emitted to channels",
            ["channel", "agent"],
            registry=r,
        )
        self.proposals = Counter(
            "tower_proposals",
            "Proposals decided, by agent (for approval rates)",
            ["agent"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tower_dead_letters",
            "Invalid records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.trace_context_invalid = Counter(
            "tower_trace_context_invalid",
            "Input records whose traceparent header is malformed: decided, their outputs "
            "carry no trace context",
            registry=r,
        )
        self.reprocessed = Counter(
            "tower_reprocessed_skipped",
            "Records seen again after a restart whose decision was already published",
            registry=r,
        )
        self.input_not_decided = Counter(
            "tower_input_not_decided",
            "Delivered input records the sequence guard did not decide: already_decided "
            "(re-delivered), out_of_sequence (records before it missing: the partition "
            "seeks back), not_assigned (left over from before a rebalance)",
            ["reason"],
            registry=r,
        )
        self.input_seeks = Counter(
            "tower_input_seeks",
            "Seeks back to the next offset to decide after records went missing in delivery",
            registry=r,
        )
        self.decision_latency = Histogram(
            "tower_decision_latency_seconds",
            "Time to decide one batch of events, per event",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
            registry=r,
        )
        self.end_to_end_lag = Histogram(
            "tower_end_to_end_lag_seconds",
            "Wall clock from the record's Kafka timestamp to its decision",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.batch_size = Histogram(
            "tower_batch_size",
            "Records per processed batch",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "tower_transaction_seconds",
            "Transactional runtime, per batch, on the commit thread: send_offsets_to_transaction "
            "(step=send), then commit_transaction (step=commit)",
            ["step"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.policy_info = Gauge(
            "tower_policy_info",
            "The policy version in force (value is always 1)",
            ["policy_version"],
            registry=r,
        )
        self.policy_rejected = Counter(
            "tower_policy_rejected",
            "Published policies ignored (the one in force stays), by reason",
            ["reason"],
            registry=r,
        )
        self.policy_swaps = Counter(
            "tower_policy_swaps",
            "Times a newly published policy came into force without a restart",
            registry=r,
        )
        self.input_lag = Gauge(
            "tower_input_lag_records",
            "Per owned input partition: records not yet decided (agent-events) or read "
            "(tower-wakeups): the log end as last fetched minus the worker's next offset; "
            "measured about once a second",
            ["topic", "partition"],
            registry=r,
        )
        self.input_oldest_age = Gauge(
            "tower_input_oldest_undecided_age_seconds",
            "Per owned input partition: seconds since the worker first saw the log end pass "
            "its next offset to decide, i.e. how long the oldest undecided record has been "
            "waiting (sampled about once a second, so up to a second short; counted from "
            "the assignment for records already waiting then); 0 when none waits",
            ["topic", "partition"],
            registry=r,
        )
        self.last_decision = Gauge(
            "tower_last_decision_timestamp_seconds",
            "Unix time of the last decided batch",
            registry=r,
        )
        self.rebalances = Counter(
            "tower_rebalances",
            "Partition assignments taken (once per rebalance, after the states are restored)",
            registry=r,
        )
        self.agent_refused = Counter(
            "tower_web_agent_refusals",
            "Requests of an agent token that named another agent (proposing or signalling "
            "as someone else), by the token's agent",
            ["agent"],
            registry=r,
        )
        self.forward_refused = Counter(
            "tower_forward_refused",
            "Requests for a customer owned elsewhere that were not forwarded, or whose "
            "owner's answer was not passed back, by reason",
            ["reason"],
            registry=r,
        )
        self.policy_active_missing = Gauge(
            "tower_policy_active_missing",
            "1 while the policies topic has no `active` record (deleted or tombstoned) and "
            "the worker keeps its last verified policy",
            registry=r,
        )
        self.experience = ExperienceMetrics(r, self.label_values)  # pipeline/core/experience.py


#: Time to resolution spans minutes to weeks: edges at 1 m, 5 m, 15 m, 30 m, 1 h, 2 h, 4 h,
#: 8 h, 1 d, 2 d, 3 d, 7 d, 14 d, 30 d.
RESOLUTION_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 259200,
                      604800, 1209600, 2592000)  # fmt: skip


#: label sets `ExperienceMetrics` remembers at most (emptied when full)
_KNOWN_MAX = 4096


class ExperienceMetrics:
    """The experience metrics, registered under the names `experience.py` observes.

    Counters add an observation's value, histograms observe it; ratios (containment, repeat
    contact rate, approval rate) are left to PromQL so they can be taken over any window.
    """

    def __init__(self, r: CollectorRegistry, label_values: LabelValues) -> None:
        #: counter name -> its label names, in the order `labels(*values)` takes them
        self.label_names: dict[str, tuple[str, ...]] = {}
        #: counter name -> (position, allow-list) of its bounded labels
        self.bounded: dict[str, tuple[tuple[int, AllowedValues], ...]] = {}
        #: (counter name, observed labels) -> the counter and its label values, for the
        #: counters without bounded labels (`_label_values`)
        self._counter_labels: dict[
            tuple[str, tuple[tuple[str, str], ...]], tuple[Counter, tuple[str, ...]]
        ] = {}

        def counter(name: str, doc: str, *labels: str) -> Counter:
            self.label_names[name] = labels
            bounded = tuple(
                (i, label_values.by_label[n]) for i, n in enumerate(labels)
                if n in label_values.by_label
            )  # fmt: skip
            if bounded:
                self.bounded[name] = bounded
            return Counter(name, doc, list(labels), registry=r)

        self.by_name: dict[str, Counter | Histogram] = {
            xp.CONVERSATIONS_RESOLVED: counter(
                xp.CONVERSATIONS_RESOLVED,
                "Resolved AI-handled conversations; contained=false if handed to a human",
                "contained",
            ),
            xp.CSAT_SCORE: Histogram(
                xp.CSAT_SCORE,
                "CSAT (1-5) of resolved AI-handled conversations",
                ["contained"],
                buckets=(1, 2, 3, 4, 5),
                registry=r,
            ),
            xp.RESOLUTIONS: counter(xp.RESOLUTIONS, "case_resolved signals"),
            xp.REPEAT_CONTACTS: counter(
                xp.REPEAT_CONTACTS, "Contacts within the repeat window after a resolution"
            ),
            xp.SENTIMENT_SHIFT: Histogram(
                xp.SENTIMENT_SHIFT,
                "Sentiment score after an approved AI action minus the last score before",
                buckets=(-1.5, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 1.5),
                registry=r,
            ),
            xp.JOURNEY_STEP: counter(
                xp.JOURNEY_STEP, "journey_step signals: the funnel", "journey", "step"
            ),
            xp.CHANNEL_SWITCHES: counter(
                xp.CHANNEL_SWITCHES,
                "Touchpoints of an open conversation on another channel than the previous one",
                "from_channel",
                "to_channel",
            ),
            xp.TIME_TO_RESOLUTION: Histogram(
                xp.TIME_TO_RESOLUTION,
                "First contact to case_resolved of a conversation, event time",
                buckets=RESOLUTION_BUCKETS,
                registry=r,
            ),
            xp.COST_TO_SERVE: counter(
                xp.COST_TO_SERVE,
                "Nominal cost of emitted actions and human handoffs (experience.DEFAULT_COSTS)",
                "channel",
                "action",
            ),
            xp.PURCHASES: counter(
                xp.PURCHASES,
                "Purchases; assisted if within the window after an AI action",
                "assisted",
            ),
            xp.PURCHASE_AMOUNT: counter(
                xp.PURCHASE_AMOUNT, "Purchase amounts, assisted or not", "assisted"
            ),
            xp.CHURN_RISK: counter(
                xp.CHURN_RISK,
                "Negative sentiment or low CSAT within the window after an AI action",
                "signal",
            ),
            xp.CONFLICTS_PREVENTED: counter(
                xp.CONFLICTS_PREVENTED, "Proposals suppressed or merged, by rule", "rule"
            ),
            xp.CONTRADICTIONS_BLOCKED: counter(
                xp.CONTRADICTIONS_BLOCKED, "Proposals suppressed by the consistency ledger"
            ),
            xp.ESCALATIONS: counter(xp.ESCALATIONS, "Escalated decisions, by rule", "rule"),
            xp.HANDOFFS: counter(xp.HANDOFFS, "handoff_to_human signals", "channel"),
            xp.TRANSFORMS: counter(
                xp.TRANSFORMS,
                "Changes made to outgoing content: AI disclosures, PII redactions, ...",
                "transform",
            ),
            ex.EXPOSURES: counter(
                ex.EXPOSURES,
                "Customers exposed to an experiment's arm (first approved or withheld "
                "proposal); their attribution window starts then",
                "experiment",
                "arm",
            ),
            ex.OUTCOMES: counter(
                ex.OUTCOMES,
                "Outcome signals within an exposed customer's attribution window, per arm: "
                "conversion, revenue, unsubscribe, complaint, repeat_contact, csat",
                "experiment",
                "arm",
                "metric",
            ),
            ex.OUTCOME_VALUES: counter(
                ex.OUTCOME_VALUES,
                "Sum of the outcome amounts per arm: revenue (purchase amounts), csat scores",
                "experiment",
                "arm",
                "metric",
            ),
        }

    def record(self, observations: list[Observation], tally: Tally | None = None) -> None:
        """Histograms observe at once; counters go through `tally` when one is given."""
        known = self._counter_labels
        for name, labels, value in observations:
            found = known.get((name, labels))
            if found is not None:
                counter, values = found
            else:
                metric = self.by_name[name]
                if not isinstance(metric, Counter):
                    (metric.labels(**dict(labels)) if labels else metric).observe(value)
                    continue
                counter, values = metric, self._label_values(metric, name, labels)
            if tally is not None:
                tally.counts[(counter, values)] += value
            else:
                (counter.labels(*values) if values else counter).inc(value)

    def _label_values(
        self, counter: Counter, name: str, labels: tuple[tuple[str, str], ...]
    ) -> tuple[str, ...]:
        """A counter's label values in `labels(...)` order, the bounded ones through their
        allow-list. Remembered when no label is bounded (an allow-list's answer changes
        with the policy), up to `_KNOWN_MAX` label sets."""
        named = dict(labels)
        values = [named[n] for n in self.label_names[name]]
        bounded = self.bounded.get(name)
        if bounded is None:
            if len(self._counter_labels) >= _KNOWN_MAX:
                self._counter_labels.clear()
            self._counter_labels[(name, labels)] = (counter, tuple(values))
            return tuple(values)
        for i, allowed in bounded:
            values[i] = allowed(values[i])
        return tuple(values)


class Tally:
    """Counter increments gathered over a batch and applied once per distinct label set.

    prometheus-client's `labels(...)` lookup and per-increment lock cost about a tenth of
    a worker's CPU when paid per event; a batch has few distinct label sets.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[Counter, tuple[str, ...]], float] = collections.defaultdict(float)

    def add(self, counter: Counter, *labels: str, value: float = 1) -> None:
        self.counts[(counter, labels)] += value

    def flush(self) -> None:
        for (counter, labels), value in self.counts.items():
            (counter.labels(*labels) if labels else counter).inc(value)
        self.counts.clear()
