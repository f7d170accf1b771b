"""The agents' HTTP client installs alone: built from clients/python into a fresh
virtualenv, it brings httpx and nothing of the worker (no faust, no rocksdict, no Kafka
client), and imports and runs there.

Building and installing needs the package index (or pip's cache), as `make install` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: what the worker needs and an agent must not have to install
WORKER_ONLY = ("faust-streaming", "rocksdict", "confluent-kafka", "aiokafka", "aiohttp")


def run(*argv: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_client_installs_into_a_fresh_venv_without_the_worker(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build writes nothing into the checkout
    shutil.copytree(
        REPO / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
    )
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", str(source), cwd=tmp_path)

    installed = {
        p["name"].lower()
        for p in json.loads(run(python, "-m", "pip", "list", "--format=json", cwd=tmp_path))
    }
    assert "journey-tower-client" in installed and "httpx" in installed
    assert not installed & set(WORKER_ONLY), installed & set(WORKER_ONLY)
    probe = (
        "import importlib.util as u, journey_tower_client as c\n"
        "absent = [m for m in ('faust', 'rocksdict', 'confluent_kafka', 'pipeline')"
        " if u.find_spec(m)]\n"
        "assert not absent, absent\n"
        "print(c.__file__)\n"
        "print(c.Config.from_env({'TOWER_URL': 'http://x:1'}).url)\n"
    )
    out = run(python, "-c", probe, cwd=tmp_path).splitlines()
    assert out[0].startswith(str(tmp_path / "venv")) and out[1] == "http://x:1"
    assert sys.prefix not in out[0]  # the fresh venv's copy, not this checkout's
