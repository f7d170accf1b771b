"""The TypeScript client (clients/typescript): its types are what openapi-typescript
generates from the OpenAPI document the workers serve, it type-checks with tsc, and its
tests (node's test runner) pass against a real worker with an agent token.

The npm packages come from `make ts-deps` (a prerequisite of `make test`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest

from pipeline.web.openapi import openapi_document
from tests import tools
from tests.agent_worker import AGENT, agent_worker

pytestmark = pytest.mark.integration

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def node() -> str:
    found = tools.tool("node", "apt-get install -y nodejs npm (Node 20 or newer)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0]) < 20:
        tools.missing(f"node {version.strip()}: the TypeScript client needs Node 20 or newer")
    assert (BIN / "tsc").exists(), "the TypeScript client's packages are missing: make ts-deps"
    return found


def run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_types_are_generated_from_the_openapi_document(node: str, tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(openapi_document()))
    run(node, BIN / "openapi-typescript", spec, "--output", tmp_path / "schema.ts")
    generated = (tmp_path / "schema.ts").read_text()
    assert generated == (CLIENT / "src" / "schema.ts").read_text(), (
        "clients/typescript/src/schema.ts is not what the OpenAPI document generates: "
        "run `make ts-types`"
    )


def test_it_type_checks_and_builds(node: str, tmp_path: Path) -> None:
    run(node, BIN / "tsc", "--noEmit", "-p", "tsconfig.test.json")
    run(node, BIN / "tsc", "-p", "tsconfig.json", "--outDir", tmp_path / "dist")
    assert (tmp_path / "dist" / "index.js").exists() and (tmp_path / "dist" / "index.d.ts").exists()
    # no runtime dependency: what an agent installs is the package alone
    assert "dependencies" not in orjson.loads((CLIENT / "package.json").read_bytes())


def test_its_tests_pass_against_a_worker(
    node: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    build = tmp_path_factory.mktemp("ts-build")
    run(node, BIN / "tsc", "-p", "tsconfig.test.json", "--outDir", build)
    with agent_worker(kafka_bootstrap, tmp_path_factory.mktemp("ts-worker")) as tower:
        out = run(
            node,
            "--test",
            build / "test",
            env={**tower.env(), "TOWER_AGENT": AGENT},
        )
    assert "# fail 0" in out and "# skipped 0" in out, out
