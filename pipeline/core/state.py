"""Per-customer state: everything the rules remember about one customer, bounded in size.

The core never mutates a state it was given; `decide` returns a new one (copy on write of the
parts that changed). Serialisation is compact JSON so the changelog stays small: fields that
are empty are left out, and bytes written before a field existed still read.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec
import orjson
from msgspec import Struct, field

#: Characters of one event id's digest in the replay memory: 64 bits, urlsafe base64.
DIGEST_CHARS = 11


def digest_of(event_id: str) -> str:
    """An event id as the replay memory keeps it."""
    raw = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return base64.urlsafe_b64encode(raw)[:DIGEST_CHARS].decode()


class ReplayMemory(Struct, frozen=True):
    """The event ids last decided for a customer, oldest first, as fixed-width digests in
    one string.

    A full memory is hundreds of ids, and the state is loaded and stored on every event:
    one string is a copy to (de)serialise, where a dict of ids is hundreds of objects to
    build and dump. The decision id is not kept: `decision_id_for` derives it from the
    event id. A false match needs two of one customer's remembered ids to share 64 bits.
    """

    digests: str = ""

    @classmethod
    def of(cls, event_ids: Iterable[str]) -> ReplayMemory:
        return cls("".join(digest_of(e) for e in event_ids))

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and self.holds(digest_of(event_id))

    def holds(self, digest: str) -> bool:
        """Whether an id of this `digest_of` is remembered."""
        at = 0
        while (at := self.digests.find(digest, at)) != -1:
            if at % DIGEST_CHARS == 0:  # a match across two digests is not one
                return True
            at += 1
        return False

    def __len__(self) -> int:
        return len(self.digests) // DIGEST_CHARS

    def add(self, digest: str, limit: int) -> ReplayMemory:
        """This memory with the id of `digest` (`digest_of`) added, the oldest forgotten
        beyond `limit` ids."""
        digests = self.digests + digest
        excess = len(digests) - limit * DIGEST_CHARS
        return ReplayMemory(digests[excess:] if excess > 0 else digests)


class Contact(NamedTuple):
    """An approved contact, kept as long as the longest frequency-cap window needs it."""

    at: int
    channel: str
    category: str
    department: str


class TriggerMemo(NamedTuple):
    """The approved decision a trigger already produced (for duplicate merge)."""

    at: int
    decision_id: str
    action_id: str | None


class ConsentMark(NamedTuple):
    at: int
    granted: bool


class Fact(NamedTuple):
    """What an approved action told the customer, and who said it first."""

    value: str
    agent: str
    at: int


class ActiveOffer(NamedTuple):
    """The offer the customer currently holds, for offer arbitration."""

    at: int
    offer_id: str
    agent: str
    score: float
    decision_id: str


class Hold(NamedTuple):
    """Proposals parked for one merge key until `deadline` (event time), best one wins then.

    `items` are the held events as canonical JSON, so the changelog carries them and a
    crash or rebalance loses none.
    """

    key: str
    deadline: int
    items: tuple[str, ...]


class Handoff(NamedTuple):
    """The customer needs a human (escalation): since when, why, and the route_case action
    that handed them over (None until the next AI answer was turned into one)."""

    at: int
    reason: str
    action_id: str | None


class Conversation(NamedTuple):
    """An open conversation (or case) as the experience metrics follow it."""

    started: int  # first contact, event time
    channel: str  # channel of the last touchpoint, "" if unknown
    ai: bool  # an AI answer was approved in it
    handoff: bool  # it was handed to a human


class ClosedConversation(NamedTuple):
    """A resolved AI-handled conversation, kept until its CSAT arrives (or the window ends)."""

    at: int
    contained: bool


class Exposure(NamedTuple):
    """The arm of an experiment a customer was first exposed to, and when (its window's
    start, event time); core/experiments.py."""

    arm: str
    at: int


class Journey(Struct, frozen=True):
    """What the experience metrics remember (pipeline/core/experience.py), bounded there."""

    conversations: dict[str, Conversation] = field(default_factory=dict)  # open, oldest first
    closed: dict[str, ClosedConversation] = field(default_factory=dict)  # awaiting CSAT
    resolved_at: int | None = None  # last resolution not yet followed by a contact
    ai_at: int | None = None  # last approved AI action
    sentiment: float | None = None  # last sentiment score
    ai_since_sentiment: bool = False  # an approved AI action came after that score

    def to_dict(self) -> dict[str, Any]:
        """Compact form; empty fields left out (an empty journey is `{}`)."""
        d: dict[str, Any] = {}
        if self.conversations:
            d["cv"] = {
                k: [c.started, c.channel, int(c.ai), int(c.handoff)]
                for k, c in self.conversations.items()
            }
        if self.closed:
            d["cl"] = {k: [c.at, int(c.contained)] for k, c in self.closed.items()}
        if self.resolved_at is not None:
            d["ra"] = self.resolved_at
        if self.ai_at is not None:
            d["ai"] = self.ai_at
        if self.sentiment is not None:
            d["se"] = self.sentiment
        if self.ai_since_sentiment:
            d["as"] = 1
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Journey:
        return cls(
            conversations={
                k: Conversation(v[0], v[1], bool(v[2]), bool(v[3]))
                for k, v in d.get("cv", {}).items()
            },
            closed={k: ClosedConversation(v[0], bool(v[1])) for k, v in d.get("cl", {}).items()},
            resolved_at=d.get("ra"),
            ai_at=d.get("ai"),
            sentiment=d.get("se"),
            ai_since_sentiment=bool(d.get("as", 0)),
        )


EMPTY_JOURNEY = Journey()


class CustomerState(Struct, frozen=True):
    """Bounded memory of one customer; every collection is pruned by time or count."""

    consents: dict[str, ConsentMark] = field(default_factory=dict)  # "channel:purpose"
    contacts: tuple[Contact, ...] = ()
    triggers: dict[str, TriggerMemo] = field(default_factory=dict)
    seen: ReplayMemory = ReplayMemory()  # replay detection
    events: int = 0
    open_cases: dict[str, int] = field(default_factory=dict)  # case id -> opened at
    complaint_at: int | None = None  # last negative sentiment
    facts: dict[str, Fact] = field(default_factory=dict)  # consistency ledger, oldest first
    timezone: str | None = None  # IANA name from profile_updated
    offer: ActiveOffer | None = None
    journey: Journey = EMPTY_JOURNEY  # experience metrics, written by the shell after decide
    holds: dict[str, Hold] = field(default_factory=dict)  # hold id -> parked proposals
    inbound: tuple[int, ...] = ()  # escalation: recent inbound contacts (event time)
    negative_streak: int = 0  # escalation: consecutive sentiment scores below threshold
    handoff: Handoff | None = None  # escalation: needs a human until case_resolved
    known: dict[str, str] = field(default_factory=dict)  # loop prevention: facts from signals
    disclosed: dict[str, int] = field(default_factory=dict)  # AI disclosure key -> at
    #: experiment -> first exposure; bounded by the experiments the policies named
    exposures: dict[str, Exposure] = field(default_factory=dict)
    #: held proposal's event id -> what the shell carries for it to its release (its trace
    #: context); written and pruned by the shell, never read by the decision rules
    carried: dict[str, str] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> CustomerState:
        """A copy with `changes`: `msgspec.structs.replace`, which runs on every decision."""
        return msgspec.structs.replace(self, **changes)

    def to_bytes(self) -> bytes:
        d: dict[str, Any] = {
            "c": {k: [m.at, m.granted] for k, m in self.consents.items()},
            "t": {k: list(m) for k, m in self.triggers.items()},
            "r": self.seen.digests,
            "n": self.events,
        }
        if self.contacts:
            d["kc"] = _pack_contacts(self.contacts)
        if self.open_cases:
            d["oc"] = self.open_cases
        if self.complaint_at is not None:
            d["ca"] = self.complaint_at
        if self.facts:
            d["f"] = {k: list(f) for k, f in self.facts.items()}
        if self.timezone is not None:
            d["tz"] = self.timezone
        if self.offer is not None:
            d["o"] = list(self.offer)
        if self.journey != EMPTY_JOURNEY:
            d["j"] = self.journey.to_dict()
        if self.holds:
            d["h"] = {k: [h.key, h.deadline, list(h.items)] for k, h in self.holds.items()}
        if self.inbound:
            d["in"] = list(self.inbound)
        if self.negative_streak:
            d["ns"] = self.negative_streak
        if self.handoff is not None:
            d["ho"] = list(self.handoff)
        if self.known:
            d["kn"] = self.known
        if self.disclosed:
            d["di"] = self.disclosed
        if self.exposures:
            d["ex"] = {k: list(e) for k, e in self.exposures.items()}
        if self.carried:
            d["cx"] = self.carried
        return orjson.dumps(d)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> CustomerState:
        """Only the fields the bytes hold are read (most states hold a few), each straight
        to its own type; the rest keep their defaults."""
        if not raw:
            return EMPTY_STATE
        d = orjson.loads(raw)
        try:
            changes = {
                _FIELD_READERS[key][0]: _FIELD_READERS[key][1](value)
                for key, value in d.items()
                if key in _FIELD_READERS
            }
            if "kc" in d or "k" in d:
                changes["contacts"] = _contacts(d)
            if "r" in d or "s" in d:
                changes["seen"] = _replay_memory(d)
        except Exception:
            _read_in_field_order(d)  # the first wrong field in field order is the one to name
            raise
        return msgspec.structs.replace(EMPTY_STATE, **changes) if changes else EMPTY_STATE


def _pack_contacts(contacts: tuple[Contact, ...]) -> list[Any]:
    """[distinct (channel, category, department), times as deltas, index per contact]:
    a customer's contacts are dozens of a few kinds, so the strings are written once and
    each contact costs a time delta and an index, in order."""
    kinds: dict[tuple[str, str, str], int] = {}
    deltas, indexes, last = [], [], 0
    for c in contacts:
        deltas.append(c.at - last)
        last = c.at
        indexes.append(kinds.setdefault((c.channel, c.category, c.department), len(kinds)))
    return [[list(k) for k in kinds], deltas, indexes]


def _contacts(d: dict[str, Any]) -> tuple[Contact, ...]:
    """From "kc" (`_pack_contacts`), or from "k", one [at, channel, category, department]
    per contact, as states held before it. A wrong shape raises here (see `_replay_memory`)."""
    if "kc" not in d:
        return tuple(Contact(*c) for c in d.get("k", ()))
    kinds, deltas, indexes = d["kc"]
    out, at = [], 0
    for delta, i in zip(deltas, indexes, strict=True):  # unequal lengths raise
        at += delta
        if i < 0:
            raise IndexError(f"contacts: kind {i}")
        channel, category, department = kinds[i]
        out.append(Contact(at, channel, category, department))
    return tuple(out)


def _replay_memory(d: dict[str, Any]) -> ReplayMemory:
    """From "r" (digests), or from "s", the ids as a dict (event id -> decision id) that
    states held before `ReplayMemory`. A wrong shape raises here, where the caller turns
    it into a corrupt state, not later in `decide`."""
    if "r" not in d:
        return ReplayMemory.of(d.get("s", {}))
    digests = d["r"]
    if type(digests) is not str or len(digests) % DIGEST_CHARS:
        raise ValueError(f"replay memory {digests!r:.40} is not {DIGEST_CHARS}-character digests")
    return ReplayMemory(digests)


EMPTY_STATE = CustomerState()

#: Stored key -> (CustomerState field, how its value reads), for `CustomerState.from_bytes`
#: (contacts and the replay memory, stored under either of two keys, are read apart),
#: in the fields' order.
_FIELD_READERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "c": ("consents", lambda v: {k: ConsentMark(m[0], m[1]) for k, m in v.items()}),
    "t": ("triggers", lambda v: {k: TriggerMemo(*m) for k, m in v.items()}),
    "n": ("events", lambda v: v),
    "oc": ("open_cases", lambda v: v),
    "ca": ("complaint_at", lambda v: v),
    "f": ("facts", lambda v: {k: Fact(*f) for k, f in v.items()}),
    "tz": ("timezone", lambda v: v),
    "o": ("offer", lambda v: None if v is None else ActiveOffer(*v)),
    "j": ("journey", Journey.from_dict),
    "h": ("holds", lambda v: {k: Hold(h[0], h[1], tuple(h[2])) for k, h in v.items()}),
    "in": ("inbound", tuple),
    "ns": ("negative_streak", lambda v: v),
    "ho": ("handoff", lambda v: None if v is None else Handoff(*v)),
    "kn": ("known", lambda v: v),
    "di": ("disclosed", lambda v: v),
    "ex": ("exposures", lambda v: {k: Exposure(*e) for k, e in v.items()}),
    "cx": ("carried", lambda v: v),
}


def _read_in_field_order(d: dict[str, Any]) -> None:
    """Read every stored field in the fields' order, raising at the first that does not read."""
    d.get("o")  # what is not an object fails here
    for key, (name, convert) in _FIELD_READERS.items():
        if name == "triggers":
            _contacts(d)
        elif name == "events":
            _replay_memory(d)
        if key in d:
            convert(d[key])
