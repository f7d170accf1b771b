"""A local replicated KRaft cluster on loopback: N nodes, each controller and broker, for
fault tests (kill a broker, the active controller, or all of them) without Docker.

Node i (1-based) of a cluster at base port P listens on P + 2(i-1) (clients) and the port
after it (controller), keeps its data and log in `<cache>/run/cluster-<P>/node-<i>`, and
shares the cluster id written once to `cluster.id` there. Topics default to replication
factor 3 (or N if smaller) with `min.insync.replicas` 2, like a production cluster.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TextIO

from pipeline.ops.local_kafka import (
    _CHILDREN,
    HOST,
    KafkaStatus,
    LocalKafka,
    LocalKafkaError,
    _cluster_id,
)
from pipeline.settings import Settings


class LocalCluster:
    """Lifecycle of a local cluster, identified by its base port; nodes are 1..size."""

    def __init__(
        self,
        size: int = 3,
        port: int | None = None,
        cache_dir: Path | None = None,
        version: str | None = None,
        out: TextIO | None = None,
        run_dir: Path | None = None,
    ) -> None:
        if size < 1:
            raise LocalKafkaError(f"a cluster needs at least one node, got {size}")
        defaults = Settings()
        self.size = size
        self.port = port or defaults.kafka_port
        self.cache_dir = Path(cache_dir or defaults.cache_dir).expanduser().absolute()
        self.run_dir = run_dir or self.cache_dir / "run" / f"cluster-{self.port}"
        self.out = out
        self.nodes = [
            LocalKafka(
                cache_dir=self.cache_dir,
                version=version,
                port=self.port + 2 * i,
                controller_port=self.port + 2 * i + 1,
                run_dir=self.run_dir / f"node-{i + 1}",
                out=out,
                node_id=i + 1,
                voters=self.voters,
                replication=min(3, size),
                cluster_id=self._cluster_id(),
            )
            for i in range(size)
        ]

    @property
    def voters(self) -> str:
        return ",".join(f"{i + 1}@{HOST}:{self.port + 2 * i + 1}" for i in range(self.size))

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, number: int) -> LocalKafka:
        if not 1 <= number <= self.size:
            raise LocalKafkaError(f"no node {number}: this cluster has nodes 1 to {self.size}")
        return self.nodes[number - 1]

    def _cluster_id(self) -> str:
        """One id for every node, kept so that restarted nodes rejoin the same cluster."""
        path = self.run_dir / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cid = _cluster_id()
        path.write_text(cid + "\n")
        return cid

    def up(self, wait_s: float = 90.0) -> list[KafkaStatus]:
        """Launch every node, then wait for each: a node answers only once a quorum of
        controllers runs."""
        for node in self.nodes:
            node.launch()
        return [node.wait_ready(wait_s) for node in self.nodes]

    @classmethod
    def existing(
        cls, port: int, cache_dir: Path | None = None, out: TextIO | None = None
    ) -> LocalCluster | None:
        """The cluster `up --brokers N` made at `port` before, if any (sized from its dirs)."""
        probe = cls(1, port=port, cache_dir=cache_dir)
        size = len(list(probe.run_dir.glob("node-*")))
        return cls(size, port=port, cache_dir=cache_dir, out=out) if size else None

    def down(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node at once (a node shutting down alone waits for the quorum the
        others would have left), then SIGKILL what is still running after `timeout_s`."""
        pids = {n.node_id: n.status().pid for n in self.nodes}
        for running in filter(None, pids.values()):
            os.killpg(running, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(p and _exists(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.25)
        for node in self.nodes:
            pid = pids[node.node_id]
            if pid and _exists(pid):
                os.killpg(pid, signal.SIGKILL)
            child = _CHILDREN.pop(pid, None) if pid else None
            if child is not None:
                child.wait(30)
            node.pid_file.unlink(missing_ok=True)
            if self.out is not None and pid:
                print(f"node {node.node_id} ({node.bootstrap}) stopped", file=self.out)

    def status(self) -> list[KafkaStatus]:
        return [node.status() for node in self.nodes]

    def kill(self, number: int) -> int:
        """SIGKILL node `number` (no clean shutdown: what a crashed machine does); its pid."""
        node = self.node(number)
        pid = node.status().pid
        if pid is None:
            raise LocalKafkaError(f"node {number} ({node.bootstrap}) is not running")
        os.killpg(pid, signal.SIGKILL)
        child = _CHILDREN.pop(pid, None)
        if child is not None:  # started by this process: reap it
            child.wait(30)
        deadline = time.monotonic() + 30
        while _exists(pid) and time.monotonic() < deadline:  # someone else's child: wait
            time.sleep(0.1)
        node.pid_file.unlink(missing_ok=True)
        return pid

    def start(self, number: int, wait_s: float = 90.0) -> KafkaStatus:
        node = self.node(number)
        node.launch()
        return node.wait_ready(wait_s)

    def quorum_leader(self) -> int | None:
        """The node id of the active KRaft controller, from the running nodes' quorum-state
        files (each node rewrites its file when the leader or epoch changes; the highest
        epoch is the current one). None before a leader is elected."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            if not node.status().running:
                continue
            path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
            if leader > 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return None if best is None else best[0]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
