"""Table-driven tests of the experience metrics: each rule, its windows and edge cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.contracts.events import AgentEvent
from pipeline.core import experience as xp
from pipeline.core import experiments as ex
from pipeline.core.arbitration import decide
from pipeline.core.experience import DEFAULT_EXPERIENCE, Observation, observe
from pipeline.core.policy import DAY_MS, Policy
from pipeline.core.state import EMPTY_JOURNEY, EMPTY_STATE, CustomerState
from pipeline.processing.metrics import TowerMetrics
from tests.factories import T0, consent, proposal, signal

POLICY = Policy(caps=())  # no frequency caps: they are not what is tested here
S = 1000
W = 7 * DAY_MS  # every default window


def at_conv(ev: AgentEvent, conv: str | None, channel: str | None) -> AgentEvent:
    return replace(ev, conversation_id=conv, channel=channel)


def msg(at: int, conv: str | None = "k1", channel: str | None = "chat") -> AgentEvent:
    return at_conv(signal("message_received", at=at), conv, channel)


def answer(
    at: int, conv: str | None = "k1", channel: str = "chat", ai: bool = True, **kw
) -> AgentEvent:
    ev = proposal(
        at=at,
        agent="care-bot",
        department="service",
        action=kw.pop("action", "answer"),
        category="service",
        ai_generated=ai,
        **kw,
    )
    return at_conv(ev, conv, channel)


def handoff(at: int, conv: str | None = "k1", channel: str | None = "chat") -> AgentEvent:
    return at_conv(signal("handoff_to_human", at=at, reason="asked for a human"), conv, channel)


def opened(at: int, case: str = "k1") -> AgentEvent:
    return signal("case_opened", at=at, case_id=case)


def resolved(at: int, case: str | None = "k1") -> AgentEvent:
    return signal("case_resolved", at=at, **({"case_id": case} if case else {}))


def csat(at: int, score: str, case: str | None = None) -> AgentEvent:
    return signal("csat", at=at, score=score, **({"case_id": case} if case else {}))


def sentiment(at: int, score: str) -> AgentEvent:
    return signal("sentiment", at=at, score=score)


def purchase(at: int, amount: str = "10") -> AgentEvent:
    return signal("purchase", at=at, order_id="o1", amount=amount)


def run(events: list[AgentEvent]) -> tuple[list[Observation], CustomerState]:
    """What the shell does: decide, then observe with the state decide returned."""
    state = EMPTY_STATE
    seen: list[Observation] = []
    for ev in events:
        decision, state = decide(state, ev, POLICY, ev.occurred_at)
        journey, observations = observe(state.journey, ev, decision)
        state = state.evolve(journey=journey)
        seen.extend(observations)
    return seen, state


def values(observations: list[Observation], name: str, **labels: str) -> list[float]:
    want = set(labels.items())
    return [o.value for o in observations if o.name == name and want <= set(o.labels)]


ANSWERED = [msg(T0), answer(T0 + S)]
CONTRADICTION = [answer(T0, asserts={"price": "10"}), answer(T0 + S, asserts={"price": "12"})]

CASES = [
    # containment: AI answered and resolved without a human
    ("contained", [*ANSWERED, resolved(T0 + 60 * S)], xp.CONVERSATIONS_RESOLVED,
     {"contained": "true"}, [1.0]),
    ("handoff in the middle", [*ANSWERED, handoff(T0 + 2 * S), resolved(T0 + 60 * S)],
     xp.CONVERSATIONS_RESOLVED, {"contained": "false"}, [1.0]),
    ("handoff without id hands over every open conversation",
     [*ANSWERED, handoff(T0 + 2 * S, conv=None), resolved(T0 + 60 * S)],
     xp.CONVERSATIONS_RESOLVED, {"contained": "false"}, [1.0]),
    ("handoff of another conversation", [*ANSWERED, handoff(T0 + 2 * S, conv="k2"),
     resolved(T0 + 60 * S)], xp.CONVERSATIONS_RESOLVED, {"contained": "true"}, [1.0]),
    ("resolution without AI is not in the ratio", [msg(T0), resolved(T0 + 60 * S)],
     xp.CONVERSATIONS_RESOLVED, {}, []),
    ("resolution without AI is a resolution", [msg(T0), resolved(T0 + 60 * S)],
     xp.RESOLUTIONS, {}, [1.0]),
    ("human answer is not AI", [msg(T0), answer(T0 + S, ai=False), resolved(T0 + 60 * S)],
     xp.CONVERSATIONS_RESOLVED, {}, []),
    ("AI message is not an answer", [msg(T0), answer(T0 + S, action="message"),
     resolved(T0 + 60 * S)], xp.CONVERSATIONS_RESOLVED, {}, []),
    ("suppressed AI answer does not count",
     [consent(False, "chat", "all"), msg(T0 + 1), answer(T0 + S), resolved(T0 + 60 * S)],
     xp.CONVERSATIONS_RESOLVED, {}, []),
    ("resolution without id closes all",
     [*ANSWERED, msg(T0 + 2, conv="k2"), answer(T0 + 3, conv="k2"), handoff(T0 + 4, conv="k2"),
      resolved(T0 + 60 * S, case=None)], xp.CONVERSATIONS_RESOLVED, {}, [1.0, 1.0]),
    ("replayed resolution counts once",
     [*ANSWERED, resolved(T0 + 60 * S, case="k1"), ev := resolved(T0 + 61 * S), ev],
     xp.RESOLUTIONS, {}, [1.0, 1.0]),
    # CSAT of the same conversations
    ("csat of a contained conversation", [*ANSWERED, resolved(T0 + 60 * S), csat(T0 + DAY_MS, "5")],
     xp.CSAT_SCORE, {"contained": "true"}, [5.0]),
    ("csat of a handed-off one by case id",
     [*ANSWERED, handoff(T0 + 2 * S), resolved(T0 + 60 * S), csat(T0 + DAY_MS, "2", "k1")],
     xp.CSAT_SCORE, {"contained": "false"}, [2.0]),
    ("csat on the last window millisecond",
     [*ANSWERED, resolved(T0 + 60 * S), csat(T0 + 60 * S + W - 1, "4")], xp.CSAT_SCORE, {}, [4.0]),
    ("csat at the window end", [*ANSWERED, resolved(T0 + 60 * S), csat(T0 + 60 * S + W, "4")],
     xp.CSAT_SCORE, {}, []),
    ("csat without AI", [msg(T0), resolved(T0 + 60 * S), csat(T0 + DAY_MS, "4")],
     xp.CSAT_SCORE, {}, []),
    ("second csat ignored",
     [*ANSWERED, resolved(T0 + 60 * S), csat(T0 + DAY_MS, "4"), csat(T0 + DAY_MS + 1, "1")],
     xp.CSAT_SCORE, {}, [4.0]),
    # repeat contacts
    ("repeat on the last window millisecond", [resolved(T0), msg(T0 + W - 1)],
     xp.REPEAT_CONTACTS, {}, [1.0]),
    ("contact at the window end is not a repeat", [resolved(T0), msg(T0 + W)],
     xp.REPEAT_CONTACTS, {}, []),
    ("case opened again is a repeat", [resolved(T0), opened(T0 + DAY_MS, "k9")],
     xp.REPEAT_CONTACTS, {}, [1.0]),
    ("once per resolution", [resolved(T0), msg(T0 + S), msg(T0 + 2 * S)],
     xp.REPEAT_CONTACTS, {}, [1.0]),
    ("each resolution", [resolved(T0), msg(T0 + S), resolved(T0 + 2 * S), msg(T0 + 3 * S)],
     xp.REPEAT_CONTACTS, {}, [1.0, 1.0]),
    ("no resolution, no repeat", [msg(T0), msg(T0 + S)], xp.REPEAT_CONTACTS, {}, []),
    ("sentiment is not a contact", [resolved(T0), sentiment(T0 + S, "0.1")],
     xp.REPEAT_CONTACTS, {}, []),
    # sentiment shift around AI actions
    ("shift after AI", [sentiment(T0, "-0.5"), answer(T0 + S), sentiment(T0 + 2 * S, "0.25")],
     xp.SENTIMENT_SHIFT, {}, [0.75]),
    ("only the first score after", [sentiment(T0, "0"), answer(T0 + S),
     sentiment(T0 + 2 * S, "0.5"), sentiment(T0 + 3 * S, "-1")], xp.SENTIMENT_SHIFT, {}, [0.5]),
    ("no score before", [answer(T0), sentiment(T0 + S, "0.5")], xp.SENTIMENT_SHIFT, {}, []),
    ("no AI in between", [sentiment(T0, "0"), sentiment(T0 + S, "0.5")],
     xp.SENTIMENT_SHIFT, {}, []),
    ("human answer in between", [sentiment(T0, "0"), answer(T0 + S, ai=False),
     sentiment(T0 + 2 * S, "0.5")], xp.SENTIMENT_SHIFT, {}, []),
    # journey health
    ("journey funnel", [signal("journey_step", at=T0, journey="onboarding", step="kyc")],
     xp.JOURNEY_STEP, {"journey": "onboarding", "step": "kyc"}, [1.0]),
    ("channel switch", [msg(T0, channel="chat"), answer(T0 + S, channel="email")],
     xp.CHANNEL_SWITCHES, {"from_channel": "chat", "to_channel": "email"}, [1.0]),
    ("same channel", [msg(T0), answer(T0 + S), msg(T0 + 2 * S)], xp.CHANNEL_SWITCHES, {}, []),
    ("other conversation", [msg(T0, "k1", "chat"), answer(T0 + S, "k2", "email")],
     xp.CHANNEL_SWITCHES, {}, []),
    ("no switch across a resolution", [msg(T0, channel="chat"), resolved(T0 + S),
     msg(T0 + 2 * S, channel="voice")], xp.CHANNEL_SWITCHES, {}, []),
    ("time to resolution", [msg(T0), resolved(T0 + 90 * S)], xp.TIME_TO_RESOLUTION, {}, [90.0]),
    ("from the first contact", [opened(T0), msg(T0 + 10 * S), resolved(T0 + 100 * S)],
     xp.TIME_TO_RESOLUTION, {}, [100.0]),
    ("unknown case", [msg(T0), resolved(T0 + S, "k7")], xp.TIME_TO_RESOLUTION, {}, []),
    ("stale conversation forgotten", [msg(T0), msg(T0 + 30 * DAY_MS, "k2"),
     resolved(T0 + 30 * DAY_MS + 1)], xp.TIME_TO_RESOLUTION, {}, []),
    # business impact
    ("cost of an answer", [answer(T0)], xp.COST_TO_SERVE, {"channel": "chat", "action": "answer"},
     [0.05]),
    ("action cost beats channel cost", [answer(T0, channel="voice", action="callback")],
     xp.COST_TO_SERVE, {}, [4.0]),
    ("a handoff costs a human", [handoff(T0, channel="voice")], xp.COST_TO_SERVE,
     {"action": "human_handoff"}, [6.0]),
    ("suppressed costs nothing", [consent(False, "chat", "all"), answer(T0 + 1)],
     xp.COST_TO_SERVE, {}, []),
    ("assisted purchase", [answer(T0), purchase(T0 + W - 1)], xp.PURCHASES,
     {"assisted": "true"}, [1.0]),
    ("purchase just outside the window", [answer(T0), purchase(T0 + W)], xp.PURCHASES,
     {"assisted": "false"}, [1.0]),
    ("purchase before the AI action", [purchase(T0), answer(T0 + 1)], xp.PURCHASES,
     {"assisted": "false"}, [1.0]),
    ("purchase amount", [answer(T0), purchase(T0 + 1, "19.5")], xp.PURCHASE_AMOUNT,
     {"assisted": "true"}, [19.5]),
    ("churn risk: sentiment", [answer(T0), sentiment(T0 + S, "-0.6")], xp.CHURN_RISK,
     {"signal": "sentiment"}, [1.0]),
    ("threshold itself is not churn risk", [answer(T0), sentiment(T0 + S, "-0.5")],
     xp.CHURN_RISK, {}, []),
    ("churn risk: csat", [answer(T0), csat(T0 + S, "2")], xp.CHURN_RISK, {"signal": "csat"},
     [1.0]),
    ("csat 3 is fine", [answer(T0), csat(T0 + S, "3")], xp.CHURN_RISK, {}, []),
    ("outside the churn window", [answer(T0), sentiment(T0 + W, "-0.9")], xp.CHURN_RISK, {}, []),
    ("no AI, no churn attribution", [sentiment(T0, "-0.9")], xp.CHURN_RISK, {}, []),
    # governance
    ("contradiction blocked", CONTRADICTION,
     xp.CONTRADICTIONS_BLOCKED, {}, [1.0]),
    ("contradiction is a conflict prevented", CONTRADICTION,
     xp.CONFLICTS_PREVENTED, {"rule": "consistency_ledger"}, [1.0]),
    ("merge is a conflict prevented", [answer(T0, trigger="t"), answer(T0 + S, trigger="t")],
     xp.CONFLICTS_PREVENTED, {"rule": "duplicate_merge"}, [1.0]),
    ("consent block is a conflict prevented", [consent(False, "chat", "all"), answer(T0 + 1)],
     xp.CONFLICTS_PREVENTED, {"rule": "consent"}, [1.0]),
    ("approval prevents nothing", [answer(T0)], xp.CONFLICTS_PREVENTED, {}, []),
    ("handoffs", [handoff(T0, channel="voice")], xp.HANDOFFS, {"channel": "voice"}, [1.0]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "name", "labels", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_metric_rules(events, name, labels, expected):
    observations, _ = run(events)
    assert values(observations, name, **labels) == pytest.approx(expected)


def test_the_journey_stays_bounded():
    s = DEFAULT_EXPERIENCE
    events = [msg(T0 + i, conv=f"k{i}") for i in range(s.max_conversations + 5)]
    events += [answer(T0 + 100 + i, conv=f"k{i}") for i in range(s.max_conversations + 5)]
    events += [resolved(T0 + 200, case=None)]
    _, state = run(events)
    assert state.journey.conversations == {}
    assert len(state.journey.closed) == s.max_closed
    # the newest conversations survived the bound, in first-touch order
    assert list(state.journey.closed)[-1] == f"k{s.max_conversations + 4}"


def test_journey_round_trips_and_empty_is_left_out():
    _, state = run([*ANSWERED, resolved(T0 + 60 * S), msg(T0 + 61 * S, conv="k2")])
    assert state.journey.closed and state.journey.conversations
    assert CustomerState.from_bytes(state.to_bytes()) == state
    _, state = run([sentiment(T0, "-0.2"), answer(T0 + S), handoff(T0 + 2 * S)])
    assert CustomerState.from_bytes(state.to_bytes()) == state
    _, plain = run([consent(True)])
    assert plain.journey is EMPTY_JOURNEY and b'"j"' not in plain.to_bytes()


def test_unchanged_journey_is_the_same_object():
    _, state = run([msg(T0)])
    decision, state = decide(state, signal("profile_updated", at=T0 + 1), POLICY, T0 + 1)
    journey, observations = observe(state.journey, signal("profile_updated", at=T0 + 1), decision)
    assert journey is state.journey and observations == []


ALL_KINDS = [
    msg(T0),
    sentiment(T0 + 1, "0.2"),
    answer(T0 + S, asserts={"price": "10"}),
    answer(T0 + 2 * S, asserts={"price": "11"}),
    answer(T0 + 2 * S + 1, channel="email"),
    sentiment(T0 + 3 * S, "-0.9"),
    handoff(T0 + 4 * S),
    resolved(T0 + 5 * S),
    csat(T0 + 6 * S, "1"),
    msg(T0 + 7 * S, conv="k2"),
    purchase(T0 + 8 * S),
    signal("journey_step", at=T0 + 9 * S, journey="j", step="s"),
]


def test_every_observation_is_registered_with_its_labels():
    observations, _ = run(ALL_KINDS)
    names = {o.name for o in observations}
    per_arm = {ex.EXPOSURES, ex.OUTCOMES, ex.OUTCOME_VALUES}  # tests/unit/core/test_experiments.py
    others = {xp.ESCALATIONS, xp.TRANSFORMS, *per_arm}
    assert names == set(TowerMetrics().experience.by_name) - others
    metrics = TowerMetrics()
    metrics.experience.record(observations)
    r = metrics.registry
    assert r.get_sample_value("tower_conversations_resolved_total", {"contained": "false"}) == 1
    assert r.get_sample_value("tower_csat_score_count", {"contained": "false"}) == 1
    assert r.get_sample_value("tower_time_to_resolution_seconds_sum") == 5.0
    assert r.get_sample_value("tower_contradictions_blocked_total") == 1
    # escalations are counted by the rule that escalated
    metrics.experience.record([xp.obs(xp.ESCALATIONS, rule="r")])
    assert r.get_sample_value("tower_escalations_total", {"rule": "r"}) == 1


def test_transforms_of_outgoing_content_are_counted_by_kind():
    from pipeline.core.arbitration import decide
    from pipeline.core.experience import TRANSFORMS
    from pipeline.core.policy import Disclosure, Policy
    from pipeline.core.state import EMPTY_STATE
    from tests.factories import proposal

    policy = Policy(disclosure=Disclosure(text="[AI]"), redact_pii=frozenset({"email"}))
    ev = proposal(category="service", content="write to a@b.example", ai_generated=True)
    decision, state = decide(EMPTY_STATE, ev, policy, ev.occurred_at)
    _, observations = observe(state.journey, ev, decision)
    kinds = sorted(dict(o.labels)["transform"] for o in observations if o.name == TRANSFORMS)
    assert kinds == ["disclosure", "pii_redaction"]


def test_a_tally_applies_the_same_counts_as_recording_one_by_one():
    from pipeline.processing.metrics import Tally

    observations, _ = run(ALL_KINDS)
    observations += [
        xp.obs(xp.CHANNEL_SWITCHES, to_channel="sms", from_channel="chat"),  # kwargs order
        xp.obs(xp.COST_TO_SERVE, 0.5, action="reply", channel="chat"),
    ]
    direct, batched = TowerMetrics(), TowerMetrics()
    tally = Tally()
    for _ in range(2):  # the same label sets twice: one increment of 2 each
        direct.experience.record(observations)
        batched.experience.record(observations, tally)
    tally.flush()

    def samples(m: TowerMetrics) -> dict:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in m.registry.collect()
            for s in metric.samples
            if s.name.startswith("tower_") and not s.name.endswith("_created")
        }

    assert samples(batched) == samples(direct)
    assert (
        direct.registry.get_sample_value(
            "tower_channel_switches_total", {"from_channel": "chat", "to_channel": "sms"}
        )
        == 2
    )
