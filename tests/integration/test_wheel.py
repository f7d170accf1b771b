"""The package stands alone: a wheel built from the repository, installed into a fresh
virtualenv and run outside the source tree, shows its version, speaks the record formats
and runs a worker that decides an event.

Building the wheel and the virtualenv needs the package index (or pip's cache), as
`make install` does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import TopicNames
from tests.conftest import free_port
from tests.kafka_io import produce

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: what a build reads, as the Dockerfile copies it: nothing else of the checkout
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "pipeline",
    "schemas",
    "clients/python/src",
)
#: what setuptools says of a licence it finds deprecated (a TOML table, classifiers)
LICENCE_WARNING = re.compile(
    r"SetuptoolsDeprecationWarning|License classifiers are deprecated|Warning:.*licen",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Build:
    wheel: Path
    output: str


@dataclass(frozen=True)
class Venv:
    root: Path
    away: Path  # a working directory with no checkout in it

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without its checkout, virtualenv or tower settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TOWER_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.away, env=self.env(**extra), capture_output=True, text=True, timeout=300
        )


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The wheel, built by pip (with build isolation, so the build's own requirements are
    the ones pyproject.toml declares) from a copy of the build inputs."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "--wheel-dir", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    (wheel,) = out.glob("journey_tower-*.whl")
    return Build(wheel, output)


@pytest.fixture(scope="module")
def venv(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtualenv with the wheel and its dependencies (from pip's cache if there)."""
    root = tmp_path_factory.mktemp("venv")
    away = tmp_path_factory.mktemp("elsewhere")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    env = Venv(root, away)
    proc = env.run(
        env.bin("python"), "-m", "pip", "install", "--quiet", "--no-compile", str(build.wheel)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env


def test_the_build_warns_of_nothing_about_its_licence(build):
    warned = [line for line in build.output.splitlines() if LICENCE_WARNING.search(line)]
    assert not warned, "\n".join(warned)


def test_the_wheel_ships_the_schemas_and_the_licence(build):
    with zipfile.ZipFile(build.wheel) as whl:
        names = set(whl.namelist())
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        meta = whl.read(metadata).decode()
    schemas = REPO / "schemas"
    shipped = {
        f"pipeline/schemas/{p.relative_to(schemas).as_posix()}"
        for p in schemas.rglob("*")
        if p.suffix in (".avsc", ".json")
    }
    assert shipped, "no schemas found in the checkout"
    assert shipped <= names, sorted(shipped - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta
    # the agents' HTTP client, which `tower mcp` speaks through
    assert {"journey_tower_client/client.py", "journey_tower_client/py.typed"} <= names


CODEC_ROUND_TRIP = """
import pipeline
from pipeline.contracts import schemas
from pipeline.contracts.codec import decode_event, decode_record, encode_event, encode_record
from pipeline.ops.simulator import AgentSimulator

rec = AgentSimulator(customers=1, seed=7).records(1)[0]
for fmt in ("avro", "json"):
    assert decode_event(rec.key, encode_event(rec.event, fmt)) == rec.event, fmt
letter = {"reason": "unknown_format", "detail": "not ours", "raw_key": None, "raw_value": b"x",
          "source_topic": "agent-events", "source_partition": 0, "source_offset": 1,
          "source_timestamp": None, "dead_lettered_at": 1}
assert decode_record("dead_letter", encode_record("dead_letter", letter))["detail"] == "not ours"
print(pipeline.__file__)
print(schemas.schema_dir())
"""


def test_the_installed_package_runs_without_the_source_tree(venv):
    version = venv.run(venv.bin("tower"), "--version")
    assert version.returncode == 0, version.stderr
    assert "0.1.0" in version.stdout
    proc = venv.run(venv.bin("python"), "-c", CODEC_ROUND_TRIP)
    assert proc.returncode == 0, proc.stderr
    module, schema_dir = proc.stdout.split()
    assert Path(module).is_relative_to(venv.root), module
    assert Path(schema_dir).is_relative_to(venv.root), schema_dir


@pytest.fixture
def worker_env(venv: Venv, kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    env = {
        "TOWER_BOOTSTRAP": kafka_bootstrap,
        "TOWER_APP_ID": f"tower-{tag}",
        "TOWER_PARTITIONS": "2",
        "TOWER_DATA_DIR": str(tmp_path / "data"),
        "TOWER_WEB_PORT": str(free_port()),
    }
    for name, value in TopicNames().__dict__.items():
        env[f"TOWER_TOPIC_{name.upper()}"] = f"t{tag}-{value}"
    yield env


def decisions(port: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tower_decisions_total")
    )


def test_the_installed_worker_decides_an_event(venv, worker_env, tmp_path):
    created = venv.run(venv.bin("tower"), "topics", "create", **worker_env)
    assert created.returncode == 0, created.stdout + created.stderr
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [venv.bin("tower"), "worker", "--loglevel", "info"],
            cwd=venv.away,
            env=venv.env(**worker_env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        rec = AgentSimulator(customers=1, seed=7).records(1)[0]
        produce(
            worker_env["TOWER_BOOTSTRAP"], worker_env["TOWER_TOPIC_EVENTS"], [(rec.key, rec.value)]
        )
        deadline = time.monotonic() + 120
        while decisions(worker_env["TOWER_WEB_PORT"]) < 1:
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
