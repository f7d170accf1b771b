"""The web server's defences without a broker: forwarding only to peers, no redirects, only
JSON (or HTML for pages) of bounded size passed back, error answers without internal
addresses, security headers on every answer, loopback Host names and JSON bodies without
authentication, the `__Host-` cookie over https, expiring tokens, no customer id in logs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from pipeline.contracts.codec import encode_event
from pipeline.contracts.partitioning import key_partition
from pipeline.settings import Settings
from pipeline.web import server
from pipeline.web.auth import COOKIE, HOST_COOKIE, token_line
from pipeline.web.server import build_app
from tests.factories import proposal
from tests.unit.web.test_auth import (
    AS_VIEWER,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    FixedOwners,
    NoOwners,
    peer_key,
    tokens_file,
)
from tests.unit.web.test_server import worker_port

P = key_partition(b"ana", 8)
ME = "http://127.0.0.1:1"
PREFLIGHT = encode_event(proposal("ana"), "json")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Recording:
    """A stand-in for a group member's server: answers what `handler` says, records all."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []

        async def record(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.method, request.path_qs, dict(request.headers)))
            return await handler(request)

        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", record)


def json_answer(body: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    return handler


def via(
    member: Recording,
    host: str,
    check: Callable[[TestClient, int], Awaitable[None]],
    settings: Settings | None = None,
) -> None:
    """`check(client, port)` on a worker that owns nothing, whose group names `member`'s
    server (on `host`) as the owner of "ana"."""
    port = free_port(host)

    async def main() -> None:
        async with TestServer(member.app, host=host, port=port):
            s = settings or Settings(web_url=ME)
            app = build_app(
                worker_port(s, set()), FixedOwners({P: f"http://{host}:{port}"}), lambda *_: []
            )
            async with TestClient(TestServer(app)) as client:
                await check(client, port)

    asyncio.run(main())


# --- forwarding -------------------------------------------------------------------------


def test_an_owner_that_is_not_a_peer_gets_nothing_and_the_caller_a_reason(caplog: Any) -> None:
    member = Recording(json_answer({"served_by": "rogue"}))
    registry: list[Any] = []

    async def check(client: TestClient, port: int) -> None:
        for path in ("/api/customers/ana", "/customers/ana", "/api/v1/customers/ana/context"):
            r = await client.get(path)
            body = await r.json()
            assert r.status == 502 and body["reason"] == "untrusted_owner", body
            assert "not a trusted peer" in body["detail"] and "127.0.0.2" not in str(body)
        r = await client.post(
            "/api/v1/preflight", data=PREFLIGHT, headers={"Content-Type": "application/json"}
        )
        assert r.status == 502
        registry.append(client.app)

    with caplog.at_level(logging.INFO):
        via(member, "127.0.0.2", check)
    assert member.seen == []
    warnings = [r for r in caplog.records if "not forwarding" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # logged once
    assert "127.0.0.2" in warnings[0].getMessage()


def test_refusals_are_counted_by_reason() -> None:
    member = Recording(json_answer({}))
    settings = Settings(web_url=ME)
    port_ = worker_port(settings, set())

    async def main() -> None:
        owners = FixedOwners({P: "http://127.0.0.1:9/c?"})
        app = build_app(port_, owners, lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            for _ in range(3):
                assert (await client.get("/api/customers/ana")).status == 502

    asyncio.run(main())
    text = generate_latest(port_.registry).decode()
    assert 'tower_forward_refused_total{reason="bad_url"} 3.0' in text
    assert member.seen == []


def test_a_redirect_from_a_peer_is_an_error_and_not_followed() -> None:
    target = Recording(json_answer({"followed": True}))
    target_port = free_port("127.0.0.3")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://127.0.0.3:{target_port}/stolen")

    member = Recording(redirect)

    async def check(client: TestClient, port: int) -> None:
        async with TestServer(target.app, host="127.0.0.3", port=target_port):
            r = await client.get("/api/customers/ana", headers=AS_VIEWER)
            body = await r.json()
            assert r.status == 502 and body["reason"] == "bad_owner_answer", body
            assert "127.0.0." not in str(body)

    via(member, "127.0.0.1", check)
    assert len(member.seen) == 1 and target.seen == []


@pytest.mark.parametrize(
    ("path", "content_type", "status"),
    [
        ("/api/customers/ana", "application/json", 200),
        ("/api/customers/ana", "text/html", 502),
        ("/api/v1/customers/ana/context", "text/html", 502),
        ("/customers/ana", "text/html", 200),
        ("/customers/ana", "application/json", 200),
        ("/customers/ana", "application/javascript", 502),
        ("/customers/ana", "image/svg+xml", 502),
        ("/customers/ana", "text/plain", 502),
    ],
)
def test_only_json_or_a_pages_html_is_passed_back(
    path: str, content_type: str, status: int
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}", content_type=content_type)

    async def check(client: TestClient, port: int) -> None:
        r = await client.get(path)
        assert r.status == status
        if status == 200:
            assert r.content_type == content_type
            assert r.headers["Content-Security-Policy"] == server.CONTENT_SECURITY_POLICY

    via(Recording(answer), "127.0.0.1", check)


def test_a_forwarded_answer_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_FORWARDED_BYTES", 1000)

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)  # chunked: no Content-Length to judge by
        for _ in range(10):
            await response.write(b" " * 500)
        await response.write_eof()
        return response

    async def check(client: TestClient, port: int) -> None:
        r = await client.get("/api/customers/ana")
        assert r.status == 502 and (await r.json())["reason"] == "bad_owner_answer"

    via(Recording(big), "127.0.0.1", check)


def test_an_owner_that_does_not_answer_is_a_503_without_its_address(caplog: Any) -> None:
    closed = free_port()

    async def main() -> None:
        owners = FixedOwners({P: f"http://127.0.0.1:{closed}"})
        app = build_app(worker_port(Settings(web_url=ME), set()), owners, lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/api/customers/ana")
            text = await r.text()
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert str(closed) not in text and "Error" not in text and "127.0.0.1" not in text

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert f"127.0.0.1:{closed}" in caplog.text  # the address is in the log instead


def test_a_timeline_error_is_logged_not_shown(caplog: Any) -> None:
    from pipeline.kafka.reader import ScanError

    def broken(partition: int, key: bytes) -> list[Any]:
        raise ScanError("cannot reach Kafka on secret-broker.internal:9092")

    async def main() -> None:
        port_ = worker_port(Settings(web_url=ME), {P}, ["ana"])
        app = build_app(port_, NoOwners(), broken)  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            for path in ("/customers/ana", "/api/customers/ana"):
                r = await client.get(path)
                assert r.status == 200 and "secret-broker" not in await r.text()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert "secret-broker.internal" in caplog.text


# --- every answer ------------------------------------------------------------------------

ROUTES = [
    ("GET", "/"),
    ("GET", "/customers/ana"),
    ("GET", "/api/customers/ana"),
    ("GET", "/api/decisions"),
    ("GET", "/api/v1/customers/ana/context"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/no/such/page"),
    ("POST", "/api/v1/preflight"),
]


@pytest.mark.parametrize("auth", [False, True])
def test_every_answer_carries_the_security_headers(tmp_path: Path, auth: bool) -> None:
    settings = (
        Settings(web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path))
        if auth
        else Settings()
    )
    statuses: set[int] = set()

    async def main() -> None:
        port_ = worker_port(settings, set(range(8)), ["ana"])
        app = build_app(port_, NoOwners(), lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            for method, path in ROUTES:
                for headers in (
                    {"Content-Type": "application/json", **AS_VIEWER},
                    {
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {OPERATOR_TOKEN}",
                    },
                    {"Content-Type": "text/plain"},
                    {"Content-Type": "text/plain", "Authorization": f"Bearer {OPERATOR_TOKEN}"},
                    {"Host": "evil.example"},
                ):
                    r = await client.request(
                        method, path, headers=headers, data=PREFLIGHT if method == "POST" else None
                    )
                    statuses.add(r.status)
                    h = r.headers
                    csp = h["Content-Security-Policy"]
                    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
                    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
                    assert h["X-Content-Type-Options"] == "nosniff"
                    assert h["X-Frame-Options"] == "DENY"
                    assert h["Referrer-Policy"] == "no-referrer"

    asyncio.run(main())
    assert {200, 404, 415} <= statuses and ({401, 403} if auth else {421}) <= statuses


def test_the_policy_names_the_live_pages_script_and_style_by_hash() -> None:
    import base64
    import hashlib

    from pipeline.web.pages import LIVE_PAGE, LIVE_SCRIPT, STYLE

    script = LIVE_PAGE.split("<script>")[1].split("</script>")[0]
    assert script == LIVE_SCRIPT
    for text in (LIVE_SCRIPT, STYLE):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in server.CONTENT_SECURITY_POLICY


# --- without authentication: loopback Host names only, JSON bodies only -------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (None, 200),
        ("127.0.0.1:6066", 200),
        ("127.0.0.1", 200),
        ("localhost:6066", 200),
        ("LOCALHOST", 200),
        ("[::1]:6066", 200),
        ("evil.example:6066", 421),
        ("evil.example", 421),
        ("127.0.0.1.evil.example", 421),
        ("localhost.evil.example:6066", 421),
        ("10.0.0.1:6066", 421),
        ("[::1", 421),
        ("", 421),
    ],
)
def test_without_auth_only_a_loopback_host_is_served(host: str | None, status: int) -> None:
    async def main() -> None:
        port_ = worker_port(Settings(), set(range(8)), ["ana"])
        app = build_app(port_, NoOwners(), lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            headers = {} if host is None else {"Host": host}
            r = await client.get("/api/customers/ana", headers=headers)
            assert r.status == status
            if status == 421:
                body = await r.json()
                assert body["reason"] == "misdirected_request" and "ana" not in str(body)

    asyncio.run(main())


@pytest.mark.parametrize("auth", [False, True])
@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        (None, 415),
    ],
)
def test_a_post_body_must_be_json(
    tmp_path: Path, auth: bool, content_type: str | None, status: int
) -> None:
    settings = (
        Settings(web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path))
        if auth
        else Settings()
    )

    async def main() -> None:
        port_ = worker_port(settings, set(range(8)), ["ana"])
        app = build_app(port_, NoOwners(), lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"} if auth else {}
            if content_type:
                headers["Content-Type"] = content_type
            r = await client.post("/api/v1/preflight", data=PREFLIGHT, headers=headers)
            assert r.status == status, await r.text()
            if status == 415:
                assert (await r.json())["reason"] == "unsupported_media_type"

    asyncio.run(main())


# --- the cookie and expiring tokens -----------------------------------------------------


@pytest.mark.parametrize(
    ("web_url", "name", "secure"),
    [
        ("", COOKIE, False),
        ("https://tower.example.com", HOST_COOKIE, True),
    ],
)
def test_the_sign_in_cookie(tmp_path: Path, web_url: str, name: str, secure: bool) -> None:
    settings = Settings(
        web_url=web_url,
        web_tokens_file=tokens_file(tmp_path),
        web_peer_key_file=peer_key(tmp_path),
    )

    async def main() -> None:
        port_ = worker_port(settings, set(range(8)), ["ana"])
        app = build_app(port_, NoOwners(), lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            r = await client.get(f"/customers/ana?token={VIEWER_TOKEN}", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/customers/ana"
            cookie = r.headers["Set-Cookie"]
            attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
            assert cookie.startswith(f"{name}={VIEWER_TOKEN};")
            assert {"httponly", "path", "samesite"} <= attributes and "domain" not in attributes
            assert "Path=/" in cookie and "SameSite=Strict" in cookie
            assert ("secure" in attributes) == secure
            # only the cookie of this name counts
            client.session.cookie_jar.clear()
            other = HOST_COOKIE if name == COOKIE else COOKIE
            client.session.cookie_jar.update_cookies({other: VIEWER_TOKEN})
            assert (await client.get("/customers/ana")).status == 401
            client.session.cookie_jar.clear()
            client.session.cookie_jar.update_cookies({name: VIEWER_TOKEN})
            assert (await client.get("/customers/ana")).status == 200

    asyncio.run(main())


def test_an_expired_token_is_refused_saying_so(tmp_path: Path, caplog: Any) -> None:
    expired, fresh = "expired-" + "e" * 30, "fresh-" + "f" * 30
    path = tokens_file(
        tmp_path,
        token_line(expired, "viewer", "old-bot", time.time() - 1),
        token_line(fresh, "viewer", "new-bot", time.time() + 3600),
    )
    settings = Settings(web_tokens_file=path, web_peer_key_file=peer_key(tmp_path))

    async def main() -> None:
        port_ = worker_port(settings, set(range(8)), ["ana"])
        app = build_app(port_, NoOwners(), lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/", headers={"Authorization": f"Bearer {expired}"})
            body = await r.json()
            assert r.status == 401 and "old-bot expired at" in body["detail"]
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            r = await client.get(f"/?token={expired}", allow_redirects=False)
            assert r.status == 401 and "Set-Cookie" not in r.headers
            client.session.cookie_jar.update_cookies({COOKIE: expired})
            assert (await client.get("/")).status == 401
            client.session.cookie_jar.clear()
            assert (
                await client.get("/", headers={"Authorization": f"Bearer {fresh}"})
            ).status == 200

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    # the test server's access log is not the worker's (`server.start` has none)
    assert not [
        r for r in caplog.records if r.name.startswith("pipeline") and expired in r.getMessage()
    ]


def test_no_log_line_at_info_or_above_names_a_customer(tmp_path: Path, caplog: Any) -> None:
    customer = "cust-9f3a"
    settings = Settings(
        web_url=ME, web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)
    )
    p = key_partition(customer.encode(), 8)

    async def main() -> None:
        owners = FixedOwners({p: "http://127.0.0.2:1"})
        app = build_app(worker_port(settings, set()), owners, lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, AS_VIEWER):
                for path in (f"/customers/{customer}", f"/api/v1/customers/{customer}/context"):
                    await client.get(path, headers=headers)
                    await client.get(path + f"?token=wrong&c={customer}")
            await client.post(
                "/api/v1/preflight",
                data=encode_event(proposal(customer), "json"),
                headers={**AS_VIEWER, "Content-Type": "application/json"},
            )

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    # the test server's access log is not the worker's (`server.start` has none)
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name != "aiohttp.access"
    ]
    assert lines and not [line for line in lines if customer in line]
    assert any("/customers/{customer_id}" in line for line in lines)
