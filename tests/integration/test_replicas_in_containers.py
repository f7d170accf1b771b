"""Two replicas started the way containers start them share the work, on both runtimes.

A container runtime gives every replica of a service the same image, the same environment
(TOWER_DATA_DIR=/data) and its own volume mounted at that same path, and its own host name.
Each worker here runs in its own mount and UTS namespace (`unshare`): its own host name,
its own data dir bind-mounted at one common path. They share the network namespace, so
they reach the test's broker on loopback and each other on their own web ports.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from pipeline.contracts.partitioning import key_partition
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from tests.conftest import WorkerProcess
from tests.integration import scenarios
from tests.integration.test_web_views import get_json
from tests.kafka_io import produce

pytestmark = pytest.mark.integration

#: mount the replica's own data dir at the common path, set its host name, run the worker
IN_CONTAINER = 'hostname "$1" && mount --bind "$2" "$3" && shift 3 && exec "$@"'
#: what a replica logs when another one presents its identity (either runtime's client)
FENCED = re.compile(r"fenc", re.IGNORECASE)


def containerlike(settings: Settings, tmp_path: Path, name: str, runtime: str) -> WorkerProcess:
    """A worker in namespaces of its own: host name `name`, its own data dir at the one
    common TOWER_DATA_DIR."""
    common, own = tmp_path / "data", tmp_path / name / "data"
    common.mkdir(exist_ok=True)
    own.mkdir(parents=True)
    worker = WorkerProcess(settings, tmp_path / name, common)
    worker.wrapper = ["unshare", "--mount", "--uts", "--fork", "sh", "-c", IN_CONTAINER]
    worker.wrapper += ["sh", name, str(own), str(common)]
    worker.extra_env.update(
        HOSTNAME=name,  # as Docker sets it
        TOWER_RUNTIME=runtime,
        TOWER_WEB_URL=f"http://127.0.0.1:{worker.web_port}",
    )
    return worker


def url(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.web_port}"


def health(worker: WorkerProcess) -> dict | None:
    try:
        status, body = get_json(f"{url(worker)}/healthz")
    except OSError:
        return None
    return body if status == 200 else None


def logs(worker: WorkerProcess) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(worker.log_dir.glob("*.log")))


def diagnosis(replicas: list[WorkerProcess]) -> str:
    return "\n".join(
        f"--- {r.extra_env['HOSTNAME']}: exit {r.proc.poll() if r.proc else None}, "
        f"healthz {health(r)}\n{r.log_tail(30)}"
        for r in replicas
    )


def owners(replicas: list[WorkerProcess], partitions: int, timeout: float = 90) -> dict[int, str]:
    """Partition -> URL of its owner, once both replicas own some and together all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[int, str] = {}
        owning = 0
        for r in replicas:
            h = health(r)
            if h and h["ready"] and h["partitions"]:
                owning += 1
                found.update({p: url(r) for p in h["partitions"]})
        if owning == len(replicas) and len(found) == partitions:
            return found
        time.sleep(0.5)
    pytest.fail(f"the replicas never shared the partitions between them\n{diagnosis(replicas)}")


def decisions(worker: WorkerProcess) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in worker.metrics_text().splitlines()
        if line.startswith("tower_decisions_total")
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="starting workers in mount and UTS namespaces needs root and unshare(1)",
)
@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_two_replicas_with_one_data_path_share_the_work(tower_settings, tmp_path, runtime):
    replicas = [containerlike(tower_settings, tmp_path, n, runtime) for n in ("tower-a", "tower-b")]
    records = AgentSimulator(customers=60, seed=53).records(3_000, malformed=0)
    assert all(rec.event is not None for rec in records)
    try:
        for r in replicas:
            r.start()
        owner = owners(replicas, tower_settings.partitions)
        produce(
            tower_settings.bootstrap,
            tower_settings.topics.events,
            [(r.key, r.value) for r in records],
        )
        seen = scenarios.wait_for(
            tower_settings, lambda s: len(scenarios.final_sources(s)) >= len(records), timeout=180
        )
        # every input decided once, as the pure core decides it
        changed, duplicates = scenarios.action_tally(seen, scenarios.expected_actions(records))
        outcomes: dict[tuple[int, int], set[str]] = {}
        for a in seen["audit"]:
            if a.value["outcome"] != "held":
                key = (a.partition, a.value["source_offset"])
                outcomes.setdefault(key, set()).add(a.value["outcome"])
        assert len(outcomes) == len(records), diagnosis(replicas)
        assert all(len(o) == 1 for o in outcomes.values())
        assert changed == 0, diagnosis(replicas)
        if runtime == "transactional":
            assert duplicates == 0
        # neither was fenced nor restarted, and both decided some
        for r in replicas:
            assert r.proc is not None and r.proc.poll() is None, diagnosis(replicas)
            assert not FENCED.search(logs(r)), diagnosis(replicas)
            h = health(r)
            assert h is not None and h.get("restarts", 0) == 0, diagnosis(replicas)
        assert all(decisions(r) > 0 for r in replicas), diagnosis(replicas)
        assert set(owner.values()) == {url(r) for r in replicas}
        # a customer's page asked of the other replica is answered by its owner
        for r in replicas:
            customer = next(
                rec.event.customer_id
                for rec in records
                if rec.event is not None
                and owner[key_partition(rec.key, tower_settings.partitions)] != url(r)
            )
            status, page = get_json(f"{url(r)}/api/customers/{customer}")
            assert status == 200, (status, page)
            assert page["served_by"] != url(r) and page["served_by"] in owner.values()
    finally:
        for r in replicas:
            r.stop()
