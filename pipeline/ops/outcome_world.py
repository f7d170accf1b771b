"""A closed-loop world where the truth is known: agents propose, the tower decides, and the
customers answer what they received with the probabilities set here.

Used by the demo and the experiments' integration test: since each agent's true effect is
given, `tower report` can be checked against it. Every random draw is seeded by the seed,
the customer and the agent, so the outcome does not depend on the order decisions arrive in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.contracts.events import AgentEvent, Proposal, Signal

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Effect:
    """What one agent's message does to a customer, against not receiving it."""

    agent: str
    category: str = "marketing"
    action: str = "message"
    channel: str = "email"
    purchase_if_received: float = 0.0
    purchase_otherwise: float = 0.0
    unsubscribe_if_received: float = 0.0
    unsubscribe_otherwise: float = 0.0
    amount: float = 40.0  # mean purchase amount


class OutcomeWorld:
    """Customers, the agents' proposals to each, and the customers' answers."""

    def __init__(
        self,
        effects: Iterable[Effect],
        customers: int,
        start_ms: int,
        seed: int = 11,
        prefix: str = "cust-",
    ) -> None:
        self.effects = {e.agent: e for e in effects}
        self.customers = [f"{prefix}{i:05d}" for i in range(customers)]
        self.start_ms = start_ms
        self.seed = seed

    def _rng(self, customer: str, agent: str) -> random.Random:
        key = f"{self.seed}\x00{customer}\x00{agent}".encode()
        return random.Random(hashlib.blake2b(key, digest_size=8).digest())

    def opening(self) -> list[AgentEvent]:
        """Each customer opts in to marketing, then every agent proposes one message."""
        out: list[AgentEvent] = []
        for i, customer in enumerate(self.customers):
            at = self.start_ms + i
            out.append(_signal(customer, at, "opt-in", "consent_changed", granted="true"))
            for j, effect in enumerate(self.effects.values(), start=1):
                out.append(
                    AgentEvent(
                        event_id=f"{customer}-{effect.agent}-proposal",
                        customer_id=customer,
                        occurred_at=at + j * HOUR_MS,
                        kind="proposal",
                        agent=effect.agent,
                        department=effect.category,
                        channel=effect.channel,
                        proposal=Proposal(
                            action=effect.action,
                            category=effect.category,
                            priority=50,
                            content=f"{effect.agent} has something for you",
                        ),
                    )
                )
        return out

    def answers(self, received: Mapping[tuple[str, str], bool]) -> list[AgentEvent]:
        """The customers' signals a day after the campaign, given who received which
        agent's message: `received[(customer, agent)]`; pairs not listed did not."""
        out: list[AgentEvent] = []
        for i, customer in enumerate(self.customers):
            at = self.start_ms + i + 24 * HOUR_MS
            for effect in self.effects.values():
                rng = self._rng(customer, effect.agent)
                got = received.get((customer, effect.agent), False)
                buy = effect.purchase_if_received if got else effect.purchase_otherwise
                leave = effect.unsubscribe_if_received if got else effect.unsubscribe_otherwise
                if rng.random() < buy:
                    amount = round(rng.expovariate(1 / effect.amount), 2)
                    out.append(_signal(customer, at, effect.agent, "purchase", amount=str(amount)))
                if rng.random() < leave:
                    out.append(
                        _signal(customer, at + 1, effect.agent, "consent_changed", granted="false")
                    )
        return out


def _signal(customer: str, at: int, cause: str, kind: str, **attributes: str) -> AgentEvent:
    """A signal whose id names the customer, its cause and its kind."""
    return AgentEvent(
        event_id=f"{customer}-{cause}-{kind}",
        customer_id=customer,
        occurred_at=at,
        kind="signal",
        agent="crm",
        department="system",
        channel="email" if kind == "consent_changed" else None,
        signal=Signal(type=kind, attributes=attributes),
    )
