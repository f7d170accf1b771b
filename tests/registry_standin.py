"""A small in-process server speaking the part of Confluent's Schema Registry REST API that
the tower and confluent-kafka's serializers use: register (with the subject's
compatibility rule, checked by Apache Avro's SchemaCompatibility), look up, schema by id,
config. It can be stopped and started again on its port, for outage tests.

The integration tests run against a real registry (tests/registry_server.py); this one
serves the unit tests, which count requests and check basic auth without a JVM, and the
outage test, which needs the same schemas back on the same port after a restart.
"""

from __future__ import annotations

import base64
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse
from fastavro.schema import to_parsing_canonical_form

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def backward_problems(reader: Any, writer: Any) -> list[str]:
    """What a registry checks (its own checker, not the tower's): can `reader` read
    `writer`'s data?"""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        parse(orjson.dumps(reader).decode()), parse(orjson.dumps(writer).decode())
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return sorted(result.messages) or ["incompatible"]


class RegistryState:
    """Schemas by id (global ids, as Confluent's) and subjects' versions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[int, tuple[str, str]] = {}  # id -> (schema, schemaType)
        self.subjects: dict[str, list[int]] = {}
        self.compatibility: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth: str | None = None  # an expected Authorization header

    def id_for(self, schema: str, schema_type: str) -> int:
        key = _canonical(schema, schema_type)
        for i, (s, t) in self.by_id.items():
            if _canonical(s, t) == key:
                return i
        new = len(self.by_id) + 1
        self.by_id[new] = (schema, schema_type)
        return new


def _canonical(schema: str, schema_type: str) -> str:
    if schema_type != "AVRO":
        return schema
    try:
        return str(to_parsing_canonical_form(orjson.loads(schema)))
    except Exception:
        return schema


class _Handler(BaseHTTPRequestHandler):
    state: RegistryState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return orjson.loads(self.rfile.read(n)) if n else None

    def _authorised(self) -> bool:
        st = self.state
        if st.auth is not None and self.headers.get("Authorization") != st.auth:
            self._answer(401, {"error_code": 401, "message": "Unauthorized"})
            return False
        return True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        st = self.state
        st.requests.append(("GET", path))
        if not self._authorised():
            return
        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            found = st.by_id.get(int(m[1]))
            if found is None:
                self._answer(404, {"error_code": 40403, "message": f"Schema {m[1]} not found"})
                return
            body = {"schema": found[0]}
            if found[1] != "AVRO":
                body["schemaType"] = found[1]
            self._answer(200, body)
            return
        if m := re.fullmatch(r"/subjects/([^/]+)/versions/latest", path):
            subject = unquote(m[1])
            versions = st.subjects.get(subject)
            if not versions:
                self._answer(404, {"error_code": 40401, "message": "Subject not found"})
                return
            schema_id = versions[-1]
            self._answer(
                200,
                {
                    "subject": subject,
                    "id": schema_id,
                    "version": len(versions),
                    "schema": st.by_id[schema_id][0],
                },
            )
            return
        if m := re.fullmatch(r"/config/([^/]+)", path):
            level = st.compatibility.get(unquote(m[1]), "BACKWARD")
            self._answer(200, {"compatibilityLevel": level})
            return
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        st = self.state
        st.requests.append(("POST", path))
        if not self._authorised():
            return
        body = self._body() or {}
        schema, schema_type = body.get("schema", ""), body.get("schemaType") or "AVRO"
        with st.lock:
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                subject = unquote(m[1])
                versions = st.subjects.setdefault(subject, [])
                key = _canonical(schema, schema_type)
                for i in versions:
                    if _canonical(*st.by_id[i]) == key:
                        self._answer(200, {"id": i})
                        return
                if schema_type == "AVRO":
                    try:
                        orjson.loads(schema)
                    except orjson.JSONDecodeError:
                        self._answer(422, {"error_code": 42201, "message": "Invalid schema"})
                        return
                level = st.compatibility.get(subject, "BACKWARD")
                if versions and level != "NONE" and schema_type == "AVRO":
                    new = orjson.loads(schema)
                    old = orjson.loads(st.by_id[versions[-1]][0])
                    problems = backward_problems(new, old)
                    if level.startswith("FULL") or level.startswith("FORWARD"):
                        problems += backward_problems(old, new)
                    if problems:
                        self._answer(
                            409,
                            {
                                "error_code": 409,
                                "message": "Schema being registered is incompatible with an "
                                f"earlier schema for subject {subject!r}: {problems}",
                            },
                        )
                        return
                schema_id = st.id_for(schema, schema_type)
                versions.append(schema_id)
                self._answer(200, {"id": schema_id})
                return
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                subject = unquote(m[1])
                key = _canonical(schema, schema_type)
                for n, i in enumerate(st.subjects.get(subject, []), 1):
                    if _canonical(*st.by_id[i]) == key:
                        self._answer(
                            200, {"subject": subject, "id": i, "version": n, "schema": schema}
                        )
                        return
                self._answer(404, {"error_code": 40403, "message": "Schema not found"})
                return
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        st = self.state
        if not self._authorised():
            return
        if m := re.fullmatch(r"/config/([^/]+)", path):
            level = (self._body() or {}).get("compatibility", "BACKWARD")
            st.compatibility[unquote(m[1])] = level
            self._answer(200, {"compatibility": level})
            return
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})


class StandInRegistry:
    """Serves `RegistryState` on 127.0.0.1:`port` (0: any free port) until stopped."""

    def __init__(self, port: int = 0) -> None:
        self.state = RegistryState()
        self.port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandInRegistry:
        handler = type("Handler", (_Handler,), {"state": self.state})
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="registry", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def require_basic_auth(self, user: str, password: str) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.state.auth = f"Basic {token}"
