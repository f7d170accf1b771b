"""The agents' read side on the pure core: the context says what the rules will see, and a
preflight equals the real decision when nothing happens in between."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.codec import decode_record, encode_event
from pipeline.core.agent_context import agent_context, preflight
from pipeline.core.policy import DAY_MS, HOUR_MS, FrequencyCap, HoldWindows, Policy, QuietHours
from pipeline.core.policy_document import load_policy_file
from pipeline.core.state import EMPTY_STATE
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord, unpack_stored
from pipeline.settings import Settings
from tests.factories import T0, consent, decide_all, proposal, signal
from tests.unit.core.test_arbitration_properties_every_rule import POLICY, event_st

SHOWCASE = load_policy_file(Path(__file__).resolve().parents[3] / "deploy/policy.showcase.yaml")
WITH_HOLDS = replace(POLICY, holds=HoldWindows(hold_ms={"message": 120_000, "offer": 60_000}))
M = 60_000


def test_the_context_lists_what_the_rules_remember() -> None:
    policy = Policy(
        caps=(FrequencyCap("two-a-day", limit=2, window_ms=DAY_MS, scope="channel"),),
        quiet_hours=QuietHours("21:00", "08:00", "UTC", {"marketing": "defer"}),
    )
    events = [
        consent(True, "email", "marketing", at=T0),
        signal("profile_updated", timezone="Europe/Berlin", at=T0 + 1),
        signal("case_opened", case_id="k1", at=T0 + 2),
        proposal(
            at=T0 + 9 * HOUR_MS, category="service", department="service", asserts={"price": "9"}
        ),
    ]
    _, state = decide_all(events, policy)
    as_of = T0 + 10 * HOUR_MS
    ctx = agent_context("c1", state, policy, as_of)
    assert ctx["known"] and ctx["as_of"] == as_of
    assert ctx["consents"] == [
        {"channel": "email", "purpose": "marketing", "granted": True, "at": T0}
    ]
    assert ctx["open_cases"] == [{"case_id": "k1", "opened_at": T0 + 2}]
    assert ctx["facts_told"] == [
        {"fact": "price", "value": "9", "agent": "marketing-bot", "at": T0 + 9 * HOUR_MS}
    ]
    assert ctx["recent_contacts"][-1]["channel"] == "email"
    assert [(c["cap"], c["value"], c["used"], c["headroom"]) for c in ctx["caps"]] == [
        ("two-a-day", "email", 1, 1)
    ]
    assert ctx["escalation"]["needs_human"] is False
    # 10:00 UTC is 11:00 in Berlin: not quiet, so a send is allowed now
    assert ctx["timezone"] == "Europe/Berlin"
    assert ctx["quiet_hours"]["quiet_now"] is False
    assert ctx["quiet_hours"]["next_allowed_send"] == as_of
    # 21:30 UTC is 22:30 in Berlin: quiet until 08:00 Berlin = 07:00 UTC
    late = agent_context("c1", state, policy, T0 + 21 * HOUR_MS + 30 * M)
    assert late["quiet_hours"]["quiet_now"] is True
    assert late["quiet_hours"]["next_allowed_send"] == T0 + DAY_MS + 7 * HOUR_MS


def test_facts_known_from_signals_are_what_loop_prevention_knows() -> None:
    _, state = decide_all([signal("purchase", order_id="o-7", amount="5")], SHOWCASE)
    ctx = agent_context("c1", state, SHOWCASE, T0)
    assert ctx["facts_known"] == [{"fact": "order_number", "value": "o-7"}]


def test_an_unknown_customer_has_an_empty_context() -> None:
    ctx = agent_context("nobody", EMPTY_STATE, POLICY, T0)
    assert not ctx["known"] and ctx["consents"] == [] and ctx["holds"] == []
    assert ctx["offer"] is None and ctx["escalation"]["needs_human"] is False


def real_and_preflight(policy: Policy, seq: list) -> None:
    """Each event decided by the processor, one at a time; before each, its preflight on
    the stored state must equal the decision the processor then made for it."""
    processor = BatchProcessor(Settings(output_format="json"), policy=lambda: policy)
    store = DictStateStore()
    at = T0 + 18 * HOUR_MS
    for offset, (dt, ev, eid) in enumerate([(0, consent(True), -1), *seq]):
        at += dt
        ev = replace(ev, occurred_at=at, event_id=f"e{eid}")
        _, state = unpack_stored(store.load(0, b"c1"))
        advisory = preflight(state, ev, policy) if ev.proposal is not None else None
        record = InputRecord(b"c1", encode_event(ev, "json"), 0, offset, None)
        out = processor.process_and_save([record], store).outputs
        audits = [decode_record("audit_record", o.value) for o in out if o.topic == "audit"]
        real = [a for a in audits if a["event_id"] == ev.event_id][-1]
        if advisory is not None:
            got = (advisory.decision_id, advisory.outcome, advisory.rule, advisory.reason)
            assert got == (real["decision_id"], real["outcome"], real["rule"], real["reason"])
            assert advisory.action_id == real["action_id"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_st, max_size=40), st.sampled_from(["rules", "holds", "showcase"]))
def test_preflight_equals_the_real_decision(seq: list, which: str) -> None:
    policy = {"rules": POLICY, "holds": WITH_HOLDS, "showcase": SHOWCASE}[which]
    real_and_preflight(policy, seq)


def test_preflight_closes_a_passed_hold_first_like_the_runtimes() -> None:
    seq = [
        (0, proposal(trigger="t1", action="message"), 1),
        (1 * M, proposal(trigger="t1", action="message", agent="promo-bot"), 2),
        (5 * M, proposal(trigger="t1", action="message"), 3),  # past the 2 min hold
    ]
    real_and_preflight(WITH_HOLDS, seq)
