"""docker-compose.kafka.yml scales out by design (`up --scale worker=3`), checked offline.

Each worker replica needs its own identity, data and URL; nothing is published beyond the
host's loopback; and Prometheus scrapes every replica. Compose itself is not needed: these
are properties of the file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.kafka.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def published(port: str | dict[str, Any]) -> tuple[str, str]:
    """(host ip, host port) of a short- or long-syntax port."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port.get("published", ""))
    parts = str(port).split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    return "", parts[0] if len(parts) == 2 else ""


def test_worker_replicas_get_no_fixed_host_port(compose: dict[str, Any]) -> None:
    for port in compose["services"]["worker"].get("ports", []):
        assert published(port)[1] == "", f"{port}: a fixed host port lets one replica start"


def test_worker_replicas_share_no_named_data_volume(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    data = worker["environment"]["TOWER_DATA_DIR"]
    for volume in worker.get("volumes", []):
        target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
        assert target != data, f"{volume}: every replica would open the same state"


def test_each_worker_advertises_its_own_host_name(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert "{hostname}" in env["TOWER_WEB_URL"]
    assert "TOWER_INSTANCE_ID" not in env  # one value for all replicas would fence them
    assert "hostname" not in compose["services"]["worker"]  # one name for all replicas
    assert "container_name" not in compose["services"]["worker"]


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    ports = [(name, p) for name, s in compose["services"].items() for p in s.get("ports", [])]
    assert ports
    for name, port in ports:
        assert published(port)[0] == "127.0.0.1", f"{name}: {port} is open on every interface"


def test_the_viewer_token_goes_to_a_file_not_the_logs(compose: dict[str, Any]) -> None:
    (command,) = compose["services"]["web-token"]["command"]
    assert "token add" in command and "> /secrets/viewer-token" in command
    assert "umask 077" in command


def test_prometheus_discovers_every_worker_replica(compose: dict[str, Any], tmp_path: Path) -> None:
    """The compose command's rewrite of deploy/prometheus/prometheus.yml, run here."""
    (command,) = compose["services"]["prometheus"]["command"]
    config = tmp_path / "prometheus.yml"
    config.write_text((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    sed = command.split("&&")[2].replace("$$", "$")  # compose's escape of a literal $
    assert sed.strip().startswith("sed -i")
    subprocess.run(["sh", "-c", sed.replace("/prometheus/config/", f"{tmp_path}/")], check=True)
    (job,) = yaml.safe_load(config.read_text())["scrape_configs"]
    assert "static_configs" not in job
    assert job["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": 6066}]
