"""A real schema registry for the tests: Apicurio Registry, serving Confluent's REST API
(its `ccompat` API) with in-memory storage, built once by tests/apicurio/build.sh (make
registry-server) and started on a free port, as the broker is."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import orjson

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "tests" / "apicurio" / "build.sh"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def server_jar() -> Path:
    """quarkus-run.jar, built on first use (minutes) and cached after."""
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"tests/apicurio/build.sh failed: {done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class RegistryServer:
    """One Apicurio Registry JVM on 127.0.0.1:`port`; `url` is its Confluent-compatible API."""

    def __init__(self, jar: Path, port: int, log: Path) -> None:
        self.jar, self.port, self.log_path = jar, port, log
        self.url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, wait_s: float = 180) -> RegistryServer:
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                "java",
                "-Xmx512m",
                f"-Dquarkus.http.port={self.port}",
                "-Dquarkus.http.host=127.0.0.1",
                "-jar",
                str(self.jar),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "QUARKUS_LOG_LEVEL": "WARN"},
        )
        deadline = time.monotonic() + wait_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the registry exited: {self.log_tail()}")
            try:
                self.get("/subjects")
                return self
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the registry did not start: {self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": CONTENT_TYPE}
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            return orjson.loads(answer.read())

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def subjects(self) -> set[str]:
        return set(self.get("/subjects"))

    def latest_id(self, subject: str) -> int:
        return int(self.get(f"/subjects/{subject}/versions/latest")["id"])

    def register(self, subject: str, schema: str) -> int:
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})["id"])

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call("PUT", f"/config/{subject}", {"compatibility": level})
