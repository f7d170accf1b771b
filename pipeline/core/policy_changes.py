"""What changed between two policies, as readable lines for the audit trail and the CLI.

Compares the `Policy` values field by field (not the YAML text), so comments, key order
and formatting never show up as changes, and a reviewer reads `caps.per-channel-daily.limit:
3 -> 1` instead of a text diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from pipeline.core.policy import FrequencyCap, Policy

#: the declared agents decide nothing (policy.py): not a change of what is decided
_IGNORED = frozenset({"content_hash", "version", "agents"})


def policy_changes(old: Policy, new: Policy) -> list[str]:
    """One line per changed setting; empty when both policies decide alike."""
    out: list[str] = []
    for f in fields(Policy):
        if f.name in _IGNORED:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "caps":
            out.extend(_cap_changes(a, b))
        elif f.name == "notes":
            if a != b:
                out.append("notes changed")
        else:
            out.extend(_changes(f.name, a, b))
    return out


def summary(old: Policy, new: Policy) -> str:
    """One line: old and new version plus what changed."""
    changes = policy_changes(old, new)
    what = "; ".join(changes) if changes else "no setting changed"
    return f"policy {old.policy_version} -> {new.policy_version}: {what}"


def _changes(path: str, a: Any, b: Any) -> list[str]:
    if a == b:
        return []
    if is_dataclass(a) and is_dataclass(b):
        return [
            line
            for f in fields(a)
            for line in _changes(f"{path}.{f.name}", getattr(a, f.name), getattr(b, f.name))
        ]
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        parts = [f"+{x}" for x in sorted(b - a)] + [f"-{x}" for x in sorted(a - b)]
        return [f"{path}: {' '.join(parts)}"]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return [
            f"{path}.{k}: {_show(a.get(k))} -> {_show(b.get(k))}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    return [f"{path}: {_show(a)} -> {_show(b)}"]


def _cap_changes(old: tuple[FrequencyCap, ...], new: tuple[FrequencyCap, ...]) -> list[str]:
    """Caps are matched by name, so reordering is no change and edits read per field."""
    a = {c.name: c for c in old}
    b = {c.name: c for c in new}
    out = [f"caps.{n}: removed" for n in a if n not in b]
    for name, cap in b.items():
        if name not in a:
            out.append(
                f"caps.{name}: added (limit {cap.limit} per {cap.window_ms} ms, {cap.scope})"
            )
        else:
            out.extend(_changes(f"caps.{name}", a[name], cap))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, frozenset):  # e.g. the facts a loop-prevention template asks for
        return "[" + ", ".join(sorted(map(str, value))) + "]"
    return str(value)
