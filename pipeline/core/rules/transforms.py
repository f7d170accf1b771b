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

from typing import NamedTuple

from pipeline.core import text_guards
from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, RuleContext, loop_prevention

TRANSFORM = "transform"
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
