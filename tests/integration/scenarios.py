"""Crash and rebalance scenarios on the real broker, each returning a tally.

Shared by the integration tests (which assert a clean tally) and `make soak` (which runs
each one many times on both runtimes and prints the tallies). A tally compares what a
`read_committed` reader sees with what the pure core decides on the same records (the
clean run): lost decisions, decisions that differ, and records seen twice.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pipeline.core.policy_document import load_policy
from pipeline.core.whatif import final_decisions
from pipeline.ops.simulator import AgentSimulator, SimRecord
from pipeline.settings import Settings
from tests.conftest import WorkerProcess
from tests.integration.test_pipeline_end_to_end import expected_decisions, outputs
from tests.kafka_io import Consumed, consume_until, produce, read_visible

HOLD_POLICY = """
version: 1.0.0
caps: []
merge_window_ms: 600000
holds:
  hold_ms: {message: 1500, offer: 1500, answer: 1500}
"""


@dataclass(frozen=True)
class Tally:
    scenario: str
    runtime: str
    records: int
    #: expected decisions with no final audit record (a proposal or a hold never answered)
    lost: int
    #: approved actions that differ from the clean run: missing, extra, or two for a trigger
    changed: int
    #: approved-action records seen more than once (identical re-emits after a crash)
    duplicates: int
    seconds: float
    #: per fault (its function's name), in order: seconds until the worker decided again
    resumed: tuple[tuple[str, float], ...] = field(default=())

    def assert_clean(self, exactly_once: bool, worker: WorkerProcess | None = None) -> None:
        """With `worker`, a failure shows the tail of its last log (CI keeps no files)."""
        clean = (self.lost, self.changed) == (0, 0) and not (exactly_once and self.duplicates)
        if not clean:
            tail = f"\nworker log:\n{worker.log_tail(80)}" if worker else ""
            raise AssertionError(f"{self}{tail}")

    def record(self) -> None:
        """Append to `TOWER_SOAK_TALLY` (JSON lines), if set: `make soak` sums them up."""
        path = os.environ.get("TOWER_SOAK_TALLY")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(asdict(self)) + "\n")


def expected_actions(records: list[SimRecord]) -> Counter[str]:
    """The action ids the pure core approves for the records, under the default policy, each
    with how often: a replay that outlived the duplicate window is approved again."""
    return Counter(d.action_id for d in expected_decisions(records) if d.action_id)


#: the crash scenarios' worker decides in commits of at most 100 records: a backlog takes many
#: commits however fast the machine, so a kill that follows what a reader saw committed still
#: lands mid-backlog
SMALL_COMMITS = {"TOWER_BATCH_SIZE": "100", "TOWER_TRANSACTION_MAX_RECORDS": "100"}


def kill_at(worker: WorkerProcess, settings: Settings, done_share: float, total: int) -> None:
    """Wait until `done_share` of `total` inputs have an audit record, then SIGKILL and
    restart the worker at once; the kill must land while inputs are still undecided."""
    consume_until(
        settings.bootstrap,
        outputs(settings),
        lambda s: len(final_sources(s)) >= done_share * total,
        timeout=300,
        settle=0,
    )
    worker.kill()
    assert_killed_mid_backlog(settings, lambda s: len(final_sources(s)), total)
    worker.start()


def assert_killed_mid_backlog(
    settings: Settings, decided: Callable[[dict[str, list[Consumed]]], int], total: int
) -> None:
    """The worker just SIGKILLed had not decided all `total` inputs yet: else the scenario
    proved nothing about a crash."""
    visible = read_visible(settings.bootstrap, outputs(settings))
    assert decided(visible) < total, "killed after the backlog was done"


def final_sources(seen: dict[str, list[Consumed]]) -> set[tuple[int, int]]:
    """(partition, input offset) of every input with its final (not `held`) audit record."""
    return {
        (a.partition, a.value["source_offset"])
        for a in seen["audit"]
        if a.value["outcome"] != "held" and a.value["source_topic"].endswith("agent-events")
    }


def action_tally(
    seen: dict[str, list[Consumed]], expected: Counter[str] | set[str]
) -> tuple[int, int]:
    """(actions that differ from the expected ones, records beyond the expected count)."""
    want = Counter(expected)
    got: dict[str, dict] = {}
    changed = 0
    for a in seen["approved"]:
        if got.setdefault(a.value["action_id"], a.value) != a.value:
            changed += 1  # a re-emit must be identical
    changed += len(set(got) ^ set(want))
    counts = Counter(a.value["action_id"] for a in seen["approved"])
    return changed, sum(max(0, n - want[k]) for k, n in counts.items())


def sigkill_mid_stream(settings: Settings, worker: WorkerProcess, runtime: str) -> Tally:
    """12,000 records (10 malformed, replays), one SIGKILL early in the backlog: long enough
    that the transactional runtime is still deciding when the kill lands."""
    started = time.monotonic()
    records = AgentSimulator(customers=30, seed=23).records(12000, malformed=10)
    valid = [r for r in records if r.event is not None]
    produce(settings.bootstrap, settings.topics.events, [(r.key, r.value) for r in records])
    worker.extra_env.update(SMALL_COMMITS)
    worker.start()
    kill_at(worker, settings, 800 / len(valid), len(valid))
    seen = wait_for(settings, lambda s: len(final_sources(s)) >= len(valid), timeout=180)
    changed, duplicates = action_tally(seen, expected_actions(records))
    lost = len(valid) - len(final_sources(seen))
    return Tally("sigkill", runtime, len(records), lost, changed, duplicates, _since(started))


def held_through_two_sigkills(
    settings: Settings, worker: WorkerProcess, tmp_path: Path, runtime: str
) -> Tally:
    """20,000 proposals (over 15,000 of them held), SIGKILLed at 30 % and 65 %."""
    started = time.monotonic()
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(HOLD_POLICY)
    worker.extra_env["TOWER_POLICY_FILE"] = str(policy_file)
    records = AgentSimulator(customers=400, seed=31, replay_share=0.0).records(20_000)
    events = [r.event for r in records]
    # the clean run: holds close in event time, as the worker closes them
    expected = {d.action_id for d in final_decisions(events, load_policy(HOLD_POLICY))}
    expected.discard(None)
    held_kinds = {"message", "offer", "answer"}
    assert sum(1 for e in events if e.proposal and e.proposal.action in held_kinds) > 15_000
    produce(settings.bootstrap, settings.topics.events, [(r.key, r.value) for r in records])

    def answered(seen: dict[str, list[Consumed]]) -> set[str]:
        return {a.value["event_id"] for a in seen["audit"] if a.value["outcome"] != "held"}

    worker.extra_env.update(SMALL_COMMITS)
    worker.start()
    for share in (0.3, 0.65):
        consume_until(
            settings.bootstrap,
            outputs(settings),
            lambda s, f=share: len(answered(s)) >= f * len(records),
            timeout=300,
            settle=0,
        )
        worker.kill()
        assert_killed_mid_backlog(settings, lambda s: len(answered(s)), len(records))
        worker.start()
    seen = wait_for(settings, lambda s: len(answered(s)) >= len(records), timeout=400, settle=3)
    changed, duplicates = action_tally(seen, expected)
    lost = len({e.event_id for e in events} - answered(seen))
    return Tally("held", runtime, len(records), lost, changed, duplicates, _since(started))


def join_and_leave(
    settings: Settings, worker: WorkerProcess, tmp_path: Path, runtime: str
) -> Tally:
    """6,000 records in thirds; a second worker joins after the first third and leaves
    after the second, so partitions move to it and back while records stream. The second
    third is produced once the second worker owns input partitions, and it leaves once it
    has decided some of them: the scenario never passes without the rebalances."""
    started = time.monotonic()
    records = AgentSimulator(customers=60, seed=41).records(6_000, malformed=0)
    second = WorkerProcess(settings, tmp_path, tmp_path / "worker-2")
    second.starts = 100  # its own log file names
    second.extra_env.update(worker.extra_env)
    thirds = [records[i * 2000 : (i + 1) * 2000] for i in range(3)]
    worker.start()
    try:
        for i, part in enumerate(thirds):
            produce(settings.bootstrap, settings.topics.events, [(r.key, r.value) for r in part])
            if i == 0:
                second.start()  # joins: a rebalance moves half the partitions to it
                until("the second worker owns input partitions", second, owns_input)
            elif i == 1:
                until("the second worker decided records", second, decided_any)
                second.stop()  # leaves: its partitions come back to the first worker
        seen = wait_for(settings, lambda s: len(final_sources(s)) >= len(records), timeout=300)
    finally:
        second.stop()
    changed, duplicates = action_tally(seen, expected_actions(records))
    lost = len(records) - len(final_sources(seen))
    return Tally("join-leave", runtime, len(records), lost, changed, duplicates, _since(started))


def metric_samples(worker: WorkerProcess, name: str) -> list[Sample]:
    """The samples of metric family `name` on the worker's /metrics now (none while it
    does not answer)."""
    try:
        families = text_string_to_metric_families(worker.metrics_text(timeout=5))
    except OSError:
        return []
    return [s for f in families if f.name == name for s in f.samples]


def owns_input(worker: WorkerProcess) -> bool:
    """The worker owns agent-events partitions (it reports their lag only while it does)."""
    events = worker.settings.topics.events
    lags = metric_samples(worker, "tower_input_lag_records")
    return any(s.labels.get("topic") == events for s in lags)


def decided_any(worker: WorkerProcess) -> bool:
    samples = metric_samples(worker, "tower_decisions")
    return sum(s.value for s in samples if s.name == "tower_decisions_total") > 0


def until(
    what: str, worker: WorkerProcess, done: Callable[[WorkerProcess], bool], timeout: float = 120
) -> None:
    """Wait until `done(worker)`; else fail saying `what` never happened."""
    deadline = time.monotonic() + timeout
    while not done(worker):
        if time.monotonic() > deadline:
            log = worker.log_tail(40) if worker.proc else "(it was never started)"
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{log}")
        time.sleep(0.5)


def wait_for(
    settings: Settings, done, timeout: float, settle: float | None = None
) -> dict[str, list[Consumed]]:
    """Everything on the output topics once `done` holds and the worker has committed its
    input (or, with `settle`, that many seconds more: holds come out later by design); on a
    timeout, what was there (the tally then counts what is missing)."""
    try:
        if settle is not None:
            return consume_until(settings, outputs(settings), done, timeout, settle)
        return consume_until(settings, outputs(settings), done, timeout, decided=settings)
    except TimeoutError:
        return consume_until(settings, outputs(settings), lambda s: True, 60, 3)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)
