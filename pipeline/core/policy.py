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
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import orjson

# Each rule's settings live in its own module (rules/); named here as the types of the
# Policy fields, and re-exported so callers can build a Policy from this module alone.
from pipeline.core.policy_reader import DAY_MS as DAY_MS
from pipeline.core.policy_reader import HOUR_MS as HOUR_MS
from pipeline.core.rules.consent import OPT_IN_REQUIRED
from pipeline.core.rules.escalation import Escalation as Escalation
from pipeline.core.rules.frequency_caps import FrequencyCap as FrequencyCap
from pipeline.core.rules.kill_switch import KillSwitch as KillSwitch
from pipeline.core.rules.loop_prevention import LoopPrevention as LoopPrevention
from pipeline.core.rules.offer_arbitration import OfferArbitration as OfferArbitration
from pipeline.core.rules.quiet_hours import QuietHours as QuietHours
from pipeline.core.rules.service_first import ServiceFirst as ServiceFirst
from pipeline.core.rules.transforms import BannedPhrases as BannedPhrases
from pipeline.core.rules.transforms import Disclosure as Disclosure
from pipeline.core.rules.transforms import MaxLength as MaxLength

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
    """Every policy section as a typed field. A rule's section is declared in its module
    (the settings dataclass and its reader, see rules/__init__.py) and typed here."""

    version: str = "1.0.0"
    #: categories whose outreach needs an explicit opt-in (consent_changed granted=true)
    opt_in_required: Mapping[str, bool] = field(default_factory=lambda: dict(OPT_IN_REQUIRED))
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
    redact_pii: frozenset[str] = frozenset()  # of transforms.PII_KINDS
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
        for ignored in NOT_HASHED:
            data.pop(ignored)
        for name, default in HASHED_WHEN_SET:
            if getattr(self, name) == default:
                data.pop(name)  # so a policy that leaves the section out keeps its hash
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


#: Fields that are not part of what the policy decides, so not part of its version.
NOT_HASHED: frozenset[str] = frozenset({"notes", "content_hash", "agents"})
#: The sections every version hash includes, set or not. Any other section enters the hash
#: only when it differs from its default, so adding a section (a new rule's) keeps the
#: version of every policy that does not use it.
ALWAYS_HASHED: frozenset[str] = frozenset(
    {
        "version",
        "opt_in_required",
        "caps",
        "merge_window_ms",
        "replay_memory",
        "authority",
        "max_facts",
        "kill_switch",
        "service_first",
        "quiet_hours",
        "offers",
        "holds",
        "escalation",
        "loop_prevention",
        "disclosure",
        "redact_pii",
        "banned_phrases",
        "max_length",
    }
)


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


#: (field, default) of the sections hashed only when set.
HASHED_WHEN_SET: tuple[tuple[str, Any], ...] = tuple(
    (f.name, _default(f)) for f in fields(Policy) if f.name not in ALWAYS_HASHED | NOT_HASHED
)


DEFAULT_POLICY = Policy()
