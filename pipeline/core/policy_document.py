"""Policy as code: a YAML document read into a `Policy`, strictly, with every error at once.

A policy change goes to production through review, so the loader refuses anything it does
not understand rather than guessing: unknown keys, wrong types, impossible windows, unknown
scopes, channels, categories or undeclared agents. Each issue carries the YAML line and says
what would be valid. String fields take the scalar's text as written, so YAML 1.1 surprises
(`21:00` read as 1260, `no` read as false) cannot change meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from pipeline.contracts.events import ACTIONS, CATEGORIES
from pipeline.core.policy import (
    AUDIT_CONTENT_LEVELS,
    AUDIT_INPUT_LEVELS,
    MERGE_KEYS,
    AuditLevels,
    ControlGroup,
    Experiments,
    Governance,
    HoldWindows,
    Policy,
)
from pipeline.core.policy_reader import (
    INVALID,
    Invalid,
    PolicyError,
    PolicyIssue,
    Reader,
    Section,
    boolean,
    choice,
    count,
    fields,
    join,
    name_set,
    off_or_ms,
    positive_ms,
    section,
)
from pipeline.core.rules.registry import SECTION_READERS

__all__ = ["READERS", "PolicyError", "PolicyIssue", "load_policy", "load_policy_file"]

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def _version(r: Reader, n: Node, p: str) -> str | Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not SEMVER.match(text):
        return r.fail(n, p, f"{text!r} is not semantic version MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return text


def _hold_ms(r: Reader, n: Node, p: str) -> dict[str, int] | Invalid:
    before = len(r.issues)
    values = fields(r, n, p, dict.fromkeys(ACTIONS, off_or_ms), frozenset())
    return INVALID if len(r.issues) > before else values


def _merge_key(r: Reader, n: Node, p: str) -> str | Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and text not in MERGE_KEYS:
        return r.fail(n, p, f"unknown merge key {text!r}; valid: {join(MERGE_KEYS)}")
    return text


def _journeys(r: Reader, n: Node, p: str) -> dict[str, frozenset[str]] | Invalid:
    """`{journey: [step, ...]}`: the journey_step values the metrics count by name (others
    are counted as `other`, so producers cannot grow the series without bound)."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of journey name to its list of steps")
    before = len(r.issues)
    out: dict[str, frozenset[str]] = {}
    for key_node, value_node in n.value:
        name = r.text(key_node, p)
        if isinstance(name, Invalid):
            continue
        if name in out:
            r.fail(key_node, f"{p}.{name}", "duplicate journey")
            continue
        steps = r.names(value_node, f"{p}.{name}", None, "step")
        if not isinstance(steps, Invalid):
            out[name] = frozenset(steps)
    return INVALID if len(r.issues) > before else out


def _share(r: Reader, n: Node, p: str) -> float | Invalid:
    value = r.number(n, p, 0.0)
    if isinstance(value, float) and value >= 1:
        return r.fail(n, p, f"must be a share from 0 to below 1 (0.1 is 10 %), got {value:g}")
    return value


def _holdouts(r: Reader, n: Node, p: str) -> dict[str, float] | Invalid:
    """`{agent: share}`, each agent declared in `agents:`."""
    if not isinstance(n, MappingNode):
        return r.fail(n, p, "must be a mapping of agent to the share of customers withheld")
    before = len(r.issues)
    out: dict[str, float] = {}
    for key_node, value_node in n.value:
        agent = r.text(key_node, f"{p}.?")
        if isinstance(agent, Invalid):
            continue
        where = f"{p}.{agent}"
        if agent in out:
            r.fail(key_node, where, "agent listed twice")
        elif agent not in r.agents:
            r.fail(
                key_node,
                where,
                f"agent {agent!r} is not declared in agents: (declared: {join(r.agents)})",
            )
        elif not isinstance(share := _share(r, value_node, where), Invalid):
            out[agent] = share
    return INVALID if len(r.issues) > before else out


def _experiments_check(r: Reader, n: Node, p: str, ex: Experiments) -> Invalid | None:
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


def _audit_check(r: Reader, n: Node, p: str, levels: AuditLevels) -> Invalid | None:
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


#: The policy's own sections: what no single rule owns.
POLICY_READERS: Mapping[str, Section] = {
    "version": _version,
    "notes": lambda r, n, p: r.text(n, p),
    "agents": lambda r, n, p: INVALID,  # read first, see `load_policy`
    "authority": lambda r, n, p: r.agent_names(n, p),
    "replay_memory": count(1),
    "holds": section(HoldWindows, {"hold_ms": _hold_ms, "merge_key": _merge_key}),
    "experiments": section(
        Experiments,
        {
            "salt": lambda r, n, p: r.text(n, p),
            "control_group": section(
                ControlGroup,
                {"share": _share, "categories": name_set(CATEGORIES, "category")},
            ),
            "holdouts": _holdouts,
            "attribution_window_ms": positive_ms,
        },
        _experiments_check,
    ),
    "journeys": _journeys,
    "governance": section(Governance, {"require_approval": boolean}),
    "audit": section(
        AuditLevels,
        {
            "input": choice(AUDIT_INPUT_LEVELS, "audit input level"),
            "content": choice(AUDIT_CONTENT_LEVELS, "audit content level"),
            "salt": lambda r, n, p: r.text(n, p),
        },
        _audit_check,
    ),
}
#: Every top-level key of a policy document and its reader: the policy's own, then the
#: rules' (rules/registry.py).
READERS: Mapping[str, Section] = {**POLICY_READERS, **SECTION_READERS}


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
    r = Reader(loader)
    if root is None:
        raise PolicyError(source, [PolicyIssue(1, "", "empty document; expected a mapping")])
    if isinstance(root, MappingNode):
        for key_node, value_node in root.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "agents":
                names = r.names(value_node, "agents", None, "agent")
                if not isinstance(names, Invalid):
                    r.agents = frozenset(names)
                break
    values = fields(r, root, "", READERS, frozenset({"version"}))
    if r.issues:
        raise PolicyError(source, sorted(r.issues, key=lambda i: i.line))
    values.pop("agents", None)
    return Policy(**values, agents=r.agents)


def load_policy_file(path: str | Path) -> Policy:
    path = Path(path)
    return load_policy(path.read_text(encoding="utf-8"), str(path))
