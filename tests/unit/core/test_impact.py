"""The impact report's counting (pipeline/core/impact.py), and a closed loop without a broker
whose truth is known."""

from __future__ import annotations

import orjson
import pytest

from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.events import event_to_dict
from pipeline.core import experiments as ex
from pipeline.core.impact import METRICS, ImpactLedger
from pipeline.core.policy import DAY_MS, Experiments, Policy
from pipeline.ops.outcome_world import Effect, OutcomeWorld
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings
from tests.factories import T0, signal

WEEK = 7 * DAY_MS


def exposure(customer: str, at: int, *arms: tuple[str, str], outcome: str = "approved") -> dict:
    return {
        "kind": "proposal",
        "customer_id": customer,
        "outcome": outcome,
        "decided_at": at,
        "policy_version": "x",
        "experiments": [{"experiment": e, "arm": a} for e, a in arms],
    }


def signal_record(event) -> dict:
    return {
        "kind": "signal",
        "customer_id": event.customer_id,
        "outcome": "recorded",
        "decided_at": event.occurred_at,
        "policy_version": "x",
        "input": orjson.dumps(event_to_dict(event)).decode(),
        "experiments": [],
    }


def rows_by_metric(ledger: ImpactLedger, experiment: str) -> dict[str, dict]:
    return {r["metric"]: r for r in ledger.rows() if r["experiment"] == experiment}


HOLD = ("holdout:a", ex.HELD_OUT)
TREAT = ("holdout:a", ex.TREATMENT)


def test_only_the_first_exposure_counts_and_opens_the_window():
    ledger = ImpactLedger()
    ledger.add(exposure("c1", T0, TREAT))
    ledger.add(exposure("c1", T0 + 3 * DAY_MS, TREAT))  # not a new window
    ledger.add(signal_record(signal("purchase", "c1", T0 + WEEK - 1, amount="5")))
    ledger.add(signal_record(signal("purchase", "c1", T0 + WEEK + 1, amount="7")))
    ledger.add(exposure("c2", T0, HOLD, outcome="withheld"))
    row = rows_by_metric(ledger, "holdout:a")
    assert (row["conversion"]["n_treatment"], row["conversion"]["n_control"]) == (1, 1)
    assert row["conversion"]["treatment"] == 1.0 and row["conversion"]["control"] == 0.0
    assert row["revenue"]["treatment"] == 5.0  # the purchase after the window is not counted


@pytest.mark.parametrize(
    ("outcome", "counted"),
    [("approved", True), ("deferred", True), ("withheld", True), ("suppressed", False)],
)
def test_exposing_outcomes(outcome, counted):
    ledger = ImpactLedger()
    ledger.add(exposure("c1", T0, TREAT, outcome=outcome))
    assert bool(ledger.rows()) == counted


def test_outcomes_before_the_exposure_or_of_unexposed_customers_do_not_count():
    ledger = ImpactLedger()
    ledger.add(signal_record(signal("purchase", "c1", T0 - 1)))
    ledger.add(exposure("c1", T0, TREAT))
    ledger.add(signal_record(signal("purchase", "c1", T0 - 1)))  # late, but before in time
    ledger.add(signal_record(signal("purchase", "c9", T0 + 1)))
    assert rows_by_metric(ledger, "holdout:a")["conversion"]["treatment"] == 0.0


def test_every_metric_is_counted_per_customer():
    ledger = ImpactLedger()
    ledger.add(exposure("c1", T0, TREAT))
    for event in (
        signal("consent_changed", "c1", T0 + 1, granted="false"),
        signal("sentiment", "c1", T0 + 2, score="-0.9"),
        signal("case_resolved", "c1", T0 + 3),
        signal("message_received", "c1", T0 + 4),  # a repeat contact
        signal("csat", "c1", T0 + 5, score="2"),
        signal("csat", "c1", T0 + 6, score="4"),
        signal("purchase", "c1", T0 + 7, amount="10"),
        signal("purchase", "c1", T0 + 8, amount="15"),
    ):
        ledger.add(signal_record(event))
    rows = rows_by_metric(ledger, "holdout:a")
    assert list(rows) == list(METRICS)
    got = {m: r["treatment"] for m, r in rows.items()}
    assert got == {
        "conversion": 1.0,
        "revenue": 25.0,
        "unsubscribe": 1.0,
        "complaint": 1.0,
        "repeat_contact": 1.0,
        "csat": 3.0,
    }
    assert all(r["control"] is None and r["lift"] is None for r in rows.values())
    assert {r["verdict"] for r in rows.values()} == {"can't tell yet"}


def test_the_window_comes_from_the_policy_the_exposure_was_decided_under():
    short = Policy(experiments=Experiments(salt="s", holdouts={"a": 0.5}, attribution_window_ms=10))
    ledger = ImpactLedger(lambda version: short if version == "x" else None)
    ledger.add(exposure("c1", T0, TREAT))
    ledger.add(signal_record(signal("purchase", "c1", T0 + 11)))
    assert rows_by_metric(ledger, "holdout:a")["conversion"]["treatment"] == 0.0
    assert ledger.unknown_policies == set()


# --- the closed loop ---------------------------------------------------------------------

SETTINGS = Settings()
WINBACK = Effect("winback-bot", purchase_if_received=0.30, purchase_otherwise=0.20)
NAGGING = Effect(
    "nag-bot", category="sales", unsubscribe_if_received=0.15, unsubscribe_otherwise=0.03
)
POLICY = Policy(
    caps=(),
    experiments=Experiments(
        salt="loop", holdouts={"winback-bot": 0.5, "nag-bot": 0.5}, attribution_window_ms=WEEK
    ),
)


def closed_loop(customers: int) -> ImpactLedger:
    """Agents propose, the processor decides, the world answers what was received."""
    world = OutcomeWorld((WINBACK, NAGGING), customers, T0)
    bp = BatchProcessor(SETTINGS, policy=lambda: POLICY, clock=lambda: 1.0)
    store = DictStateStore()
    offsets = iter(range(10**9))

    def run(events):
        recs = [
            InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, next(offsets), None)
            for e in events
        ]
        return bp.process_and_save(recs, store).outputs

    outputs = run(world.opening())
    approved = [
        decode_record("approved_action", o.value)
        for o in outputs
        if o.topic == SETTINGS.topics.approved
    ]
    received = {(a["customer_id"], a["agents"][0]): True for a in approved}
    outputs += run(world.answers(received))
    ledger = ImpactLedger(lambda v: POLICY if v == POLICY.policy_version else None)
    for o in outputs:
        if o.topic == SETTINGS.topics.audit:
            ledger.add(decode_record("audit_record", o.value))
    return ledger


def test_the_report_finds_the_true_lift_and_the_harm():
    ledger = closed_loop(4_000)
    winback = rows_by_metric(ledger, "holdout:winback-bot")["conversion"]
    assert winback["ci_low"] < 0.10 < winback["ci_high"] and winback["ci_low"] > 0
    assert winback["verdict"] == "helps"
    assert winback["n_treatment"] + winback["n_control"] == 4_000
    nag = rows_by_metric(ledger, "holdout:nag-bot")["unsubscribe"]
    assert nag["verdict"] == "hurts" and nag["ci_low"] > 0
    assert ledger.unknown_policies == set()
