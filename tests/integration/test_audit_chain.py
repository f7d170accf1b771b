"""The audit hash chain on the real broker: both runtimes write an unbroken chain of sealed
runs, a Faust worker killed and restarted mid-backlog re-seeds from the last seal instead of
breaking it, and records a producer writes by hand are found at their offsets by
`tower audit verify`: unsealed, outside the chain, or a break."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from pipeline.contracts.audit_chain import Seal
from pipeline.contracts.codec import encode_record
from pipeline.ops.cli import main
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from tests.kafka_io import Consumed, consume_until, produce

pytestmark = pytest.mark.integration


def verify(settings: Settings, *args: str) -> tuple[int, str]:
    """`tower audit verify ARGS` on the test's audit topic: exit code and output."""
    result = CliRunner().invoke(main, ["audit", "verify", *args], env=settings.to_env())
    return result.exit_code, result.output


def decide(
    settings: Settings,
    worker,
    records: int,
    seed: int,
    kill_after: int | None = None,
    decided_before: int = 0,
):
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
        lambda s: len(sources(s)) >= decided_before + records,
        timeout=180,
        decided=settings,
    )
    worker.stop()
    return seen["audit"]


def forge(
    settings: Settings, like: Consumed, headers: list[tuple[str, bytes]] | None = None
) -> int:
    """A copy of a worker's audit record, approved, written straight to its partition as
    a forger would; its offset."""
    forged = encode_record("audit_record", {**like.value, "outcome": "approved"})
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    offsets: list[int] = []
    producer.produce(
        settings.topics.audit,
        forged,
        like.key,
        like.partition,
        headers=headers,
        on_delivery=lambda err, msg: offsets.append(msg.offset()),
    )
    assert producer.flush(15) == 0
    return offsets[0]


def spans(text: str) -> set[int]:
    """The offsets of verify's "offsets 3-5, 9" list."""
    offsets: set[int] = set()
    for span in text.split(", "):
        first, _, last = span.partition("-")
        offsets.update(range(int(first), int(last or first) + 1))
    return offsets


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_an_unbroken_run_verifies_and_forged_records_are_found_at_their_offsets(
    tower_settings: Settings, worker, runtime: str
) -> None:
    worker.extra_env["TOWER_RUNTIME"] = runtime
    audit = decide(tower_settings, worker, 1_500, seed=61)
    like = next(a for a in audit if a.partition == 1)
    code, out = verify(tower_settings)
    assert code == 0, out
    assert len(re.findall(r"partition \d: OK", out)) == tower_settings.partitions, out

    unsealed = forge(tower_settings, like)  # no seal: at the end, not sealed (yet)
    code, out = verify(tower_settings, "--partition", "1")
    assert code == 2, out
    assert "1 record(s) at the end not sealed (a worker may still be writing their run: " in out
    assert f"offsets {unsealed}" in out, out

    # the worker's next runs link to its last seal: the forged record is outside the chain
    decide(tower_settings, worker, 300, seed=62, decided_before=1_500)
    code, out = verify(tower_settings, "--partition", "1")
    assert code == 2, out
    assert "1 record(s) outside the chain" in out and f"offsets {unsealed}\n" in out, out

    wrong = forge(tower_settings, like, Seal(1, b"\xab" * 32, b"\xab" * 32).header())
    code, out = verify(tower_settings)
    assert code == 1, out
    assert (
        f"partition 1: BROKEN at offset {wrong} (the run from offset {wrong}): its seal does "
        "not name the previous run's hash" in out
    ), out
    assert "partition 0: OK" in out, out
    # the records before it are still proven, from any offset
    code, out = verify(tower_settings, "--partition", "1", "--from-offset", "1")
    assert code == 1 and f"BROKEN at offset {wrong}" in out, out


def test_a_killed_and_restarted_faust_worker_continues_the_chain(
    tower_settings: Settings, worker
) -> None:
    """Unbroken; a run the kill cut short is outside the chain, and written again whole."""
    audit = decide(tower_settings, worker, 6_000, seed=67, kill_after=1_500)
    assert len(audit) >= 6_000
    code, out = verify(tower_settings, "--show", "100000")
    assert code in (0, 2) and "BROKEN" not in out, out
    assert "not sealed" not in out, out  # the restarted worker sealed all its runs
    cut: set[tuple[int, int]] = set()
    for line in out.splitlines():
        found = re.search(
            r"partition (\d+): \d+ record\(s\) outside the chain.*offsets (.*)$", line
        )
        if found:
            cut.update((int(found[1]), o) for o in spans(found[2]))
    source = {(a.partition, a.offset): a.value["source_offset"] for a in audit}
    rewritten = {(p, s) for (p, o), s in source.items() if (p, o) not in cut}
    assert {(p, source[p, o]) for p, o in cut} <= rewritten, out
