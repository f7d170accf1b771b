"""The schema registry (Confluent's REST API, also served by Karapace, Apicurio's ccompat API
and Redpanda): writer schemas by id for registry-framed input, and the output schemas'
ids for TOWER_OUTPUT_FORMAT=registry-avro.

The decoder (contracts/codec.py) does no I/O: it is given `WriterSchemas.lookup`, which
answers from a bounded cache. The runtimes call `wait_for` on each batch before deciding
it, so every schema id of the batch is in the cache by then. While the registry cannot be
reached the batch waits (retried with backoff, `tower_schema_registry_errors_total`
counting the failures, `tower_schema_registry_waiting_records` showing the records held):
a record is never dead-lettered because of an outage, only for an id the registry does not
know or a schema the tower cannot read.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.contracts import schemas
from pipeline.contracts.codec import REGISTRY_MAGIC, RegistrySchema, registry_schema
from pipeline.processing.batch import BatchProcessor
from pipeline.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: one HTTP request's limit; a registry slower than this counts as unreachable
REQUEST_TIMEOUT_S = 5.0
#: schema ids kept; producers use a handful, so this bounds a flood of bogus ids
MAX_IDS = 1024
#: waits between attempts while the registry is unreachable: doubling up to the cap
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
#: the output schemas and the topics (TopicNameStrategy: `<topic>-value`) they describe
OUTPUT_SCHEMAS = (
    ("approved_action", "approved"),
    ("audit_record", "audit"),
    ("dead_letter", "deadletter"),
)


class RegistryUnavailable(Exception):
    """The registry could not answer (down, timing out, refusing our credentials)."""


class RegistryRefused(ValueError):
    """The registry answered no to a registration (e.g. its compatibility rule)."""


class RegistryStartError(ValueError):
    """The worker cannot start writing registry-framed output; the message says why."""


def _shown(url: str) -> str:
    """A URL without any user:password in it, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class RegistryClient:
    """The few calls of the Confluent API the tower makes, over each URL in turn."""

    def __init__(self, settings: Settings, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.urls = [u.rstrip("/") for u in settings.schema_registry_url.split(",") if u]
        self.timeout_s = timeout_s
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if settings.schema_registry_token:
            self._headers["Authorization"] = f"Bearer {settings.schema_registry_token}"
        elif settings.schema_registry_username:
            pair = f"{settings.schema_registry_username}:{settings.schema_registry_password}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        ca = settings.schema_registry_ca_file
        self._ssl = ssl.create_default_context(cafile=str(ca) if ca else None)

    def __repr__(self) -> str:  # never the credentials
        return f"RegistryClient({', '.join(_shown(u) for u in self.urls)})"

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON answer) of the first URL that answers; 5xx, 401 and 403 count as
        no answer, so the next URL is tried."""
        data = None if body is None else orjson.dumps(body)
        problems = []
        for base in self.urls:
            req = urllib.request.Request(base + path, data, self._headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as r:
                    return r.status, orjson.loads(r.read() or b"null")
            except urllib.error.HTTPError as exc:
                try:
                    answer = orjson.loads(exc.read() or b"null")
                except orjson.JSONDecodeError:
                    answer = None
                if exc.code < 500 and exc.code not in (401, 403):
                    return exc.code, answer
                why = f"HTTP {exc.code}"
                if exc.code in (401, 403):
                    why += " (check TOWER_SCHEMA_REGISTRY_USERNAME/_PASSWORD_FILE/_TOKEN_FILE)"
                problems.append(f"{_shown(base)}: {why}")
            except (OSError, orjson.JSONDecodeError) as exc:  # refused, timed out, TLS, garbage
                reason = getattr(exc, "reason", None) or exc
                problems.append(f"{_shown(base)}: {reason}")
        raise RegistryUnavailable(
            f"schema registry unreachable ({'; '.join(problems)}); check TOWER_SCHEMA_REGISTRY_URL"
        )

    def schema(self, schema_id: int) -> tuple[str, str] | None:
        """(schema text, schema type) registered under `schema_id`; None if there is none."""
        status, answer = self._request("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict) or "schema" not in answer:
            raise RegistryUnavailable(f"schema registry answered {status} {answer!r} for an id")
        return str(answer["schema"]), str(answer.get("schemaType") or "AVRO")

    def register(self, subject: str, schema_text: str) -> int:
        """The id of `schema_text` under `subject`, registering it if new (the registry's
        compatibility rule for the subject decides whether it may)."""
        body = {"schema": schema_text, "schemaType": "AVRO"}
        status, answer = self._request(
            "POST", f"/subjects/{quote(subject, safe='')}/versions", body
        )
        if status == 200 and isinstance(answer, dict) and "id" in answer:
            return int(answer["id"])
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise RegistryRefused(f"subject {subject} refused the schema: HTTP {status}: {message}")


class WriterSchemas:
    """Writer schemas by id, cached (at most `max_ids`, least recently used out first)."""

    def __init__(
        self,
        client: RegistryClient,
        registry: CollectorRegistry | None = None,
        max_ids: int = MAX_IDS,
    ) -> None:
        self.client = client
        self.max_ids = max_ids
        #: schema id -> (text, type), or None: the registry does not know the id
        self._texts: OrderedDict[int, tuple[str, str] | None] = OrderedDict()
        self._resolved: dict[tuple[str, int], RegistrySchema | None] = {}
        self._lock = threading.Lock()  # the web server's thread reads through it too
        self.errors = Counter(
            "tower_schema_registry_errors",
            "Schema registry requests that got no answer (the registry down or refusing)",
            ["operation"],
            registry=registry,
        )
        self.waiting = Gauge(
            "tower_schema_registry_waiting_records",
            "Input records held back until the schema registry gives their writer schemas",
            registry=registry,
        )

    def lookup(self, name: str, schema_id: int) -> RegistrySchema | None:
        """For the decoder: the writer schema of `schema_id` checked against `name`; asks
        the registry if not cached (raises RegistryUnavailable when it cannot)."""
        with self._lock:
            key = (name, schema_id)
            if key in self._resolved:
                return self._resolved[key]
            if schema_id in self._texts:
                self._texts.move_to_end(schema_id)
                text = self._texts[schema_id]
            else:
                text = self._fetch(schema_id)
            found = None if text is None else registry_schema(name, schema_id, *text)
            self._resolved[key] = found
            return found

    def _fetch(self, schema_id: int, keep: frozenset[int] = frozenset()) -> tuple[str, str] | None:
        """Ask the registry; then drop the least recently used ids over the bound, but
        none of `keep` (the batch waiting for them: the cache grows for it instead)."""
        try:
            text = self.client.schema(schema_id)
        except RegistryUnavailable:
            self.errors.labels("schema").inc()
            raise
        self._texts[schema_id] = text
        over = len(self._texts) - self.max_ids
        for old in [i for i in self._texts if i not in keep and i != schema_id][: max(0, over)]:
            del self._texts[old]
            for key in [k for k in self._resolved if k[1] == old]:
                del self._resolved[key]
        return text

    @staticmethod
    def schema_ids(values: Iterable[bytes | None]) -> list[int]:
        """The schema id of each registry-framed value."""
        return [
            int.from_bytes(v[1:5], "big")
            for v in values
            if v and v[0] == REGISTRY_MAGIC and len(v) >= 5
        ]

    def missing(self, ids: list[int]) -> tuple[set[int], int]:
        """Those of `ids` not cached yet, and how many values need them; the cached ones
        become the most recently used."""
        out: set[int] = set()
        held = 0
        with self._lock:
            for schema_id in ids:
                if schema_id in self._texts:
                    self._texts.move_to_end(schema_id)
                else:
                    out.add(schema_id)
                    held += 1
        return out, held

    def fetch(self, ids: Iterable[int], keep: frozenset[int] = frozenset()) -> None:
        """Ask the registry for each id, once; raises RegistryUnavailable on the first
        that gets no answer."""
        for schema_id in sorted(ids):
            with self._lock:
                if schema_id not in self._texts:
                    self._fetch(schema_id, keep)

    def wait_for(
        self,
        values: Iterable[bytes | None],
        stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Block until every registry-framed value's writer schema is cached: retried with
        backoff while the registry is unreachable. False if `stop()` said to give up."""
        batch = self.schema_ids(values)
        keep = frozenset(batch)
        backoff = FIRST_BACKOFF_S
        while True:
            ids, held = self.missing(batch)
            if not ids:
                self.waiting.set(0)
                return True
            try:
                self.fetch(ids, keep)
                continue
            except RegistryUnavailable as exc:
                self._waiting(held, backoff, exc)
            if stop():
                return False
            sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def wait_for_async(self, values: Iterable[bytes | None]) -> None:
        """`wait_for` for an event loop: requests on a thread, the waits on the loop."""
        batch = self.schema_ids(values)
        if not batch:
            return
        keep = frozenset(batch)
        backoff = FIRST_BACKOFF_S
        while True:
            ids, held = self.missing(batch)
            if not ids:
                self.waiting.set(0)
                return
            try:
                await asyncio.to_thread(self.fetch, ids, keep)
                continue
            except RegistryUnavailable as exc:
                self._waiting(held, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _waiting(self, held: int, backoff: float, exc: RegistryUnavailable) -> None:
        self.waiting.set(held)
        level = (
            logging.WARNING
            if backoff >= MAX_BACKOFF_S or backoff == FIRST_BACKOFF_S
            else logging.INFO
        )
        log.log(level, "%d input records wait for their schemas: %s; retrying", held, exc)


def register_outputs(client: RegistryClient, settings: Settings) -> dict[str, int]:
    """Register the output schemas under their topics' subjects; their ids by schema name.

    Raises RegistryStartError, in one line, when the registry cannot be reached or a subject's
    compatibility rule refuses a schema: the worker must not start writing then.
    """
    ids = {}
    for name, topic_field in OUTPUT_SCHEMAS:
        subject = f"{getattr(settings.topics, topic_field)}-value"
        try:
            ids[name] = client.register(subject, orjson.dumps(schemas.get(name).raw).decode())
        except RegistryUnavailable as exc:
            raise RegistryStartError(f"cannot register the output schemas: {exc}") from None
        except RegistryRefused as exc:
            raise RegistryStartError(
                f"TOWER_OUTPUT_FORMAT=registry-avro: {exc}; make the subject's compatibility "
                "rule accept it (PUT /config/<subject>) or use another topic name"
            ) from None
    return ids


@cache
def _readers(url: str, settings: Settings) -> WriterSchemas:
    return WriterSchemas(RegistryClient(settings))


def lookup_for(settings: Settings) -> Callable[[str, int], RegistrySchema | None] | None:
    """The writer-schema lookup the tools that read the tower's topics pass to
    `decode_record` (None without a registry): one cache per process."""
    if not settings.schema_registry_url:
        return None
    return _readers(settings.schema_registry_url, settings).lookup


def attach(settings: Settings, processor: BatchProcessor) -> WriterSchemas | None:
    """Give the worker's processor the registry (None without one): the writer-schema
    lookup for its input and, with TOWER_OUTPUT_FORMAT=registry-avro, the ids its output
    schemas are registered under (RegistryStartError, one line, if they cannot be)."""
    if not settings.schema_registry_url:
        return None
    client = RegistryClient(settings)
    if settings.output_format == "registry-avro":
        processor.registry_ids = register_outputs(client, settings)
    writers = WriterSchemas(client, processor.metrics.registry)
    processor.schema_lookup = writers.lookup
    return writers
