"""The audit hash chain on the real broker: both runtimes write an unbroken chain, a Faust
worker killed and restarted mid-backlog re-seeds from the tail instead of breaking it, and a
record a producer inserts by hand is found at its offset by `tower audit verify`."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from pipeline.contracts.audit_chain import PREV_HEADER
from pipeline.ops.cli import main
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

FORGED = b'{"outcome":"approved","customer_id":"c-forged"}'


def verify(settings: Settings, *args: str) -> tuple[int, str]:
    """`tower audit verify ARGS` on the test's audit topic: exit code and output."""
    result = CliRunner().invoke(main, ["audit", "verify", *args], env=settings.to_env())
    return result.exit_code, result.output


def decide(settings: Settings, worker, records: int, seed: int, kill_after: int | None = None):
    """Produce `records` events, let the worker decide them all (killing it with SIGKILL
    and starting it again once `kill_after` audit records are out); the audit records."""
    sim = AgentSimulator(customers=40, seed=seed).records(records, malformed=0)
    produce(settings.bootstrap, settings.topics.events, [(r.key, r.value) for r in sim])

    def sources(seen):
        return {(a.partition, a.value["source_offset"]) for a in seen["audit"]}

    worker.start()
    if kill_after is not None:
        consume_until(
            settings.bootstrap,
            {"audit": settings.topics.audit},
            lambda s: len(s["audit"]) >= kill_after,
            timeout=120,
            settle=0,
        )
        worker.kill()
        worker.start()
    seen = consume_until(
        settings.bootstrap,
        {"audit": settings.topics.audit},
        lambda s: len(sources(s)) >= records,
        timeout=180,
    )
    worker.stop()
    return seen["audit"]


def forge(settings: Settings, partition: int, headers: list[tuple[str, bytes]] | None) -> int:
    """A record written straight to the audit partition, as a forger would; its offset."""
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    offsets: list[int] = []
    producer.produce(
        settings.topics.audit,
        FORGED,
        b"c-forged",
        partition,
        headers=headers,
        on_delivery=lambda err, msg: offsets.append(msg.offset()),
    )
    assert producer.flush(15) == 0
    return offsets[0]


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_an_unbroken_run_verifies_and_a_forged_record_is_found_at_its_offset(
    tower_settings: Settings, worker, runtime: str
) -> None:
    worker.extra_env["TOWER_RUNTIME"] = runtime
    decide(tower_settings, worker, 1_500, seed=61)
    code, out = verify(tower_settings)
    assert code == 0, out
    assert len(re.findall(r"partition \d: OK", out)) == tower_settings.partitions, out

    outside = forge(tower_settings, 1, None)  # no chain header
    code, out = verify(tower_settings, "--partition", "1")
    assert code == 2, out
    assert f"outside the chain (not written by a worker): offsets {outside}" in out, out

    wrong = forge(tower_settings, 1, [(PREV_HEADER, b"\xab" * 32)])
    code, out = verify(tower_settings)
    assert code == 1, out
    assert f"partition 1: BROKEN at offset {wrong}: its chain header does not name" in out, out
    assert "partition 0: OK" in out, out
    # the records before it are still proven, from any offset
    code, out = verify(tower_settings, "--partition", "1", "--from-offset", "1")
    assert code == 1 and f"BROKEN at offset {wrong}" in out, out


def test_a_killed_and_restarted_faust_worker_continues_the_chain(
    tower_settings: Settings, worker
) -> None:
    audit = decide(tower_settings, worker, 6_000, seed=67, kill_after=1_500)
    assert len(audit) >= 6_000
    code, out = verify(tower_settings)
    assert code == 0, out
