"""Data minimisation in the audit: what an audit record keeps of its input event.

The audit embeds the input event so a decision can be explained and replayed, but the
event's free text (a proposal's content and asserts, a signal's attributes) can carry
personal data. The policy's `audit` block (`AuditLevels`) says how much is kept; this
module applies it, as pure functions of the event, the decision and the levels, where the
processing layer builds the record, so both runtimes write the same minimised records and
replay can apply the same treatment to what it recomputes.

* `input: full` keeps the event as decided (the default: records are unchanged);
* `input: redacted` keeps it with the PII the text guards find (e-mail, IBAN, card, phone)
  in content, attribute values and assert values replaced by `[redacted:<kind>]`;
* `input: none` keeps a stub: `event_id`, `customer_id`, `kind`, `agent`, and
  `"audit_input": "none"` to say so;
* `content: redacted` keeps a kept input's content with PII markers, `content: hash` as
  `sha256:` + hex SHA-256 of salt + content (equal content, equal hash).

A dead letter keeps its raw record under the same levels (`minimised_raw`): redacted
where the audit redacts, and not kept at all (only its length and salted digest, to match
it against the producer's copy) where the audit keeps no input or hashes the content.

The decision (outcome, rule, reason, trace) is always kept, but with a minimised input its
reasons get the same treatment: PII markers, and with `input: none` the values the
consistency ledger quotes (asserted facts, this event's and earlier ones) become
`[not kept]`. Other reasons quote only identifiers (agents, channels, triggers, case ids,
offer ids, time zones) or the policy's own text (banned phrases, template ids).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from pipeline.contracts.events import AgentEvent, event_to_dict
from pipeline.core.policy import AuditLevels
from pipeline.core.text_guards import AUDIT_REDACTORS, ORDER, redact_pii

#: the key that marks an input stub, and the fields the stub keeps
STUB_MARK: Final = "audit_input"
STUB_FIELDS: Final = ("event_id", "customer_id", "kind", "agent")
NOT_KEPT_TEXT: Final = "[not kept]"
#: how every PII marker of the audit starts (`[redacted:email]` ...)
MARKER_START: Final = "[redacted:"
HASH_PREFIX: Final = "sha256:"
#: rules whose reasons quote input values (`key='value' contradicts 'told'`)
QUOTING_RULES: Final = frozenset({"consistency_ledger"})
#: a Python string repr, as the quoting rules write values: '...' or "..."
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def redact_text(text: str) -> str:
    """`text` with every PII kind the text guards know replaced by `[redacted:<kind>]`."""
    return redact_pii(text, ORDER, AUDIT_REDACTORS)[0]


def hash_content(content: str, salt: str) -> str:
    """Salted SHA-256: comparable between records (same salt), not readable."""
    return HASH_PREFIX + hashlib.sha256((salt + content).encode()).hexdigest()


def minimised_content(content: str | None, levels: AuditLevels) -> str | None:
    """A proposal's content at the level the audit keeps it (None stays None)."""
    if content is None:
        return None
    level = levels.content_level
    if level == "redacted":
        return redact_text(content)
    if level == "hash":
        return hash_content(content, levels.salt)
    return content


def input_dict(event: AgentEvent, levels: AuditLevels) -> dict[str, Any]:
    """What the audit record keeps of `event`, in the event's own JSON shape (or a stub)."""
    data = event_to_dict(event)
    if levels.input == "none":
        return {**{k: data[k] for k in STUB_FIELDS}, STUB_MARK: "none"}
    if not levels.minimised:
        return data
    redact = levels.input == "redacted"
    proposal, signal = data["proposal"], data["signal"]
    if proposal is not None:
        proposal["content"] = minimised_content(proposal["content"], levels)
        if redact:
            proposal["asserts"] = {k: redact_text(v) for k, v in proposal["asserts"].items()}
    if signal is not None and redact:
        signal["attributes"] = {k: redact_text(v) for k, v in signal["attributes"].items()}
    return data


def input_json(event: AgentEvent, levels: AuditLevels) -> str:
    """The audit record's `input` field: canonical JSON of `input_dict`."""
    return orjson.dumps(input_dict(event, levels)).decode()


def changed_by_minimisation(kept: AgentEvent, levels: AuditLevels) -> bool:
    """Whether the kept input shows that minimisation changed it: a PII marker, or a hashed
    content. An input it left alone is as good as the full event for replay."""
    if not levels.minimised:
        return False
    p, s = kept.proposal, kept.signal
    if p is not None and p.content is not None and levels.content_level == "hash":
        return True
    texts = [*(p.asserts.values() if p else ()), *(s.attributes.values() if s else ())]
    if p is not None and p.content is not None:
        texts.append(p.content)
    return any(MARKER_START in t for t in texts)


def minimised_reason(text: str, rule: str | None, levels: AuditLevels) -> str:
    """A decision or trace reason, treated like the input it explains."""
    if levels.input == "full":
        return text
    if levels.input == "none" and rule in QUOTING_RULES:
        text = QUOTED.sub(NOT_KEPT_TEXT, text)
    return redact_text(text)


def minimised_decision(fields: Mapping[str, Any], levels: AuditLevels) -> dict[str, Any]:
    """The `reason` and `trace` of audit-record-shaped `fields` after minimisation; other
    fields are returned as they are (the decision itself is always kept)."""
    out = dict(fields)
    if levels.input == "full":
        return out
    out["reason"] = minimised_reason(str(fields.get("reason", "")), fields.get("rule"), levels)
    out["trace"] = [
        {**step, "reason": minimised_reason(str(step.get("reason", "")), step.get("rule"), levels)}
        for step in fields.get("trace") or ()
    ]
    return out


def minimised_raw(value: bytes, detail: str, levels: AuditLevels) -> tuple[bytes, str]:
    """A dead letter's raw value and detail at the audit's levels. A raw record did not
    decode, so its content cannot be picked out: it is redacted as a whole where the audit
    redacts, and dropped where the audit keeps no input, or no readable content, or where it
    is not text."""
    if not levels.minimised:
        return value, detail
    detail = minimised_reason(detail, None, levels)
    text: str | None = None
    if levels.input != "none" and levels.content_level != "hash":
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None:
        return redact_text(text).encode(), detail
    digest = HASH_PREFIX + hashlib.sha256(levels.salt.encode() + value).hexdigest()
    return b"", f"{detail} (raw value not kept: {len(value)} bytes, {digest})"
