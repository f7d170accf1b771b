"""One worker for the agents' clients (Python, TypeScript, MCP) to talk to over HTTP, with
token authentication on: an `agent` token bound to care-bot and an operator's."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.kafka.topics import create_topics
from pipeline.settings import Settings, TopicNames
from pipeline.web.auth import token_line
from tests.conftest import WorkerProcess

AGENT = "care-bot"
AGENT_TOKEN = "agent-token-" + "c" * 32
OPERATOR_TOKEN = "operator-token-" + "o" * 32


@dataclass(frozen=True)
class AgentWorker:
    url: str
    worker: WorkerProcess

    def env(self, token: str = AGENT_TOKEN) -> dict[str, str]:
        """What an agent's process is given: the URL and its token, nothing else."""
        return {"TOWER_URL": self.url, "TOWER_TOKEN": token}


@contextmanager
def agent_worker(bootstrap: str, tmp: Path, runtime: str = "faust") -> Iterator[AgentWorker]:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap=bootstrap,
        app_id=f"tower-{tag}",
        partitions=4,
        data_dir=tmp / "worker",
        topics=TopicNames(**{f: f"t{tag}-{v}" for f, v in TopicNames().__dict__.items()}),
    )
    create_topics(settings).raise_for_problems()
    tokens, peer_key = tmp / "tokens", tmp / "peer-key"
    tokens.write_text(
        token_line(AGENT_TOKEN, "agent", AGENT) + token_line(OPERATOR_TOKEN, "operator", "ops")
    )
    peer_key.write_text("k" * 64 + "\n")
    worker = WorkerProcess(settings, tmp, settings.data_dir)
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_WEB_TOKENS_FILE=str(tokens),
        TOWER_WEB_PEER_KEY_FILE=str(peer_key),
    )
    worker.start()
    try:
        url = f"http://127.0.0.1:{worker.web_port}"
        wait_ready(url, worker)
        yield AgentWorker(url, worker)
    finally:
        worker.stop()


def wait_ready(url: str, worker: WorkerProcess, timeout_s: float = 120.0) -> None:
    """Until /readyz answers 200: partitions assigned and restored."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):  # not listening yet, or 503 while joining
            pass
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)
