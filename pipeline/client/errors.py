"""The client's errors: one base, `TowerError`, and a subclass for each answer an agent acts on."""

from __future__ import annotations


class TowerError(Exception):
    """Anything the tower, its web API or its Kafka cluster refused or did not answer."""


class InvalidProposal(TowerError):
    """The event breaks the input contract (a worker would dead-letter it). `reason` is the
    dead-letter code (docs/contracts.md, Input), `field` the offending field when known."""

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class UnknownCustomer(TowerError):
    """The tower has decided nothing about this customer yet (404): nothing to ground on."""

    def __init__(self, customer_id: str, hint: str = "") -> None:
        super().__init__(f"unknown customer {customer_id!r}" + (f": {hint}" if hint else ""))
        self.customer_id = customer_id
        self.hint = hint


class TowerUnavailable(TowerError):
    """The tower cannot answer now (503: starting, restoring, rebalancing) and did not
    within the client's timeout; `retry_after_s` is the server's last Retry-After."""

    def __init__(self, retry_after_s: float | None, detail: str = "") -> None:
        after = "" if retry_after_s is None else f"; retry after {retry_after_s:g} s"
        super().__init__(f"tower unavailable{': ' + detail if detail else ''}{after}")
        self.retry_after_s = retry_after_s
        self.detail = detail


class DecisionTimeout(TowerError):
    """No final audit record for the event in time: the workers are down or lagging, or
    the proposal is held and its hold is not released yet."""

    def __init__(self, event_id: str, timeout_s: float) -> None:
        super().__init__(f"no final decision for {event_id!r} within {timeout_s:g} s")
        self.event_id = event_id
        self.timeout_s = timeout_s
