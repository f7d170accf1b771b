"""A real single-node Kafka (KRaft) broker for development and tests, with no Docker.

The jars come from Maven Central via `deploy/kafka/pom.xml` and are cached per version under
`<cache>/kafka-<version>/libs`; each port gets its own run dir (config, data, pid file, log), so
tests can run a broker next to the developer's without touching it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipeline.kafka import clients
from pipeline.kafka.topics import broker_answers
from pipeline.ops import local_security
from pipeline.settings import Settings, TopicNames

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
HOST = "127.0.0.1"
MIN_JAVA = 17
LOG_ROTATE_BYTES = 20 * 1024 * 1024
_PORT_HINT = "choose another with --port N (or TOWER_KAFKA_PORT=N)"

# Popen objects of brokers this process started: kept so they are reaped, not left as zombies
# that would still look alive to `os.kill(pid, 0)`.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(Exception):
    """The local broker could not be managed; the message says what to do about it."""


@dataclass(frozen=True)
class KafkaStatus:
    running: bool
    pid: int | None
    bootstrap: str
    version: str
    log_path: Path
    run_dir: Path


class LocalKafka:
    """Lifecycle of one local broker, identified by its port."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        version: str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        run_dir: Path | None = None,
        out: TextIO | None = None,
        deploy_dir: Path = DEPLOY_DIR,
        node_id: int = 1,
        voters: str | None = None,
        replication: int = 1,
        cluster_id: str | None = None,
        secure: bool | None = None,
    ) -> None:
        defaults = Settings()
        self.cache_dir = Path(cache_dir or defaults.cache_dir).expanduser().absolute()
        self.version = version or defaults.kafka_version
        self.port = port or defaults.kafka_port
        self.controller_port = controller_port or (
            defaults.controller_port if self.port == defaults.kafka_port else self.port + 1
        )
        if self.controller_port == self.port:
            raise LocalKafkaError(
                f"the broker port and the controller port are both {self.port}: they must differ"
            )
        self.run_dir = (
            Path(run_dir or self.cache_dir / "run" / str(self.port)).expanduser().absolute()
        )
        self.out = out
        self.deploy_dir = deploy_dir
        #: one node of a local cluster (`local_cluster.LocalCluster`) sets these four
        self.node_id = node_id
        self.voters = voters or f"{node_id}@{HOST}:{self.controller_port}"
        self.replication = replication
        self.cluster_id = cluster_id
        #: SASL_SSL with SCRAM users and ACLs instead of PLAINTEXT (`local_security`);
        #: None: as the run dir was first started
        self.secure = (
            secure if secure is not None else local_security.secure_marker(self.run_dir).exists()
        )
        self._material: local_security.Material | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> LocalKafka:
        """A non-default port with the default controller port moves the controller to port+1."""
        defaults = Settings()
        port = overrides.get("port") or settings.kafka_port
        controller_port = settings.controller_port
        if controller_port == defaults.controller_port and port != defaults.kafka_port:
            controller_port = None  # type: ignore[assignment]
        kwargs: dict[str, object] = {
            "cache_dir": settings.cache_dir,
            "version": settings.kafka_version,
            "port": port,
            "controller_port": controller_port,
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)  # type: ignore[arg-type]

    # -- paths ---------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def client_settings(self) -> Settings:
        """What the project's clients need to reach this broker (as its admin if secured)."""
        if self.secure:
            return self.material.settings(self.bootstrap, local_security.ADMIN)
        return Settings(bootstrap=self.bootstrap)

    @property
    def material(self) -> local_security.Material:
        """The secured broker's certificates and passwords, made at first use."""
        if self._material is None:
            local_security.private_dir(self.run_dir)
            self._material = local_security.ensure_material(self.run_dir)
        return self._material

    def grant_roles(self, topics: TopicNames, app_id: str) -> dict[str, Path]:
        """Create the roles' ACLs for a deployment's topics; write and return the
        `client-<role>.properties` files. Only for a secured broker."""
        if not self.secure:
            raise LocalKafkaError("roles and ACLs need a secured broker: `tower kafka up --secure`")
        local_security.apply_grants(
            self.client_settings, local_security.role_grants(topics, app_id)
        )
        return local_security.write_client_files(self.material, self.bootstrap)

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "server.log"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "server.properties"

    # -- public API ----------------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Fetch into a temp dir and rename, so an interrupted fetch never leaves a half cache."""
        if self._jars_present():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                f"Maven (mvn) is not on PATH; it is needed once to fetch the Kafka {self.version} "
                f"jars into {self.libs_dir}. Install Maven 3.8+ (e.g. `apt-get install maven` or "
                "`brew install maven`) and retry."
            )
        pom = self._deploy_file("pom.xml")
        parent = self.libs_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=parent))
        mvn_log = parent / "mvn.log"
        self._say(
            f"Fetching Kafka {self.version} jars with Maven into {self.libs_dir} "
            "(first time only, about a minute)",
            end="",
        )
        cmd = [
            mvn,
            "-q",
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={self.version}",
            "-f",
            str(pom),
        ]
        started = time.monotonic()
        try:
            with mvn_log.open("wb") as log:
                proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
                while True:
                    try:
                        proc.wait(timeout=2)
                        break
                    except subprocess.TimeoutExpired:
                        self._say(".", end="")
            self._say("")
            if proc.returncode != 0 or not any(tmp.glob(f"kafka_*-{self.version}.jar")):
                tail = "\n".join(_tail(mvn_log, 20))
                raise LocalKafkaError(
                    f"Maven could not fetch Kafka {self.version} (exit {proc.returncode}); "
                    f"check the version and your network/proxy (~/.m2/settings.xml). "
                    f"Full output in {mvn_log}. Last lines:\n{tail}"
                )
            if not self._jars_present():  # else a concurrent fetch won; keep its copy
                if self.libs_dir.exists():
                    shutil.rmtree(self.libs_dir)  # incomplete leftover without the kafka jar
                tmp.rename(self.libs_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        n = len(list(self.libs_dir.glob("*.jar")))
        self._say(f"Fetched {n} jars in {time.monotonic() - started:.0f}s")
        return self.libs_dir

    def up(self, wait_s: float = 60.0) -> KafkaStatus:
        """Start the broker unless it already answers; return once it serves metadata."""
        launched = self.launch()
        if isinstance(launched, KafkaStatus):
            return launched
        return self._wait_ready(launched, wait_s, proc=_CHILDREN.get(launched))

    def wait_ready(self, wait_s: float = 60.0) -> KafkaStatus:
        """Wait until the broker started by `launch` serves metadata."""
        try:
            pid: int | None = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid not in _CHILDREN:  # ours: alive even before exec shows the java command line
            pid = self._live_pid()
        if pid is None:
            raise LocalKafkaError(
                f"the broker on {self.bootstrap} is not running:\n{self._log_tail()}"
            )
        return self._wait_ready(pid, wait_s, proc=_CHILDREN.get(pid))

    def launch(self) -> KafkaStatus | int:
        """Start the broker process without waiting: its pid, or the status of a broker that
        already answers. A node of a cluster cannot answer before a quorum of controllers
        runs, so a cluster launches every node first and then waits."""
        pid = self._live_pid()
        if pid is not None:
            if broker_answers(self.client_settings, timeout=3.0):
                self._say(f"Kafka already running on {self.bootstrap} (pid {pid})")
                return self.status()
            self._say(f"Kafka (pid {pid}) is starting", end="")
            return pid

        if _port_open(self.port):
            if broker_answers(self.client_settings, timeout=3.0):
                self._say(
                    f"A Kafka broker not started by tower already answers on {self.bootstrap}; "
                    "using it"
                )
                return self.status()
            raise LocalKafkaError(
                f"port {self.port} is already in use by something that is not a Kafka broker: "
                f"stop it, or {_PORT_HINT}"
            )
        if _port_open(self.controller_port):
            raise LocalKafkaError(
                f"controller port {self.controller_port} is already in use by another process: "
                f"{_PORT_HINT} (the controller then uses port+1), or set TOWER_CONTROLLER_PORT"
            )

        java = self._java()
        libs = self.ensure_jars()
        local_security.private_dir(self.run_dir)
        local_security.check_mode(self.run_dir, self.data_dir, self.secure)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, libs)
        self._rotate_log()

        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx512m",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dkafka.logs.dir={self.run_dir}",
                    f"-Dlog4j2.configurationFile={self._deploy_file('log4j2.yaml')}",
                    "-cp",
                    f"{libs}{os.sep}*",
                    "kafka.Kafka",
                    str(self.config_path),
                ],
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and is not hit by its Ctrl-C
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        self._say(f"Starting Kafka {self.version} (pid {proc.pid}) on {self.bootstrap}", end="")
        return proc.pid

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop cleanly (SIGTERM lets the controller flush), SIGKILL after `timeout_s`."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._say(f"Kafka is not running on {self.bootstrap}")
            return False
        self._say(f"Stopping Kafka (pid {pid})", end="")
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.25)
            self._say(".", end="")
        if self._alive(pid):
            self._say(" did not exit in time, killing", end="")
            _signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while self._alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
        self._say(" stopped")
        self.pid_file.unlink(missing_ok=True)
        _CHILDREN.pop(pid, None)
        return True

    def status(self) -> KafkaStatus:
        pid = self._live_pid()
        return KafkaStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            version=self._running_version(pid) if pid else self.version,
            log_path=self.log_path,
            run_dir=self.run_dir,
        )

    def logs(self, lines: int = 50, follow: bool = False) -> Iterator[str]:
        """Yield the last `lines` lines, then (with follow) new ones until interrupted."""
        if not self.log_path.exists():
            raise LocalKafkaError(
                f"no broker log at {self.log_path}: start the broker with `tower kafka up`"
            )
        yield from _tail(self.log_path, lines)
        if not follow:
            return
        with self.log_path.open("r", errors="replace") as fh:
            fh.seek(0, os.SEEK_END)
            pending = ""
            while True:
                chunk = fh.read()
                if not chunk:
                    time.sleep(0.3)
                    continue
                pending += chunk
                *complete, pending = pending.split("\n")
                yield from complete

    # -- internals -----------------------------------------------------------------------------

    def _say(self, msg: str, end: str = "\n") -> None:
        out = self.out or sys.stdout
        out.write(msg + end)
        out.flush()

    def _deploy_file(self, name: str) -> Path:
        path = self.deploy_dir / name
        if not path.exists():
            raise LocalKafkaError(
                f"{path} is missing: the local broker needs the repository's deploy/kafka files, "
                "so run tower from a source checkout"
            )
        return path

    def _jars_present(self) -> bool:
        return (self.libs_dir / f"kafka_2.13-{self.version}.jar").exists()

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError(
                f"Java is not on PATH; the local Kafka broker needs Java {MIN_JAVA}+. "
                "Install a JDK (e.g. `apt-get install openjdk-17-jre-headless` or "
                "`brew install openjdk@17`) and retry, or use a running broker via TOWER_BOOTSTRAP."
            )
        try:
            res = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
            m = re.search(r'version "(\d+)(?:\.(\d+))?', res.stderr + res.stdout)
        except (OSError, subprocess.SubprocessError):
            m = None
        if m:
            major = int(m.group(2) or 0) if m.group(1) == "1" else int(m.group(1))
            if major < MIN_JAVA:
                raise LocalKafkaError(
                    f"{java} is Java {major}; Kafka {self.version} needs Java {MIN_JAVA}+. "
                    "Install a newer JDK and put it first on PATH (or set JAVA_HOME/bin first)."
                )
        return java

    def _write_config(self) -> None:
        template = string.Template(self._deploy_file("server.properties.template").read_text())
        local_security.write_private(  # a secured broker's names where its secrets are
            self.config_path,
            template.substitute(
                host=HOST,
                port=self.port,
                controller_port=self.controller_port,
                listener_config=self._listener_config(),
                data_dir=self.data_dir,
                node_id=self.node_id,
                voters=self.voters,
                replication=self.replication,
                min_isr=min(2, self.replication),
            ).encode(),
        )

    def _listener_config(self) -> str:
        if self.secure:
            return local_security.listener_config(
                self.material, HOST, self.port, self.controller_port
            )
        return "\n".join(
            [
                f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        )

    def _format(self, java: str, libs: Path) -> None:
        """Format once; meta.properties then pins the cluster id across restarts. A secured
        broker's SCRAM users come from a java argument file, deleted right after."""
        cluster_id = self.cluster_id or _cluster_id()
        tool = [
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.config_path),
        ]
        argfile = self.run_dir / "format.args"
        if self.secure:
            scram = local_security.scram_format_args(self.material)
            tool = [local_security.argument_file(argfile, tool + scram)]
        try:
            res = subprocess.run(
                [
                    java,
                    f"-Dlog4j2.configurationFile={self._deploy_file('log4j2.yaml')}",
                    "-cp",
                    f"{libs}{os.sep}*",
                    *tool,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            argfile.unlink(missing_ok=True)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
            raise LocalKafkaError(
                f"formatting the broker storage in {self.data_dir} failed; delete {self.run_dir} "
                f"and retry. Output:\n{tail}"
            )

    def _wait_ready(
        self, pid: int, wait_s: float, proc: subprocess.Popen[bytes] | None
    ) -> KafkaStatus:
        admin = clients.admin(self.client_settings)
        deadline = time.monotonic() + wait_s
        while True:
            if broker_answers(self.client_settings, timeout=1.0, admin=admin):
                self._say(f" ready\nKafka is up: bootstrap {self.bootstrap}")
                return self.status()
            exited = proc.poll() is not None if proc is not None else not self._alive(pid)
            if exited:
                self._say(" failed")
                self.pid_file.unlink(missing_ok=True)
                _CHILDREN.pop(pid, None)
                raise LocalKafkaError(
                    f"the Kafka broker exited during start-up; see {self.log_path}. "
                    f"Last lines:\n{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                self._say(" timed out")
                raise LocalKafkaError(
                    f"Kafka (pid {pid}) did not answer on {self.bootstrap} within {wait_s:.0f}s; "
                    f"it is left running: retry with a longer --wait, or `tower kafka down`. "
                    f"Last lines of {self.log_path}:\n{self._log_tail()}"
                )
            self._say(".", end="")
            time.sleep(0.5)

    def _log_tail(self) -> str:
        return "\n".join(_tail(self.log_path, 30)) if self.log_path.exists() else "(no log)"

    def _rotate_log(self) -> None:
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_suffix(".log.1"))

    def _live_pid(self) -> int | None:
        """The pid from the pid file, if that process is still our broker (pids get reused)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) else None

    def _alive(self, pid: int) -> bool:
        proc = _CHILDREN.get(pid)
        if proc is not None and proc.poll() is not None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        cmdline = _cmdline(pid)
        return cmdline is None or ("kafka.Kafka" in cmdline and str(self.config_path) in cmdline)

    def _running_version(self, pid: int) -> str:
        m = re.search(r"kafka-([^/\\\s]+)[/\\]libs", _cmdline(pid) or "")
        return m.group(1) if m else self.version


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None where it cannot be read (then we trust the pid file)."""
    proc_file = Path(f"/proc/{pid}/cmdline")
    try:
        if proc_file.exists():
            return proc_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        res = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=5
        )
        return res.stdout if res.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return None


def _cluster_id() -> str:
    """Like Kafka's Uuid: never starting with '-', which the format tool would read as a flag."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int) -> list[str]:
    """Last lines without reading a large log whole."""
    if lines <= 0:
        return []
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        block = 64 * 1024
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            fh.seek(size)
            data = fh.read(step) + data
    return data.decode(errors="replace").splitlines()[-lines:]
