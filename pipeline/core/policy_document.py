"""Policy as code: a YAML document read into a `Policy`, strictly, with every error at once.

A policy change goes to production through review, so the loader refuses anything it does
not understand rather than guessing: unknown keys, wrong types, impossible windows, unknown
scopes, channels, categories or undeclared agents. Each issue carries the YAML line and says
what would be valid. String fields take the scalar's text as written, so YAML 1.1 surprises
(`21:00` read as 1260, `no` read as false) cannot change meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipeline.contracts.events import ACTIONS, CATEGORIES, CHANNELS
from pipeline.core.policy import (
    AUDIT_CONTENT_LEVELS,
    AUDIT_INPUT_LEVELS,
    BANNED_ACTIONS,
    CAP_SCOPES,
    LENGTH_ACTIONS,
    LOOP_ACTIONS,
    MERGE_KEYS,
    PII_KINDS,
    QUIET_MODES,
    AuditLevels,
    BannedPhrases,
    ControlGroup,
    Disclosure,
    Escalation,
    Experiments,
    FrequencyCap,
    Governance,
    HoldWindows,
    KillSwitch,
    LoopPrevention,
    MaxLength,
    OfferArbitration,
    Policy,
    QuietHours,
    ServiceFirst,
)
from pipeline.core.signals import is_timezone

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    line: int
    path: str
    message: str


class PolicyError(ValueError):
    """Every problem found in one policy document."""

    def __init__(self, source: str, issues: list[PolicyIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.source}:{i.line}: {i.path}: {i.message}"
            if i.path
            else f"{self.source}:{i.line}: {i.message}"  # the document as a whole
            for i in self.issues
        )


class _Invalid:
    """Marker for a value that produced an issue (so checks do not pile up on one error)."""


INVALID = _Invalid()


def _join(items: frozenset[str] | tuple[str, ...] | list[str]) -> str:
    return ", ".join(sorted(items)) or "(none)"


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), type(value).__name__
    )


class _Reader:
    """Walks composed YAML nodes, collecting issues instead of stopping at the first."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.issues: list[PolicyIssue] = []
        self.agents: frozenset[str] = frozenset()

    def fail(self, node: Node, path: str, message: str) -> _Invalid:
        self.issues.append(PolicyIssue(node.start_mark.line + 1, path, message))
        return INVALID

    def mapping(
        self, node: Node, path: str, keys: frozenset[str], required: frozenset[str] = frozenset()
    ) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"must be a mapping with keys: {_join(keys)}")
            return {}
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else "?"
            where = f"{path}.{key}" if path else key
            if key not in keys:
                self.fail(key_node, where, f"unknown key; valid keys: {_join(keys)}")
            elif key in out:
                self.fail(key_node, where, "duplicate key")
            else:
                out[key] = value_node
        for key in sorted(required - out.keys()):
            self.fail(node, f"{path}.{key}" if path else key, "required key is missing")
        return out

    def text(self, node: Node, path: str) -> str | _Invalid:
        if not isinstance(node, ScalarNode) or node.value == "":
            return self.fail(node, path, "must be a non-empty string")
        return str(node.value)  # a scalar node's value is its text (untyped in the stubs)

    def boolean(self, node: Node, path: str) -> bool | _Invalid:
        value = self._scalar(node)
        if type(value) is not bool:
            return self.fail(node, path, f"must be true or false, got {self._show(node)}")
        return value

    def integer(self, node: Node, path: str, minimum: int, meaning: str) -> int | _Invalid:
        value = self._scalar(node)
        if type(value) is not int:
            return self.fail(node, path, f"must be an integer {meaning}, got {self._show(node)}")
        if value < minimum:
            return self.fail(node, path, f"must be an integer {meaning}, got {value}")
        return value

    def number(self, node: Node, path: str, minimum: float | None = None) -> float | _Invalid:
        value = self._scalar(node)
        if type(value) not in (int, float):
            return self.fail(node, path, f"must be a number, got {self._show(node)}")
        if minimum is not None and value < minimum:
            return self.fail(node, path, f"must be a number >= {minimum:g}, got {value}")
        return float(value)

    def names(
        self, node: Node, path: str, valid: frozenset[str] | None, what: str
    ) -> tuple[str, ...] | _Invalid:
        """A list of names, each checked against `valid` (None accepts any)."""
        if not isinstance(node, SequenceNode):
            return self.fail(node, path, f"must be a list of {what}s")
        out: list[str] = []
        ok = True
        for i, item in enumerate(node.value):
            name = self.text(item, f"{path}[{i}]")
            if isinstance(name, _Invalid):
                ok = False
            elif valid is not None and name not in valid:
                self.fail(item, f"{path}[{i}]", f"unknown {what} {name!r}; valid: {_join(valid)}")
                ok = False
            elif name in out:
                self.fail(item, f"{path}[{i}]", f"{what} {name!r} listed twice")
                ok = False
            else:
                out.append(name)
        return tuple(out) if ok else INVALID

    def agent_names(self, node: Node, path: str) -> tuple[str, ...] | _Invalid:
        if not isinstance(node, SequenceNode):
            return self.fail(node, path, "must be a list of agents")
        names = self.names(node, path, None, "agent")
        if isinstance(names, _Invalid):
            return names
        ok = True
        for i, (item, name) in enumerate(zip(node.value, names, strict=True)):
            if name not in self.agents:
                self.fail(
                    item,
                    f"{path}[{i}]",
                    f"agent {name!r} is not declared in agents: (declared: {_join(self.agents)})",
                )
                ok = False
        return names if ok else INVALID

    def _scalar(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            return INVALID
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError:
            return INVALID

    @staticmethod
    def _show(node: Node) -> str:
        if isinstance(node, ScalarNode):
            return repr(node.value)
        return "a list" if isinstance(node, SequenceNode) else "a mapping"


Section = Callable[[_Reader, Node, str], Any]
Check = Callable[[_Reader, Node, str, Any], Any]


def _fields(
    r: _Reader, node: Node, path: str, readers: Mapping[str, Section], required: frozenset[str]
) -> dict[str, Any]:
    """Read a mapping whose keys each have a reader; drop the values that were invalid."""
    nodes = r.mapping(node, path, frozenset(readers), required)
    out: dict[str, Any] = {}
    for key, value_node in nodes.items():
        value = readers[key](r, value_node, f"{path}.{key}" if path else key)
        if not isinstance(value, _Invalid):
            out[key] = value
    return out


def _positive_ms(r: _Reader, n: Node, p: str) -> int | _Invalid:
    return r.integer(n, p, 1, "of milliseconds > 0")


def _off_or_ms(r: _Reader, n: Node, p: str) -> int | _Invalid:
    return r.integer(n, p, 0, "of milliseconds >= 0 (0 switches it off)")


def _count(minimum: int) -> Section:
    return lambda r, n, p: r.integer(n, p, minimum, f">= {minimum}")


def _name_set(valid: frozenset[str] | None, what: str) -> Section:
    def read(r: _Reader, n: Node, p: str) -> frozenset[str] | _Invalid:
        names = r.names(n, p, valid, what)
        return names if isinstance(names, _Invalid) else frozenset(names)

    return read


def _version(r: _Reader, n: Node, p: str) -> str | _Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not SEMVER.match(text):
        return r.fail(n, p, f"{text!r} is not semantic version MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return text


def _opt_in(r: _Reader, n: Node, p: str) -> dict[str, bool] | _Invalid:
    """Categories not named keep their default, so a partial block cannot drop an opt-in."""
    return {
        **Policy().opt_in_required,
        **_fields(r, n, p, dict.fromkeys(CATEGORIES, _bool), frozenset()),
    }


def _bool(r: _Reader, n: Node, p: str) -> bool | _Invalid:
    return r.boolean(n, p)


def _scope(r: _Reader, n: Node, p: str) -> str | _Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and text not in CAP_SCOPES:
        return r.fail(n, p, f"unknown scope {text!r}; valid: {_join(CAP_SCOPES)}")
    return text


CAP_FIELDS: Mapping[str, Section] = {
    "name": lambda r, n, p: r.text(n, p),
    "limit": lambda r, n, p: r.integer(n, p, 0, ">= 0"),
    "window_ms": _positive_ms,
    "scope": _scope,
    "exempt_categories": _name_set(CATEGORIES, "category"),
}
CAP_REQUIRED = frozenset({"name", "limit", "window_ms"})


def _caps(r: _Reader, n: Node, p: str) -> tuple[FrequencyCap, ...] | _Invalid:
    if not isinstance(n, SequenceNode):
        return r.fail(n, p, f"must be a list of caps with keys: {_join(frozenset(CAP_FIELDS))}")
    caps: list[FrequencyCap] = []
    ok = True
    for i, item in enumerate(n.value):
        before = len(r.issues)
        values = _fields(r, item, f"{p}[{i}]", CAP_FIELDS, CAP_REQUIRED)
        if len(r.issues) > before:
            ok = False
            continue
        if any(c.name == values["name"] for c in caps):
            r.fail(item, f"{p}[{i}].name", f"cap name {values['name']!r} used twice")
            ok = False
            continue
        caps.append(FrequencyCap(**values))
    return tuple(caps) if ok else INVALID


def _section(cls: type, readers: Mapping[str, Section], check: Check | None = None) -> Section:
    """A nested settings block: all its keys optional, defaults from `cls`."""

    def read(r: _Reader, n: Node, p: str) -> Any:
        before = len(r.issues)
        values = _fields(r, n, p, readers, frozenset())
        if len(r.issues) > before:
            return INVALID
        value = cls(**values)
        if check is not None and isinstance(check(r, n, p, value), _Invalid):
            return INVALID
        return value

    return read


def _hhmm(r: _Reader, n: Node, p: str) -> str | _Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not HHMM.match(text):
        return r.fail(n, p, f"{text!r} is not a 24h time HH:MM, e.g. 21:30")
    return text


def _timezone(r: _Reader, n: Node, p: str) -> str | _Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not is_timezone(text):
        return r.fail(n, p, f"unknown time zone {text!r}; use an IANA name like Europe/Berlin")
    return text


def _quiet_modes(r: _Reader, n: Node, p: str) -> dict[str, str] | _Invalid:
    def mode(r: _Reader, n: Node, p: str) -> str | _Invalid:
        text = r.text(n, p)
        if isinstance(text, str) and text not in QUIET_MODES:
            return r.fail(n, p, f"unknown mode {text!r}; valid: {_join(QUIET_MODES)}")
        return text

    before = len(r.issues)
    values = _fields(r, n, p, dict.fromkeys(CATEGORIES, mode), frozenset())
    return INVALID if len(r.issues) > before else values


def _hold_ms(r: _Reader, n: Node, p: str) -> dict[str, int] | _Invalid:
    before = len(r.issues)
    values = _fields(r, n, p, dict.fromkeys(ACTIONS, _off_or_ms), frozenset())
    return INVALID if len(r.issues) > before else values


def _merge_key(r: _Reader, n: Node, p: str) -> str | _Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and text not in MERGE_KEYS:
        return r.fail(n, p, f"unknown merge key {text!r}; valid: {_join(MERGE_KEYS)}")
    return text


def _choice(valid: frozenset[str], what: str) -> Section:
    def read(r: _Reader, n: Node, p: str) -> str | _Invalid:
        text = r.text(n, p)
        if isinstance(text, str) and text not in valid:
            return r.fail(n, p, f"unknown {what} {text!r}; valid: {_join(valid)}")
        return text

    return read


def _any_text(r: _Reader, n: Node, p: str) -> str | _Invalid:
    """A string that may be empty (empty switches the setting off)."""
    if not isinstance(n, ScalarNode):
        return r.fail(n, p, "must be a string (empty switches it off)")
    return str(n.value)  # a scalar node's value is its text (untyped in the stubs)


FACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _templates(r: _Reader, n: Node, p: str) -> dict[str, frozenset[str]] | _Invalid:
    """`{template id: {asks: [fact, ...]}}`; ids are content prefixes, facts snake_case."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of template id to {asks: [facts]}")
    before = len(r.issues)
    out: dict[str, frozenset[str]] = {}
    for key_node, value_node in n.value:
        tid = r.text(key_node, f"{p}.?")
        if isinstance(tid, _Invalid):
            continue
        where = f"{p}.{tid}"
        if tid in out:
            r.fail(key_node, where, "duplicate template id")
            continue
        fields = r.mapping(value_node, where, frozenset({"asks"}), frozenset({"asks"}))
        if "asks" not in fields:
            continue
        asks = r.names(fields["asks"], f"{where}.asks", None, "fact")
        if isinstance(asks, _Invalid):
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


def _phrases(r: _Reader, n: Node, p: str) -> tuple[str, ...] | _Invalid:
    return r.names(n, p, None, "phrase")


def _max_chars(r: _Reader, n: Node, p: str) -> dict[str, int] | _Invalid:
    before = len(r.issues)
    values = _fields(r, n, p, dict.fromkeys(CHANNELS, _count(2)), frozenset())
    return INVALID if len(r.issues) > before else values


def _quiet_span(r: _Reader, n: Node, p: str, qh: QuietHours) -> _Invalid | None:
    if qh.start == qh.end:
        return r.fail(n, p, f"start and end are both {qh.start}; quiet hours need a span")
    return None


def _journeys(r: _Reader, n: Node, p: str) -> dict[str, frozenset[str]] | _Invalid:
    """`{journey: [step, ...]}`: the journey_step values the metrics count by name (others
    are counted as `other`, so producers cannot grow the series without bound)."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of journey name to its list of steps")
    before = len(r.issues)
    out: dict[str, frozenset[str]] = {}
    for key_node, value_node in n.value:
        name = r.text(key_node, p)
        if isinstance(name, _Invalid):
            continue
        if name in out:
            r.fail(key_node, f"{p}.{name}", "duplicate journey")
            continue
        steps = r.names(value_node, f"{p}.{name}", None, "step")
        if not isinstance(steps, _Invalid):
            out[name] = frozenset(steps)
    return INVALID if len(r.issues) > before else out


def _share(r: _Reader, n: Node, p: str) -> float | _Invalid:
    value = r.number(n, p, 0.0)
    if isinstance(value, float) and value >= 1:
        return r.fail(n, p, f"must be a share from 0 to below 1 (0.1 is 10 %), got {value:g}")
    return value


def _holdouts(r: _Reader, n: Node, p: str) -> dict[str, float] | _Invalid:
    """`{agent: share}`, each agent declared in `agents:`."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of agent to the share of customers withheld")
    before = len(r.issues)
    out: dict[str, float] = {}
    for key_node, value_node in n.value:
        agent = r.text(key_node, f"{p}.?")
        if isinstance(agent, _Invalid):
            continue
        where = f"{p}.{agent}"
        if agent in out:
            r.fail(key_node, where, "agent listed twice")
        elif agent not in r.agents:
            r.fail(
                key_node,
                where,
                f"agent {agent!r} is not declared in agents: (declared: {_join(r.agents)})",
            )
        elif not isinstance(share := _share(r, value_node, where), _Invalid):
            out[agent] = share
    return INVALID if len(r.issues) > before else out


def _experiments_check(r: _Reader, n: Node, p: str, ex: Experiments) -> _Invalid | None:
    if ex.armed and not ex.salt:
        return r.fail(
            n,
            f"{p}.salt",
            "required when a share is set: any text, e.g. '2026-q4' (a new "
            "salt reshuffles every assignment)",
        )
    if ex.control_group.share > 0 and not ex.control_group.categories:
        return r.fail(n, f"{p}.control_group.categories", "must name at least one category")
    return None


def _value_node(n: Node, key: str) -> Node:
    """The node of `key` in mapping `n` (for the line of an issue), else `n` itself."""
    if isinstance(n, MappingNode):
        for key_node, value_node in n.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                found: Node = value_node
                return found
    return n


def _audit_check(r: _Reader, n: Node, p: str, levels: AuditLevels) -> _Invalid | None:
    """Levels that contradict each other are refused rather than silently reinterpreted."""
    keys = n.value if isinstance(n, MappingNode) else []
    given = {k.value for k, _ in keys if isinstance(k, ScalarNode)}
    if levels.input == "none" and given & {"content", "salt"}:
        key = "content" if "content" in given else "salt"
        return r.fail(
            _value_node(n, key),
            f"{p}.{key}",
            "input: none keeps no content; remove it (or keep the input: redacted or full)",
        )
    if levels.input == "redacted" and "content" in given and levels.content == "full":
        return r.fail(
            _value_node(n, "content"),
            f"{p}.content",
            "full would keep the content that input: redacted redacts; use redacted or hash",
        )
    if levels.content == "hash" and not levels.salt:
        return r.fail(
            n,
            f"{p}.salt",
            "required with content: hash: any secret text, e.g. 'audit-2026' (the hash is "
            "SHA-256 of salt + content; a new salt makes new hashes incomparable with old ones)",
        )
    if levels.salt and levels.content != "hash":
        return r.fail(_value_node(n, "salt"), f"{p}.salt", "only used with content: hash")
    return None


READERS: Mapping[str, Section] = {
    "version": _version,
    "notes": lambda r, n, p: r.text(n, p),
    "agents": lambda r, n, p: INVALID,  # read first, see `load_policy`
    "authority": lambda r, n, p: r.agent_names(n, p),
    "opt_in_required": _opt_in,
    "caps": _caps,
    "merge_window_ms": _positive_ms,
    "replay_memory": _count(1),
    "max_facts": _count(0),
    "kill_switch": _section(
        KillSwitch,
        {
            "agents": lambda r, n, p: (
                a if isinstance(a := r.agent_names(n, p), _Invalid) else frozenset(a)
            ),
            "departments": _name_set(None, "department"),
            "actions": _name_set(ACTIONS, "action"),
            "channels": _name_set(CHANNELS, "channel"),
        },
    ),
    "service_first": _section(
        ServiceFirst,
        {
            "categories": _name_set(CATEGORIES, "category"),
            "complaint_cooldown_ms": _off_or_ms,
            "sentiment_threshold": lambda r, n, p: r.number(n, p),
            "case_max_age_ms": _positive_ms,
            "max_open_cases": _count(1),
        },
    ),
    "quiet_hours": _section(
        QuietHours,
        {
            "start": _hhmm,
            "end": _hhmm,
            "timezone": _timezone,
            "categories": _quiet_modes,
            "exempt_transactional": _bool,
        },
        _quiet_span,
    ),
    "holds": _section(HoldWindows, {"hold_ms": _hold_ms, "merge_key": _merge_key}),
    "escalation": _section(
        Escalation,
        {
            "repeat_contacts": _count(0),
            "repeat_window_ms": _positive_ms,
            "negative_streak": _count(0),
            "sentiment_threshold": lambda r, n, p: r.number(n, p),
            "explicit_request": _bool,
            "queue": lambda r, n, p: r.text(n, p),
            "consistency_escalates": _bool,
        },
    ),
    "loop_prevention": _section(
        LoopPrevention,
        {"templates": _templates, "action": _choice(LOOP_ACTIONS, "loop action")},
    ),
    "disclosure": _section(Disclosure, {"text": _any_text, "repeat_after_ms": _off_or_ms}),
    "redact_pii": _name_set(PII_KINDS, "PII kind"),
    "banned_phrases": _section(
        BannedPhrases,
        {"phrases": _phrases, "action": _choice(BANNED_ACTIONS, "banned phrase action")},
    ),
    "max_length": _section(
        MaxLength,
        {"channels": _max_chars, "action": _choice(LENGTH_ACTIONS, "length action")},
    ),
    "experiments": _section(
        Experiments,
        {
            "salt": lambda r, n, p: r.text(n, p),
            "control_group": _section(
                ControlGroup,
                {"share": _share, "categories": _name_set(CATEGORIES, "category")},
            ),
            "holdouts": _holdouts,
            "attribution_window_ms": _positive_ms,
        },
        _experiments_check,
    ),
    "journeys": _journeys,
    "governance": _section(Governance, {"require_approval": _bool}),
    "audit": _section(
        AuditLevels,
        {
            "input": _choice(AUDIT_INPUT_LEVELS, "audit input level"),
            "content": _choice(AUDIT_CONTENT_LEVELS, "audit content level"),
            "salt": lambda r, n, p: r.text(n, p),
        },
        _audit_check,
    ),
    "offers": _section(
        OfferArbitration,
        {
            "window_ms": _off_or_ms,
            "priority_weight": lambda r, n, p: r.number(n, p, 0.0),
            "propensity_weight": lambda r, n, p: r.number(n, p, 0.0),
            "value_weight": lambda r, n, p: r.number(n, p, 0.0),
        },
    ),
}


#: YAML constructs whose opener, never closed, is the mistake (the parser notices it later)
_OPENERS = {"flow sequence": "'['", "flow mapping": "'{'", "quoted scalar": "quote"}


def _syntax_issue(exc: yaml.MarkedYAMLError) -> PolicyIssue:
    """A YAML syntax error on the line to fix: an unclosed bracket or quote is reported
    where it opens, and an error at the end of the text on its last line, not where the
    parser gave up (often the next key, or a line past the end)."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    text = (getattr(mark, "buffer", None) or "").rstrip("\0")
    last = max((n for n, s in enumerate(text.splitlines(), 1) if s.strip()), default=1)
    at_end = line > last
    opener = next((o for c, o in _OPENERS.items() if c in (exc.context or "")), None)
    if opener is not None and exc.context_mark is not None:
        later = "the document ends first" if at_end else f"{exc.problem} on line {line}"
        message = f"the {opener} opened on this line is never closed ({later})"
        return PolicyIssue(exc.context_mark.line + 1, "", f"not valid YAML: {message}")
    if at_end:
        message = f"the document ends in the middle of this line's value ({exc.problem})"
        return PolicyIssue(last, "", f"not valid YAML: {message}")
    return PolicyIssue(line, "", f"not valid YAML: {exc.problem}")


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """The `Policy` a YAML document describes; raises `PolicyError` listing every issue."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(source, [_syntax_issue(exc)]) from exc
    r = _Reader(loader)
    if root is None:
        raise PolicyError(source, [PolicyIssue(1, "", "empty document; expected a mapping")])
    if isinstance(root, MappingNode):
        for key_node, value_node in root.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "agents":
                names = r.names(value_node, "agents", None, "agent")
                if not isinstance(names, _Invalid):
                    r.agents = frozenset(names)
                break
    values = _fields(r, root, "", READERS, frozenset({"version"}))
    if r.issues:
        raise PolicyError(source, sorted(r.issues, key=lambda i: i.line))
    values.pop("agents", None)
    return Policy(**values, agents=r.agents)


def load_policy_file(path: str | Path) -> Policy:
    path = Path(path)
    return load_policy(path.read_text(encoding="utf-8"), str(path))
