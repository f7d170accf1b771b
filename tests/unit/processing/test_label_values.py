"""Bounded label values: producers cannot grow the metrics' series without bound, whatever
agent, journey and step names they send; the allow-lists follow the policy in force."""

from __future__ import annotations

from pipeline.contracts.codec import encode_event
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import load_policy
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.processing.label_values import OTHER, UNDECLARED_LIMIT, AllowedValues
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from tests.factories import consent, proposal, signal

DECLARING = load_policy(
    "version: 1.0.0\n"
    "agents: [care-bot, promo-bot]\n"
    "journeys: {onboarding: [signup, kyc], renewal: [reminder]}\n"
)


def series(metrics: TowerMetrics, name: str) -> list[dict[str, str]]:
    return [
        s.labels for family in metrics.registry.collect() for s in family.samples if s.name == name
    ]


def run(policy: list[Policy], events: list) -> TowerMetrics:
    """Decide `events` in batches of 500, under whatever `policy[0]` is at each batch."""
    metrics = TowerMetrics()
    processor = BatchProcessor(Settings(), policy=lambda: policy[0], metrics=metrics)
    store = DictStateStore()
    records = [
        InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, i, None)
        for i, e in enumerate(events)
    ]
    for start in range(0, len(records), 500):
        processor.process_and_save(records[start : start + 500], store)
    return metrics


def distinct_agents(n: int) -> list:
    """A consent per customer, then n proposals, each from an agent of its own."""
    customers = [f"c{i}" for i in range(20)]
    events = [consent(True, customer=c) for c in customers]
    events += [proposal(customers[i % 20], agent=f"bot-{i}") for i in range(n)]
    return events


def test_ten_thousand_agent_names_keep_the_series_bounded_by_the_declared_agents() -> None:
    metrics = run([DECLARING], [*distinct_agents(10000), proposal("c0", agent="care-bot")])
    agents = {s["agent"] for s in series(metrics, "tower_proposals_total")}
    assert agents == {"care-bot", OTHER}
    approved = {s["agent"] for s in series(metrics, "tower_approved_actions_total")}
    assert approved <= {"care-bot", OTHER}
    total = sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "tower_proposals_total"
    )
    assert total == 10_001  # counted all the same, under `other`


def test_without_declared_agents_the_first_ones_seen_are_kept_the_rest_are_other() -> None:
    metrics = run([DEFAULT_POLICY], distinct_agents(10_000))
    agents = {s["agent"] for s in series(metrics, "tower_proposals_total")}
    assert len(agents) == UNDECLARED_LIMIT + 1 and OTHER in agents


def test_journeys_and_steps_outside_the_declared_ones_are_other() -> None:
    steps = [("onboarding", "kyc"), ("onboarding", "s-1"), ("j-1", "signup"), ("renewal", "x")]
    steps += [(f"j{i}", f"s{i}") for i in range(2_000)]
    events = [
        signal("journey_step", "c1", journey=j, step=s, event_id=f"js{i}")
        for i, (j, s) in enumerate(steps)
    ]
    metrics = run([DECLARING], events)
    seen = {(s["journey"], s["step"]) for s in series(metrics, "tower_journey_step_total")}
    assert seen == {("onboarding", "kyc"), ("onboarding", OTHER), (OTHER, "signup"),
                    ("renewal", OTHER), (OTHER, OTHER)}  # fmt: skip


def test_the_allow_list_follows_a_policy_hot_reload() -> None:
    policy = [DECLARING]
    metrics = TowerMetrics()
    processor = BatchProcessor(Settings(), policy=lambda: policy[0], metrics=metrics)
    store = DictStateStore()

    def decide(offset: int, agent: str) -> None:
        events = [consent(True, customer=f"h{offset}"), proposal(f"h{offset}", agent=agent)]
        processor.process_and_save(
            [
                InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, offset + i, None)
                for i, e in enumerate(events)
            ],
            store,
        )

    decide(0, "new-bot")
    policy[0] = load_policy("version: 1.1.0\nagents: [care-bot, new-bot]\n")
    decide(10, "new-bot")
    counts = {
        s.labels["agent"]: s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "tower_proposals_total"
    }
    assert counts == {OTHER: 1, "new-bot": 1}


def test_allowed_values_table() -> None:
    allowed = AllowedValues()
    assert [allowed(f"a{i}") for i in range(UNDECLARED_LIMIT + 2)][-2:] == [OTHER, OTHER]
    assert allowed("a0") == "a0"  # seen before the limit: kept
    allowed.declare(frozenset({"x"}))
    assert (allowed("x"), allowed("a0")) == ("x", OTHER)
    allowed.declare(frozenset())
    assert allowed("a0") == "a0"


def test_the_policy_document_declares_agents_and_journeys() -> None:
    assert DECLARING.agents == {"care-bot", "promo-bot"}
    assert DECLARING.journeys == {"onboarding": {"signup", "kyc"}, "renewal": {"reminder"}}
    # the agents decide nothing: not part of the version; journeys are
    same = load_policy(
        "version: 1.0.0\njourneys: {onboarding: [signup, kyc], renewal: [reminder]}\n"
    )
    assert same.policy_version == DECLARING.policy_version
    assert DEFAULT_POLICY.policy_version != DECLARING.policy_version
