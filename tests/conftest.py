"""Shared fixtures: a real Kafka broker for the session, isolated topics per test, and a
worker process that tests can start, SIGKILL and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.settings import Settings, TopicNames

if TYPE_CHECKING:
    from pipeline.ops.local_kafka import LocalKafka
    from tests.registry_server import RegistryServer

REPO = Path(__file__).resolve().parents[1]
#: below Linux's ephemeral range (32768-60999): a broker restarted by a test must find its
#: port free, not taken as the local port of some client's outgoing connection meanwhile
TEST_PORT = int(os.environ.get("TOWER_TEST_KAFKA_PORT", "29092"))
#: `TOWER_TEST_WORKER_LOGLEVEL=info` keeps more of the workers' logs for a failing test.
WORKER_LOGLEVEL = os.environ.get("TOWER_TEST_WORKER_LOGLEVEL", "warning")
MODULE = "pipeline.ops.cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    """The broker this session starts and stops; None when `TOWER_TEST_BOOTSTRAP` reuses a
    running one (whose disk the tests do not read)."""
    if os.environ.get("TOWER_TEST_BOOTSTRAP"):
        yield None
        return
    from pipeline.ops.local_kafka import LocalKafka

    broker = LocalKafka(
        port=TEST_PORT,
        controller_port=TEST_PORT + 1,
        run_dir=tmp_path_factory.mktemp("kafka"),
        out=sys.stderr,
    )
    try:  # stopped even if interrupted while it starts, or its JVM keeps the port
        broker.up(wait_s=120)
        yield broker
    finally:
        try:
            broker.down()
        except ValueError:  # after Ctrl-C the captured stderr it was given is closed
            broker.out = sys.__stderr__
            broker.down()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The browser Playwright drives: skipped without one, failed under CI (tests.tools)."""
    from tests import tools

    return tools.chromium()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A real Apicurio Registry (Confluent's REST API), started once for the session; its
    subjects are the tests' own topics', so tests share it."""
    from tests import tools
    from tests.registry_server import RegistryServer, server_jar

    tools.tool("java", "apt-get install -y openjdk-17-jdk-headless")
    tools.tool("mvn", "apt-get install -y maven")
    server = RegistryServer(server_jar(), free_port(), tmp_path_factory.mktemp("registry") / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalKafka | None) -> str:
    """`TOWER_TEST_BOOTSTRAP` reuses a running broker; otherwise the session's own."""
    return os.environ["TOWER_TEST_BOOTSTRAP"] if local_broker is None else local_broker.bootstrap


@pytest.fixture
def tower_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with topics, consumer group and changelog unique to this test."""
    from pipeline.kafka.topics import create_topics

    tag = uuid.uuid4().hex[:8]
    names = TopicNames(**{f: f"t{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    settings = Settings(
        bootstrap=kafka_bootstrap,
        app_id=f"tower-{tag}",
        partitions=4,
        data_dir=tmp_path / "worker",
        topics=names,
    )
    create_topics(settings).raise_for_problems()
    return settings


@dataclass
class WorkerProcess:
    """A `tower worker` subprocess with the test's settings."""

    settings: Settings
    log_dir: Path
    data_dir: Path
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    loglevel: str = WORKER_LOGLEVEL
    #: the module run as `python -m MODULE worker`; tests.faults.faust_worker injects faults
    #: (`TOWER_TEST_WORKER_MODULE` sets it for every test, to diagnose one that fails)
    module: str = field(default_factory=lambda: os.environ.get("TOWER_TEST_WORKER_MODULE", MODULE))
    #: argv run before the worker's own, e.g. `unshare --fork ...` to start it the way a
    #: container does; signals then go to the process it forks
    wrapper: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The test's settings with this worker's data dir and port; `extra_env` on top."""
        own = replace(self.settings, data_dir=self.data_dir, web_port=self.web_port, instance_id="")
        return {**os.environ, **own.to_env(), "PYTHONPATH": str(REPO), **self.extra_env}

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"worker-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                sys.executable,
                "-m",
                self.module,
                "worker",
                "--loglevel",
                self.loglevel,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def signal(self, signum: int) -> None:
        """Signal the worker itself: with a wrapper, the one child the wrapper forked (the
        wrapper exits when it does)."""
        assert self.proc is not None
        pid = self.proc.pid
        if self.wrapper:
            children = Path(f"/proc/{pid}/task/{pid}/children")
            while self.proc.poll() is None and not children.read_text().split():
                time.sleep(0.05)  # not forked yet
            if self.proc.poll() is not None:
                return
            pid = int(children.read_text().split()[0])
        os.kill(pid, signum)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stacks(self) -> str:
        """Every thread's stack of the running worker (SIGUSR1), from its log."""
        if not self.proc or self.proc.poll() is not None:
            return "(the worker is not running)"
        log = self.log_dir / f"worker-{self.starts}.log"
        before = log.stat().st_size
        self.signal(signal.SIGUSR1)
        time.sleep(1)
        with open(log, "rb") as f:
            f.seek(before)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"worker-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def metrics_text(self, timeout: float = 30.0) -> str:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                url = f"http://127.0.0.1:{self.web_port}/metrics"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # a starting worker: ask again soon


@pytest.fixture
def worker(tower_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """Killed after the test, not stopped: nothing is checked after it, and a clean stop
    takes the Faust runtime seconds. A test that needs a clean stop calls `stop()` and
    checks its outcome itself."""
    w = WorkerProcess(tower_settings, tmp_path, tmp_path / "worker")
    try:
        yield w
    finally:
        w.kill()


# --- the tests leave the checkout as they found it -----------------------------------------

#: the tracked files that differed from git when the session started
_TRACKED = pytest.StashKey[dict[str, str] | None]()


def _tracked_changes() -> dict[str, str] | None:
    """Each tracked file that differs from git's index or HEAD, with a hash of its content
    (None outside a git checkout)."""
    import hashlib

    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    changes = {}
    for entry in filter(None, listed.split("\0")):
        path = REPO / entry[3:]
        content = path.read_bytes() if path.is_file() else b"(deleted)"
        changes[entry[3:]] = hashlib.sha1(content).hexdigest()
    return changes


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_TRACKED] = _tracked_changes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test wrote a tracked file (screenshots and reports belong in var/
    or tmp_path): `make test` leaves the checkout as it found it."""
    before, after = session.config.stash.get(_TRACKED, None), _tracked_changes()
    if before is None or after is None:
        return
    written = sorted(p for p in after.keys() | before.keys() if after.get(p) != before.get(p))
    if written:
        print(f"\nerror: the tests changed tracked files: {', '.join(written)}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
