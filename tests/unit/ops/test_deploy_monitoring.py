"""The alert rules and the dashboard stay valid, only use metrics the worker exports, and
every alert fires when it should, stays quiet otherwise and has a runbook."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from pipeline.processing.metrics import TowerMetrics
from tests import tools

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "journey-tower.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
#: a test that runs promtool: skipped without it, failed under CI (tests.tools)
NEEDS_PROMTOOL = pytest.mark.usefixtures("promtool")


@pytest.fixture(scope="module")
def promtool() -> str:
    return tools.tool("promtool", "apt-get install -y prometheus")


SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
#: the worker's input lag, liveness and policy-record gauges, and its rebalance counter, as
#: named for the rules and panels; remove each from here once `TowerMetrics` registers it
PENDING_WORKER_METRICS = {
    "tower_input_lag_records",
    "tower_input_oldest_undecided_age_seconds",
    "tower_last_decision_timestamp_seconds",
    "tower_rebalances_total",
    "tower_policy_active_missing",
}
METRIC_NAME = re.compile(r"\b(?:tower|process|python)_[a-z_]+")
#: a line of `promtool test rules` naming a failed case, and whether it expected no alert
PROMTOOL_FAILURE = re.compile(r"alertname: (\w+), time: [^,]*,\s*exp:(\[\])?")


def exported_names() -> set[str]:
    """Every sample name the worker can expose: its metrics and prometheus-client's process,
    GC and platform collectors (the default registry the runtimes serve alongside)."""
    runtime = CollectorRegistry()
    for collector in (ProcessCollector, GCCollector, PlatformCollector):
        collector(registry=runtime)
    names = set(PENDING_WORKER_METRICS)
    for registry in (TowerMetrics().registry, runtime):
        for family in registry.collect():
            names.add(family.name)
            names.update(family.name + s for s in SUFFIXES)
    return names


def rules(path: Path = ALERTS) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def dashboard_panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (lower case, punctuation dropped)."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = tools.tool("promtool", "apt-get install -y prometheus")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


@NEEDS_PROMTOOL
@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", str(ALERTS)],
        ["check", "config", str(ALERTS.parent / "prometheus.yml")],
        ["test", "rules", str(ALERT_TESTS)],
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts(args):
    result = run_promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases: dict[str, set[bool]] = {}
    for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    missing = {a["alert"]: cases.get(a["alert"], set()) for a in alerts()}
    assert {name: seen for name, seen in missing.items() if seen != {True, False}} == {}


@NEEDS_PROMTOOL
@pytest.mark.parametrize(
    ("broken_expr", "expect_quiet_case_fails"),
    [("vector(0) > 1", False), ("vector(1)", True)],
    ids=["never-fires", "always-fires"],
)
def test_the_rule_tests_catch_a_broken_expression(tmp_path, broken_expr, expect_quiet_case_fails):
    """Every alert's cases fail when its expression never fires, and its quiet cases fail
    when it always fires: the tests pin each expression down from both sides."""
    document = yaml.safe_load(ALERTS.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = broken_expr
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(document))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = run_promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert result.returncode != 0
    failed = {
        name
        for name, quiet in PROMTOOL_FAILURE.findall(result.stdout + result.stderr)
        if bool(quiet) == expect_quiet_case_fails
    }
    assert failed == {a["alert"] for a in alerts()}


def test_every_alert_has_a_severity_and_a_runbook():
    anchors = heading_anchors(RUNBOOKS.read_text())
    for alert in alerts():
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        notes = alert["annotations"]
        assert notes.keys() >= {"summary", "description", "runbook_url"}, alert["alert"]
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/runbooks.md", alert["alert"]
        assert anchor == alert["alert"].lower() and anchor in anchors, alert["alert"]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_only_exported_metrics_and_recorded_series_are_used(source):
    exprs = [r["expr"] for r in rules()] if source == "alerts" else dashboard_exprs()
    text = "\n".join(exprs)
    used = set(METRIC_NAME.findall(text))
    assert used and used - exported_names() == set()
    recorded = {r["record"] for r in rules() if "record" in r}
    assert set(re.findall(r"\btower:[a-z_0-9:]+", text)) <= recorded


def test_the_required_alerts_and_panels_exist():
    assert {a["alert"] for a in alerts()} >= {
        "TowerConsumerLagGrowing",
        "TowerWorkerStuck",
        "TowerWorkerDown",
        "TowerWorkerAbsent",
        "TowerWorkerRestarting",
        "TowerRebalanceStorm",
        "TowerDeadLettersSpiking",
        "TowerPolicyRejected",
        "TowerPolicyActiveMissing",
        "TowerFileDescriptorsNearLimit",
        "TowerAgentApprovalRateCollapsed",
        "TowerContradictionsAppearing",
    }
    recorded = {r["record"] for r in rules() if "record" in r}
    assert {
        "tower:containment_rate:ratio_rate1h",
        "tower:repeat_contact_rate:ratio_rate1h",
        "tower:agent_approval_rate:ratio_rate15m",
    } <= recorded
    text = "\n".join(dashboard_exprs())
    for needle in (
        "tower_decisions_total",
        "tower_conflicts_prevented_total",
        "tower:containment_rate",
        "tower:csat_score",
        "tower:repeat_contact_rate",
        "tower_time_to_resolution_seconds_bucket",
        "tower_journey_step_total",
        "tower_cost_to_serve_total",
        "tower:agent_approval_rate",
        "tower_dead_letters_total",
        "tower_end_to_end_lag_seconds_bucket",
        "tower_input_lag_records",
        "tower_input_oldest_undecided_age_seconds",
        "tower_last_decision_timestamp_seconds",
        "tower_rebalances_total",
        "changes(process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
    ):
        assert needle in text, needle


def test_the_dashboard_panels_are_distinct_and_laid_out():
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        for y in range(pos["y"], pos["y"] + pos["h"]):
            for x in range(pos["x"], pos["x"] + pos["w"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_the_runbooks_name_only_alerts_that_exist():
    sections = re.findall(r"^## (Tower\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert sorted(sections) == sorted(a["alert"] for a in alerts())


def test_prometheus_config_loads_the_rules():
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
