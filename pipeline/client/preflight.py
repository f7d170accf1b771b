"""`Preflight`: the tower's advisory answer to "what would you decide for this event now?"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.client.errors import TowerError
from pipeline.core.decision import EMITTING


@dataclass(frozen=True, slots=True)
class TraceStep:
    rule: str
    verdict: str
    reason: str


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the tower would decide for the event now. Advisory: other events may be decided
    before yours is, so only the audit record (`wait_decision`) is binding."""

    api_version: str
    advisory: bool
    event_id: str
    customer_id: str
    outcome: str
    rule: str | None
    reason: str
    trace: tuple[TraceStep, ...]
    #: the content as it would be sent (after the policy's transforms)
    content: str | None
    #: the approved action as `approved-actions` would carry it, if one would be emitted
    action: dict[str, Any] | None
    policy_version: str
    served_by: str
    #: the id the real decision will have (same event, same customer)
    decision_id: str = ""
    #: the server's wording of what "advisory" means
    note: str = ""
    #: (experiment, arm) pairs; an outcome `withheld` means an experiment keeps it back
    experiments: tuple[tuple[str, str], ...] = ()

    @property
    def approved(self) -> bool:
        """Whether an action would be emitted: approved, deferred (sent later, e.g. after
        quiet hours) or escalated (routed to a human)."""
        return self.outcome in EMITTING

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Preflight:
        try:
            return cls(
                api_version=str(body.get("api_version", "")),
                advisory=bool(body.get("advisory", True)),
                event_id=str(body["event_id"]),
                customer_id=str(body["customer_id"]),
                outcome=str(body["outcome"]),
                rule=body.get("rule"),
                reason=str(body.get("reason", "")),
                trace=tuple(
                    TraceStep(str(s["rule"]), str(s["verdict"]), str(s["reason"]))
                    for s in body.get("trace") or ()
                ),
                content=body.get("content"),
                action=body.get("action"),
                policy_version=str(body.get("policy_version", "")),
                served_by=str(body.get("served_by", "")),
                decision_id=str(body.get("decision_id", "")),
                note=str(body.get("note", "")),
                experiments=tuple(
                    (str(x["experiment"]), str(x["arm"])) for x in body.get("experiments") or ()
                ),
            )
        except (KeyError, TypeError) as exc:
            raise TowerError(
                f"unexpected preflight answer ({type(exc).__name__} {exc}): {body!r:.200}"
            ) from None
