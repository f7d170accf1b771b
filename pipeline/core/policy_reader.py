"""Reading one policy section: the strict YAML reader every section's reader is built from.

Rule modules declare their own section readers with these pieces (rules/registry.py
collects them), so this module knows no section and no `Policy`: only how to read typed,
checked values and report every issue with its line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: The policy gives every window and duration in milliseconds of event time.
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


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


class Invalid:
    """Marker for a value that produced an issue (so checks do not pile up on one error)."""


INVALID = Invalid()


def join(items: frozenset[str] | tuple[str, ...] | list[str]) -> str:
    return ", ".join(sorted(items)) or "(none)"


class Reader:
    """Walks composed YAML nodes, collecting issues instead of stopping at the first."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.issues: list[PolicyIssue] = []
        self.agents: frozenset[str] = frozenset()

    def fail(self, node: Node, path: str, message: str) -> Invalid:
        self.issues.append(PolicyIssue(node.start_mark.line + 1, path, message))
        return INVALID

    def mapping(
        self, node: Node, path: str, keys: frozenset[str], required: frozenset[str] = frozenset()
    ) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"must be a mapping with keys: {join(keys)}")
            return {}
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else "?"
            where = f"{path}.{key}" if path else key
            if key not in keys:
                self.fail(key_node, where, f"unknown key; valid keys: {join(keys)}")
            elif key in out:
                self.fail(key_node, where, "duplicate key")
            else:
                out[key] = value_node
        for key in sorted(required - out.keys()):
            self.fail(node, f"{path}.{key}" if path else key, "required key is missing")
        return out

    def text(self, node: Node, path: str) -> str | Invalid:
        if not isinstance(node, ScalarNode) or node.value == "":
            return self.fail(node, path, "must be a non-empty string")
        return str(node.value)  # a scalar node's value is its text (untyped in the stubs)

    def boolean(self, node: Node, path: str) -> bool | Invalid:
        value = self._scalar(node)
        if type(value) is not bool:
            return self.fail(node, path, f"must be true or false, got {self._show(node)}")
        return value

    def integer(self, node: Node, path: str, minimum: int, meaning: str) -> int | Invalid:
        value = self._scalar(node)
        if type(value) is not int:
            return self.fail(node, path, f"must be an integer {meaning}, got {self._show(node)}")
        if value < minimum:
            return self.fail(node, path, f"must be an integer {meaning}, got {value}")
        return value

    def number(self, node: Node, path: str, minimum: float | None = None) -> float | Invalid:
        value = self._scalar(node)
        if type(value) not in (int, float):
            return self.fail(node, path, f"must be a number, got {self._show(node)}")
        if minimum is not None and value < minimum:
            return self.fail(node, path, f"must be a number >= {minimum:g}, got {value}")
        return float(value)

    def names(
        self, node: Node, path: str, valid: frozenset[str] | None, what: str
    ) -> tuple[str, ...] | Invalid:
        """A list of names, each checked against `valid` (None accepts any)."""
        if not isinstance(node, SequenceNode):
            return self.fail(node, path, f"must be a list of {what}s")
        out: list[str] = []
        ok = True
        for i, item in enumerate(node.value):
            name = self.text(item, f"{path}[{i}]")
            if isinstance(name, Invalid):
                ok = False
            elif valid is not None and name not in valid:
                self.fail(item, f"{path}[{i}]", f"unknown {what} {name!r}; valid: {join(valid)}")
                ok = False
            elif name in out:
                self.fail(item, f"{path}[{i}]", f"{what} {name!r} listed twice")
                ok = False
            else:
                out.append(name)
        return tuple(out) if ok else INVALID

    def agent_names(self, node: Node, path: str) -> tuple[str, ...] | Invalid:
        if not isinstance(node, SequenceNode):
            return self.fail(node, path, "must be a list of agents")
        names = self.names(node, path, None, "agent")
        if isinstance(names, Invalid):
            return names
        ok = True
        for i, (item, name) in enumerate(zip(node.value, names, strict=True)):
            if name not in self.agents:
                self.fail(
                    item,
                    f"{path}[{i}]",
                    f"agent {name!r} is not declared in agents: (declared: {join(self.agents)})",
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


Section = Callable[[Reader, Node, str], Any]
Check = Callable[[Reader, Node, str, Any], Any]


def fields(
    r: Reader, node: Node, path: str, readers: Mapping[str, Section], required: frozenset[str]
) -> dict[str, Any]:
    """Read a mapping whose keys each have a reader; drop the values that were invalid."""
    nodes = r.mapping(node, path, frozenset(readers), required)
    out: dict[str, Any] = {}
    for key, value_node in nodes.items():
        value = readers[key](r, value_node, f"{path}.{key}" if path else key)
        if not isinstance(value, Invalid):
            out[key] = value
    return out


def positive_ms(r: Reader, n: Node, p: str) -> int | Invalid:
    return r.integer(n, p, 1, "of milliseconds > 0")


def off_or_ms(r: Reader, n: Node, p: str) -> int | Invalid:
    return r.integer(n, p, 0, "of milliseconds >= 0 (0 switches it off)")


def count(minimum: int) -> Section:
    return lambda r, n, p: r.integer(n, p, minimum, f">= {minimum}")


def name_set(valid: frozenset[str] | None, what: str) -> Section:
    def read(r: Reader, n: Node, p: str) -> frozenset[str] | Invalid:
        names = r.names(n, p, valid, what)
        return names if isinstance(names, Invalid) else frozenset(names)

    return read


def boolean(r: Reader, n: Node, p: str) -> bool | Invalid:
    return r.boolean(n, p)


def choice(valid: frozenset[str], what: str) -> Section:
    def read(r: Reader, n: Node, p: str) -> str | Invalid:
        text = r.text(n, p)
        if isinstance(text, str) and text not in valid:
            return r.fail(n, p, f"unknown {what} {text!r}; valid: {join(valid)}")
        return text

    return read


def any_text(r: Reader, n: Node, p: str) -> str | Invalid:
    """A string that may be empty (empty switches the setting off)."""
    if not isinstance(n, ScalarNode):
        return r.fail(n, p, "must be a string (empty switches it off)")
    return str(n.value)  # a scalar node's value is its text (untyped in the stubs)


def section(cls: type, readers: Mapping[str, Section], check: Check | None = None) -> Section:
    """A nested settings block: all its keys optional, defaults from `cls`."""

    def read(r: Reader, n: Node, p: str) -> Any:
        before = len(r.issues)
        values = fields(r, n, p, readers, frozenset())
        if len(r.issues) > before:
            return INVALID
        value = cls(**values)
        if check is not None and isinstance(check(r, n, p, value), Invalid):
            return INVALID
        return value

    return read
