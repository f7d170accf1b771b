"""The policy: every rule's settings as one immutable value, identified by version + hash.

The worker stamps `policy_version` on every decision so any decision can be replayed
under the exact policy that made it. Defaults are chosen so that `Policy()` only switches on
rules that are silent for ordinary traffic (no case open, no complaint, no asserted facts);
kill switch, quiet hours, offer arbitration, escalation, loop prevention and every content
transform (disclosure, PII redaction, banned phrases, maximum length) are off until a policy
sets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import orjson

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

CAP_SCOPES: frozenset[str] = frozenset({"channel", "category", "department", "all"})
QUIET_MODES: frozenset[str] = frozenset({"defer", "suppress"})
LOOP_ACTIONS: frozenset[str] = frozenset({"suppress", "rewrite"})
BANNED_ACTIONS: frozenset[str] = frozenset({"suppress", "redact"})
LENGTH_ACTIONS: frozenset[str] = frozenset({"truncate", "suppress"})
PII_KINDS: frozenset[str] = frozenset({"card", "email", "phone", "iban"})


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `limit` approved contacts per rolling `window_ms`, counted across all agents.

    `scope` says what is counted together: contacts on the same `channel`, of the same
    `category` or `department`, or `all` contacts of the customer.
    """

    name: str
    limit: int
    window_ms: int
    scope: str = "channel"
    exempt_categories: frozenset[str] = frozenset({"transactional"})


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Stop an agent, a department, an action type or a channel at once, without a deploy."""

    agents: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @property
    def armed(self) -> bool:
        return bool(self.agents or self.departments or self.actions or self.channels)


@dataclass(frozen=True, slots=True)
class ServiceFirst:
    """No selling to a customer with an open case or a fresh complaint.

    Cases older than `case_max_age_ms` count as closed, so a lost `case_resolved` signal
    cannot silence a customer for ever.
    """

    categories: frozenset[str] = frozenset({"marketing", "sales"})
    complaint_cooldown_ms: int = 2 * DAY_MS
    sentiment_threshold: float = -0.5
    case_max_age_ms: int = 30 * DAY_MS
    max_open_cases: int = 20


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local-time night for the customer: `start` to `end` ("HH:MM", may wrap midnight).

    `categories` maps a category to `defer` or `suppress`; categories not listed are not
    quiet. Empty means the rule is off.
    """

    start: str = "21:00"
    end: str = "08:00"
    timezone: str = "UTC"
    categories: Mapping[str, str] = field(default_factory=dict)
    exempt_transactional: bool = True


@dataclass(frozen=True, slots=True)
class OfferArbitration:
    """One active offer per customer per `window_ms` (0 switches the rule off).

    Score = priority^priority_weight x propensity^propensity_weight x value^value_weight;
    weights are exponents because the factors multiply (a weight of 0 ignores a factor).
    """

    window_ms: int = 0
    priority_weight: float = 1.0
    propensity_weight: float = 1.0
    value_weight: float = 1.0


MERGE_KEYS: frozenset[str] = frozenset({"trigger", "trigger+category"})


@dataclass(frozen=True, slots=True)
class HoldWindows:
    """Digest windows: proposals of an action in `hold_ms` are parked that long, so that
    competitors for the same merge key can join and the best one goes out once.

    `merge_key` widens what counts as "the same": the customer's trigger (default), or
    trigger and category. Actions not listed (or 0) are decided at once.
    """

    hold_ms: Mapping[str, int] = field(default_factory=dict)
    merge_key: str = "trigger"


@dataclass(frozen=True, slots=True)
class Escalation:
    """When a customer needs a human instead of another AI answer (rules/escalation.py).

    Three triggers put the customer in "needs human" state: `repeat_contacts` inbound
    contacts (message_received or case_opened) within `repeat_window_ms`; a streak of
    `negative_streak` consecutive sentiment scores below `sentiment_threshold`; an explicit
    request (handoff_to_human, or message_received with intent=human) if `explicit_request`.
    0 / false switches a trigger off. The next AI answer is routed to `queue` instead, and
    AI answers stay suppressed until case_resolved. `consistency_escalates` routes a
    contradiction the consistency ledger would suppress to `queue` as well.
    """

    repeat_contacts: int = 0
    repeat_window_ms: int = DAY_MS
    negative_streak: int = 0
    sentiment_threshold: float = -0.5
    explicit_request: bool = False
    queue: str = "human-care"
    consistency_escalates: bool = False

    @property
    def armed(self) -> bool:
        return bool(self.repeat_contacts or self.negative_streak or self.explicit_request)


@dataclass(frozen=True, slots=True)
class LoopPrevention:
    """Do not ask the customer for what the tower already knows (rules/loop_prevention.py).

    `templates` maps a template id to the facts its message asks for; a proposal uses the
    template whose id its `content` starts with (the longest such id). Facts are known from
    signals: profile_updated attributes and purchase order_id (as `order_number`). `action`
    is `suppress` or `rewrite` (approve, appending " [known: key=value, ...]" to the content).
    Empty `templates` switches the rule off.
    """

    templates: Mapping[str, frozenset[str]] = field(default_factory=dict)
    action: str = "suppress"

    @property
    def asked(self) -> frozenset[str]:
        """Every fact some template asks for: the only ones worth remembering."""
        return frozenset().union(*self.templates.values()) if self.templates else frozenset()


@dataclass(frozen=True, slots=True)
class Disclosure:
    """AI disclosure: `text` is prepended to the first AI-generated message per conversation
    (or per channel without one), and again once `repeat_after_ms` passed (0: never again).
    Empty `text` switches it off."""

    text: str = ""
    repeat_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class BannedPhrases:
    """Phrases (case-insensitive) that never reach a customer: `suppress` the proposal or
    `redact` them to "[removed]". Empty `phrases` switches it off."""

    phrases: tuple[str, ...] = ()
    action: str = "suppress"


@dataclass(frozen=True, slots=True)
class MaxLength:
    """Maximum content length per channel (characters): `truncate` with an ellipsis, or
    `suppress`. Channels not listed have no limit."""

    channels: Mapping[str, int] = field(default_factory=dict)
    action: str = "truncate"


#: Categories an agent holdout never withholds: service and transactional messages are owed
#: to the customer. The global control group withholds exactly the categories it lists.
HOLDOUT_EXEMPT: frozenset[str] = frozenset({"service", "transactional"})


@dataclass(frozen=True, slots=True)
class ControlGroup:
    """A share of customers who receive no proposal of `categories` at all."""

    share: float = 0.0
    categories: frozenset[str] = frozenset({"marketing", "sales"})


@dataclass(frozen=True, slots=True)
class Experiments:
    """Who is held back to measure what the agents cause (core/experiments.py).

    Assignment hashes `salt`, the experiment and the customer id, so it is the same on every
    worker and in replay; a new salt reshuffles everyone. `holdouts` maps an agent to the
    share of customers withheld from it. An exposure opens an attribution window of
    `attribution_window_ms`, in event time.
    """

    salt: str = ""
    control_group: ControlGroup = field(default_factory=ControlGroup)
    holdouts: Mapping[str, float] = field(default_factory=dict)
    attribution_window_ms: int = 7 * DAY_MS

    @property
    def armed(self) -> bool:
        return self.control_group.share > 0 or any(s > 0 for s in self.holdouts.values())


@dataclass(frozen=True, slots=True)
class Governance:
    """Who may change the policy itself (core/policy_governance.py).

    `require_approval` makes every change two steps, proposed by one person and approved
    by another (four eyes). It binds when the policy in force *or* the incoming one sets
    it, so switching governance off needs four eyes too; workers refuse an `active`
    record that skipped the approval.
    """

    require_approval: bool = False


#: `audit.input`: what an audit record keeps of the input event
AUDIT_INPUT_LEVELS: frozenset[str] = frozenset({"full", "redacted", "none"})
#: `audit.content`: what it keeps of a proposal's content, inside a kept input
AUDIT_CONTENT_LEVELS: frozenset[str] = frozenset({"full", "redacted", "hash"})


@dataclass(frozen=True, slots=True)
class AuditLevels:
    """How much personal data an audit record keeps (core/audit_minimisation.py).

    The audit embeds the input event, whose free text (content, signal attributes, asserts)
    can carry personal data. `input`: `full` keeps the event as decided; `redacted` keeps it
    with the PII the text guards find replaced by `[redacted:<kind>]`; `none` keeps only a
    stub naming the event. `content` governs the proposal's content inside a kept input:
    `full`, `redacted`, or `hash` (`sha256:` + hex of SHA-256 of `salt` + content, so
    equal content stays comparable without being readable). A redacted input never keeps
    content in full. The decision (outcome, rule, reason, trace) is always kept, with the
    same treatment for the values its reasons quote. Replay can re-check only what was kept.
    """

    input: str = "full"
    content: str = "full"
    salt: str = ""

    @property
    def minimised(self) -> bool:
        """Whether records differ from the full event at all."""
        return self.input != "full" or self.content != "full"

    @property
    def content_level(self) -> str:
        """The level content is really kept at: `input: redacted` implies at least redacted."""
        if self.input == "redacted" and self.content == "full":
            return "redacted"
        return self.content

    def describe(self) -> str:
        """The non-default levels as written in the policy, e.g. `audit.input=none`."""
        parts = [f"audit.input={self.input}"] if self.input != "full" else []
        if self.input != "none" and self.content != "full":
            parts.append(f"audit.content={self.content}")
        return ", ".join(parts) or "audit.input=full"


@dataclass(frozen=True, slots=True)
class Policy:
    version: str = "1.0.0"
    #: categories whose outreach needs an explicit opt-in (consent_changed granted=true)
    opt_in_required: Mapping[str, bool] = field(
        default_factory=lambda: {
            "marketing": True,
            "sales": True,
            "service": False,
            "transactional": False,
        }
    )
    caps: tuple[FrequencyCap, ...] = (
        FrequencyCap("per-channel-daily", limit=3, window_ms=DAY_MS, scope="channel"),
    )
    merge_window_ms: int = 10 * 60_000
    replay_memory: int = 200
    #: agents, highest authority first: who may correct a fact, who wins an offer tie
    authority: tuple[str, ...] = ()
    #: how many asserted facts the consistency ledger keeps per customer (oldest dropped)
    max_facts: int = 100
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    service_first: ServiceFirst = field(default_factory=ServiceFirst)
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    offers: OfferArbitration = field(default_factory=OfferArbitration)
    holds: HoldWindows = field(default_factory=HoldWindows)
    escalation: Escalation = field(default_factory=Escalation)
    loop_prevention: LoopPrevention = field(default_factory=LoopPrevention)
    #: transforms of approved content (rules/transforms.py); all off by default
    disclosure: Disclosure = field(default_factory=Disclosure)
    redact_pii: frozenset[str] = frozenset()  # of PII_KINDS
    banned_phrases: BannedPhrases = field(default_factory=BannedPhrases)
    max_length: MaxLength = field(default_factory=MaxLength)
    experiments: Experiments = field(default_factory=Experiments)
    governance: Governance = field(default_factory=Governance)
    audit: AuditLevels = field(default_factory=AuditLevels)
    #: the agents the document declares (`agents:`), the metrics' agent label values. Like
    #: the notes, not part of the version: the rules name agents themselves (authority,
    #: kill_switch, holdouts), so the declaration decides nothing
    agents: frozenset[str] = field(default=frozenset(), compare=False)
    #: journey -> its steps, as declared (`journeys:`); the metrics' label values
    journeys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    notes: str = ""
    content_hash: str = field(init=False, compare=False, repr=False, default="")

    def __post_init__(self) -> None:
        data = asdict(self)
        for ignored in ("notes", "content_hash", "agents"):
            data.pop(ignored)
        if self.experiments == Experiments():
            data.pop("experiments")  # so a policy without experiments keeps its old hash
        if self.governance == Governance():
            data.pop("governance")  # likewise for a policy without a governance block
        if self.audit == AuditLevels():
            data.pop("audit")  # and for one without an audit block
        if not self.journeys:
            data.pop("journeys")  # and for one that declares no journeys
        digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=sorted))
        object.__setattr__(self, "content_hash", digest.hexdigest())

    @property
    def policy_version(self) -> str:
        """`<semver>+<hash prefix>`: the version the owner wrote plus what it really contains."""
        return f"{self.version}+{self.content_hash[:12]}"

    @property
    def longest_cap_window_ms(self) -> int:
        return max((c.window_ms for c in self.caps), default=0)

    def rank(self, agent: str) -> int:
        """Authority rank: 0 is highest; agents not listed rank below every listed one."""
        try:
            return self.authority.index(agent)
        except ValueError:
            return len(self.authority)


DEFAULT_POLICY = Policy()
