"""Loop prevention: never ask the customer for what the tower already knows.

A proposal's template is the longest `loop_prevention.templates` id its `content` starts
with; the template lists what the message asks for (order_number, email, ...). Facts are
known from signals (signals.py: profile_updated attributes, purchase order_id as
order_number). Asking for a known fact is suppressed, or with `action: rewrite` approved
and annotated by the `known_facts` transform (rules/transforms.py). Silent when the rule is
off or the content matches no template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node

from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import INVALID, Invalid, Reader, choice, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "loop_prevention"
LOOP_ACTIONS: frozenset[str] = frozenset({"suppress", "rewrite"})
FACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class LoopPrevention:
    """Do not ask the customer for what the tower already knows.

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


def template_for(content: str | None, lp: LoopPrevention) -> str | None:
    """The id of the longest template `content` starts with, if any."""
    if not content or not lp.templates:
        return None
    best: str | None = None
    for tid in lp.templates:
        if content.startswith(tid) and (best is None or len(tid) > len(best)):
            best = tid
    return best


def known_asks(content: str | None, lp: LoopPrevention, known: Mapping[str, str]) -> list[str]:
    """The facts the proposal's template asks for that are already known, sorted."""
    tid = template_for(content, lp)
    if tid is None:
        return []
    return sorted(k for k in lp.templates[tid] if k in known)


def check(ctx: RuleContext) -> RuleStep | None:
    lp = ctx.policy.loop_prevention
    tid = template_for(ctx.proposal.content, lp)
    if tid is None:
        return None
    asks = sorted(lp.templates[tid])
    known = [k for k in asks if k in ctx.state.known]
    if not known:
        return RuleStep(NAME, PASS, f"template {tid} asks for {', '.join(asks)}: none known")
    what = ", ".join(known)
    if lp.action == "rewrite":
        return RuleStep(NAME, PASS, f"template {tid} asks for {what}, already known: annotated")
    return RuleStep(NAME, BLOCK, f"template {tid} asks for {what}, already known from signals")


def read_templates(r: Reader, n: Node, p: str) -> dict[str, frozenset[str]] | Invalid:
    """`{template id: {asks: [fact, ...]}}`; ids are content prefixes, facts snake_case."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of template id to {asks: [facts]}")
    before = len(r.issues)
    out: dict[str, frozenset[str]] = {}
    for key_node, value_node in n.value:
        tid = r.text(key_node, f"{p}.?")
        if isinstance(tid, Invalid):
            continue
        where = f"{p}.{tid}"
        if tid in out:
            r.fail(key_node, where, "duplicate template id")
            continue
        fields = r.mapping(value_node, where, frozenset({"asks"}), frozenset({"asks"}))
        if "asks" not in fields:
            continue
        asks = r.names(fields["asks"], f"{where}.asks", None, "fact")
        if isinstance(asks, Invalid):
            continue
        if not asks:
            r.fail(fields["asks"], f"{where}.asks", "must name at least one fact")
            continue
        bad = [a for a in asks if not FACT_NAME.match(a)]
        if bad:
            r.fail(fields["asks"], f"{where}.asks", f"fact {bad[0]!r} is not snake_case")
            continue
        out[tid] = frozenset(asks)
    return INVALID if len(r.issues) > before else out


RULE = RuleSpec(
    NAME,
    check,
    {
        "loop_prevention": section(
            LoopPrevention,
            {"templates": read_templates, "action": choice(LOOP_ACTIONS, "loop action")},
        )
    },
)
