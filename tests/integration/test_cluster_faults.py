"""Faults of a replicated cluster: three local KRaft nodes (`tower kafka up --brokers 3`),
topics replicated 3 times with min.insync.replicas 2, a worker streaming 20,000 records
(most of them held proposals) while brokers die. Compared with the clean run, the pure
core's decisions on the same records: nothing lost or changed, and no duplicates for a
`read_committed` reader on the transactional runtime."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from pipeline.core.policy_document import load_policy
from pipeline.core.whatif import final_decisions
from pipeline.kafka import clients
from pipeline.kafka.topics import create_topics
from pipeline.ops.local_cluster import LocalCluster
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings, TopicNames
from tests.conftest import WorkerProcess
from tests.integration.scenarios import HOLD_POLICY, Tally, action_tally, wait_for
from tests.integration.test_pipeline_end_to_end import outputs
from tests.kafka_io import Consumed, consume_until, produce

pytestmark = pytest.mark.integration

BASE_PORT = 29800  # below the ephemeral range, as conftest.TEST_PORT
RECORDS = 20_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, port=BASE_PORT, run_dir=tmp_path_factory.mktemp("cluster"))
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def cluster_settings(cluster: LocalCluster, tmp_path: Path) -> Settings:
    tag = f"c{time.monotonic_ns() % 10**8}"
    names = TopicNames(**{f: f"{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    settings = Settings(
        bootstrap=cluster.bootstrap,
        app_id=f"tower-{tag}",
        partitions=6,
        data_dir=tmp_path / "worker",
        topics=names,
    )
    create_topics(settings).raise_for_problems()
    return settings


def leaders(settings: Settings, topic: str) -> Counter[int]:
    md = clients.admin(settings).list_topics(topic, timeout=10).topics[topic]
    return Counter(p.leader for p in md.partitions.values())


def test_topics_and_changelogs_take_the_clusters_replication(cluster, cluster_settings):
    s = cluster_settings
    admin = clients.admin(s)
    md = admin.list_topics(timeout=10).topics
    for topic in (s.topics.events, s.topics.approved, s.topics.audit, s.topics.policies):
        assert {len(p.replicas) for p in md[topic].partitions.values()} == {3}, topic
    res = ConfigResource(ConfigResource.Type.TOPIC, s.topics.events)
    config = next(iter(admin.describe_configs([res]).values())).result()
    assert config["min.insync.replicas"].value == "2"


def answered(seen: dict[str, list[Consumed]]) -> set[str]:
    return {a.value["event_id"] for a in seen["audit"] if a.value["outcome"] != "held"}


#: a fault: what to do to the cluster; returns what it did, in words
Fault = Callable[[LocalCluster, Settings], str]


def kill_input_leader(cluster: LocalCluster, s: Settings) -> str:
    victim = leaders(s, s.topics.events).most_common(1)[0][0]
    cluster.kill(victim)
    return f"killed node {victim} (led most input partitions)"


def restart_and_kill_another(cluster: LocalCluster, s: Settings) -> str:
    down = next(n for n in (1, 2, 3) if not cluster.node(n).status().running)
    cluster.start(down)
    other = next(n for n in (1, 2, 3) if n != down)
    cluster.kill(other)
    return f"restarted node {down}, killed node {other}"


def kill_controller(cluster: LocalCluster, s: Settings) -> str:
    leader = cluster.quorum_leader()
    assert leader is not None
    cluster.kill(leader)
    return f"killed node {leader} (the active controller)"


def restart_the_whole_cluster(cluster: LocalCluster, s: Settings) -> str:
    for n in (1, 2, 3):
        if not cluster.node(n).status().running:
            cluster.start(n)
    cluster.down()
    time.sleep(5)
    cluster.up()
    return "stopped all three nodes for 5 s, then started them"


SCENARIOS: dict[str, list[tuple[float, Fault]]] = {
    "broker-kill": [(0.3, kill_input_leader), (0.6, restart_and_kill_another)],
    "controller-and-full-restart": [(0.3, kill_controller), (0.6, restart_the_whole_cluster)],
}


def stream_through_faults(
    cluster: LocalCluster,
    s: Settings,
    tmp_path: Path,
    runtime: str,
    scenario: str,
) -> Tally:
    """RECORDS records (most of them held proposals), half of them produced during the
    faults; each fault when a share of the inputs has its final decision. Prints how long
    the worker took to decide again after each fault."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(HOLD_POLICY)
    worker = WorkerProcess(s, tmp_path, tmp_path / "worker")
    worker.extra_env.update(TOWER_POLICY_FILE=str(policy_file), TOWER_RUNTIME=runtime)
    records = AgentSimulator(customers=400, seed=37, replay_share=0.0).records(RECORDS)
    events = [r.event for r in records]
    expected = {d.action_id for d in final_decisions(events, load_policy(HOLD_POLICY))}
    expected.discard(None)
    half = RECORDS // 2
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in records[:half]])
    started = time.monotonic()
    worker.start()
    said: list[str] = []
    resumed: list[tuple[str, float]] = []
    rest: threading.Thread | None = None
    try:
        for share, fault in SCENARIOS[scenario]:
            consume_until(
                s.bootstrap, outputs(s), lambda g, f=share: len(answered(g)) >= f * RECORDS, 300, 0
            )
            before = len(answered(consume_until(s.bootstrap, outputs(s), lambda g: True, 60, 1)))
            at = time.monotonic()
            what = fault(cluster, s)
            if rest is None:  # the agents keep producing through the faults
                rest = threading.Thread(
                    target=produce,
                    args=(s.bootstrap, s.topics.events, [(r.key, r.value) for r in records[half:]]),
                )
                rest.start()
            # 200 more answers; fewer if the worker got that close to the end before the fault
            again = min(before + 200, RECORDS)
            consume_until(s.bootstrap, outputs(s), lambda g, n=again: len(answered(g)) >= n, 300, 0)
            resumed.append((fault.__name__, round(time.monotonic() - at, 1)))
            said.append(f"{what}: deciding again {resumed[-1][1]} s later")
        assert rest is not None
        rest.join(120)
        seen = wait_for(s, lambda g: len(answered(g)) >= RECORDS, timeout=400)
    except TimeoutError as exc:  # the worker stopped deciding: where is it stuck?
        raise AssertionError(
            f"{exc}\n{'; '.join(said)}\nworker log:\n{worker.log_tail(60)}\n"
            f"its threads:\n{worker.stacks()}"
        ) from None
    finally:
        worker.stop()
        for n in (1, 2, 3):
            if not cluster.node(n).status().running:
                cluster.start(n)
    changed, duplicates = action_tally(seen, expected)
    lost = len({e.event_id for e in events} - answered(seen))
    seconds = round(time.monotonic() - started, 1)
    tally = Tally(scenario, runtime, RECORDS, lost, changed, duplicates, seconds, tuple(resumed))
    print(f"\n{scenario} on {runtime}: " + "; ".join(said) + f"\n  {tally}")
    return tally


@pytest.mark.soak  # about 10 minutes for the four: `make soak`, not `make test`
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_brokers_and_controllers_die_mid_stream_and_nothing_is_lost(
    cluster, cluster_settings, tmp_path, runtime, scenario
):
    tally = stream_through_faults(cluster, cluster_settings, tmp_path, runtime, scenario)
    tally.record()
    tally.assert_clean(exactly_once=runtime == "transactional")
