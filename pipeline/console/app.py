"""The console's web app: each page at its path and its JSON twin under /api/console/v1/,
behind the web server's tokens and roles (`pipeline.web.auth`).

Policy actions (propose, approve, reject; the kill switch and rollback are proposals) go
through a `PolicyActions` the CLI supplies, the same code as `tower policy`; the name on
each is the signed-in token's, never a form field. A browser's POST carries the sign-in
cookie only as JSON, from the console's own origin (`cookie_posts`): a page of another
site can send neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pipeline.console import html, views
from pipeline.console.action_audit import VIEW_CUSTOMER, ActionLog, ConsoleAction, now_ms
from pipeline.console.experience import ExperienceFeed
from pipeline.console.ingest import Ingest
from pipeline.console.store import Store
from pipeline.console.worker_state import WorkerState
from pipeline.contracts.policy_record import PolicyRecord
from pipeline.core.policy import Policy
from pipeline.web import report_html
from pipeline.web.auth import COOKIE, HOST_COOKIE, JSON, PRINCIPAL, QUERY, WebSecurity, presented

API = "/api/console/v1"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: the report as `tower report --html` writes it: one file with inline CSS and SVG and no
#: script, framed by the console's own report page only
REPORT_FILE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)
REPORT_FILE_HEADERS = {
    "Content-Security-Policy": REPORT_FILE_POLICY,
    "X-Frame-Options": "SAMEORIGIN",
}
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: how long a computed answer is served before it is computed again (if records came in)
FRESH_S = 2.0
REPORT_FRESH_S = 15.0


class ActionRefused(Exception):
    """A policy action that was not done; the message says why and what to do."""


class PolicyActions(Protocol):
    """What the console asks of the policies topic (the CLI's `tower policy` code)."""

    def propose(self, text: str, source: str, by: str) -> str: ...
    def approve(self, version: str, by: str) -> str: ...
    def reject(self, version: str, by: str, reason: str) -> str: ...
    def accept(self, record: PolicyRecord, in_force: Policy) -> Policy: ...
    def load(self, record: PolicyRecord) -> Policy: ...


@dataclass
class _Entry:
    at: float
    generation: int
    value: Any


class Answers:
    """Computed answers, kept until records come in and `fresh_s` has passed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[Any, _Entry] = {}

    async def get(self, key: Any, compute: Callable[[], Any], fresh_s: float = FRESH_S) -> Any:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and (hit.generation == self.store.generation or now - hit.at < fresh_s):
            return hit.value
        generation = self.store.generation
        value = await asyncio.to_thread(compute)
        if len(self._cache) > 500:
            self._cache.clear()
        self._cache[key] = _Entry(now, generation, value)
        return value


#: the newest impact report (the benchmark clears it to time one computed afresh)
LATEST = web.AppKey("latest", dict)
#: the overview's experience metrics (the benchmark feeds it before timing pages)
FEED = web.AppKey("feed", ExperienceFeed)
#: the app's cached answers (the benchmark clears them to time answers computed afresh)
ANSWERS = web.AppKey("answers", Answers)


def cookie_posts(secure: bool) -> Middleware:
    """A browser's POST: the sign-in cookie counts as the bearer token when the body is JSON
    and the Origin is this console's own (a cross-site page can send neither)."""
    name = HOST_COOKIE if secure else COOKIE

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.cookies.get(name)
        if (
            request.method == "POST"
            and token
            and "Authorization" not in request.headers
            and request.content_type == JSON
            and request.headers.get("Origin", "").split("://", 1)[-1] == request.host
        ):
            request = request.clone(headers={**request.headers, "Authorization": f"Bearer {token}"})
        return await handler(request)

    return middleware


def build_app(
    store: Store,
    security: WebSecurity,
    actions: PolicyActions,
    ingest: Ingest | None = None,
    whatif_hours: float = 24.0,
    report_every_s: float = REPORT_FRESH_S,
    action_log: ActionLog | None = None,
    worker: WorkerState | None = None,
) -> web.Application:
    answers = Answers(store)
    feed = ExperienceFeed(store)
    routes = web.RouteTableDef()

    def who(request: web.Request) -> str | None:
        principal = request.get(PRINCIPAL)
        return None if principal is None else f"{principal.name} ({principal.role})"

    async def state() -> views.PolicyState:
        return await answers.get("policies", lambda: views.policy_state(store, actions.accept))  # type: ignore[no-any-return]

    latest: dict[str, Any] = {}

    async def compute_report() -> dict[str, Any]:
        st = await state()

        def lookup(version: str) -> Policy | None:
            return views.policy_of(st, version, actions.load)

        generation = store.generation
        latest["report"] = await asyncio.to_thread(views.impact_report, store, lookup)
        latest["generation"] = generation
        return latest["report"]  # type: ignore[no-any-return]

    computing: list[asyncio.Task[dict[str, Any]]] = []

    async def report() -> dict[str, Any]:
        """The latest report the background task computed; while the first one is being
        computed, an empty one that says so (no page waits for it)."""
        if "report" in latest:
            return latest["report"]  # type: ignore[no-any-return]
        if not computing or computing[0].done():
            computing[:] = [asyncio.create_task(compute_report())]
        return {
            "rows": [],
            "records_counted": 0,
            "seconds": 0,
            "computed_at": None,
            "computing": True,
        }

    cookie_name = HOST_COOKIE if security.secure_cookie else COOKIE

    async def refresh_reports(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                if latest.get("generation") != store.generation:
                    await compute_report()
                await asyncio.sleep(report_every_s)

        async def feed_loop() -> None:
            fed_at = -1
            while True:
                if fed_at != store.generation:
                    fed_at = store.generation
                    await asyncio.to_thread(feed.catch_up)
                await asyncio.sleep(FRESH_S)

        tasks = [asyncio.create_task(loop()), asyncio.create_task(feed_loop())]
        yield
        for task in tasks:
            task.cancel()
        if worker is not None:
            await worker.close()

    Render = Callable[[dict[str, Any], str | None], str]

    def twin(
        path: str, data: Callable[[web.Request], Awaitable[dict[str, Any]]], render: Render
    ) -> None:
        async def as_page(request: web.Request) -> web.Response:
            d = await data(request)
            status = 404 if d.get("known") is False else 200
            return web.Response(
                text=render(d, who(request)), content_type="text/html", status=status
            )

        async def as_json(request: web.Request) -> web.Response:
            d = await data(request)
            status = 404 if d.get("known") is False else 200
            return web.json_response({"api_version": "console-v1", **d}, status=status)

        routes.get(path)(as_page)
        routes.get(API + (path if path != "/" else "/overview"))(as_json)

    async def overview(request: web.Request) -> dict[str, Any]:
        span = request.query.get("range", "hour")
        key = ("overview", span, feed.position)  # new records, or the feed caught up
        return await answers.get(key, lambda: views.overview(store, span, feed=feed))  # type: ignore[no-any-return]

    async def agents(request: web.Request) -> dict[str, Any]:
        r, st = await report(), await state()
        killed = frozenset(st.in_force.kill_switch.agents)
        key = ("agents", st.in_force.policy_version, r.get("computed_at"))
        return await answers.get(key, lambda: views.agents_view(store, r, killed))  # type: ignore[no-any-return]

    async def dead_letters(request: web.Request) -> dict[str, Any]:
        span = request.query.get("range", "day")
        return await answers.get(("dead", span), lambda: views.dead_letters_view(store, span))  # type: ignore[no-any-return]

    async def customer(request: web.Request) -> dict[str, Any]:
        cid = request.match_info["customer_id"]
        st = await state()
        d: dict[str, Any]
        if worker is None:
            d = await asyncio.to_thread(views.customer_view, store, cid, st.in_force)
        else:
            token = presented(request, cookie_name)[0] or request.query.get(QUERY)
            d, answer = await asyncio.gather(
                asyncio.to_thread(views.customer_view, store, cid, st.in_force),
                worker.context(cid, token),
            )
            d = with_live_state(d, answer)
        if action_log is not None:  # a person read a customer's data: who, whose, when
            principal = request.get(PRINCIPAL)
            seen = ConsoleAction(
                VIEW_CUSTOMER,
                "anonymous" if principal is None else principal.name,
                "open" if principal is None else principal.role,
                bool(d.get("known")),
                f"customer {cid}" + ("" if d.get("known") else " (no such customer)"),
                {"customer_id": cid, "path": request.path},
                st.in_force.policy_version,
                now_ms(),
            )
            _background(asyncio.to_thread(action_log.record, seen))
        return d

    async def live(request: web.Request) -> dict[str, Any]:
        filters = {k: request.query.get(k, "") for k in views.FILTERS}
        shown = request.query.get("signals") == "1"
        key = ("live", tuple(sorted(filters.items())), shown)
        d: dict[str, Any] = await answers.get(
            key, lambda: views.live_view(store, filters, shown), 1.0
        )
        options = await answers.get("live-options", lambda: views.live_options(store), 30.0)
        return {**d, "options": options}

    async def policy(request: web.Request) -> dict[str, Any]:
        st = await state()
        d = views.policy_view(st)
        old, new = request.query.get("old"), request.query.get("new")
        if old and new:
            d["diff"] = views.diff_view(st, old, new, actions.load)
        pending = request.query.get("whatif")
        if pending:
            d["whatif"] = await _whatif(st, pending)
        d["console_actions"] = await answers.get(
            "console-actions", lambda: views.console_actions(store)
        )
        return d

    async def _whatif(st: views.PolicyState, version: str) -> dict[str, Any]:
        new = views.policy_of(st, version, actions.load)
        if new is None:
            return {"error": f"no such policy version: {version}"}
        key = ("whatif", version, st.in_force.policy_version)
        return await answers.get(  # type: ignore[no-any-return]
            key, lambda: views.what_if_view(store, st.in_force, new, whatif_hours), 30.0
        )

    twin("/", overview, html.overview_page)
    twin("/agents", agents, html.agents_page)
    twin("/dead-letters", dead_letters, html.dead_letters_page)
    twin("/customers/{customer_id}", customer, html.customer_page)
    twin("/report", lambda r: report(), html.report_page)
    twin("/live", live, html.live_page)
    twin("/policy", policy, html.policy_page)

    @routes.get("/customers")
    async def search(request: web.Request) -> web.Response:
        cid = request.query.get("id", "").strip()
        if cid:
            raise web.HTTPSeeOther(f"/customers/{_quote(cid)}")
        body = html.search_form() + "<p>Search a customer by id.</p>"
        return web.Response(
            text=html.page("Customers", "/customers", body, who(request)), content_type="text/html"
        )

    @routes.get("/report.html")
    async def report_file(request: web.Request) -> web.Response:
        """The page `tower report --html` writes, from the read model's latest report."""
        r = await report()
        page = report_html.render_html(
            [_without_next_step(row) for row in r["rows"]],
            generated_at=r.get("computed_at") or "(being computed: reload in a moment)",
            source=f"the console's read model, {r['records_counted']:,} audit records counted",
        )
        return web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Content-Security-Policy": REPORT_FILE_POLICY,
                "X-Frame-Options": "SAMEORIGIN",
            },
        )

    @routes.get("/report.json")
    async def report_json(request: web.Request) -> web.Response:
        """What `tower report --json` prints, from the read model's latest report."""
        r = await report()
        return web.json_response({"rows": [_without_next_step(row) for row in r["rows"]]})

    @routes.get("/console.css")
    async def css(request: web.Request) -> web.Response:
        return web.Response(text=html.CSS, content_type="text/css")

    @routes.get("/console.js")
    async def js(request: web.Request) -> web.Response:
        return web.Response(text=html.SCRIPT, content_type="application/javascript")

    @routes.get("/healthz")
    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok" if ingest is None or ingest.error is None else "degraded",
                "caught_up": ingest is not None and ingest.caught_up.is_set(),
                "records": await asyncio.to_thread(store.counts),
                "ingested": 0 if ingest is None else ingest.ingested,
                "undecodable": 0 if ingest is None else ingest.undecodable,
                "error": None if ingest is None else ingest.error,
                "store_bytes": store.size_bytes(),
            }
        )

    # --- actions -----------------------------------------------------------------------

    def action(path: str, do: Callable[[dict[str, Any], str, views.PolicyState], str]) -> None:
        name = path.rsplit("/", 1)[-1].replace("-", "_")

        async def audited(
            principal: Any, body: dict[str, Any], st: views.PolicyState, done: bool, message: str
        ) -> str | None:
            if action_log is None:
                return None
            record = ConsoleAction(
                name,
                principal.name,
                principal.role,
                done,
                message,
                body,
                st.in_force.policy_version,
                now_ms(),
            )
            return await asyncio.to_thread(action_log.record, record)

        async def handler(request: web.Request) -> web.Response:
            principal = request.get(PRINCIPAL)
            if principal is None:
                return _refused(
                    403,
                    "policy actions need a signed-in person: set TOWER_WEB_TOKENS_FILE "
                    "(`tower web token add --role operator --name NAME`) and sign in with ?token=",
                )
            try:
                body = await request.json()
            except ValueError:
                return _refused(400, "the body must be a JSON object")
            if not isinstance(body, dict):
                return _refused(400, "the body must be a JSON object")
            st = await state()
            try:
                message = await asyncio.to_thread(do, body, principal.name, st)
            except ActionRefused as exc:
                await audited(principal, body, st, False, str(exc))
                return _refused(409, str(exc))
            answers._cache.pop("policies", None)
            not_audited = await audited(principal, body, st, True, message)
            return web.json_response(
                {
                    "api_version": "console-v1",
                    "message": message,
                    "by": principal.name,
                    "audited": not_audited is None,
                    **({} if not_audited is None else {"warning": not_audited}),
                }
            )

        routes.post(API + path)(handler)

    def approve(body: dict[str, Any], by: str, st: views.PolicyState) -> str:
        return actions.approve(str(body.get("version", "")), by)

    def reject(body: dict[str, Any], by: str, st: views.PolicyState) -> str:
        return actions.reject(str(body.get("version", "")), by, str(body.get("reason") or ""))

    def propose(body: dict[str, Any], by: str, st: views.PolicyState) -> str:
        text = body.get("document")
        if not isinstance(text, str) or not text.strip():
            raise ActionRefused("document must be the policy YAML as a string")
        return actions.propose(text, "console", by)

    def kill_switch(body: dict[str, Any], by: str, st: views.PolicyState) -> str:
        agent = str(body.get("agent", "")).strip()
        off = str(body.get("off", "true")).lower() in ("true", "1", "yes")
        if not agent:
            raise ActionRefused("agent is empty: name the agent to switch")
        text = with_kill_switch(views.document_of(st, st.in_force.policy_version), agent, off)
        return actions.propose(text, f"console kill switch {agent}", by)

    def rollback(body: dict[str, Any], by: str, st: views.PolicyState) -> str:
        version = str(body.get("version", ""))
        text = views.document_of(st, version)
        if text is None:
            raise ActionRefused(f"{version} is not a published version: pick one from the history")
        return actions.propose(text, f"console rollback to {version}", by)

    action("/policy/approve", approve)
    action("/policy/reject", reject)
    action("/policy/propose", propose)
    action("/policy/kill-switch", kill_switch)
    action("/policy/rollback", rollback)

    app = web.Application(
        middlewares=[cookie_posts(security.secure_cookie), *security.middlewares()]
    )
    app[ANSWERS] = answers
    app[LATEST] = latest
    app[FEED] = feed
    app.cleanup_ctx.append(refresh_reports)
    app.add_routes(routes)
    app.on_response_prepare.append(_headers)
    return app


def with_live_state(d: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The audit's view of a customer with the worker's live state; a customer the audit
    does not know yet but the worker does is known (no timeline yet)."""
    live = views.live_state_view(answer, views.zone(d.get("timezone")) if d.get("known") else None)
    if not d.get("known") and live.get("known"):
        d = {
            "customer_id": d["customer_id"],
            "known": True,
            "timezone": live.get("timezone") or "UTC",
            "experiments": [
                {"experiment": x["experiment"], "arm": x["arm"]} for x in live["experiments"]
            ],
            "timeline": [],
        }
    return {**d, "live_state": live}


_BACKGROUND: set[asyncio.Future[Any]] = set()


def _background(work: Awaitable[Any]) -> None:
    """Run `work` without waiting for it (kept referenced until it ends)."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def with_kill_switch(document: str | None, agent: str, off: bool) -> str:
    """The policy document with `agent` switched off (or on again) in its kill switch."""
    data = yaml.safe_load(document or "") or {}
    if not isinstance(data, dict):
        raise ActionRefused("the policy in force is not a YAML mapping; publish one first")
    data.setdefault("version", "1.0.0")
    ks = data.get("kill_switch") or {}
    agents = [a for a in ks.get("agents") or [] if a != agent]
    if off:
        agents.append(agent)
    ks["agents"] = sorted(agents)
    data["kill_switch"] = ks
    return str(yaml.safe_dump(data, sort_keys=False))


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"api_version": "console-v1", "error": message}, status=status)


def _without_next_step(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "next_step"}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """The console's security headers, unless the answer set its own (the report file)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
