"""Decisions per second of the pure core on one CPU core, with every rule switched on.

Decoding happens before the clock starts: this measures `decide` alone, states held in a
dict the way one worker partition holds them. Run: `python -m bench.core_speed [events]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from pipeline.contracts.codec import decode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.arbitration import decide
from pipeline.core.policy import (
    DAY_MS,
    DEFAULT_POLICY,
    HOUR_MS,
    BannedPhrases,
    Disclosure,
    Escalation,
    FrequencyCap,
    KillSwitch,
    LoopPrevention,
    MaxLength,
    OfferArbitration,
    Policy,
    QuietHours,
)
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.simulator import AgentSimulator

#: Every rule on, tuned so that each one has work to do on simulator traffic.
FULL_POLICY = Policy(
    caps=(
        FrequencyCap("per-channel-daily", limit=3, window_ms=DAY_MS, scope="channel"),
        FrequencyCap("all-hourly", limit=4, window_ms=HOUR_MS, scope="all"),
    ),
    authority=("care-bot", "notify-bot", "upsell-bot", "winback-bot", "promo-bot"),
    kill_switch=KillSwitch(departments=frozenset({"legal"}), actions=frozenset({"callback"})),
    quiet_hours=QuietHours(
        "21:00", "08:00", "Europe/Berlin", {"marketing": "defer", "sales": "suppress"}
    ),
    offers=OfferArbitration(window_ms=DAY_MS),
    escalation=Escalation(
        repeat_contacts=2,
        repeat_window_ms=6 * HOUR_MS,
        negative_streak=2,
        explicit_request=True,
        consistency_escalates=True,
    ),
    loop_prevention=LoopPrevention(
        {"care-bot about support": frozenset({"order_number"})}, action="rewrite"
    ),
    disclosure=Disclosure("[AI]", repeat_after_ms=DAY_MS),
    redact_pii=frozenset({"card", "email", "phone", "iban"}),
    banned_phrases=BannedPhrases(("guaranteed", "risk-free"), action="redact"),
    max_length=MaxLength({"sms": 160, "push": 120}),
)


def simulated_events(total: int, customers: int = 1000) -> list[AgentEvent]:
    records = AgentSimulator(customers=customers).records(total)
    return [decode_event(r.key, r.value) for r in records]


def decisions_per_second(events: Sequence[AgentEvent], policy: Policy) -> tuple[float, int]:
    states: dict[str, CustomerState] = {}
    start = time.perf_counter()
    for ev in events:
        _, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
    elapsed = time.perf_counter() - start
    return len(events) / elapsed, len(states)


def main(argv: Sequence[str] = ()) -> None:
    total = int(argv[0]) if argv else 100_000
    events = simulated_events(total)
    for name, policy in (("default rules", DEFAULT_POLICY), ("full rule set", FULL_POLICY)):
        best = max(decisions_per_second(events, policy)[0] for _ in range(3))
        print(f"{name:>14}: {best:>10,.0f} decisions/s over {len(events):,} events (best of 3)")


if __name__ == "__main__":
    main(sys.argv[1:])
