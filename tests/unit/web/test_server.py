"""The shared web server without a broker: answers for owned customers, forwarding to the
owner, 503s while nobody owns a partition, the same /healthz on every runtime."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.contracts.codec import encode_event
from pipeline.contracts.partitioning import key_partition
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from pipeline.web.server import FORWARDED, WorkerPort, build_app
from tests.factories import consent, proposal


class FixedOwners:
    """`GroupOwners` as a dict: partition -> URL."""

    def __init__(self, owners: dict[int, str]) -> None:
        self.owners, self.asked = owners, 0

    def owner(self, partition: int, refresh: bool = False) -> str | None:
        self.asked += 1
        return self.owners.get(partition)


def worker(url: str, owned: set[int] | None, customers: list[str] = ()) -> WorkerPort:
    """A worker that owns `owned` and has decided a consent and a proposal per customer."""
    return worker_port(Settings(partitions=8, web_url=url), owned, customers)


def worker_port(
    settings: Settings, owned: set[int] | None, customers: list[str] = ()
) -> WorkerPort:
    """The same with any `settings` (the web security ones, say)."""
    processor = BatchProcessor(settings, policy=lambda: DEFAULT_POLICY, metrics=TowerMetrics())
    store = DictStateStore()

    async def load(partition: int, key: bytes) -> bytes | None:
        return store.load(partition, key)

    port = WorkerPort(
        runtime="test",
        settings=settings,
        processor=processor,
        registry=processor.metrics.registry,
        owned=lambda: owned,
        load=load,
        lag=lambda: {p: 0 for p in owned or ()},
    )
    events = [e for c in customers for e in (consent(True, customer=c), proposal(c))]
    records = [
        InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, i, None)
        for i, e in enumerate(events)
    ]
    processor.process_and_save(records, store)
    return port


def run(
    port: WorkerPort, owners: FixedOwners, check: Callable[[TestClient], Awaitable[None]]
) -> None:
    async def main() -> None:
        app = build_app(port, owners, timeline=lambda partition, key: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


async def get(client: TestClient, path: str, **headers: str) -> tuple[int, Any, Any]:
    r = await client.get(path, headers=headers)
    body = await r.read()
    is_json = r.content_type == "application/json"
    return r.status, orjson.loads(body) if is_json else body.decode(), r.headers


def test_an_owned_customer_is_answered_here_and_an_unknown_one_is_a_404() -> None:
    owned = {key_partition(b"ana", 8), key_partition(b"nobody", 8)}
    port = worker("http://me:1", owned, ["ana"])
    owners = FixedOwners({})

    async def check(client: TestClient) -> None:
        status, data, _ = await get(client, "/api/customers/ana")
        assert status == 200 and data["known"] and data["served_by"] == "http://me:1"
        assert data["partition"] == key_partition(b"ana", 8)
        status, html, _ = await get(client, "/customers/ana")
        assert status == 200 and "answered by http://me:1" in html
        assert (await get(client, "/api/customers/nobody"))[0] == 404

    run(port, owners, check)
    assert owners.asked == 0  # nobody else was asked about an owned customer


def via_non_owner(check: Callable[[TestClient, str], Awaitable[None]]) -> None:
    """`check(client, owner_url)` with a client of a worker that does not own "ana", next
    to the worker that does, both on real sockets."""
    p = key_partition(b"ana", 8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    url = f"http://127.0.0.1:{free}"

    async def main() -> None:
        owner = build_app(worker(url, {p}, ["ana"]), FixedOwners({}), timeline=lambda *_: [])
        async with TestServer(owner, host="127.0.0.1", port=free):
            other = worker("http://127.0.0.1:1", set(), [])
            app = build_app(other, FixedOwners({p: url}), timeline=lambda *_: [])
            async with TestClient(TestServer(app)) as client:
                await check(client, url)

    asyncio.run(main())


def test_a_customer_owned_elsewhere_is_forwarded_to_its_owner() -> None:
    async def check(client: TestClient, url: str) -> None:
        status, data, _ = await get(client, "/api/customers/ana")
        assert status == 200 and data["served_by"] == url and data["known"]
        status, html, _ = await get(client, "/customers/ana")
        assert status == 200 and f"answered by {url}" in html

    via_non_owner(check)


def test_no_owner_or_a_stale_forward_is_a_503_with_retry_after() -> None:
    port = worker("http://me:1", set(), [])

    async def check(client: TestClient) -> None:
        status, data, headers = await get(client, "/api/customers/ana")
        assert status == 503 and headers["Retry-After"] == "1" and "rebalancing" in data["detail"]
        # a request another worker forwarded is never forwarded again
        status, data, headers = await get(client, "/api/customers/ana", **{FORWARDED: "http://x:1"})
        assert status == 503 and "moved" in data["detail"]

    run(port, FixedOwners({}), check)


def test_a_starting_or_restoring_worker_answers_503_with_retry_after() -> None:
    port = worker("http://me:1", None, [])
    run(port, FixedOwners({}), _expect_status("/api/customers/ana", 503))
    run(port, FixedOwners({}), _expect_status("/api/v1/customers/ana/context", 503))


def _expect_status(path: str, status: int) -> Callable[[TestClient], Awaitable[None]]:
    async def check(client: TestClient) -> None:
        assert (await get(client, path))[0] == status

    return check


def test_healthz_metrics_live_page_and_decisions() -> None:
    port = worker("http://me:1", {1, 2}, ["ana"])

    async def check(client: TestClient) -> None:
        status, health, _ = await get(client, "/healthz")
        assert status == 200
        assert health == {
            "status": "ok",
            "runtime": "test",
            "ready": True,
            "policy_version": DEFAULT_POLICY.policy_version,
            "partitions": [1, 2],
            "lag": {"1": 0, "2": 0},
            "live": "ok",
            "url": "http://me:1",
        }
        status, text, headers = await get(client, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert "tower_decisions_total" in text
        status, html, _ = await get(client, "/")
        assert status == 200 and "<html" in html.lower()
        status, data, _ = await get(client, "/api/decisions?after=0")
        assert status == 200 and data["last"] == 2 and len(data["decisions"]) == 2
        assert (await get(client, "/api/decisions?after=x"))[0] == 400

    run(port, FixedOwners({}), check)


def test_a_starting_worker_is_not_ready() -> None:
    port = worker("http://me:1", None)
    assert port.health()["ready"] is False and port.health()["partitions"] == []


@pytest.mark.parametrize(
    ("owned", "liveness", "ready", "live"),
    [
        (None, "stalled", (503, {"status": "starting"}), (200, {"status": "ok"})),
        (set(), "ok", (200, {"status": "ok"}), (200, {"status": "ok"})),
        ({1, 2}, "ok", (200, {"status": "ok"}), (200, {"status": "ok"})),
        ({1, 2}, "stalled", (200, {"status": "ok"}), (503, {"status": "stalled"})),
        ({1, 2}, "blocked", (200, {"status": "ok"}), (503, {"status": "blocked"})),
    ],
)
def test_the_probes_answer_a_status_and_nothing_more(
    owned: set[int] | None,
    liveness: str,
    ready: tuple[int, dict[str, str]],
    live: tuple[int, dict[str, str]],
) -> None:
    """Not ready while starting, rebalancing or restoring (owned() is None); not live when
    the runtime says it is stuck, except while not ready (the readiness probe's matter)."""
    port = worker("http://me:1", owned, ["ana"])
    port.liveness = lambda: liveness

    async def check(client: TestClient) -> None:
        status, body, _ = await get(client, "/readyz")
        assert (status, body) == ready
        status, body, _ = await get(client, "/livez")
        assert (status, body) == live

    run(port, FixedOwners({}), check)


def test_readiness_follows_the_assignment() -> None:
    """503 before the assignment, 200 once restored, 503 again while rebalancing."""
    owned: list[set[int] | None] = [None]
    port = worker("http://me:1", None)
    port.owned = lambda: owned[0]

    async def check(client: TestClient) -> None:
        seen = []
        for now in (None, {0, 1}, None, {1}):
            owned[0] = now
            seen.append((await get(client, "/readyz"))[0])
        assert seen == [503, 200, 503, 200]

    run(port, FixedOwners({}), check)


def test_context_of_an_owned_customer_and_the_empty_context_of_an_unknown_one() -> None:
    owned = {key_partition(b"ana", 8), key_partition(b"nobody", 8)}
    port = worker("http://me:1", owned, ["ana"])

    async def check(client: TestClient) -> None:
        status, ctx, _ = await get(client, "/api/v1/customers/ana/context?at=1767225600000")
        assert status == 200 and ctx["api_version"] == "v1" and ctx["known"]
        assert ctx["as_of"] == 1767225600000 and ctx["served_by"] == "http://me:1"
        assert ctx["consents"][0]["granted"] is True
        assert ctx["position"]["partition"] == key_partition(b"ana", 8)
        assert ctx["position"]["offset"] == 1  # the two records decided: offsets 0 and 1
        # an unknown customer: what the policy applies to a first proposal, flagged
        status, body, _ = await get(client, "/api/v1/customers/nobody/context")
        assert status == 200 and body["known"] is False and body["customer_id"] == "nobody"
        assert body["consents"] == [] and body["escalation"]["needs_human"] is False
        assert body["policy_version"] == ctx["policy_version"]
        assert (await get(client, "/api/v1/customers/ana/context?at=x"))[0] == 400

    run(port, FixedOwners({}), check)


async def post(client: TestClient, path: str, body: bytes) -> tuple[int, Any]:
    r = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    return r.status, orjson.loads(await r.read())


def test_preflight_answers_the_decision_and_400s_carry_dead_letter_reasons() -> None:
    port = worker("http://me:1", set(range(8)), ["ana"])
    repeat = encode_event(proposal("ana"), "json")
    nobody = encode_event(proposal("nobody"), "json")
    signal = encode_event(consent(True, customer="ana"), "json")

    async def check(client: TestClient) -> None:
        status, body = await post(client, "/api/v1/preflight", nobody)
        assert status == 200 and body["advisory"] is True and "nothing was stored" in body["note"]
        assert body["outcome"] == "suppressed" and body["rule"] == "consent"
        assert body["trace"][0]["rule"] and body["action"] is None
        status, body = await post(client, "/api/v1/preflight", repeat)
        assert status == 200 and body["customer_id"] == "ana"
        for raw, fields in [
            (b"{not json", {""}),
            (b'{"customer_id": "ana"}', {"agent", "department", "channel", "proposal"}),
            (b"\x00\x01", {""}),
            (signal, {"kind", "proposal", "signal"}),
        ]:
            status, body = await post(client, "/api/v1/preflight", raw)
            assert (status, body["error"]) == (400, "invalid"), body
            assert {p["field"] for p in body["problems"]} >= fields, body
        # nothing of it was kept: ana's state and the feed saw no preflight
        assert port.feed.last == 2

    run(port, FixedOwners({}), check)


def test_context_and_preflight_are_forwarded_to_the_owner() -> None:
    async def check(client: TestClient, url: str) -> None:
        status, ctx, _ = await get(client, "/api/v1/customers/ana/context")
        assert status == 200 and ctx["served_by"] == url and ctx["known"]
        event = encode_event(proposal("ana"), "json")
        status, body = await post(client, "/api/v1/preflight", event)
        assert status == 200 and body["served_by"] == url

    via_non_owner(check)


SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_answers_match_their_published_json_schemas() -> None:
    port = worker("http://me:1", set(range(8)), ["ana"])
    outcomes = {}

    async def check(client: TestClient) -> None:
        context, preflight, error = (
            validator(n) for n in ("agent_context.v1", "preflight.v1", "api_error.v1")
        )
        context.validate((await get(client, "/api/v1/customers/ana/context"))[1])
        for customer in ("ana", "nobody"):
            _, body = await post(
                client, "/api/v1/preflight", encode_event(proposal(customer), "json")
            )
            preflight.validate(body)
            outcomes[customer] = body["outcome"]
        context.validate((await get(client, "/api/v1/customers/nobody/context"))[1])
        error.validate((await get(client, "/api/v1/customers/ana/context?at=x"))[1])
        error.validate((await post(client, "/api/v1/preflight", b"{x"))[1])

    run(port, FixedOwners({}), check)
    assert outcomes == {"ana": "approved", "nobody": "suppressed"}
