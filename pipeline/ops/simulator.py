"""Simulated agents: marketing, sales and service bots reacting to the same customer
triggers, consent changes, replays and a few malformed records.

Deterministic for a seed, so tests can compute the expected decisions with the pure core.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

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
    ) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"cust-{i:05d}" for i in range(customers)]
        self.clock = start_ms
        self.withdraw_share = withdraw_share
        self.replay_share = replay_share
        self.avro_share = avro_share
        self._n = 0
        self._history: list[SimRecord] = []

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
        self._history.extend(batch)
        return batch

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
