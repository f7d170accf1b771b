"""What a worker sends instead of the caller's token when it forwards a request: a signed,
short-lived assertion of who the caller is.

The caller's token never leaves the worker it was presented to. The forwarder signs (HMAC-
SHA256, with a key every replica shares: `TOWER_WEB_PEER_KEY_FILE`) the caller's name and
role, the method, the exact path and query, a hash of the body, the owner it is meant for
and an expiry a few seconds ahead; the owner checks all of them and serves the request with
that role. A stolen assertion is good for one request shape on one worker for seconds.

The key file holds one key a line (at least 32 characters; `tower web peer-key new`), blank
and `#` lines ignored. The first key signs and every key verifies, so a key is rotated
without a failed request: add the new key as a second line everywhere, then move it first,
then delete the old one. The file is read again when it changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.web.file_changes import FileChanges

log = logging.getLogger(__name__)

HEADER = "X-Tower-Peer-Assertion"
#: how long an assertion is good for; also the most clock skew between workers it allows
TTL_S = 10.0
MIN_KEY_CHARS = 32
_DOMAIN = b"journey-tower peer assertion v1\n"


class PeerKeyError(ValueError):
    """A peer key file that cannot be read or holds no usable key; never quotes a key."""


class AssertionRefused(ValueError):
    """An assertion that does not hold: `str()` says why, in words safe to send back."""


@dataclass(frozen=True)
class Claims:
    name: str
    role: str


def new_key() -> str:
    """A fresh key: 32 random bytes as 64 hex digits."""
    return secrets.token_hex(32)


def parse_keys(text: str, source: str) -> tuple[bytes, ...]:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < MIN_KEY_CHARS or " " in line:
            raise PeerKeyError(
                f"{source}:{number}: a peer key is one word of at least {MIN_KEY_CHARS} "
                "characters (create one with `tower web peer-key new --file FILE`)"
            )
        keys.append(line.encode())
    if not keys:
        raise PeerKeyError(
            f"the peer key file {source} holds no key: create one with "
            "`tower web peer-key new --file FILE`"
        )
    return tuple(keys)


def load_keys(path: Path) -> tuple[bytes, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PeerKeyError(
            f"cannot read the peer key file {path} (TOWER_WEB_PEER_KEY_FILE): {why}"
        ) from None
    return parse_keys(text, str(path))


class PeerKeys:
    """The keys of the key file, read again when it changes; a file that turns bad keeps
    the keys read last (a worker that cannot verify its peers would fail every forward)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._changes = FileChanges(path)
        self._keys = load_keys(path)

    def keys(self) -> tuple[bytes, ...]:
        if self._changes.changed():
            try:
                self._keys = load_keys(self.path)
            except PeerKeyError as exc:
                log.error("%s; the keys read before stay in use until it is fixed", exc)
        return self._keys


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, _DOMAIN + payload.encode(), hashlib.sha256).digest()


def sign(
    key: bytes,
    claims: Claims,
    *,
    method: str,
    path: str,
    body: bytes,
    audience: str,
    now: float | None = None,
    ttl_s: float = TTL_S,
) -> str:
    """The header value for one forwarded request to `audience` (the owner's origin)."""
    now = time.time() if now is None else now
    payload = _b64(
        orjson.dumps(
            {
                "v": 1,
                "sub": claims.name,
                "role": claims.role,
                "m": method,
                "p": path,
                "b": body_hash(body),
                "aud": audience,
                "exp": now + ttl_s,
            }
        )
    )
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify(
    keys: tuple[bytes, ...],
    value: str,
    *,
    method: str,
    path: str,
    body: bytes,
    audience: str,
    now: float | None = None,
    ttl_s: float = TTL_S,
) -> Claims:
    """The caller an assertion names; AssertionRefused if anything does not hold."""
    now = time.time() if now is None else now
    payload, sep, mac = value.strip().partition(".")
    try:
        given = _unb64(mac)
    except ValueError:
        given = b""
    if not sep or not any(hmac.compare_digest(_mac(k, payload), given) for k in keys):
        raise AssertionRefused("the peer assertion's signature does not verify")
    try:
        data = orjson.loads(_unb64(payload))
        exp, name, role = float(data["exp"]), str(data["sub"]), str(data["role"])
    except (ValueError, KeyError, TypeError):
        raise AssertionRefused("the peer assertion does not decode") from None
    if exp < now:
        raise AssertionRefused("the peer assertion expired")
    if exp > now + 2 * ttl_s:
        raise AssertionRefused("the peer assertion expires too far ahead (clock skew?)")
    if data.get("aud") != audience:
        raise AssertionRefused("the peer assertion is for another worker")
    if data.get("m") != method or data.get("p") != path:
        raise AssertionRefused("the peer assertion is for another method or path")
    if data.get("b") != body_hash(body):
        raise AssertionRefused("the peer assertion is for another body")
    return Claims(name, role)
