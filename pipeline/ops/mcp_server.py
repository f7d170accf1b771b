"""`tower mcp`: the tower as tools for an LLM host, on the official MCP SDK.

The server is one agent's way in: it speaks to the workers over HTTP with the agents'
client (`journey_tower_client`), as that agent (TOWER_AGENT, or the name an agent token is
bound to), so the model never chooses whom it proposes as. The tool descriptions are the
model's instructions: they say when to call each tool and what each outcome means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from journey_tower_client import AsyncTowerClient, Config, Decision, TowerError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

T = TypeVar("T")

#: the resource summarising the policy in force
POLICY_URI = "tower://policy"
#: a customer id no one has: its context is the policy applied to nobody's history
POLICY_PROBE = "mcp-policy-probe"

INSTRUCTIONS = """\
Journey Tower decides whether this agent may contact a customer. Always, in this order:
1. get_customer_context before writing anything: consents, open cases, what the customer
   was already told, cap headroom, quiet hours, and whether a human owns the conversation.
2. Write the message grounded on that context (never contradict facts told, never ask for
   what is known).
3. propose_action before sending anything. Send only when the outcome is approved or
   deferred, and send the returned action's content (the policy may have changed it), not
   your draft. Anything else: do not send.
preflight_action is an optional, advisory check before spending effort on a draft."""

NEXT_STEP = {
    "approved": "send action.content on action.channel now; it is the policy's version of "
    "your draft",
    "deferred": "send action.content on action.channel, not before not_before (quiet hours)",
    "escalated": "do not send: the conversation was routed to a human (action says where)",
    "suppressed": "do not send: a rule refused it (rule and reason say why); do not retry "
    "the same message",
    "merged": "do not send: another proposal for this customer carries it",
    "duplicate": "do not send: this was already decided (same event or same content)",
    "withheld": "do not send: an experiment keeps this customer as a control",
    "recorded": "nothing to send: the signal was recorded",
    "held": "send nothing yet: a hold window keeps it; ask get_decision later",
}

#: the proposal fields the preflight and propose tools take, passed on when given
PROPOSAL_FIELDS = (
    "channel",
    "action",
    "category",
    "content",
    "department",
    "priority",
    "offer_id",
    "asserts",
    "conversation_id",
)
CONTEXT_DESCRIPTION = """\
Read what the tower knows about a customer BEFORE writing a message to them. Returns
consents (channel, purpose, granted), open support cases, facts already told (do not
contradict them) and known (do not ask for them), recent contacts, frequency-cap headroom
per cap, quiet hours (quiet_now, next_allowed_send), holds, an active offer, and escalation
(needs_human true: a human owns the conversation, do not write). known=false: the tower
has not met this customer; the context is the policy's starting point (no consents yet)."""

PREFLIGHT_DESCRIPTION = """\
Ask what the tower would decide for a proposal now, without sending or storing anything.
Advisory only: use it to avoid drafting a message that would be refused (outcome
suppressed, with the rule and reason). It is not permission to send: only propose_action's
decision is."""

PROPOSE_DESCRIPTION = """\
Propose contacting the customer and get the tower's binding decision. Call it BEFORE
sending anything, with the content you intend to send. Outcomes: approved (send
action.content now), deferred (send action.content not before not_before), escalated (do
not send; a human takes over), suppressed, merged, duplicate, withheld (do not send; rule
and reason say why). status pending: not decided within wait_s (a hold window); ask
get_decision with the event_id later and send nothing until it is decided. Pass the same
event_id to retry safely: a retry returns the same decision, never a second action.
channel: email, sms, push, in_app, chat or voice. category: marketing, sales, service or
transactional."""

DECISION_DESCRIPTION = """\
The decision of an earlier propose_action whose status was pending (or any event by its
id). Same answer as propose_action: send only when decided and approved or deferred."""


def decision_view(decision: Decision) -> dict[str, Any]:
    """The decision as the model reads it, with the step it implies."""
    view = {
        "event_id": decision.event_id,
        "customer_id": decision.customer_id,
        "status": decision.status,
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "action": decision.action,
        "not_before": decision.not_before,
        "audit_id": decision.audit_id,
    }
    if decision.decided:
        view["next_step"] = NEXT_STEP.get(decision.outcome or "", "do not send")
    else:
        view["next_step"] = "send nothing yet: ask get_decision with this event_id later"
    return view


def policy_view(context: Mapping[str, Any]) -> dict[str, Any]:
    """What an agent must plan around, read from the empty context the policy applies to
    a customer the tower has not met: the version and the quiet hours (caps appear in a
    customer's context once a contact counts against them)."""
    return {
        "policy_version": context.get("policy_version"),
        "quiet_hours": {
            k: (context.get("quiet_hours") or {}).get(k)
            for k in ("start", "end", "timezone", "categories")
        },
        "caps": "per customer: get_customer_context lists each cap's limit, use and headroom",
        "outcomes": NEXT_STEP,
        "order": INSTRUCTIONS,
    }


def build_server(config: Config) -> MCPServer:
    """The MCP server whose tools call the tower with `config` (URL, token, agent)."""
    server: MCPServer = MCPServer(name="journey-tower", instructions=INSTRUCTIONS)

    def client() -> AsyncTowerClient:
        return AsyncTowerClient(config=config)

    async def ask(use: Callable[[AsyncTowerClient], Awaitable[T]]) -> T:
        """`use` the tower through a client of its own, for one tool call."""
        async with client() as tower:
            try:
                return await use(tower)
            except TowerError as exc:  # one line for the model: what is wrong and what to do
                raise ToolError(str(exc)) from None

    @server.tool(name="get_customer_context", description=CONTEXT_DESCRIPTION)
    async def get_customer_context(customer_id: str) -> dict[str, Any]:
        return await ask(lambda tower: tower.context(customer_id))

    @server.tool(name="preflight_action", description=PREFLIGHT_DESCRIPTION)
    async def preflight_action(
        customer_id: str,
        channel: str,
        action: str,
        category: str,
        content: str | None = None,
        department: str | None = None,
        priority: int = 50,
        offer_id: str | None = None,
        asserts: dict[str, str] | None = None,
        conversation_id: str | None = None,
    ) -> dict[str, Any]:
        fields = _fields(locals())
        answer = await ask(lambda tower: tower.preflight(customer_id, **fields))
        keep = ("outcome", "rule", "reason", "content", "trace", "advisory", "note")
        return {k: answer.get(k) for k in keep}

    @server.tool(name="propose_action", description=PROPOSE_DESCRIPTION)
    async def propose_action(
        customer_id: str,
        channel: str,
        action: str,
        category: str,
        content: str | None = None,
        department: str | None = None,
        priority: int = 50,
        offer_id: str | None = None,
        asserts: dict[str, str] | None = None,
        conversation_id: str | None = None,
        event_id: str | None = None,
        wait_s: float = 10.0,
    ) -> dict[str, Any]:
        fields = _fields(locals())
        decision = await ask(
            lambda tower: tower.propose(
                customer_id,
                wait_s=min(max(wait_s, 0.0), 30.0),
                event_id=event_id,
                ai_generated=True,
                **fields,
            )
        )
        return decision_view(decision)

    @server.tool(name="get_decision", description=DECISION_DESCRIPTION)
    async def get_decision(event_id: str, customer_id: str) -> dict[str, Any]:
        return decision_view(await ask(lambda tower: tower.decision(event_id, customer_id)))

    @server.resource(
        POLICY_URI,
        name="policy",
        description="The policy in force: its version, quiet hours, what each outcome "
        "means, and the order to call the tools in.",
        mime_type="application/json",
    )
    async def policy() -> dict[str, Any]:
        async with client() as tower:
            try:
                return policy_view(await tower.context(POLICY_PROBE))
            except TowerError as exc:
                raise ResourceError(str(exc)) from None

    return server


def _fields(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The proposal fields among a tool's arguments (its `locals()`), those given."""
    return {k: arguments[k] for k in PROPOSAL_FIELDS if arguments.get(k) is not None}
