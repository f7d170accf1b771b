"""The rule registry is complete: every rule module is registered, every policy section is
read by exactly one rule or by the policy itself, the chain runs in the documented order, and
verdict strings are defined in one place only."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

import pipeline.core
import pipeline.core.rules
from pipeline.core import arbitration, decision
from pipeline.core.policy import ALWAYS_HASHED, HASHED_WHEN_SET, NOT_HASHED, Policy
from pipeline.core.policy_document import POLICY_READERS, READERS, load_policy
from pipeline.core.rules import RuleSpec, registry

#: Modules of pipeline/core/rules that are not rules.
NOT_RULES = {"registry"}
RULE_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(pipeline.core.rules.__path__) if m.name not in NOT_RULES
)


@pytest.mark.parametrize("module", RULE_MODULES)
def test_every_rule_module_declares_a_rule_and_is_registered(module):
    mod = importlib.import_module(f"pipeline.core.rules.{module}")
    assert isinstance(mod.RULE, RuleSpec), f"{module} declares no RULE = RuleSpec(...)"
    assert mod.RULE.name == mod.NAME
    assert mod.RULE in registry.RULES, f"{module}.RULE is not listed in rules/registry.py"


def test_every_registered_rule_is_listed_once():
    names = [spec.name for spec in registry.RULES]
    assert len(names) == len(set(names))
    assert len(registry.RULES) == len(RULE_MODULES)


def test_every_policy_section_is_read_by_exactly_one_rule_or_the_policy():
    owners: dict[str, list[str]] = {key: ["policy"] for key in POLICY_READERS}
    for spec in registry.RULES:
        for key in spec.sections:
            owners.setdefault(key, []).append(spec.name)
    assert {key: who for key, who in owners.items() if len(who) != 1} == {}
    assert set(READERS) == set(owners)


def test_every_policy_field_is_a_section_of_the_document():
    document_fields = {f.name for f in fields(Policy) if f.init}
    assert document_fields == set(READERS)


@pytest.mark.parametrize(
    "key",
    sorted(
        key
        for spec in registry.RULES
        for key in spec.sections
        if is_dataclass(getattr(Policy(), key))
    ),
)
def test_an_empty_rule_section_reads_as_the_default(key):
    assert getattr(load_policy(f"version: 1.0.0\n{key}: {{}}\n"), key) == getattr(Policy(), key)


POLICY_DOC = Path(__file__).resolve().parents[4] / "docs" / "policy.md"


def documented_rules() -> list[str]:
    """The rule names of the rules table in docs/policy.md, in its order."""
    rows = re.findall(r"^\| \d+ \| `(\w+)`", POLICY_DOC.read_text(encoding="utf-8"), re.M)
    assert rows, f"no rules table in {POLICY_DOC}"
    return rows


def test_the_chain_runs_in_the_documented_order():
    """A rule added, removed or moved shows in the policy reference too."""
    assert [spec.name for spec in registry.RULES] == documented_rules()
    assert tuple(spec.check for spec in registry.CHAIN) == arbitration.PROPOSAL_RULES


def test_the_sections_every_version_hash_includes_never_grow():
    """A section outside this list enters the hash only when set, so a new rule's section
    leaves the version of every existing policy unchanged."""
    assert {
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
    } == ALWAYS_HASHED
    every = {f.name for f in fields(Policy)}
    assert ALWAYS_HASHED | NOT_HASHED | {name for name, _ in HASHED_WHEN_SET} == every


CORE = Path(pipeline.core.__file__).parent


def _verdict_literals(path: Path) -> list[str]:
    """Verdict strings written as literals: a RuleStep's verdict argument, or a module-level
    constant whose value is a verdict."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "RuleStep"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
        ):
            found.append(f"{path.name}:{node.lineno} RuleStep(..., {node.args[1].value!r})")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        value = getattr(node, "value", None)
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(value, ast.Constant)
            and value.value in decision.VERDICTS
        ):
            found.append(f"{path.name}:{node.lineno} = {value.value!r}")
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CORE.rglob("*.py") if p.name != "decision.py"),
    ids=lambda p: str(p.relative_to(CORE)),
)
def test_verdict_strings_are_defined_only_in_decision(path):
    assert _verdict_literals(path) == []
