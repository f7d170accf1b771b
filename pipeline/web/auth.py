"""Who may use the web server: bearer tokens with a role, kept in a file as hashes.

The tokens file (`TOWER_WEB_TOKENS_FILE`) has one token a line; blank lines and lines
starting with `#` are ignored:

    sha256:<64 hex digits> <role> <name>

`role` is `viewer` (the pages, the customer JSON, the decision feed, the agents' context,
and `/metrics` and `/healthz` unless `TOWER_WEB_OPEN_METRICS=true`) or `operator` (also
preflight and anything that is not a GET). Operator includes viewer. `name` says whose token it
is ([A-Za-z0-9._@-], at most 64 characters). `tower web token add` writes these lines. The file
is read again when it changes, so deleting a line revokes that token on every worker that
reads the file, without a restart.

A request presents its token as `Authorization: Bearer <token>`. A person can open a page
once with `?token=<token>`: the answer is a redirect to the same address without the token
that sets the `tower_token` cookie (HttpOnly, SameSite=Strict, Secure under TLS), which the
pages' own requests then carry. The cookie counts only for GET and HEAD. The server
never logs, echoes or returns a presented token.

Without a tokens file, authentication is off and the server binds only 127.0.0.1 (or
localhost, ::1): `WebSecurity.check_bind`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import MultiDict

from pipeline.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator")  # in order: each role may do what the ones before it may
VIEWER, OPERATOR = ROLES
COOKIE = "tower_token"
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
LINE_FORMAT = "sha256:<64 hex digits> <role> <name>"
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


@dataclass(frozen=True)
class TokenEntry:
    digest: str  # "sha256:<hex>"
    principal: Principal


def new_token() -> str:
    """A fresh random token: 32 bytes from `secrets`, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """`sha256:<hex>` of a token. A plain SHA-256 is enough, no salt or slow hash: tokens
    are 32 random bytes, so there is no dictionary to try and nothing to brute-force."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_line(token: str, role: str, name: str) -> str:
    """The tokens file line for `token` (its hash, never the token)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME.fullmatch(name):
        raise ValueError(f"name must be 1-64 of A-Z a-z 0-9 . _ @ -, not {name!r}")
    return f"{hash_token(token)} {role} {name}\n"


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
            entries.append(TokenEntry(digest, Principal(name, role)))
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


def identify(entries: tuple[TokenEntry, ...], token: str) -> Principal | None:
    """The holder of `token`, comparing hashes in constant time against every entry (no
    early exit), so timing says nothing about which entry matched, or how closely."""
    digest = hash_token(token).encode()
    found = None
    for entry in entries:
        if hmac.compare_digest(entry.digest.encode(), digest):
            found = entry.principal
    return found


def allows(role: str, needed: str) -> bool:
    """Operator includes viewer."""
    return ROLES.index(role) >= ROLES.index(needed)


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
        self._stamp = self._stat()
        self._entries = load_tokens(path)  # at start a bad file is an error, not a log line

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def entries(self) -> tuple[TokenEntry, ...]:
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._entries = load_tokens(self.path)
                log.info("tokens file %s read again: %d tokens", self.path, len(self._entries))
            except TokenFileError as exc:
                self._entries = ()
                log.error("%s\nno token is accepted until the file is fixed", exc)
        return self._entries


def _deny(status: int, reason: str, detail: str, challenge: str | None) -> web.Response:
    body = {"api_version": "v1", "error": detail, "reason": reason, "detail": detail}
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _unauthorized(detail: str, error: str | None = None) -> web.Response:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return _deny(401, "unauthorized", detail, challenge)


HOW = (
    "send Authorization: Bearer <token>; to open the pages in a browser, add "
    "?token=<token> to the address once"
)


def presented(request: web.Request) -> tuple[str | None, str | None]:
    """(token, None), or (None, what is wrong): the Authorization header, else for GET
    and HEAD the cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return None, "the Authorization header must be 'Bearer <token>'"
        return token, None
    cookie = request.cookies.get(COOKIE)
    if cookie and request.method in COOKIE_METHODS:
        return cookie, None
    return None, None


def middleware(tokens: TokenFile, *, open_metrics: bool, secure_cookie: bool) -> Middleware:
    """401 (with `WWW-Authenticate: Bearer`) without a known token, 403 when its role is
    not enough; answers in the API's error format."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_role(request.method, request.path, open_metrics)
        if needed is None:
            return await handler(request)
        if request.method in COOKIE_METHODS and QUERY in request.query:
            return _sign_in(request, tokens, secure_cookie)
        token, problem = presented(request)
        if token is None:
            log.info("401 %s %s: %s", request.method, request.path, problem or "no token")
            if problem:
                return _unauthorized(problem + "; " + HOW, "invalid_request")
            return _unauthorized(f"authentication required: {HOW}")
        principal = identify(tokens.entries(), token)
        if principal is None:
            log.info("401 %s %s: unknown token", request.method, request.path)
            return _unauthorized("the token is not known to this worker", "invalid_token")
        if not allows(principal.role, needed):
            log.info("403 %s %s for %s", request.method, request.path, principal.name)
            detail = (
                f"the token of {principal.name} has the {principal.role} role; "
                f"{request.method} {request.path} needs {needed}"
            )
            return _deny(403, "forbidden", detail, f'{REALM}, error="insufficient_scope"')
        return await handler(request)

    return authenticate


def _sign_in(request: web.Request, tokens: TokenFile, secure_cookie: bool) -> web.Response:
    """`?token=`: a redirect to the same address without it, setting the cookie."""
    if identify(tokens.entries(), request.query[QUERY]) is None:
        log.info("401 %s %s: unknown token in the address", request.method, request.path)
        return _unauthorized("the token is not known to this worker", "invalid_token")
    query = MultiDict(request.query)
    query.popall(QUERY)
    # one leading slash: "//host/..." (or "/\\host") would send the browser to another site
    location = "/" + str(request.rel_url.with_query(query)).lstrip("/\\")
    response = web.Response(status=303, headers={"Location": location})
    response.set_cookie(
        COOKIE,
        request.query[QUERY],
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure_cookie,
    )
    return response


def forwarded_credentials(request: web.Request) -> dict[str, str]:
    """The header a forwarded request carries so the owner checks the caller's token too:
    the token presented here (in the header or the cookie, as a bearer token), else the
    caller's Authorization header as it came."""
    token, _ = presented(request)
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    if "Authorization" in request.headers:
        return {"Authorization": request.headers["Authorization"]}
    return {}


@dataclass(frozen=True)
class WebSecurity:
    """The web server's authentication and TLS, from the settings, checked at start."""

    tokens: TokenFile | None = None
    tls: ssl.SSLContext | None = None
    open_metrics: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSecurity:
        """WebSecurityError or TokenFileError for a configuration that cannot be served."""
        security = cls(
            tokens=None
            if settings.web_tokens_file is None
            else TokenFile(settings.web_tokens_file),
            tls=tls_context(settings.web_tls_cert, settings.web_tls_key),
            open_metrics=settings.web_open_metrics,
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
            return []
        return [
            middleware(
                self.tokens, open_metrics=self.open_metrics, secure_cookie=self.tls is not None
            )
        ]

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
