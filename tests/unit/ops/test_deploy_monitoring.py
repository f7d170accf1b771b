"""The alert rules and the dashboard stay valid and only use metrics the worker exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.processing.metrics import TowerMetrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "journey-tower.json"
PROMTOOL = shutil.which("promtool")
NEEDS_PROMTOOL = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus)"
)
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported_names() -> set[str]:
    """Every sample name the worker can expose, e.g. tower_decisions_total."""
    names = set()
    for family in TowerMetrics().registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES)
    return names


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


@NEEDS_PROMTOOL
@pytest.mark.parametrize(
    "args",
    [["check", "rules", str(ALERTS)], ["check", "config", str(ALERTS.parent / "prometheus.yml")]],
    ids=["rules", "config"],
)
def test_promtool_accepts(args):
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_only_exported_metrics_and_recorded_series_are_used(source):
    exprs = [r["expr"] for r in rules()] if source == "alerts" else dashboard_exprs()
    text = "\n".join(exprs)
    used = set(re.findall(r"\btower_[a-z_]+", text))
    assert used and used <= exported_names()
    recorded = {r["record"] for r in rules() if "record" in r}
    assert set(re.findall(r"\btower:[a-z_0-9:]+", text)) <= recorded


def test_the_required_alerts_and_panels_exist():
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert {
        "TowerConsumerLagGrowing",
        "TowerDeadLettersSpiking",
        "TowerAgentApprovalRateCollapsed",
        "TowerContradictionsAppearing",
    } <= alerts
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
    ):
        assert needle in text


def test_prometheus_config_loads_the_rules():
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
