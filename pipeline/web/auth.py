"""Who may use the web server: bearer tokens with a role, kept in a file as hashes.

The tokens file (`TOWER_WEB_TOKENS_FILE`) has one token a line; blank lines and lines
starting with `#` are ignored:

    sha256:<64 hex digits> <role> <name> [expires=<YYYY-MM-DDTHH:MM:SSZ>]

`role` is `viewer` (the pages, the customer JSON, the decision feed, the agents' context,
and `/metrics` and `/healthz` unless `TOWER_WEB_OPEN_METRICS=true`), `operator` (also
preflight, proposals and anything that is not a GET; operator includes viewer) or `agent`
(the agents' API only: `AGENT_ROUTES`; the server lets it propose and signal only as the
agent its `name` says). `name` says whose token it is ([A-Za-z0-9._@-], at most 64
characters). A token with `expires=` is refused after that
time (401 saying it expired). `tower web token add [--ttl 30d]` writes these lines. The file
is read again when it changes, so deleting a line revokes that token on every worker that
reads the file, without a restart.

A request presents its token as `Authorization: Bearer <token>`. A person can open a page
once with `?token=<token>`: the answer is a redirect to the same address without the token
that sets the cookie (HttpOnly, SameSite=Strict, Path=/), which the pages' own requests then
carry. Served over https (web TLS, or a `TOWER_WEB_URL` of https when TLS ends in front) the
cookie is `__Host-tower_token` and Secure, so no other site or subdomain can set or read it;
over plain http it is `tower_token` (a Secure cookie would be dropped by browsers there). The
cookie counts only for GET and HEAD. The server never logs, echoes or returns a presented
token, and never forwards one: a request forwarded to the owner of a customer carries a
signed assertion of the caller instead (`peer_assertion`).

Without a tokens file, authentication is off, the server binds only 127.0.0.1 (or
localhost, ::1): `WebSecurity.check_bind`, and answers only requests whose Host is a
loopback name, so a web page of another site cannot reach it by DNS rebinding.

Every POST must be `application/json` (415 otherwise): a browser sends that cross-site only
after a CORS preflight the server never grants.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import MultiDict

from pipeline.settings import Settings
from pipeline.web import peer_assertion
from pipeline.web.file_changes import FileChanges
from pipeline.web.peer_assertion import AssertionRefused, Claims, PeerKeyError, PeerKeys
from pipeline.web.peers import PeerPatternError, PeerPolicy, origin_of

log = logging.getLogger(__name__)

LEVELS = ("viewer", "operator")  # in order: each may do what the ones before it may
VIEWER, OPERATOR = LEVELS
#: a token bound to one agent: the agents' API only, as that agent
AGENT = "agent"
ROLES = (*LEVELS, AGENT)
#: what an agent token may use (method, route template)
AGENT_ROUTES = frozenset(
    {
        ("GET", "/api/v1/customers/{customer_id}/context"),
        ("POST", "/api/v1/preflight"),
        ("POST", "/api/v1/proposals"),
        ("POST", "/api/v1/signals"),
        ("GET", "/api/v1/decisions/{event_id}"),
        ("GET", "/api/v1/openapi.json"),
    }
)
COOKIE = "tower_token"
#: the cookie's name over https: the prefix makes browsers require Secure, Path=/, no Domain
HOST_COOKIE = "__Host-" + COOKIE
QUERY = "token"
REALM = 'Bearer realm="journey-tower"'
#: the methods a viewer may use; the cookie and `?token=` count only for GET and HEAD
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE_METHODS = frozenset({"GET", "HEAD"})
#: open to anyone with `TOWER_WEB_OPEN_METRICS=true` (for scrapers and probes)
OPEN_PATHS = frozenset({"/metrics", "/healthz"})
#: open to anyone always: the probes answer a status and nothing more (server.py)
PROBE_PATHS = frozenset({"/readyz", "/livez"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_BYTES = 32
LINE_FORMAT = "sha256:<64 hex digits> <role> <name> [expires=<YYYY-MM-DDTHH:MM:SSZ>]"
EXPIRES = "expires="
JSON = "application/json"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class TokenFileError(ValueError):
    """A tokens file that cannot be read or has bad lines; says where, never what."""


class WebSecurityError(ValueError):
    """A web server configuration that is refused at start (bind address, TLS files)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


#: the caller a request was authenticated as, for the forwarder's assertion
PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass(frozen=True)
class TokenEntry:
    digest: str  # "sha256:<hex>"
    principal: Principal
    #: epoch seconds after which the token is refused; None: never
    expires: float | None = None


def format_expiry(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_expiry(text: str) -> float | None:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def new_token() -> str:
    """A fresh random token: 32 bytes from `secrets`, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """`sha256:<hex>` of a token. A plain SHA-256 is enough, no salt or slow hash: tokens
    are 32 random bytes, so there is no dictionary to try and nothing to brute-force."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_line(token: str, role: str, name: str, expires: float | None = None) -> str:
    """The tokens file line for `token` (its hash, never the token); `expires`: epoch
    seconds after which it is refused."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME.fullmatch(name):
        raise ValueError(f"name must be 1-64 of A-Z a-z 0-9 . _ @ -, not {name!r}")
    until = "" if expires is None else f" {EXPIRES}{format_expiry(expires)}"
    return f"{hash_token(token)} {role} {name}{until}\n"


def parse_tokens(text: str, source: str) -> tuple[TokenEntry, ...]:
    """The entries of a tokens file; TokenFileError listing every bad line (number and
    reason). A bad line's text is never quoted, in case someone pasted a token into it."""
    entries: list[TokenEntry] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        expires = None
        if len(parts) == 4 and parts[3].startswith(EXPIRES):
            expires = _parse_expiry(parts.pop()[len(EXPIRES) :])
            if expires is None:
                problems.append(
                    f"{source}:{number}: expires= must be a time like 2030-01-31T00:00:00Z"
                )
                continue
        if len(parts) != 3:
            problems.append(
                f"{source}:{number}: expected 3 fields ({LINE_FORMAT}), not {len(parts)}"
            )
            continue
        digest, role, name = parts
        if not _DIGEST.fullmatch(digest):
            problems.append(
                f"{source}:{number}: the first field must be sha256:<64 lowercase hex digits>, "
                "the token's hash (the file never holds tokens: `tower web token add`)"
            )
        elif role not in ROLES:
            problems.append(f"{source}:{number}: role must be one of {', '.join(ROLES)}")
        elif not NAME.fullmatch(name):
            problems.append(f"{source}:{number}: name must be 1-64 of A-Z a-z 0-9 . _ @ -")
        elif digest in seen:
            problems.append(f"{source}:{number}: the same token as line {seen[digest]}")
        else:
            seen[digest] = number
            entries.append(TokenEntry(digest, Principal(name, role), expires))
    if problems:
        raise TokenFileError("bad tokens file:\n" + "\n".join(problems))
    return tuple(entries)


def load_tokens(path: Path) -> tuple[TokenEntry, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TokenFileError(f"cannot read the tokens file {path}: {why}") from None
    return parse_tokens(text, str(path))


def lookup(entries: tuple[TokenEntry, ...], token: str) -> TokenEntry | None:
    """The entry of `token`, comparing hashes in constant time against every entry (no
    early exit), so timing says nothing about which entry matched, or how closely."""
    digest = hash_token(token).encode()
    found = None
    for entry in entries:
        if hmac.compare_digest(entry.digest.encode(), digest):
            found = entry
    return found


def identify(
    entries: tuple[TokenEntry, ...], token: str, now: float | None = None
) -> Principal | None:
    """The holder of `token`, if it is known and not expired."""
    entry = lookup(entries, token)
    if entry is None or _expired(entry, now):
        return None
    return entry.principal


def _expired(entry: TokenEntry, now: float | None = None) -> bool:
    return entry.expires is not None and (time.time() if now is None else now) >= entry.expires


def allows(role: str, needed: str, method: str = "", route: str = "") -> bool:
    """Operator includes viewer; an agent may use `AGENT_ROUTES` only."""
    if role == AGENT:
        return (("GET" if method == "HEAD" else method), route) in AGENT_ROUTES
    return LEVELS.index(role) >= LEVELS.index(needed)


def required_role(method: str, path: str, open_metrics: bool) -> str | None:
    """The role a request needs; None: open to anyone."""
    if path in PROBE_PATHS or (open_metrics and path in OPEN_PATHS):
        return None
    return VIEWER if method in READ_METHODS else OPERATOR


class TokenFile:
    """The entries of a tokens file, read again whenever the file changes (one `stat` a
    request). A file that turns unreadable or bad lets nobody in until it is fixed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._changes = FileChanges(path)
        self._entries = load_tokens(path)  # at start a bad file is an error, not a log line

    def entries(self) -> tuple[TokenEntry, ...]:
        if self._changes.changed():
            try:
                self._entries = load_tokens(self.path)
                log.info("tokens file %s read again: %d tokens", self.path, len(self._entries))
            except TokenFileError as exc:
                self._entries = ()
                log.error("%s\nno token is accepted until the file is fixed", exc)
        return self._entries


def error_body(code: str, detail: str, **more: object) -> dict[str, object]:
    """The agents' API's error answer (schemas/api_error.v1.schema.json): `error` is the
    code (`reason` repeats it), `detail` one line saying what is wrong and what to do."""
    return {"api_version": "v1", "error": code, "reason": code, "detail": detail, **more}


def _deny(status: int, reason: str, detail: str, challenge: str | None) -> web.Response:
    body = error_body(reason, detail)
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)


def _unauthorized(detail: str, error: str | None = None) -> web.Response:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return _deny(401, "unauthorized", detail, challenge)


HOW = (
    "send Authorization: Bearer <token>; to open the pages in a browser, add "
    "?token=<token> to the address once"
)


def route_of(request: web.Request) -> str:
    """The route's template (`/customers/{customer_id}`) for a log line, never the path:
    paths carry customer ids, which stay out of the logs."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "(no route)"


def presented(request: web.Request, cookie: str = COOKIE) -> tuple[str | None, str | None]:
    """(token, None), or (None, what is wrong): the Authorization header, else for GET
    and HEAD the cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return None, "the Authorization header must be 'Bearer <token>'"
        return token, None
    value = request.cookies.get(cookie)
    if value and request.method in COOKIE_METHODS:
        return value, None
    return None, None


@dataclass(frozen=True)
class PeerTrust:
    """How this worker checks the assertions of forwarded requests."""

    keys: PeerKeys | None
    #: this worker's origin: an assertion must be made out to it
    audience: str


def middleware(
    tokens: TokenFile,
    *,
    open_metrics: bool,
    secure_cookie: bool,
    peers: PeerTrust | None = None,
) -> Middleware:
    """401 (with `WWW-Authenticate: Bearer`) without a known, unexpired token or a valid
    peer assertion, 403 when the role is not enough; answers in the API's error format."""
    cookie = HOST_COOKIE if secure_cookie else COOKIE

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_role(request.method, request.path, open_metrics)
        if needed is None:
            return await handler(request)
        where = f"{request.method} {route_of(request)}"
        if peer_assertion.HEADER in request.headers:
            principal_or_refusal = await _peer(request, peers, where)
            if isinstance(principal_or_refusal, web.Response):
                return principal_or_refusal
            principal = principal_or_refusal
        else:
            if request.method in COOKIE_METHODS and QUERY in request.query:
                return _sign_in(request, tokens, cookie, secure_cookie)
            token, problem = presented(request, cookie)
            if token is None:
                log.info("401 %s: %s", where, problem or "no token")
                if problem:
                    return _unauthorized(problem + "; " + HOW, "invalid_request")
                return _unauthorized(f"authentication required: {HOW}")
            entry = lookup(tokens.entries(), token)
            if entry is None:
                log.info("401 %s: unknown token", where)
                return _unauthorized("the token is not known to this worker", "invalid_token")
            principal = entry.principal
            if _expired(entry):
                log.info("401 %s: the token of %s expired", where, principal.name)
                return _expired_answer(entry)
        if not allows(principal.role, needed, request.method, route_of(request)):
            log.info("403 %s for %s", where, principal.name)
            needs = "a viewer or operator token" if principal.role == AGENT else needed
            detail = (
                f"the token of {principal.name} has the {principal.role} role; "
                f"{request.method} {route_of(request)} needs {needs}"
            )
            return _deny(403, "forbidden", detail, f'{REALM}, error="insufficient_scope"')
        request[PRINCIPAL] = principal
        return await handler(request)

    return authenticate


async def _peer(
    request: web.Request, peers: PeerTrust | None, where: str
) -> Principal | web.Response:
    """The caller a forwarding worker vouches for, or the 401 refusing its assertion."""
    if peers is None or peers.keys is None:
        log.warning("401 %s: a peer assertion, but TOWER_WEB_PEER_KEY_FILE is not set", where)
        return _unauthorized("this worker takes no peer assertions", "invalid_token")
    try:
        claims = peer_assertion.verify(
            peers.keys.keys(),
            request.headers[peer_assertion.HEADER],
            method=request.method,
            path=request.rel_url.raw_path_qs,
            body=await request.read(),
            audience=peers.audience,
        )
    except AssertionRefused as exc:
        log.warning("401 %s: %s", where, exc)
        return _unauthorized(str(exc), "invalid_token")
    if claims.role not in ROLES:
        return _unauthorized("the peer assertion names an unknown role", "invalid_token")
    return Principal(claims.name, claims.role)


def _expired_answer(entry: TokenEntry) -> web.Response:
    at = format_expiry(entry.expires or 0)
    return _unauthorized(
        f"the token of {entry.principal.name} expired at {at}; ask for a new one "
        "(`tower web token add`)",
        "invalid_token",
    )


def _sign_in(request: web.Request, tokens: TokenFile, cookie: str, secure: bool) -> web.Response:
    """`?token=`: a redirect to the same address without it, setting the cookie."""
    entry = lookup(tokens.entries(), request.query[QUERY])
    if entry is None:
        log.info("401 %s %s: unknown token in the address", request.method, route_of(request))
        return _unauthorized("the token is not known to this worker", "invalid_token")
    if _expired(entry):
        log.info("401 %s %s: expired token in the address", request.method, route_of(request))
        return _expired_answer(entry)
    query = MultiDict(request.query)
    query.popall(QUERY)
    # one leading slash: "//host/..." (or "/\\host") would send the browser to another site
    location = "/" + str(request.rel_url.with_query(query)).lstrip("/\\")
    response = web.Response(status=303, headers={"Location": location})
    response.set_cookie(
        cookie, request.query[QUERY], path="/", httponly=True, samesite="Strict", secure=secure
    )
    return response


def _host_name(host: str) -> str | None:
    try:
        return urlsplit("//" + host).hostname
    except ValueError:
        return None


def loopback_hosts_only() -> Middleware:
    """Without authentication: only requests addressed to a loopback name. A page of another
    site that rebinds its DNS name to 127.0.0.1 still sends its own name as Host."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = _host_name(request.headers.get("Host", ""))
        if name is None or name.lower() not in LOCAL_HOSTS:
            log.info("421 %s: Host is not a loopback name", route_of(request))
            return _deny(
                421,
                "misdirected_request",
                "with authentication off this worker answers only requests to 127.0.0.1, "
                "localhost or [::1]; to serve other names set TOWER_WEB_TOKENS_FILE",
                None,
            )
        return await handler(request)

    return check_host


@web.middleware
async def json_bodies_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for a request with a body that is not `application/json`: a browser sends that
    cross-site only after a CORS preflight, which this server never grants."""
    if request.method not in READ_METHODS and request.content_type != JSON:
        return _deny(
            415,
            "unsupported_media_type",
            f"send the body as Content-Type: {JSON}",
            None,
        )
    return await handler(request)


@dataclass(frozen=True)
class WebSecurity:
    """The web server's authentication and TLS, from the settings, checked at start."""

    tokens: TokenFile | None = None
    tls: ssl.SSLContext | None = None
    open_metrics: bool = False
    #: the cookie is `__Host-` prefixed and Secure: the pages are served over https
    secure_cookie: bool = False
    #: the workers requests may be forwarded to; None: none
    peers: PeerPolicy | None = None
    peer_keys: PeerKeys | None = None
    #: this worker's origin (assertions for it name it)
    audience: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSecurity:
        """WebSecurityError or TokenFileError for a configuration that cannot be served."""
        tls = tls_context(settings.web_tls_cert, settings.web_tls_key)
        tokens = None if settings.web_tokens_file is None else TokenFile(settings.web_tokens_file)
        try:
            peers = PeerPolicy.of(settings.web_peers, settings.advertised_url, tls is not None)
            keys = (
                None if settings.web_peer_key_file is None else PeerKeys(settings.web_peer_key_file)
            )
        except (PeerPatternError, PeerKeyError) as exc:
            raise WebSecurityError(str(exc)) from None
        if tokens is not None and keys is None:
            raise WebSecurityError(
                "TOWER_WEB_TOKENS_FILE is set but TOWER_WEB_PEER_KEY_FILE is not: workers "
                "forward requests with a signed assertion, never the caller's token; create "
                "a key with `tower web peer-key new --file FILE` and give every worker that file"
            )
        own = origin_of(settings.advertised_url)
        security = cls(
            tokens=tokens,
            tls=tls,
            open_metrics=settings.web_open_metrics,
            secure_cookie=settings.advertised_url.startswith("https://"),
            peers=peers,
            peer_keys=keys,
            audience=own if isinstance(own, str) else own.url(),
        )
        security.check_bind(settings.web_host)
        return security

    def check_bind(self, host: str) -> None:
        """Without tokens, only a loopback address: nothing else on the network may read
        customers' data or ask for preflights unauthenticated."""
        if self.tokens is None and host.lower() not in LOCAL_HOSTS:
            raise WebSecurityError(
                f"refusing to serve the web pages on {host or 'every address'} with "
                "authentication off: set TOWER_WEB_TOKENS_FILE (create tokens with "
                "`tower web token add --role viewer --name NAME`) or bind TOWER_WEB_HOST=127.0.0.1"
            )

    def middlewares(self) -> list[Middleware]:
        if self.tokens is None:
            return [loopback_hosts_only(), json_bodies_only]
        trust = PeerTrust(self.peer_keys, self.audience)
        return [
            middleware(
                self.tokens,
                open_metrics=self.open_metrics,
                secure_cookie=self.secure_cookie,
                peers=trust,
            ),
            json_bodies_only,
        ]

    def forward_headers(self, request: web.Request, audience: str, body: bytes) -> dict[str, str]:
        """What a forwarded request carries instead of the caller's token: an assertion of
        the caller this worker authenticated, for `audience` only (nothing with auth off)."""
        principal = request.get(PRINCIPAL)
        if principal is None or self.peer_keys is None:
            return {}
        value = peer_assertion.sign(
            self.peer_keys.keys()[0],
            Claims(principal.name, principal.role),
            method=request.method,
            path=request.rel_url.raw_path_qs,
            body=body,
            audience=audience,
        )
        return {peer_assertion.HEADER: value}

    def describe(self, host: str, port: int) -> str:
        """The line logged at start (no secrets: the file's path and the token count)."""
        scheme = "https" if self.tls else "http"
        if self.tokens is None:
            return (
                f"web authentication is off (no TOWER_WEB_TOKENS_FILE): the web server listens "
                f"only on {host}:{port} ({scheme}); pages and APIs are open to local processes"
            )
        metrics = "open" if self.open_metrics else "need a viewer token"
        return (
            f"web authentication on: {len(self.tokens.entries())} tokens from "
            f"{self.tokens.path}; /metrics and /healthz {metrics}; serving {scheme} on "
            f"{host}:{port}"
        )


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from a PEM certificate (chain) and its key, or None for HTTP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise WebSecurityError(
            "TOWER_WEB_TLS_CERT and TOWER_WEB_TLS_KEY are set together or not at all"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WebSecurityError(
            f"cannot load the TLS certificate {cert} with key {key}: {why}"
        ) from None
    return context
