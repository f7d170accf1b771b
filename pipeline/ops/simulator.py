"""Simulated agents: marketing, sales and service bots reacting to the same customer
triggers, consent changes, replays and a few malformed records.

Deterministic for a seed, so tests can compute the expected decisions with the pure core.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent, Proposal, Signal

BOTS = (
    ("winback-bot", "marketing", "marketing", "email", "message"),
    ("upsell-bot", "sales", "sales", "email", "offer"),
    ("promo-bot", "marketing", "marketing", "sms", "message"),
    ("care-bot", "service", "service", "chat", "answer"),
    ("notify-bot", "service", "transactional", "push", "message"),
)
TRIGGERS = ("cart_abandoned", "plan_renewal_due", "support_question", "order_shipped")

MALFORMED: tuple[bytes, ...] = (
    b"{not json",
    b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00garbage",  # Avro with an unknown fingerprint
    b'{"event_id": "x"}',  # missing fields
    b"plain text",
    b'{"event_id":"m1","customer_id":"nobody","occurred_at":1,"kind":"signal","agent":"a",'
    b'"department":"system","signal":{"type":"purchase","attributes":{}}}',  # key mismatch
)


@dataclass(frozen=True, slots=True)
class SimRecord:
    key: bytes
    value: bytes
    event: AgentEvent | None  # None for a malformed record


class AgentSimulator:
    """Yields records in production order; each customer's records stay in time order."""

    def __init__(
        self,
        customers: int = 50,
        seed: int = 7,
        start_ms: int = 1_767_225_600_000,
        withdraw_share: float = 0.2,
        replay_share: float = 0.05,
        avro_share: float = 0.5,
        replay_memory: int | None = None,
    ) -> None:
        """`replay_memory` bounds the records a replay is drawn from (all of them if None),
        so an endless stream keeps its memory flat."""
        self.rng = random.Random(seed)
        self.customers = [f"cust-{i:05d}" for i in range(customers)]
        self.clock = start_ms
        self.withdraw_share = withdraw_share
        self.replay_share = replay_share
        self.avro_share = avro_share
        self._n = 0
        self._history: list[SimRecord] = []
        self.replay_memory = replay_memory

    def _next_id(self) -> str:
        self._n += 1
        return f"sim-{self._n:08d}"

    def _encode(self, event: AgentEvent) -> SimRecord:
        fmt = "avro" if self.rng.random() < self.avro_share else "json"
        return SimRecord(event.customer_id.encode(), encode_event(event, fmt), event)

    def _signal(self, customer: str, type_: str, **attrs: str) -> SimRecord:
        self.clock += self.rng.randint(1, 2000)
        return self._encode(
            AgentEvent(
                event_id=self._next_id(),
                customer_id=customer,
                occurred_at=self.clock,
                kind="signal",
                agent="crm",
                department="system",
                signal=Signal(type_, attrs),
            )
        )

    def _proposal(self, customer: str, trigger: str, bot: tuple[str, ...]) -> SimRecord:
        agent, department, category, channel, action = bot
        self.clock += self.rng.randint(1, 2000)
        offer = action == "offer"
        return self._encode(
            AgentEvent(
                event_id=self._next_id(),
                customer_id=customer,
                occurred_at=self.clock,
                kind="proposal",
                agent=agent,
                department=department,
                channel=channel,
                trigger=trigger,
                proposal=Proposal(
                    action=action,
                    category=category,
                    priority=self.rng.randint(10, 90),
                    content=f"{agent} about {trigger.split(':')[0]}",
                    offer_id="upgrade-pro" if offer else None,
                    offer_value=20.0 if offer else None,
                    propensity=round(self.rng.random(), 3) if offer else None,
                    ai_generated=True,
                ),
            )
        )

    def opening(self) -> Iterator[SimRecord]:
        """Every customer opts in; some withdraw a channel straight away."""
        for c in self.customers:
            yield self._signal(c, "consent_changed", channel="all", purpose="all", granted="true")
            if self.rng.random() < self.withdraw_share:
                channel = self.rng.choice(["email", "sms"])
                yield self._signal(
                    c, "consent_changed", channel=channel, purpose="all", granted="false"
                )

    def step(self) -> list[SimRecord]:
        """One customer trigger: several bots react to it at once, sometimes a replay."""
        c = self.rng.choice(self.customers)
        trigger = f"{self.rng.choice(TRIGGERS)}:{self._n}"
        batch = [self._proposal(c, trigger, bot) for bot in self.rng.sample(BOTS, k=3)]
        if self.rng.random() < 0.2:
            batch.append(self._signal(c, "message_received", text="hello?"))
        if self._history and self.rng.random() < self.replay_share:
            batch.append(self.rng.choice(self._history))  # the same record again: a replay
        self._remember(batch)
        return batch

    def endless(self) -> Iterator[SimRecord]:
        """The opening, then trigger after trigger for as long as the caller reads."""
        yield from self.opening()
        while True:
            yield from self.step()

    def _remember(self, batch: list[SimRecord]) -> None:
        self._history.extend(batch)
        if self.replay_memory is not None and len(self._history) > 2 * self.replay_memory:
            del self._history[: -self.replay_memory]

    def records(self, total: int, malformed: int = 0) -> list[SimRecord]:
        """Exactly `total` records, `malformed` of them invalid, spread through the stream."""
        valid_target = total - malformed
        out: list[SimRecord] = list(self.opening())[:valid_target]
        while len(out) < valid_target:
            out.extend(self.step()[: valid_target - len(out)])
        for i in range(malformed):
            bad = MALFORMED[i % len(MALFORMED)]
            key = self.rng.choice(self.customers).encode()
            out.insert(self.rng.randrange(len(out) + 1), SimRecord(key, bad, None))
        return out


#: A sixth bot for the showcase only: the policy's kill switch stops its callbacks.
CALLBACK_BOT = ("callback-bot", "sales", "sales", "voice", "callback")
#: Customer time zones for the showcase: the run starts at 00:00 UTC, so Berlin, Kolkata and
#: São Paulo customers are in their night (quiet hours) and the others are awake.
SHOWCASE_TIMEZONES = (
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
)
#: Content template id that asks for the order number (the showcase policy's loop prevention).
ASK_ORDER = "ask-order:"
BANNED_CLAIM = "guaranteed lowest price"
LONG_SMS = (
    "Flash sale! Everything in the spring collection is 30% off until midnight, shipping is "
    "free on orders over 20 EUR, and members collect double points on every single item."
)


class ShowcaseSimulator(AgentSimulator):
    """Traffic that makes every rule of `deploy/policy.showcase.yaml` fire in a short demo.

    On top of the base bots' reactions to triggers: customer time zones, purchases with
    order numbers, support cases opened and resolved, complaints, requests for a human,
    asserted prices that disagree, expired and over-long promotions, banned claims, e-mail
    addresses in answers, and an occasional callback bot. A subclass, so `AgentSimulator`'s
    seeded output (which tests and benchmarks depend on) stays exactly as it was.
    """

    def __init__(
        self,
        customers: int = 300,
        seed: int = 7,
        start_ms: int = 1_767_225_600_000,
        withdraw_share: float = 0.2,
        replay_share: float = 0.05,
        avro_share: float = 0.5,
    ) -> None:
        super().__init__(customers, seed, start_ms, withdraw_share, replay_share, avro_share)
        #: customer -> the case opened for them and not resolved yet
        self._open_cases: dict[str, str] = {}

    def opening(self) -> Iterator[SimRecord]:
        """Consent as in the base, plus each customer's time zone (for quiet hours)."""
        for c in self.customers:
            yield self._signal(c, "consent_changed", channel="all", purpose="all", granted="true")
            if self.rng.random() < self.withdraw_share:
                channel = self.rng.choice(["email", "sms"])
                yield self._signal(
                    c, "consent_changed", channel=channel, purpose="all", granted="false"
                )
            yield self._signal(c, "profile_updated", timezone=self.rng.choice(SHOWCASE_TIMEZONES))

    def step(self) -> list[SimRecord]:
        """One customer trigger with the signals around it, the bots' reactions, follow-ups."""
        rng = self.rng
        c = rng.choice(self.customers)
        kind = rng.choice(TRIGGERS)
        trigger = f"{kind}:{self._n}"
        batch: list[SimRecord] = []
        if kind == "order_shipped" and rng.random() < 0.7:
            batch.append(self._signal(c, "purchase", order_id=f"ORD-{rng.randint(10000, 99999)}"))
        if kind == "support_question" and c not in self._open_cases and rng.random() < 0.5:
            case_id = f"case-{self._n}"
            self._open_cases[c] = case_id
            batch.append(self._signal(c, "case_opened", case_id=case_id))
        bots = rng.sample(BOTS, k=3)
        if rng.random() < 0.05:
            bots.append(CALLBACK_BOT)
        batch.extend(self._showcase_proposal(c, trigger, bot) for bot in bots)
        roll = rng.random()
        if roll < 0.15:
            batch.append(self._signal(c, "message_received", text="hello?"))
        elif roll < 0.19:
            batch.append(
                self._signal(c, "message_received", text="a person, please", intent="human")
            )
        elif roll < 0.25:
            batch.append(self._signal(c, "sentiment", score="-0.8"))
        elif roll < 0.30:
            batch.append(self._signal(c, "sentiment", score="0.6"))
        if self._open_cases and rng.random() < 0.3:  # the oldest open case gets resolved
            solved, case_id = next(iter(self._open_cases.items()))
            del self._open_cases[solved]
            batch.append(self._signal(solved, "case_resolved", case_id=case_id))
        if self._history and rng.random() < self.replay_share:
            batch.append(rng.choice(self._history))  # the same record again: a replay
        self._remember(batch)
        return batch

    def _showcase_proposal(self, customer: str, trigger: str, bot: tuple[str, ...]) -> SimRecord:
        """A base proposal with content, asserted facts and expiry that the rules look at."""
        rec = self._proposal(customer, trigger, bot)
        assert rec.event is not None and rec.event.proposal is not None
        event, p = rec.event, rec.event.proposal
        rng = self.rng
        kind = trigger.split(":")[0]
        content, asserts, expires_at = p.content, dict(p.asserts), p.expires_at
        agent = event.agent
        if agent == "care-bot":
            if kind == "order_shipped":
                content = f"{ASK_ORDER} what is your order number? I will track the parcel."
            elif rng.random() < 0.3:
                content = f"Happy to help. I have written to {customer}@example.com as well."
        elif agent == "promo-bot":
            roll = rng.random()
            if roll < 0.15:
                content = f"Spring sale: {BANNED_CLAIM} in town!"
            elif roll < 0.35:
                content = LONG_SMS
            elif roll < 0.45:
                expires_at = event.occurred_at - rng.randint(1_000, 600_000)  # arrived too late
        elif agent == "upsell-bot":
            content = "Upgrade to Pro for 20 EUR a month."
            asserts["pro_price"] = "20 EUR"
        elif agent == "winback-bot" and kind in ("plan_renewal_due", "cart_abandoned"):
            content = "Come back to Pro: still 25 EUR a month."
            asserts["pro_price"] = "25 EUR"  # disagrees with upsell-bot's price
        if (content, asserts, expires_at) == (p.content, dict(p.asserts), p.expires_at):
            return rec
        changed = replace(
            event, proposal=replace(p, content=content, asserts=asserts, expires_at=expires_at)
        )
        return self._encode_as(rec, changed)

    def _encode_as(self, rec: SimRecord, event: AgentEvent) -> SimRecord:
        """Re-encode in the format the base chose, so the Avro/JSON share stays the same."""
        fmt = "json" if rec.value[:1] == b"{" else "avro"
        return SimRecord(rec.key, encode_event(event, fmt), event)
