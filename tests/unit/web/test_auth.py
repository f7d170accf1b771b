"""Web authentication without a broker: the tokens file, roles per route, 401/403 in the
API's error format, the `?token=` sign-in cookie, forwarding with the caller's token, the
127.0.0.1 rule without tokens, TLS, and no token ever in a log, an answer or /healthz."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from http.client import HTTPException
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from pipeline.contracts.codec import encode_event
from pipeline.contracts.partitioning import key_partition
from pipeline.settings import Settings
from pipeline.web import auth, peer_assertion
from pipeline.web.auth import (
    TokenFileError,
    WebSecurity,
    WebSecurityError,
    hash_token,
    identify,
    parse_tokens,
    required_role,
    tls_context,
    token_line,
)
from pipeline.web.server import FORWARDED, build_app, serve_in_thread, start
from tests.factories import proposal
from tests.unit.web.test_server import worker_port

VIEWER_TOKEN = "viewer-secret-" + "v" * 30
OPERATOR_TOKEN = "operator-secret-" + "o" * 30
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


class NoOwners:
    def owner(self, partition: int, refresh: bool = False) -> str | None:
        return None


class FixedOwners:
    def __init__(self, owners: dict[int, str]) -> None:
        self.owners = owners

    def owner(self, partition: int, refresh: bool = False) -> str | None:
        return self.owners.get(partition)


def tokens_file(tmp_path: Path, *lines: str, name: str = "tokens") -> Path:
    path = tmp_path / name
    path.write_text(
        "# test tokens\n"
        + token_line(VIEWER_TOKEN, "viewer", "ana")
        + token_line(OPERATOR_TOKEN, "operator", "ops-bot")
        + "".join(lines)
    )
    return path


PEER_KEY = "k" * 64


def peer_key(tmp_path: Path, key: str = PEER_KEY, name: str = "peer-key") -> Path:
    path = tmp_path / name
    path.write_text(key + "\n")
    return path


def served(settings: Settings, check: Callable[[TestClient], Awaitable[None]]) -> None:
    """`check(client)` against a worker with `settings` that owns every partition."""

    async def main() -> None:
        port = worker_port(settings, set(range(settings.partitions)), ["ana"])
        app = build_app(port, NoOwners(), timeline=lambda *_: [])  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


# --- the tokens file --------------------------------------------------------------------


def test_a_token_is_stored_as_its_sha256_never_as_itself(tmp_path: Path) -> None:
    digest = hash_token(VIEWER_TOKEN)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    text = tokens_file(tmp_path).read_text()
    assert digest in text and VIEWER_TOKEN not in text and OPERATOR_TOKEN not in text
    entries = parse_tokens(text, "t")
    assert [(e.principal.name, e.principal.role) for e in entries] == [
        ("ana", "viewer"),
        ("ops-bot", "operator"),
    ]
    assert identify(entries, VIEWER_TOKEN) == auth.Principal("ana", "viewer")
    assert identify(entries, OPERATOR_TOKEN) == auth.Principal("ops-bot", "operator")
    assert identify(entries, VIEWER_TOKEN + "x") is None
    assert identify(entries, digest) is None  # the hash is not a token
    assert len({auth.new_token() for _ in range(5)}) == 5 and len(auth.new_token()) >= 43


GOOD = hash_token("a-token")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{GOOD} viewer", "expected 3 fields"),
        (f"{GOOD} viewer ana extra", "expected 3 fields"),
        ("plaintext-token-123 viewer ana", "the first field must be sha256"),
        (f"sha256:{'A' * 64} viewer ana", "the first field must be sha256"),
        (f"{GOOD} admin ana", "role must be one of viewer, operator"),
        (f"{GOOD} viewer a/b", "name must be"),
    ],
)
def test_a_bad_line_is_refused_with_its_number_and_reason_but_not_its_text(
    line: str, reason: str
) -> None:
    text = "# comment\n\n" + token_line("other", "viewer", "bo") + line + "\n"
    with pytest.raises(TokenFileError) as caught:
        parse_tokens(text, "tokens.txt")
    message = str(caught.value)
    assert f"tokens.txt:4: {reason}" in message
    assert line.split()[0] not in message  # a pasted token is never quoted back


def test_every_bad_line_is_listed_and_a_repeated_token_is_refused() -> None:
    text = token_line("t1", "viewer", "a") + "junk\n" + token_line("t1", "operator", "b")
    with pytest.raises(TokenFileError) as caught:
        parse_tokens(text, "f")
    assert "f:2: expected 3 fields" in str(caught.value)
    assert "f:3: the same token as line 1" in str(caught.value)


def test_a_missing_tokens_file_is_an_error_not_authentication_off(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TokenFileError, match=r"cannot read the tokens file .*nope"):
        WebSecurity.from_settings(Settings(web_tokens_file=missing))
    with pytest.raises(TokenFileError):
        build_app(worker_port(Settings(web_tokens_file=missing), set()), NoOwners())  # type: ignore[arg-type]


def test_token_line_refuses_a_bad_role_or_name() -> None:
    with pytest.raises(ValueError, match="role"):
        token_line("t", "admin", "ana")
    with pytest.raises(ValueError, match="name"):
        token_line("t", "viewer", "two words")


@pytest.mark.parametrize(
    ("method", "path", "open_metrics", "needed"),
    [
        ("GET", "/", False, "viewer"),
        ("GET", "/customers/ana", False, "viewer"),
        ("GET", "/api/v1/customers/ana/context", False, "viewer"),
        ("HEAD", "/api/decisions", False, "viewer"),
        ("POST", "/api/v1/preflight", False, "operator"),
        ("DELETE", "/anything", False, "operator"),
        ("GET", "/metrics", False, "viewer"),
        ("GET", "/healthz", False, "viewer"),
        ("GET", "/metrics", True, None),
        ("GET", "/healthz", True, None),
        ("GET", "/", True, "viewer"),
        ("GET", "/readyz", False, None),
        ("GET", "/livez", False, None),
    ],
)
def test_the_role_each_request_needs(
    method: str, path: str, open_metrics: bool, needed: str | None
) -> None:
    assert required_role(method, path, open_metrics) == needed
    assert auth.allows("operator", "viewer") and not auth.allows("viewer", "operator")


# --- over HTTP -------------------------------------------------------------------------

PREFLIGHT = encode_event(proposal("ana"), "json")
AS_VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
AS_VIEWER_JSON = {**AS_VIEWER, "Content-Type": "application/json"}
AS_OPERATOR_JSON = {**AS_OPERATOR, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("open_metrics", "method", "path", "headers", "status", "error"),
    [
        (False, "GET", "/", {}, 401, None),
        (False, "GET", "/", {"Authorization": f"Basic {VIEWER_TOKEN}"}, 401, "invalid_request"),
        (False, "GET", "/", {"Authorization": "Bearer"}, 401, "invalid_request"),
        (False, "GET", "/", {"Authorization": "Bearer not-a-known-token"}, 401, "invalid_token"),
        (False, "GET", "/", AS_VIEWER, 200, None),
        (False, "GET", "/", {"Authorization": f"bearer {VIEWER_TOKEN}"}, 200, None),
        (False, "GET", "/customers/ana", AS_VIEWER, 200, None),
        (False, "GET", "/api/customers/ana", AS_VIEWER, 200, None),
        (False, "GET", "/api/decisions", AS_VIEWER, 200, None),
        (False, "GET", "/api/v1/customers/ana/context", AS_VIEWER, 200, None),
        (False, "GET", "/api/v1/customers/ana/context", {}, 401, None),
        (False, "GET", "/no/such/page", {}, 401, None),
        (False, "POST", "/api/v1/preflight", AS_VIEWER, 403, "insufficient_scope"),
        (False, "POST", "/api/v1/preflight", AS_OPERATOR, 200, None),
        (False, "POST", "/api/v1/preflight", {}, 401, None),
        (False, "GET", "/customers/ana", AS_OPERATOR, 200, None),
        (False, "GET", "/metrics", {}, 401, None),
        (False, "GET", "/healthz", {}, 401, None),
        (False, "GET", "/metrics", AS_VIEWER, 200, None),
        (False, "GET", "/healthz", AS_VIEWER, 200, None),
        (False, "GET", "/readyz", {}, 200, None),
        (False, "GET", "/livez", {}, 200, None),
        (False, "GET", "/livez", {"Authorization": "Bearer not-a-known-token"}, 200, None),
        (True, "GET", "/metrics", {}, 200, None),
        (True, "GET", "/healthz", {}, 200, None),
        (True, "GET", "/", {}, 401, None),
        (True, "POST", "/api/v1/preflight", AS_VIEWER, 403, "insufficient_scope"),
    ],
)
def test_who_may_do_what(
    tmp_path: Path,
    open_metrics: bool,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    settings = Settings(
        web_tokens_file=tokens_file(tmp_path),
        web_peer_key_file=peer_key(tmp_path),
        web_open_metrics=open_metrics,
    )
    errors = jsonschema.Draft202012Validator(
        orjson.loads((SCHEMAS / "api_error.v1.schema.json").read_bytes())
    )

    async def check(client: TestClient) -> None:
        body = PREFLIGHT if method == "POST" else None
        sent = {**headers, "Content-Type": "application/json"} if body else headers
        r = await client.request(method, path, headers=sent, data=body)
        raw = await r.read()
        assert r.status == status, raw
        assert VIEWER_TOKEN.encode() not in raw and OPERATOR_TOKEN.encode() not in raw
        if status in (401, 403):
            challenge = r.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="journey-tower"')
            assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
            data = orjson.loads(raw)
            errors.validate(data)
            assert data["reason"] == ("unauthorized" if status == 401 else "forbidden")
            assert "Set-Cookie" not in r.headers

    served(settings, check)


def test_a_forbidden_answer_says_whose_token_and_what_role_is_needed(tmp_path: Path) -> None:
    async def check(client: TestClient) -> None:
        r = await client.post("/api/v1/preflight", data=PREFLIGHT, headers=AS_VIEWER)
        data = await r.json()
        assert r.status == 403 and "ana" in data["detail"] and "needs operator" in data["detail"]

    served(
        Settings(web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)), check
    )


def test_a_person_signs_in_once_with_token_in_the_address(tmp_path: Path) -> None:
    async def check(client: TestClient) -> None:
        r = await client.get(f"/customers/ana?token={VIEWER_TOKEN}&x=1", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/customers/ana?x=1"
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"{auth.COOKIE}={VIEWER_TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP here; under TLS it is Secure
        assert VIEWER_TOKEN not in await r.text()
        # the cookie opens pages and the JSON the live page polls ...
        client.session.cookie_jar.update_cookies({auth.COOKIE: VIEWER_TOKEN})
        assert (await client.get("/customers/ana")).status == 200
        assert (await client.get("/api/decisions")).status == 200
        # ... but never changes anything: a POST needs the Authorization header
        client.session.cookie_jar.update_cookies({auth.COOKIE: OPERATOR_TOKEN})
        r = await client.post("/api/v1/preflight", data=PREFLIGHT)
        assert r.status == 401
        client.session.cookie_jar.clear()
        # an unknown token in the address sets nothing
        r = await client.get("/?token=wrong", allow_redirects=False)
        assert r.status == 401 and "Set-Cookie" not in r.headers
        client.session.cookie_jar.update_cookies({auth.COOKIE: "wrong"})
        assert (await client.get("/")).status == 401

    served(
        Settings(web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)), check
    )


def test_the_sign_in_redirect_never_leaves_the_site(tmp_path: Path) -> None:
    security = WebSecurity.from_settings(
        Settings(web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path))
    )
    middleware = security.middlewares()[0]

    async def main() -> None:
        for target in (
            f"//evil.example/x?token={VIEWER_TOKEN}",
            f"/\\evil.example?token={VIEWER_TOKEN}",
        ):
            request = make_mocked_request("GET", target)
            r = await middleware(request, None)  # type: ignore[arg-type]
            location = r.headers["Location"]
            assert r.status == 303 and location.startswith("/") and location[1] not in "/\\"

    asyncio.run(main())


def test_a_forwarded_request_carries_a_signed_assertion_never_the_callers_token(
    tmp_path: Path,
) -> None:
    """The owner knows none of the caller's tokens: it serves the forwarded requests on the
    forwarder's signed word, with the caller's role, and never sees a token or a cookie.
    An assertion signed with another key is refused there."""
    p = key_partition(b"ana", 8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    url = f"http://127.0.0.1:{free}"
    owner_tokens = tmp_path / "owner-tokens"
    owner_tokens.write_text(token_line("someone-else-" + "y" * 30, "operator", "y"))
    seen: list[dict[str, str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await handler(request)

    async def main(forwarder_key: str) -> list[int]:
        owner_settings = Settings(
            web_url=url, web_tokens_file=owner_tokens, web_peer_key_file=peer_key(tmp_path)
        )
        owner = build_app(
            worker_port(owner_settings, {p}, ["ana"]), NoOwners(), timeline=lambda *_: []
        )  # type: ignore[arg-type]
        owner.middlewares.insert(0, record)
        statuses = []
        async with TestServer(owner, host="127.0.0.1", port=free):
            settings = Settings(
                web_url="http://127.0.0.1:1",
                web_tokens_file=tokens_file(tmp_path),
                web_peer_key_file=peer_key(tmp_path, forwarder_key, "forwarder-key"),
            )
            other = build_app(
                worker_port(settings, set()), FixedOwners({p: url}), timeline=lambda *_: []
            )  # type: ignore[arg-type]
            async with TestClient(TestServer(other)) as client:
                r = await client.get("/api/v1/customers/ana/context", headers=AS_VIEWER)
                statuses.append(r.status)
                if r.status == 200:
                    assert (await r.json())["served_by"] == url
                r = await client.post("/api/v1/preflight", data=PREFLIGHT, headers=AS_OPERATOR_JSON)
                statuses.append(r.status)
                # a viewer may not preflight: refused here, nothing forwarded
                before = len(seen)
                r = await client.post("/api/v1/preflight", data=PREFLIGHT, headers=AS_VIEWER_JSON)
                assert r.status == 403 and len(seen) == before
                client.session.cookie_jar.update_cookies({auth.COOKIE: VIEWER_TOKEN})
                r = await client.get("/customers/ana")
                statuses.append(r.status)
                if r.status == 200:
                    assert f"answered by {url}" in await r.text()
        return statuses

    assert asyncio.run(main(PEER_KEY)) == [200, 200, 200]
    assert len(seen) == 3
    for headers in seen:
        assert "Authorization" not in headers and "Cookie" not in headers
        assert headers[peer_assertion.HEADER] and headers[FORWARDED] == "http://127.0.0.1:1"
        text = str(headers)
        assert VIEWER_TOKEN not in text and OPERATOR_TOKEN not in text
    assert asyncio.run(main("another-key-" + "z" * 40)) == [401, 401, 401]


def test_a_changed_tokens_file_is_read_again(tmp_path: Path, caplog: Any) -> None:
    path = tokens_file(tmp_path)
    later = "added-later-" + "z" * 30

    async def check(client: TestClient) -> None:
        later_auth = {"Authorization": f"Bearer {later}"}
        assert (await client.get("/", headers=later_auth)).status == 401
        with path.open("a") as f:
            f.write(token_line(later, "viewer", "late"))
        os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
        assert (await client.get("/", headers=later_auth)).status == 200
        path.write_text(path.read_text() + "broken line\n")  # nobody in until it is fixed
        assert (await client.get("/", headers=AS_VIEWER)).status == 401
        path.write_text(token_line(VIEWER_TOKEN, "viewer", "ana"))  # revoked the others
        assert (await client.get("/", headers=AS_VIEWER)).status == 200
        assert (await client.get("/", headers=later_auth)).status == 401

    with caplog.at_level(logging.DEBUG):
        served(Settings(web_tokens_file=path, web_peer_key_file=peer_key(tmp_path)), check)
    assert "no token is accepted until the file is fixed" in caplog.text
    assert later not in caplog.text and VIEWER_TOKEN not in caplog.text


def test_no_token_appears_in_logs_healthz_or_error_answers(tmp_path: Path, caplog: Any) -> None:
    """Served as the runtimes serve it (`start`), every log line captured."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    settings = Settings(
        web_port=free, web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)
    )
    secrets = (VIEWER_TOKEN, OPERATOR_TOKEN, "wrong-" + VIEWER_TOKEN)
    answers: list[str] = []

    async def ask(session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> None:
        url = f"http://127.0.0.1:{free}{path}"
        async with session.request(method, url, allow_redirects=False, **kw) as r:
            answers.append(f"{r.status} {dict(r.headers)} {await r.text()}")

    async def main() -> None:
        port = worker_port(settings, set(range(8)), ["ana"])
        app = build_app(port, NoOwners(), timeline=lambda *_: [])  # type: ignore[arg-type]
        runner = await start(app, "127.0.0.1", free)
        try:
            async with aiohttp.ClientSession() as session:
                for headers in (
                    AS_VIEWER,
                    AS_OPERATOR,
                    {"Authorization": f"Bearer {secrets[2]}"},
                    {},
                ):
                    for path in ("/healthz", "/metrics", "/", "/customers/ana", "/nope"):
                        await ask(session, "GET", path, headers=headers)
                    await ask(
                        session,
                        "POST",
                        "/api/v1/preflight",
                        data=b"{bad",
                        headers={**headers, "Content-Type": "application/json"},
                    )
                for secret in secrets:
                    await ask(session, "GET", f"/customers/ana?token={secret}")
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    statuses = {a.split()[0] for a in answers}
    assert {"200", "303", "400", "401", "403", "404"} <= statuses, statuses
    for secret in secrets:
        assert secret not in caplog.text
        assert not [a for a in answers if secret in a and not a.startswith("303")]
    # the sign-in answer sets the cookie to the token, and nothing else holds it
    signed_in = [a for a in answers if a.startswith("303")]
    assert len(signed_in) == 2 and all("Set-Cookie" in a for a in signed_in)
    assert "401 GET /: unknown token" in caplog.text  # refusals are logged, without the token
    assert "web authentication on: 2 tokens" in caplog.text


# --- the 127.0.0.1 rule and TLS ---------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "tower.example.com"])
def test_without_tokens_any_address_but_loopback_is_refused(host: str, tmp_path: Path) -> None:
    settings = Settings(web_host=host)
    with pytest.raises(WebSecurityError) as caught:
        WebSecurity.from_settings(settings)
    assert "TOWER_WEB_TOKENS_FILE" in str(caught.value)
    assert "TOWER_WEB_HOST=127.0.0.1" in str(caught.value)
    with pytest.raises(WebSecurityError):  # the runtimes build the app first: they fail at start
        build_app(worker_port(settings, set()), NoOwners())  # type: ignore[arg-type]
    # with tokens the same address is fine
    WebSecurity.from_settings(
        replace(
            settings, web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)
        )
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "LOCALHOST"])
def test_without_tokens_loopback_is_served(host: str) -> None:
    WebSecurity.from_settings(Settings(web_host=host)).check_bind(host)


def test_start_refuses_another_address_and_says_authentication_is_off(caplog: Any) -> None:
    app = build_app(worker_port(Settings(), set()), NoOwners())  # type: ignore[arg-type]
    with pytest.raises(WebSecurityError, match="authentication off"):
        serve_in_thread(app, "0.0.0.0", 0)

    async def main() -> None:
        with pytest.raises(WebSecurityError):
            await start(app, "0.0.0.0", 0)
        with caplog.at_level(logging.INFO):
            runner = await start(app, "127.0.0.1", 0)
        await runner.cleanup()

    asyncio.run(main())
    assert "web authentication is off" in caplog.text and "only on 127.0.0.1:0" in caplog.text


def test_tls_needs_both_files_and_says_which_failed(tmp_path: Path) -> None:
    with pytest.raises(WebSecurityError, match="set together"):
        tls_context(tmp_path / "cert.pem", None)
    with pytest.raises(WebSecurityError, match=r"cannot load the TLS certificate .*cert\.pem"):
        tls_context(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert tls_context(None, None) is None
    assert Settings().advertised_url.startswith("http://")
    assert Settings(web_tls_cert=tmp_path / "c").advertised_url == "https://127.0.0.1:6066"


def test_the_web_server_speaks_https_with_a_certificate(tmp_path: Path) -> None:
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    settings = Settings(
        web_port=free,
        web_tls_cert=cert,
        web_tls_key=key,
        web_tokens_file=tokens_file(tmp_path),
        web_peer_key_file=peer_key(tmp_path),
        web_open_metrics=True,
    )
    app = build_app(worker_port(settings, set()), NoOwners())  # type: ignore[arg-type]
    stop = serve_in_thread(app, "127.0.0.1", free)
    try:
        trusted = ssl.create_default_context(cafile=str(ca_file))
        url = settings.advertised_url + "/healthz"
        assert url.startswith("https://")
        with urllib.request.urlopen(url, context=trusted, timeout=10) as r:
            assert r.status == 200 and orjson.loads(r.read())["url"] == settings.advertised_url
        with pytest.raises((OSError, HTTPException)):  # plain HTTP is not answered
            urllib.request.urlopen(f"http://127.0.0.1:{free}/healthz", timeout=5)
    finally:
        stop()


def test_the_web_security_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TOWER_WEB_TOKENS_FILE": str(tmp_path / "tokens"),
        "TOWER_WEB_OPEN_METRICS": "true",
        "TOWER_WEB_TLS_CERT": str(tmp_path / "cert.pem"),
        "TOWER_WEB_TLS_KEY": str(tmp_path / "key.pem"),
        "TOWER_WEB_PORT": "7070",
    }
    s = Settings.from_env(env)
    assert s.web_tokens_file == tmp_path / "tokens" and s.web_open_metrics is True
    assert (s.web_tls_cert, s.web_tls_key) == (tmp_path / "cert.pem", tmp_path / "key.pem")
    assert s.advertised_url == "https://127.0.0.1:7070"
    default = Settings.from_env({})
    assert default.web_tokens_file is None and default.web_open_metrics is False
    assert default.web_tls_cert is None and default.advertised_url == "http://127.0.0.1:6066"
