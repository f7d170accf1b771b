"""A Java round trip with schema registry framing, on the real broker: a record written by
Java (Apache Avro's Java library, the framing and schema id as a registry's Java clients
write them, the id from a real registry's REST API: the session's Apicurio Registry) is
decided, and Java reads the tower's registry-framed audit record back by the schema id it
names.

Confluent's KafkaAvroSerializer is not served by the Maven mirror this project builds from;
the framing it writes (magic byte 0, 4-byte big-endian id, Avro binary) is written here by
hand, and is checked against confluent-kafka's own serializers in test_schema_registry.py.
The Java libraries are fetched once with Maven into ~/.cache/journey-tower.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import REPO
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.integration

JAVA_DIR = REPO / "tests" / "java"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def java_libs() -> Path:
    """Apache Avro and the Kafka client for Java, fetched once per pom.xml."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        tools.missing("needs java and mvn on PATH (apt-get install -y openjdk-17-jdk maven)")
    pom = JAVA_DIR / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "journey-tower"
    libs = cache / f"java-registry-interop-{digest}"
    if not libs.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="java-libs-", dir=cache))
        cmd = ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
        done = subprocess.run(
            [*cmd, "-DincludeScope=runtime", "-f", str(pom)], capture_output=True, timeout=600
        )
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"mvn could not fetch the Java libraries: {done.stdout[-2000:]!r}")
        if not libs.exists():  # else a concurrent fetch won
            tmp.rename(libs)
    return libs


def java(libs: Path, *args: str) -> dict:
    """Run RegistryRoundTrip.java (compiled by the source launcher) and parse its answer."""
    cmd = ["java", "-cp", f"{libs}/*", str(JAVA_DIR / "RegistryRoundTrip.java"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def registry(schema_registry: RegistryServer) -> RegistryServer:
    return schema_registry


# the framing is the shared processing's, not a runtime's: the Faust run is in `make soak`
@pytest.mark.parametrize(
    "runtime", [pytest.param("faust", marks=pytest.mark.soak), "transactional"]
)
def test_java_writes_registry_framed_input_and_reads_the_framed_audit_back(
    tower_settings, worker, registry, runtime
):
    libs = java_libs()
    t = tower_settings.topics
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_SCHEMA_REGISTRY_URL=registry.url,
        TOWER_OUTPUT_FORMAT="registry-avro",
    )
    worker.start()
    schema_file = str(REPO / "schemas" / "agent_event.avsc")
    wrote = java(
        libs, "produce", tower_settings.bootstrap, t.events, registry.url, schema_file,
        "cust-java", "java-evt-1", TRACEPARENT,
    )  # fmt: skip
    assert f"{t.events}-value" in registry.subjects()
    got = java(
        libs, "read-audit", tower_settings.bootstrap, t.audit, registry.url, "java-evt-1", "120"
    )
    assert got["schema_name"] == "journeytower.AuditRecord"
    assert got["schema_id"] == registry.latest_id(f"{t.audit}-value") != wrote["schema_id"]
    assert (got["event_id"], got["agent"], got["outcome"]) == ("java-evt-1", "java-bot", "approved")
    assert got["traceparent"] == TRACEPARENT
