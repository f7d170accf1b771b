"""One web server for both runtimes: the live page, customer pages and their JSON,
`/metrics` and `/healthz`.

A customer lives on the worker that owns its partition. A request for it reaching another
worker is forwarded to the owner, found in the consumer group's description
(`GroupOwners`), and the owner's answer is returned as is. A forwarded request that finds
ownership moved again answers 503 with Retry-After rather than forwarding once more.
The partition is the Java default partitioner's (murmur2), which is where the workers
expect producers to put a customer's records (`contracts/partitioning.py`).

The runtime supplies a `WorkerPort`; the server runs in the Faust runtime's event loop or,
for the transactional runtime, in a thread of its own (`serve_in_thread`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pipeline.contracts.codec import decode_record
from pipeline.contracts.partitioning import key_partition
from pipeline.kafka.group_owners import GroupOwners
from pipeline.kafka.reader import ScanError, TopicRecord, read_tail
from pipeline.processing.batch import BatchProcessor, unpack_stored
from pipeline.settings import Settings
from pipeline.web.customer_view import customer_view
from pipeline.web.decision_feed import DecisionFeed, decision_counts
from pipeline.web.pages import LIVE_PAGE, render_customer_page

#: how far back a timeline looks: the newest offsets of the customer's audit partition
TIMELINE_OFFSETS = 2000
#: marks a request one worker forwarded to another, so it is never forwarded twice
FORWARDED = "X-Tower-Forwarded-By"
RETRY_AFTER_S = "1"


@dataclass
class WorkerPort:
    """What a runtime shows the server."""

    runtime: str
    settings: Settings
    processor: BatchProcessor
    registry: CollectorRegistry
    #: input partitions this worker owns and can answer for; None while it is starting,
    #: rebalancing or restoring state
    owned: Callable[[], set[int] | None]
    #: the stored value of a customer key in an owned partition
    load: Callable[[int, bytes], Awaitable[bytes | None]]
    #: per owned input partition: records not yet decided
    lag: Callable[[], dict[int, int]]
    #: runtime-specific additions to /healthz
    details: Callable[[], dict[str, Any]] = field(default=lambda: {})
    feed: DecisionFeed = field(default_factory=DecisionFeed)

    def __post_init__(self) -> None:
        self.processor.feed = self.feed

    def health(self) -> dict[str, Any]:
        owned = self.owned()
        return {
            "status": "ok",
            "runtime": self.runtime,
            "ready": owned is not None,
            "policy_version": self.processor.policy().policy_version,
            "partitions": sorted(owned or ()),
            "lag": {str(p): n for p, n in sorted(self.lag().items())},
            "url": self.settings.advertised_url,
            **self.details(),
        }


#: a customer's audit records: (partition, key) -> records (blocking; run in a thread)
Timeline = Callable[[int, bytes], list[TopicRecord]]


def audit_timeline(settings: Settings) -> Timeline:
    """The customer's records among the newest of its audit partition."""

    def read(partition: int, key: bytes) -> list[TopicRecord]:
        return read_tail(
            settings, settings.topics.audit, partition, TIMELINE_OFFSETS, lambda k: k == key
        )

    return read


def build_app(
    port: WorkerPort, owners: GroupOwners | None = None, timeline: Timeline | None = None
) -> web.Application:
    settings = port.settings
    owners = owners or GroupOwners(settings)
    timeline = timeline or audit_timeline(settings)
    routes = web.RouteTableDef()

    async def customer_data(partition: int, customer_id: str) -> dict[str, Any]:
        key = customer_id.encode()
        _, state = unpack_stored(await port.load(partition, key))
        error = None
        try:
            records = await asyncio.to_thread(timeline, partition, key)
        except ScanError as exc:
            records, error = [], str(exc)
        audit = []
        for rec in records:
            try:
                audit.append(decode_record("audit_record", rec.value or b""))
            except ValueError:
                continue  # not ours to judge here; `tower audit` reports bad records
        return customer_view(
            customer_id,
            state,
            port.processor.policy(),
            audit,
            partition=partition,
            served_by=settings.advertised_url,
            timeline_error=error,
        )

    async def answer_for(
        request: web.Request, render: Callable[[dict[str, Any]], web.Response]
    ) -> web.StreamResponse:
        customer_id = request.match_info["customer_id"]
        partition = key_partition(customer_id.encode(), settings.partitions)
        owned = port.owned()
        if owned is not None and partition in owned:
            return render(await customer_data(partition, customer_id))
        if FORWARDED in request.headers:  # the forwarder's view of the group is stale
            return _unavailable("ownership of this customer just moved; retry")
        owner = await asyncio.to_thread(owners.owner, partition)
        if owner is None or owner == settings.advertised_url:
            owner = await asyncio.to_thread(owners.owner, partition, True)
        if owner is None or owner == settings.advertised_url:
            return _unavailable("no worker owns this customer's partition yet (rebalancing)")
        return await _forward(request, owner, settings.advertised_url)

    def page(data: dict[str, Any]) -> web.Response:
        return web.Response(
            text=render_customer_page(data),
            content_type="text/html",
            status=200 if data["known"] else 404,
        )

    def as_json(data: dict[str, Any]) -> web.Response:
        return web.json_response(data, status=200 if data["known"] else 404)

    @routes.get("/")
    async def live_page(request: web.Request) -> web.Response:
        return web.Response(text=LIVE_PAGE, content_type="text/html")

    @routes.get("/api/decisions")
    async def decisions_api(request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return web.json_response({"error": "after must be an integer"}, status=400)
        return web.json_response(
            {
                "policy_version": port.processor.policy().policy_version,
                "last": port.feed.last,
                "decisions": port.feed.after(after),
                "counts": decision_counts(port.processor.metrics.decisions),
            }
        )

    @routes.get("/customers/{customer_id}")
    async def customer_page(request: web.Request) -> web.StreamResponse:
        return await answer_for(request, page)

    @routes.get("/api/customers/{customer_id}")
    async def customer_api(request: web.Request) -> web.StreamResponse:
        return await answer_for(request, as_json)

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        # aiohttp refuses a charset inside content_type: pass the header as is
        return web.Response(
            body=generate_latest(port.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @routes.get("/healthz")
    async def health(request: web.Request) -> web.Response:
        return web.json_response(port.health())

    app = web.Application()
    app.add_routes(routes)
    return app


def _unavailable(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=503, headers={"Retry-After": RETRY_AFTER_S})


async def _forward(request: web.Request, owner: str, me: str) -> web.StreamResponse:
    timeout = aiohttp.ClientTimeout(total=15)
    url = owner + request.rel_url.path_qs
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={FORWARDED: me}) as r,
        ):
            body = await r.read()
            headers = {"Content-Type": r.headers.get("Content-Type", "text/plain")}
            if "Retry-After" in r.headers:
                headers["Retry-After"] = r.headers["Retry-After"]
            return web.Response(body=body, status=r.status, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _unavailable(f"the owner {owner} did not answer ({exc!r}); retry")


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def serve_in_thread(app: web.Application, host: str, port: int) -> Callable[[], None]:
    """Serve from a daemon thread with its own event loop; returns `stop`."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner: list[web.AppRunner] = []
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            runner.append(loop.run_until_complete(start(app, host, port)))
        except BaseException as exc:  # e.g. the port is taken: raised in the caller
            failed.append(exc)
            return
        finally:
            started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="tower-web", daemon=True)
    thread.start()
    started.wait(30)
    if failed:
        raise failed[0]

    def stop() -> None:
        if runner:
            asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return stop
