"""One web server for both runtimes: the live page, customer pages and their JSON, the
agents' API (`/api/v1/...`: a customer's context, a preflight of a proposal, ask and
decide for proposals and signals, a decision by event id, and its OpenAPI document),
`/metrics`, `/healthz` (the detailed view) and the probes `/readyz` and `/livez` (open
without a token, answering a status and nothing more).

Probes: `/readyz` is 503 while the worker starts, rebalances or restores state (`owned()`
is None), 200 once its partitions are assigned and restored. `/livez` is 503 when input
waits and nothing was decided for `TOWER_LIVENESS_STALL_S` (`InputProgress`), and on the
transactional runtime also when its decision thread has not turned for that long (this
server has a thread of its own there). On the Faust runtime this server runs in the
worker's event loop: a blocked loop answers nothing, which a probe counts as a failure.

A customer lives on the worker that owns its partition. A request for it reaching another
worker is forwarded to the owner, found in the consumer group's description
(`GroupOwners`). Anyone who can join the group can name any URL there, so the owner's URL
must be one of the deployment's peers (`peers.PeerPolicy`) before anything is sent; the
forwarded request carries a signed assertion of the caller, never the caller's token
(`peer_assertion`); redirects are not followed; and only a JSON answer (or HTML, for a page)
of bounded size is passed back. A forwarded request that finds ownership moved again
answers 503 with Retry-After rather than forwarding once more.
The partition is the Java default partitioner's (murmur2), which is where the workers
expect producers to put a customer's records (`contracts/partitioning.py`).

The runtime supplies a `WorkerPort`; the server runs in the Faust runtime's event loop or,
for the transactional runtime, in a thread of its own (`serve_in_thread`).

Authentication and TLS are `auth.WebSecurity`'s: `build_app` reads them from the settings
(a configuration that cannot be served fails there, when the worker starts) and `start`
refuses to bind anything but 127.0.0.1 while authentication is off. Every answer carries
the security headers (`security_headers`). No log line at INFO or above names a customer:
requests are logged by their route's template.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from yarl import URL

from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.contracts.partitioning import key_partition
from pipeline.contracts.trace_context import (
    TRACEPARENT,
    TRACESTATE,
    InvalidTraceContext,
    TraceHeaders,
    trace_headers,
)
from pipeline.core.agent_context import agent_context, preflight
from pipeline.core.decision import DUPLICATE, Decision
from pipeline.core.state import CustomerState
from pipeline.kafka.event_producer import EventProducer
from pipeline.kafka.group_owners import GroupOwners
from pipeline.kafka.reader import ScanError, TailReader, TopicRecord
from pipeline.kafka.schema_registry import RegistryUnavailable, lookup_for
from pipeline.processing.batch import BatchProcessor, CorruptState
from pipeline.processing.batch import unpack_stored as _unpack
from pipeline.processing.decision_index import (
    HELD_BACK,
    SUBMITTED,
    DecisionIndex,
    decision_body,
)
from pipeline.processing.kept_decisions import KeptDecisions, find_kept
from pipeline.settings import Settings
from pipeline.web.api_requests import InvalidRequest, Problem, parse_body, written_event
from pipeline.web.auth import AGENT, JSON, PRINCIPAL, WebSecurity, error_body, route_of
from pipeline.web.customer_view import customer_view
from pipeline.web.decision_feed import DecisionFeed, decision_counts
from pipeline.web.loop_calls import LoopCalls
from pipeline.web.openapi import openapi_document
from pipeline.web.pages import CONTENT_SECURITY_POLICY, LIVE_PAGE, render_customer_page
from pipeline.web.peers import Refusal
from pipeline.web.recorded_decisions import RecordedDecisions

#: what the index says of an event whose decision is kept with the state: written by the
#: API and not decided yet, or held
ASKED = (SUBMITTED, HELD_BACK)
#: how far back a timeline looks: the newest offsets of the customer's audit partition
TIMELINE_OFFSETS = 2000
#: marks a request one worker forwarded to another, so it is never forwarded twice
FORWARDED = "X-Tower-Forwarded-By"
RETRY_AFTER_S = "1"
#: ask and decide: how long a request waits for its decision by default, and at most
DEFAULT_WAIT_S = 2.0
MAX_WAIT_S = 30.0
#: how long a request whose wait is over waits for the delivery of its event (then 503)
DELIVERY_WAIT_S = 10.0
#: a forwarded request's limit: the longest wait and time to pass the answer back
FORWARD_TIMEOUT_S = MAX_WAIT_S + 15
#: where a 202 says to ask for the decision (passed back from a forwarded request)
PENDING_LOCATION = "/api/v1/decisions/"
#: the largest answer passed back from a forwarded request
MAX_FORWARDED_BYTES = 8 * 1024 * 1024
HTML = "text/html"
#: the routes whose forwarded answer may be a page; every other one must be JSON
PAGE_ROUTES = frozenset({"/customers/{customer_id}"})
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: the app's authentication and TLS, set by `build_app`, used by `start`
SECURITY = web.AppKey("security", WebSecurity)
log = logging.getLogger(__name__)
API_VERSION = "v1"
ADVISORY = (
    "advisory: the decision the tower would make if this event were the customer's next "
    "record now; nothing was stored or published, and records decided meanwhile can change it"
)


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
    #: "ok", or why the worker is stuck ("stalled", "blocked"): /livez
    liveness: Callable[[], str] = field(default=lambda: "ok")
    feed: DecisionFeed = field(default_factory=DecisionFeed)
    #: the recent decisions by event id, for the agents' API
    index: DecisionIndex | None = None

    def __post_init__(self) -> None:
        self.processor.feed = self.feed
        if self.index is None:
            self.index = DecisionIndex(self.settings.decision_index_size)
        self.processor.index = self.index
        index = self.index

        def asked(partition: int, event_id: str) -> bool:
            """Events this worker's API wrote (and held ones): the decisions agents ask
            for by id. Kafka producers' decisions stay on the topics, so keeping costs
            the Kafka path nothing."""
            return index.find(partition, event_id) in ASKED

        self.processor.kept = KeptDecisions(self.settings.decision_index_size, asked)

    def health(self) -> dict[str, Any]:
        owned = self.owned()
        return {
            "status": "ok",
            "runtime": self.runtime,
            "ready": owned is not None,
            "policy_version": self.processor.policy().policy_version,
            "partitions": sorted(owned or ()),
            "lag": {str(p): n for p, n in sorted(self.lag().items())},
            "live": "ok" if owned is None else self.liveness(),
            "url": self.settings.advertised_url,
            **self.details(),
        }


#: a customer's audit records: (partition, key) -> records (blocking; run in a thread)
Timeline = Callable[[int, bytes], list[TopicRecord]]
#: (partition, customer_id, event_id) -> the decision as the topics keep it, or None
#: (blocking; `RecordedDecisions`)
Recorded = Callable[[int, str, str], dict[str, Any] | None]


class Owners(Protocol):
    """`GroupOwners` as the server uses it."""

    def owner(self, partition: int, refresh: bool = False) -> str | None: ...


class AuditTimeline:
    """The customer's records among the newest of its audit partition, all pages sharing
    one reader (one consumer for the server's life, closed with it)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.audit
        self.reader = TailReader(settings, "timeline")

    def __call__(self, partition: int, key: bytes) -> list[TopicRecord]:
        return self.reader.read(self.topic, partition, TIMELINE_OFFSETS, lambda k: k == key)

    async def close(self, app: web.Application) -> None:
        await asyncio.to_thread(self.reader.close)


def unpack_stored(raw: bytes | None) -> tuple[int, CustomerState]:
    """The stored state, or a 409 saying it does not decode (the worker dead-letters the
    customer's events meanwhile, reason corrupt_state)."""
    try:
        return _unpack(raw)
    except CorruptState as exc:
        text = orjson.dumps(error_body("corrupt_state", str(exc))).decode()
        raise web.HTTPConflict(text=text, content_type="application/json") from None


#: the W3C trace context's request headers
TRACE_NAMES = (TRACEPARENT, TRACESTATE)


def request_trace(request: web.Request) -> TraceHeaders | None:
    """The request's W3C trace context, carried onto the event it writes (and so onto
    everything the event causes); a malformed one is dropped, as a tracer would."""
    try:
        return trace_headers(
            [(n, request.headers[n].encode("latin-1")) for n in TRACE_NAMES if n in request.headers]
        )
    except InvalidTraceContext:
        return None


class Submit(Protocol):
    """How the agents' API writes an event to `agent-events`: (key, value, partition, the
    request's trace context) -> the delivery (`EventProducer.send`)."""

    def send(
        self,
        key: bytes,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> concurrent.futures.Future[tuple[int, int]]: ...

    def close(self) -> None: ...


def build_app(
    port: WorkerPort,
    owners: Owners | None = None,
    timeline: Timeline | None = None,
    submit: Submit | None = None,
    recorded: Recorded | None = None,
) -> web.Application:
    """The server's app; WebSecurityError or TokenFileError when the settings' bind
    address, tokens file, peer settings or TLS files cannot be served."""
    settings = port.settings
    index = port.index
    assert index is not None  # set by WorkerPort
    writers: list[Submit] = [] if submit is None else [submit]

    def writer() -> Submit:
        """The producer, made on the first proposal (a worker nobody proposes to has none)."""
        if not writers:
            writers.append(EventProducer(settings))
        return writers[0]

    async def close_writer(app: web.Application) -> None:
        if writers and submit is None:
            await asyncio.to_thread(writers[0].close)

    security = WebSecurity.from_settings(settings)
    group = owners or GroupOwners(settings)
    cleanups: list[Callable[[web.Application], Awaitable[None]]] = []
    if timeline is None:
        shared = AuditTimeline(settings)
        timeline = shared
        cleanups.append(shared.close)
    if recorded is None:
        topics = RecordedDecisions(settings)
        recorded = topics
        cleanups.append(topics.close)
    forwarder = Forwarder(
        security, group, port.processor.metrics.forward_refused, settings.advertised_url
    )
    cleanups.append(forwarder.close)
    cleanups.append(close_writer)
    routes = web.RouteTableDef()

    async def first_decision(
        partition: int, customer_id: str, event_id: str
    ) -> dict[str, Any] | None:
        """The event's first final decision as kept with the state, else as the topics
        keep it (decided before this worker's index and the state kept it)."""
        kept = await find_kept(port.load, settings.decision_index_size, partition, event_id)
        if kept is not None:
            return kept if kept["customer_id"] == customer_id else None
        return await asyncio.to_thread(recorded, partition, customer_id, event_id)

    async def customer_data(partition: int, customer_id: str) -> dict[str, Any]:
        key = customer_id.encode()
        _, state = unpack_stored(await port.load(partition, key))
        error = None
        try:
            records = await asyncio.to_thread(timeline, partition, key)
        except ScanError as exc:
            log.warning("the audit timeline of partition %d cannot be read: %s", partition, exc)
            records, error = [], "the audit topic cannot be read now (the worker's log says why)"
        audit = []
        for rec in records:
            try:
                lookup = lookup_for(port.settings)
                audit.append(decode_record("audit_record", rec.value or b"", lookup))
            except (ValueError, RegistryUnavailable):
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

    async def owner_answers(
        request: web.Request,
        customer_id: str,
        answer: Callable[[int], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """`answer(partition)` here if this worker owns the customer, else the owner's."""
        partition = key_partition(customer_id.encode(), settings.partitions)
        owned = port.owned()
        if owned is not None and partition in owned:
            return await answer(partition)
        if FORWARDED in request.headers:  # the forwarder's view of the group is stale
            return _unavailable("ownership of this customer just moved; retry")
        owner = await asyncio.to_thread(group.owner, partition)
        if owner is None or owner == settings.advertised_url:
            owner = await asyncio.to_thread(group.owner, partition, True)
        if owner is None or owner == settings.advertised_url:
            return _unavailable("no worker owns this customer's partition yet (rebalancing)")
        return await forwarder.forward(request, owner)

    async def answer_for(
        request: web.Request, render: Callable[[dict[str, Any]], web.Response]
    ) -> web.StreamResponse:
        customer_id = request.match_info["customer_id"]

        async def answer(partition: int) -> web.StreamResponse:
            return render(await customer_data(partition, customer_id))

        return await owner_answers(request, customer_id, answer)

    def page(data: dict[str, Any]) -> web.Response:
        return web.Response(
            text=render_customer_page(data),
            content_type="text/html",
            status=200 if data["known"] else 404,
        )

    def as_json(data: dict[str, Any]) -> web.Response:
        return _json(data, status=200 if data["known"] else 404)

    @routes.get("/")
    async def live_page(request: web.Request) -> web.Response:
        return web.Response(text=LIVE_PAGE, content_type="text/html")

    @routes.get("/api/decisions")
    async def decisions_api(request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return _json({"error": "after must be an integer"}, status=400)
        return _json(
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

    @routes.get("/api/v1/customers/{customer_id}/context")
    async def context_api(request: web.Request) -> web.StreamResponse:
        customer_id = request.match_info["customer_id"]
        try:
            as_of = int(request.query.get("at") or time.time() * 1000)
        except ValueError:
            return _invalid([Problem("at", "must be epoch milliseconds, an integer")])

        async def answer(partition: int) -> web.StreamResponse:
            # an unknown customer is the empty state: what the policy applies to a first
            # proposal (no contacts counted, no consents yet), flagged `known: false`
            watermark, state = unpack_stored(await port.load(partition, customer_id.encode()))
            body = agent_context(customer_id, state, port.processor.policy(), as_of)
            body["position"] = {
                "partition": partition,
                "offset": watermark,
                "event_time": port.processor.event_time.get(partition),
            }
            return _v1(body, settings)

        return await owner_answers(request, customer_id, answer)

    def refuse_agent(request: web.Request, body: dict[str, Any]) -> web.Response | None:
        """An agent token proposes and signals as its own agent only (filled in when the
        body names none): 403, counted, for any other."""
        principal = request.get(PRINCIPAL)
        if principal is None or principal.role != AGENT:
            return None
        named = body.setdefault("agent", principal.name)
        if named == principal.name:
            return None
        port.processor.metrics.agent_refused.labels(principal.name).inc()
        log.info("403 %s: agent token of %s named another agent", route_of(request), principal.name)
        detail = (
            f"the token of agent {principal.name} may act as {principal.name} only, not as "
            f"{str(named)[:64]!r}; leave agent out or use that agent's own token"
        )
        return _json(error_body("forbidden", detail), status=403)

    async def request_event(
        request: web.Request, kind: str
    ) -> tuple[AgentEvent, bytes] | web.Response:
        """The event a request posts and its value for `agent-events`, or the answer
        refusing it (every problem at once)."""
        raw = await request.read()
        try:
            body = parse_body(raw, settings.max_event_bytes)
        except InvalidRequest as exc:
            return _invalid(exc.problems, exc.detail)
        refused = refuse_agent(request, body)
        if refused is not None:
            return refused
        try:
            event, value = written_event(body, kind)
        except InvalidRequest as exc:
            return _invalid(exc.problems, exc.detail)
        if len(value) > settings.max_event_bytes:
            problem = Problem(
                "",
                f"the event is {len(value)} bytes with the fields the server fills in "
                f"(event_id, occurred_at, kind, agent); at most {settings.max_event_bytes}",
            )
            return _invalid([problem])
        return event, value

    @routes.post("/api/v1/preflight")
    async def preflight_api(request: web.Request) -> web.StreamResponse:
        posted = await request_event(request, "proposal")
        if isinstance(posted, web.Response):
            return posted
        event = posted[0]

        def judge(stored: bytes | None) -> dict[str, Any]:
            _, state = unpack_stored(stored)
            return _preflight_body(preflight(state, event, port.processor.policy()))

        async def answer(partition: int) -> web.StreamResponse:
            stored = await port.load(partition, event.customer_id.encode())
            return _v1(await asyncio.to_thread(judge, stored), settings)

        return await owner_answers(request, event.customer_id, answer)

    async def ask_and_decide(request: web.Request, kind: str) -> web.StreamResponse:
        try:
            wait = _wait_of(request)
        except InvalidRequest as exc:
            return _invalid(exc.problems, exc.detail)
        posted = await request_event(request, kind)
        if isinstance(posted, web.Response):
            return posted
        event, value = posted
        trace = request_trace(request)

        async def answer(partition: int) -> web.StreamResponse:
            return await decide_here(event, partition, wait, trace, value)

        return await owner_answers(request, event.customer_id, answer)

    calls: list[LoopCalls] = []

    def loop_calls(loop: asyncio.AbstractEventLoop) -> LoopCalls:
        if not calls or calls[0].loop is not loop:
            calls[:] = [LoopCalls(loop)]
        return calls[0]

    async def decide_here(
        event: AgentEvent,
        partition: int,
        wait: float,
        trace: TraceHeaders | None = None,
        value: bytes | None = None,
    ) -> web.Response:
        """On the customer's owner: the decision if the event is decided already (a retry),
        else write it (unless it waits in a hold) and wait up to `wait` for it.

        One future per request, settled from the loop: by the decision (the index's
        waiter), a failed write (the delivery's callback), or the end of the wait (a
        timer). A write that succeeds wakes nothing: the decision follows it."""
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[Decision | BaseException | None] = loop.create_future()
        hand_over = loop_calls(loop)

        def settle(outcome: Decision | BaseException | None) -> None:
            if not settled.done():
                settled.set_result(outcome)

        def waiter(decision: Decision) -> None:  # in the processor's thread
            hand_over(settle, decision)

        event_id = event.event_id
        found = index.find_or_wait(partition, event_id, waiter)
        delivery: concurrent.futures.Future[tuple[int, int]] | None = None
        try:
            if isinstance(found, Decision):
                return _decided(found, settings)
            if found is False:
                index.submitted(partition, event_id)

                def delivered(done: concurrent.futures.Future[tuple[int, int]]) -> None:
                    failure = done.exception()
                    if failure is not None:  # a retry writes it again
                        index.forget(partition, event_id)
                        hand_over(settle, failure)

                written = value if value is not None else encode_event(event, "json")
                headers = list(trace) if trace else None
                key = event.customer_id.encode()
                delivery = writer().send(key, written, partition, headers)
                delivery.add_done_callback(delivered)
            timer = loop.call_later(wait, settle, None)
            try:
                outcome = await settled
            finally:
                timer.cancel()
            if outcome is None and delivery is not None and not delivery.done():
                # no 202 for an event not known to be written: wait for its delivery
                with contextlib.suppress(TimeoutError, RuntimeError):
                    await asyncio.wait_for(asyncio.wrap_future(delivery), DELIVERY_WAIT_S)
                if not delivery.done():
                    index.forget(partition, event_id)
                    outcome = RuntimeError("no delivery report")
                elif delivery.exception() is not None:
                    outcome = delivery.exception()
            if isinstance(outcome, BaseException):
                log.warning("a proposal was not written to %s: %s", settings.topics.events, outcome)
                return _unavailable(
                    "the event could not be written to the events topic; retry with "
                    "the same event_id"
                )
            if outcome is None:
                return _pending(event, settings)
            if outcome.outcome == DUPLICATE:  # a retry of an event decided before
                first = await first_decision(partition, event.customer_id, event_id)
                if first is not None:
                    return _v1(first, settings)
            return _decided(outcome, settings)
        finally:
            index.cancel(event_id, waiter)

    @routes.post("/api/v1/proposals")
    async def proposals_api(request: web.Request) -> web.StreamResponse:
        return await ask_and_decide(request, "proposal")

    @routes.post("/api/v1/signals")
    async def signals_api(request: web.Request) -> web.StreamResponse:
        return await ask_and_decide(request, "signal")

    @routes.get("/api/v1/decisions/{event_id}")
    async def decision_api(request: web.Request) -> web.StreamResponse:
        event_id = request.match_info["event_id"]
        customer_id = request.query.get("customer_id", "")
        if not customer_id:
            return _invalid(
                [Problem("customer_id", "is required: the customer the event concerns")]
            )

        async def answer(partition: int) -> web.StreamResponse:
            found = index.find(partition, event_id)
            if isinstance(found, Decision):
                if found.customer_id == customer_id:
                    return _decided(found, settings)
            elif found is not False:
                return _pending_of(event_id, customer_id, settings)
            else:
                first = await first_decision(partition, customer_id, event_id)
                if first is not None:
                    return _v1(first, settings)
            return _json(
                error_body(
                    "not_found",
                    f"no decision on event {event_id!r} of customer {customer_id!r} is known",
                    hint=f"decisions are answered for the newest {settings.decision_index_size} "
                    "records of the customer's partition (TOWER_DECISION_INDEX_SIZE); an "
                    "older one is on the audit topic (`tower audit CUSTOMER`); an event "
                    "never sent can be proposed now",
                ),
                status=404,
            )

        return await owner_answers(request, customer_id, answer)

    @routes.get("/api/v1/openapi.json")
    async def openapi_api(request: web.Request) -> web.Response:
        return _json(openapi_document())

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        # aiohttp refuses a charset inside content_type: pass the header as is
        return web.Response(
            body=generate_latest(port.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @routes.get("/healthz")
    async def health(request: web.Request) -> web.Response:
        return _json(port.health())

    @routes.get("/readyz")
    async def ready(request: web.Request) -> web.Response:
        if port.owned() is None:
            return _json({"status": "starting"}, status=503)
        return _json({"status": "ok"})

    @routes.get("/livez")
    async def live(request: web.Request) -> web.Response:
        # starting, rebalancing and restoring are the readiness probe's to report
        status = "ok" if port.owned() is None else port.liveness()
        return _json({"status": status}, status=200 if status == "ok" else 503)

    app = web.Application(middlewares=security.middlewares())
    app[SECURITY] = security
    app.add_routes(routes)
    app.on_response_prepare.append(security_headers)
    app.on_cleanup.extend(cleanups)
    return app


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, errors included: no framing, no MIME sniffing, no referrer, and
    only the pages' own script and style run."""
    response.headers.update(SECURITY_HEADERS)


def _wait_of(request: web.Request) -> float:
    """The `wait` query: seconds, 0..MAX_WAIT_S; InvalidRequest otherwise."""
    raw = request.query.get("wait")
    if raw is None:
        return DEFAULT_WAIT_S
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT_S:
        raise InvalidRequest(
            [Problem("wait", f"must be seconds from 0 to {MAX_WAIT_S:g}; got {raw[:20]!r}")]
        )
    return wait


def _decided(decision: Decision, settings: Settings) -> web.Response:
    return _v1(decision_body(decision), settings)


def _pending_of(event_id: str, customer_id: str, settings: Settings) -> web.Response:
    """202: not decided yet; the decision's address in Location."""
    location = URL.build(
        path=f"/api/{API_VERSION}/decisions/{event_id}", query={"customer_id": customer_id}
    )
    body = {"event_id": event_id, "customer_id": customer_id, "status": "pending"}
    response = _v1(body, settings)
    response.set_status(202)
    response.headers["Location"] = str(location)
    return response


def _pending(event: AgentEvent, settings: Settings) -> web.Response:
    return _pending_of(event.event_id, event.customer_id, settings)


def _preflight_body(decision: Decision) -> dict[str, Any]:
    action = decision.action
    return {
        "advisory": True,
        "note": ADVISORY,
        "event_id": decision.event_id,
        "customer_id": decision.customer_id,
        "decision_id": decision.decision_id,
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "trace": [
            {"rule": s.rule, "verdict": s.verdict, "reason": s.reason} for s in decision.trace
        ],
        "content": None if action is None else action.content,
        "action": None if action is None else action.to_dict(),
        "policy_version": decision.policy_version,
        "experiments": [{"experiment": e, "arm": a} for e, a in decision.experiments],
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer, encoded by orjson (several times faster than the json module)."""
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _v1(body: dict[str, Any], settings: Settings) -> web.Response:
    return _json({"api_version": API_VERSION, **body, "served_by": settings.advertised_url})


def _invalid(problems: list[Problem], detail: str | None = None) -> web.Response:
    """400 listing every problem of a request."""
    line = detail or InvalidRequest(problems).detail
    body = error_body("invalid", line, problems=[p.to_dict() for p in problems])
    return _json(body, status=400)


def _unavailable(detail: str) -> web.Response:
    return _json(
        error_body("unavailable", detail), status=503, headers={"Retry-After": RETRY_AFTER_S}
    )


def _bad_gateway(reason: str, detail: str) -> web.Response:
    return _json(error_body(reason, detail), status=502)


UNTRUSTED = (
    "the worker that owns this customer's partition is not a trusted peer "
    "(TOWER_WEB_PEERS); nothing was sent to it, and this worker's log names it"
)
BAD_ANSWER = (
    "the answer of the worker that owns this customer was refused; this worker's log says why"
)


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Forwarder:
    """Forwards a request to a customer's owner, if the owner is one of the peers."""

    def __init__(self, security: WebSecurity, owners: Owners, refused: Counter, me: str) -> None:
        self.security, self.owners, self.refused, self.me = security, owners, refused, me
        self._warned: set[tuple[str, str]] = set()
        self._session: aiohttp.ClientSession | None = None

    def _refuse(self, refusal: Refusal, owner: str) -> None:
        """Counted every time, logged once per owner and reason."""
        self.refused.labels(refusal.reason).inc()
        if (refusal.reason, owner) in self._warned:
            return
        self._warned.add((refusal.reason, owner))
        client_id = getattr(self.owners, "client_id", lambda url: None)(owner)
        log.warning(
            "not forwarding to the group member with client id %r: %s",
            client_id or f"...@{owner}",
            refusal.detail,
        )

    async def forward(self, request: web.Request, owner: str) -> web.StreamResponse:
        peers = self.security.peers
        verdict = (
            peers.check(owner)
            if peers is not None
            else Refusal("not_a_peer", f"owner URL {owner!r}: no peers are configured")
        )
        if isinstance(verdict, Refusal):
            self._refuse(verdict, owner)
            return _bad_gateway("untrusted_owner", UNTRUSTED)
        origin = verdict.url()
        body = await request.read()
        headers = {FORWARDED: self.me, **self.security.forward_headers(request, origin, body)}
        for name in ("Content-Type", *TRACE_NAMES):
            if name in request.headers:
                headers[name] = request.headers[name]
        url = URL(origin + request.rel_url.raw_path_qs, encoded=True)
        page = route_of(request) in PAGE_ROUTES
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.request(
                request.method, url, data=body or None, headers=headers, allow_redirects=False
            ) as r:
                return await self._answer(r, origin, page)
        except _Refused as exc:
            self._refuse(Refusal(exc.reason, f"the answer of {origin}: {exc}"), origin)
            return _bad_gateway("bad_owner_answer", BAD_ANSWER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "the owner %s did not answer a forwarded %s %s: %r",
                origin,
                request.method,
                route_of(request),
                exc,
            )
            return _unavailable("the worker that owns this customer did not answer; retry")

    async def _answer(self, r: aiohttp.ClientResponse, origin: str, page: bool) -> web.Response:
        """The owner's answer as this worker's own: a known content type, bounded."""
        if 300 <= r.status < 400:
            raise _Refused("redirect", f"a redirect ({r.status}), not followed")
        allowed = (JSON, HTML) if page else (JSON,)
        if r.content_type not in allowed:
            raise _Refused("content_type", f"content type {r.content_type!r} is not served")
        if (r.content_length or 0) > MAX_FORWARDED_BYTES:
            raise _Refused("too_large", f"{r.content_length} bytes")
        data = bytearray()
        async for chunk in r.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > MAX_FORWARDED_BYTES:
                raise _Refused("too_large", f"more than {MAX_FORWARDED_BYTES} bytes")
        headers = {"Content-Type": f"{r.content_type}; charset=utf-8"}
        if r.headers.get("Retry-After", "").isdigit():
            headers["Retry-After"] = r.headers["Retry-After"]
        location = r.headers.get("Location", "")
        if r.status == 202 and location.startswith(PENDING_LOCATION):
            headers["Location"] = location  # a path on any worker: the decision's address
        return web.Response(body=bytes(data), status=r.status, headers=headers)

    async def close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port, over TLS if configured; WebSecurityError for an address
    other than 127.0.0.1 while authentication is off."""
    security = app.get(SECURITY) or WebSecurity()
    security.check_bind(host)
    quiet = security.tokens is not None and security.tokens.entries()
    log.log(logging.INFO if quiet else logging.WARNING, security.describe(host, port))
    # no access log: an address can carry ?token= (auth.py)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=security.tls).start()
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
