"""Transforms: what an approved (or deferred) action says, after every blocking rule passed.

They run in this order, each leaving a `transform` step in the trace when it changed the
content (and nothing when it did not), or suppressing the proposal with a `block` step:

  known_facts     loop prevention with `action: rewrite`: append " [known: k=v, ...]"
  banned_phrases  suppress, or replace each phrase by "[removed]" (case-insensitive)
  pii_redaction   e-mail, IBAN (mod 97), card (Luhn), phone -> [email] [iban] [card] [phone]
  disclosure      prepend the AI disclosure text to the first AI-generated message per
                  conversation (per channel without one), again after repeat_after_ms
  max_length      last, so the text that goes out fits: truncate with "…" or suppress

Annotation comes before redaction, so known PII (an e-mail) is masked in the annotation too:
the channel learns that it is known, not its value. Proposals without content are left alone,
and the tower's own route_case actions are never transformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from yaml.nodes import Node

from pipeline.contracts.events import CHANNELS
from pipeline.core import text_guards
from pipeline.core.decision import BLOCK, TRANSFORM, RuleStep
from pipeline.core.policy_reader import (
    INVALID,
    Invalid,
    Reader,
    any_text,
    choice,
    count,
    fields,
    name_set,
    off_or_ms,
    section,
)
from pipeline.core.rules import RuleContext, RuleSpec, loop_prevention

NAME = "transforms"
BANNED_ACTIONS: frozenset[str] = frozenset({"suppress", "redact"})
LENGTH_ACTIONS: frozenset[str] = frozenset({"truncate", "suppress"})
PII_KINDS: frozenset[str] = frozenset({"card", "email", "phone", "iban"})


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


KNOWN_FACTS = "known_facts"
BANNED = "banned_phrases"
PII = "pii_redaction"
DISCLOSURE = "disclosure"
MAX_LENGTH = "max_length"
#: How many conversations / channels the disclosure memory keeps (oldest dropped first).
MAX_DISCLOSED = 50


class Transformed(NamedTuple):
    content: str | None
    steps: tuple[RuleStep, ...]
    blocked: RuleStep | None  # set when a transform suppresses the proposal
    disclosed: str | None  # disclosure key to remember with the approval


UNCHANGED = Transformed(None, (), None, None)


def active(ctx: RuleContext) -> bool:
    """Whether any transform is switched on (the common default case skips all work)."""
    pol = ctx.policy
    return bool(
        pol.disclosure.text
        or pol.redact_pii
        or pol.banned_phrases.phrases
        or pol.max_length.channels
        or (pol.loop_prevention.templates and pol.loop_prevention.action == "rewrite")
    )


def disclosure_key(ctx: RuleContext) -> str:
    ev = ctx.event
    return f"cv:{ev.conversation_id}" if ev.conversation_id else f"ch:{ev.channel or ''}"


def needs_disclosure(ctx: RuleContext) -> str | None:
    """The disclosure key if this proposal must carry the disclosure text, else None."""
    d = ctx.policy.disclosure
    if not d.text or not ctx.proposal.ai_generated:
        return None
    key = disclosure_key(ctx)
    at = ctx.state.disclosed.get(key)
    if at is None or (d.repeat_after_ms > 0 and ctx.now - at >= d.repeat_after_ms):
        return key
    return None


def apply(ctx: RuleContext) -> Transformed:
    content = ctx.proposal.content
    if content is None or ctx.proposal.action == "route_case" or not active(ctx):
        return Transformed(content, (), None, None)
    pol = ctx.policy
    steps: list[RuleStep] = []

    lp = pol.loop_prevention
    if lp.action == "rewrite":
        known = loop_prevention.known_asks(content, lp, ctx.state.known)
        if known:
            facts = ", ".join(f"{k}={ctx.state.known[k]}" for k in known)
            content = f"{content} [known: {facts}]"
            steps.append(RuleStep(KNOWN_FACTS, TRANSFORM, f"annotated known {', '.join(known)}"))

    bp = pol.banned_phrases
    if bp.phrases:
        pattern = text_guards.phrase_pattern(bp.phrases)
        found = text_guards.find_phrases(content, pattern)
        if found:
            listed = ", ".join(repr(f) for f in found)
            if bp.action == "suppress":
                step = RuleStep(BANNED, BLOCK, f"banned phrase {listed}")
                return Transformed(ctx.proposal.content, tuple(steps), step, None)
            content = text_guards.redact_phrases(content, pattern)
            steps.append(RuleStep(BANNED, TRANSFORM, f"removed banned phrase {listed}"))

    if pol.redact_pii:
        content, kinds = text_guards.redact_pii(content, pol.redact_pii)
        if kinds:
            steps.append(RuleStep(PII, TRANSFORM, f"redacted {', '.join(kinds)}"))

    disclosed = needs_disclosure(ctx)
    if disclosed is not None:
        content = f"{pol.disclosure.text} {content}"
        steps.append(RuleStep(DISCLOSURE, TRANSFORM, f"AI disclosure for {disclosed}"))

    limit = pol.max_length.channels.get(ctx.event.channel or "")
    if limit is not None and len(content) > limit:
        where = f"{len(content)} > {limit} characters on {ctx.event.channel}"
        if pol.max_length.action == "suppress":
            step = RuleStep(MAX_LENGTH, BLOCK, f"content too long: {where}")
            return Transformed(ctx.proposal.content, tuple(steps), step, None)
        content = text_guards.truncate(content, limit)
        steps.append(RuleStep(MAX_LENGTH, TRANSFORM, f"truncated: {where}"))

    return Transformed(content, tuple(steps), None, disclosed)


def remember(disclosed: dict[str, int], key: str | None, now: int) -> dict[str, int]:
    """The disclosure memory after an approval that carried the disclosure for `key`."""
    if key is None:
        return disclosed
    out = {k: at for k, at in disclosed.items() if k != key}
    out[key] = now  # re-inserted so the newest stays last
    while len(out) > MAX_DISCLOSED:
        del out[next(iter(out))]
    return out


def _phrases(r: Reader, n: Node, p: str) -> tuple[str, ...] | Invalid:
    return r.names(n, p, None, "phrase")


def _max_chars(r: Reader, n: Node, p: str) -> dict[str, int] | Invalid:
    before = len(r.issues)
    values = fields(r, n, p, dict.fromkeys(CHANNELS, count(2)), frozenset())
    return INVALID if len(r.issues) > before else values


#: Not in the proposal chain: `apply` runs after it, on what the chain approved or deferred.
RULE = RuleSpec(
    NAME,
    None,
    {
        "disclosure": section(Disclosure, {"text": any_text, "repeat_after_ms": off_or_ms}),
        "redact_pii": name_set(PII_KINDS, "PII kind"),
        "banned_phrases": section(
            BannedPhrases,
            {"phrases": _phrases, "action": choice(BANNED_ACTIONS, "banned phrase action")},
        ),
        "max_length": section(
            MaxLength,
            {"channels": _max_chars, "action": choice(LENGTH_ACTIONS, "length action")},
        ),
    },
)
