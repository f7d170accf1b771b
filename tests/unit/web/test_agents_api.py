"""Ask and decide without a broker: the server writes the event through a stand-in that
decides it at once (or later), and answers from the decision index."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from openapi_spec_validator import validate

from pipeline.core.policy import DEFAULT_POLICY
from pipeline.ops.cli import main
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord, OutputRecord
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from pipeline.web.api_requests import schema
from pipeline.web.auth import token_line
from pipeline.web.openapi import openapi_document
from pipeline.web.server import WorkerPort, build_app
from tests.unit.web.test_auth import NoOwners, peer_key

AGENT_TOKEN = "agent-secret-" + "a" * 30
AS_AGENT = {"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"}
CONSENT = {
    "customer_id": "ana",
    "agent": "crm",
    "department": "system",
    "signal": {
        "type": "consent_changed",
        "attributes": {"channel": "all", "purpose": "all", "granted": "true"},
    },
}
ANSWER = {
    "customer_id": "ana",
    "agent": "care-bot",
    "department": "service",
    "channel": "chat",
    "proposal": {"action": "answer", "category": "service", "priority": 50, "content": "Hi"},
}


class InlineSubmit:
    """Decides each written event at once, or keeps it until `release` (`hold=True`)."""

    def __init__(self, processor: BatchProcessor, store: DictStateStore) -> None:
        self.processor, self.store = processor, store
        self.hold = False
        self.kept: list[InputRecord] = []
        self.approved = 0
        self.offset = 0
        self.values: list[bytes] = []
        self.outputs: list[OutputRecord] = []

    def send(
        self,
        key: bytes,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> concurrent.futures.Future[tuple[int, int]]:
        self.offset += 1
        self.values.append(value)
        carried = None if headers is None else tuple(headers)
        self.kept.append(InputRecord(key, value, partition, self.offset, None, carried))
        if not self.hold:
            self.release()
        done: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()
        done.set_result((partition, self.offset))
        return done

    def release(self) -> None:
        for rec in self.kept:
            result = self.processor.process_and_save([rec], self.store)
            self.outputs.extend(result.outputs)
            self.approved += sum(1 for o in result.outputs if o.topic == "approved-actions")
        self.kept = []

    def close(self) -> None:
        pass


def serve(
    check: Callable[[TestClient, InlineSubmit, WorkerPort], Awaitable[None]],
    settings: Settings | None = None,
    recorded: dict[str, dict[str, Any]] | None = None,
    store: DictStateStore | None = None,
) -> None:
    """`check` against a worker owning every partition; `recorded`: event id -> the answer
    the topics keep (`RecordedDecisions`); `store`: the state of an earlier worker."""
    settings = settings or Settings(partitions=8, web_url="http://me:1")
    processor = BatchProcessor(settings, policy=lambda: DEFAULT_POLICY, metrics=TowerMetrics())
    store = DictStateStore() if store is None else store

    async def load(partition: int, key: bytes) -> bytes | None:
        return store.load(partition, key)

    port = WorkerPort(
        runtime="test",
        settings=settings,
        processor=processor,
        registry=processor.metrics.registry,
        owned=lambda: set(range(8)),
        load=load,
        lag=lambda: {},
    )
    submit = InlineSubmit(processor, store)

    async def run() -> None:
        app = build_app(
            port,
            NoOwners(),
            timeline=lambda *_: [],
            submit=submit,
            recorded=lambda partition, customer, event_id: (recorded or {}).get(event_id),
        )
        async with TestClient(TestServer(app)) as client:
            await check(client, submit, port)

    asyncio.run(run())


async def call(
    client: TestClient, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any], Any]:
    data = None if body is None else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **headers} if data else headers
    r = await client.request(method, path, data=data, headers=sent)
    return r.status, orjson.loads(await r.read()), r.headers


def valid(name: str, body: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema(name)).validate(body)


def test_a_proposal_is_answered_with_its_decision_and_a_retry_makes_no_second_action() -> None:
    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        status, body, _ = await call(client, "POST", "/api/v1/signals", CONSENT)
        assert status == 200 and body["outcome"] == "recorded", body
        status, first, _ = await call(client, "POST", "/api/v1/proposals", ANSWER)
        assert status == 200 and first["status"] == "decided", first
        valid("decision", first)
        assert first["outcome"] == "approved" and first["action"]["content"].startswith("Hi")
        assert first["audit_id"] == first["action"]["decision_id"]
        retry = {**ANSWER, "event_id": first["event_id"]}
        for _ in range(3):
            status, again, _ = await call(client, "POST", "/api/v1/proposals?wait=1", retry)
            assert status == 200 and again == first
        assert submit.approved == 1 and len(submit.kept) == 0

    serve(check)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_requests_trace_context_reaches_the_event_and_everything_it_causes() -> None:
    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        await call(client, "POST", "/api/v1/signals", CONSENT)
        traced = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
        status, body, _ = await call(client, "POST", "/api/v1/proposals", ANSWER, **traced)
        assert status == 200 and body["outcome"] == "approved", body
        expected = [("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")]
        caused = [o for o in submit.outputs if o.key == b"ana" and o.headers]
        assert {o.topic for o in caused} == {"approved-actions", "audit"}
        assert all(list(o.headers or ()) == expected for o in caused)
        # a malformed traceparent is dropped, the proposal still decided
        bad = {"traceparent": "00-zz-00-01"}
        status, body, _ = await call(client, "POST", "/api/v1/proposals", ANSWER, **bad)
        assert status == 200, body
        assert len([o for o in submit.outputs if o.headers]) == len(caused)

    serve(check)


def test_an_undecided_proposal_is_a_202_with_the_address_of_its_decision() -> None:
    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        submit.hold = True
        status, body, headers = await call(client, "POST", "/api/v1/proposals?wait=0.05", ANSWER)
        assert status == 202 and body["status"] == "pending", body
        valid("pending", body)
        location = headers["Location"]
        assert location == f"/api/v1/decisions/{body['event_id']}?customer_id=ana"
        submit.release()
        status, decided, _ = await call(client, "GET", location)
        assert status == 200 and decided["event_id"] == body["event_id"]
        valid("decision", decided)

    serve(check)


def test_a_held_proposal_is_answered_when_its_hold_is_released_within_the_wait() -> None:
    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        submit.hold = True
        asked = asyncio.ensure_future(call(client, "POST", "/api/v1/proposals?wait=10", ANSWER))
        while not submit.kept:
            await asyncio.sleep(0.01)
        submit.release()
        status, body, _ = await asked
        assert status == 200 and body["status"] == "decided"

    serve(check)


def test_bad_requests_list_every_problem_and_unknown_decisions_are_404s() -> None:
    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        bad = {**ANSWER, "channel": "fax", "proposal": {"action": "answer", "priority": -1}}
        status, body, _ = await call(client, "POST", "/api/v1/proposals", bad)
        assert status == 400 and body["error"] == "invalid"
        assert {p["field"] for p in body["problems"]} == {
            "channel",
            "proposal.category",
            "proposal.priority",
        }
        valid("api_error", body)
        status, body, _ = await call(client, "POST", "/api/v1/proposals?wait=31", ANSWER)
        assert status == 400 and body["problems"][0]["field"] == "wait"
        status, body, _ = await call(client, "GET", "/api/v1/decisions/e-none?customer_id=ana")
        assert status == 404 and body["error"] == "not_found" and body["hint"]
        status, body, _ = await call(client, "GET", "/api/v1/decisions/e-none")
        assert status == 400 and body["problems"][0]["field"] == "customer_id"
        assert submit.offset == 0  # nothing invalid was written

    serve(check)


def test_an_agent_token_proposes_as_its_agent_only(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line(AGENT_TOKEN, "agent", "care-bot"))
    settings = Settings(partitions=8, web_tokens_file=tokens, web_peer_key_file=peer_key(tmp_path))

    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        as_other = {**ANSWER, "agent": "promo-bot"}
        status, body, _ = await call(client, "POST", "/api/v1/proposals", as_other, **AS_AGENT)
        assert status == 403 and body["error"] == "forbidden" and "care-bot" in body["detail"]
        refused = port.registry.get_sample_value(
            "tower_web_agent_refusals_total", {"agent": "care-bot"}
        )
        assert refused == 1 and submit.offset == 0
        unnamed = {k: v for k, v in ANSWER.items() if k != "agent"}
        status, body, _ = await call(client, "POST", "/api/v1/proposals", unnamed, **AS_AGENT)
        assert status == 200 and body["status"] == "decided"
        assert orjson.loads(submit.values[-1])["agent"] == "care-bot"
        status, _, _ = await call(client, "POST", "/api/v1/preflight", ANSWER, **AS_AGENT)
        assert status == 200
        for path in ("/customers/ana", "/api/customers/ana", "/metrics", "/api/decisions"):
            status, body, _ = await call(client, "GET", path, **AS_AGENT)
            assert status == 403, path

    serve(check, settings)


def test_the_openapi_document_is_valid_served_and_printed() -> None:
    document = openapi_document()
    validate(document)  # type: ignore[arg-type]

    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        status, served, _ = await call(client, "GET", "/api/v1/openapi.json")
        assert status == 200 and served == document

    serve(check)
    printed = CliRunner().invoke(main, ["api", "spec"])
    assert printed.exit_code == 0 and orjson.loads(printed.output) == document


def test_a_decision_the_index_no_longer_holds_is_answered_from_the_topics() -> None:
    kept: dict[str, dict[str, Any]] = {}

    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        first = {**ANSWER, "event_id": "first"}
        status, decided, _ = await call(client, "POST", "/api/v1/proposals", first)
        assert status == 200
        kept["first"] = {k: v for k, v in decided.items() if k not in ("api_version", "served_by")}
        for i in range(3):  # the index keeps 2 events per partition
            await call(client, "POST", "/api/v1/proposals", {**ANSWER, "event_id": f"x{i}"})
        status, body, _ = await call(client, "GET", "/api/v1/decisions/first?customer_id=ana")
        assert status == 200 and body == decided
        status, again, _ = await call(client, "POST", "/api/v1/proposals", first)
        assert status == 200 and again == decided  # decided `duplicate`, answered as first
        assert submit.approved <= 4  # one action per event at most

    serve(check, Settings(partitions=8, web_url="http://me:1", decision_index_size=2), kept)


def test_a_restarted_worker_answers_from_the_decisions_kept_with_the_state() -> None:
    store, answered = DictStateStore(), {}

    async def ask(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        await call(client, "POST", "/api/v1/signals", CONSENT)
        status, answered["first"], _ = await call(client, "POST", "/api/v1/proposals", ANSWER)
        assert status == 200

    async def check(client: TestClient, submit: InlineSubmit, port: WorkerPort) -> None:
        first = answered["first"]
        assert len(port.index or ()) == 0  # a new worker: nothing in memory
        path = f"/api/v1/decisions/{first['event_id']}?customer_id=ana"
        status, body, _ = await call(client, "GET", path)
        assert status == 200 and body == first  # with no topic to read (recorded: none)
        status, body, _ = await call(client, "GET", path.replace("=ana", "=bo"))
        assert status == 404, body
        submit.offset = 100  # the topic's offsets go on
        retry = {**ANSWER, "event_id": first["event_id"]}
        status, again, _ = await call(client, "POST", "/api/v1/proposals", retry)
        assert status == 200 and again == first and submit.approved == 0  # decided duplicate

    serve(ask, store=store)
    serve(check, store=store)
