"""Which URLs are the deployment's own workers: the only places a request is forwarded to.

The owner of a customer's partition is named by a consumer group member's client id, and
anyone who can join the group can put any URL there. So an owner's URL is checked against
the deployment's peers before anything is sent: `TOWER_WEB_PEERS` (comma-separated URL
patterns, `*` standing for one or more letters, digits or hyphens inside the host, never a
dot, e.g. `http://*.journey-tower-headless.prod.svc:6066`), else the scheme and host of this
worker's own advertised URL (any port), which is what local multi-worker setups on
127.0.0.1 need. With web TLS on, a peer must speak https. A pattern without a port allows
any port; an owner URL must be an origin only (no user, path, query or fragment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
_LABEL = r"[A-Za-z0-9-]+"
_HOST_CHARS = re.compile(r"[A-Za-z0-9.*:\[\]-]+")


class PeerPatternError(ValueError):
    """A TOWER_WEB_PEERS entry that is not a URL pattern; says which and why."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin | str:
    """The origin a URL names, or why it is not one (a forward target has no user info,
    path, query or fragment: anything after the port would be glued to the forwarded path)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "not a URL"
    if parts.scheme not in SCHEMES:
        return "not an http or https URL"
    if not parts.hostname:
        return "no host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "user info in the URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in url or "#" in url:
        return "a path, query or fragment after the host"
    default = 443 if parts.scheme == "https" else 80
    return Origin(parts.scheme, parts.hostname.lower(), default if port is None else port)


@dataclass(frozen=True)
class PeerPattern:
    scheme: str
    host: re.Pattern[str]
    port: int | None  # None: any port
    text: str

    @classmethod
    def parse(cls, text: str) -> PeerPattern:
        text = text.strip()
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in SCHEMES:
            raise PeerPatternError(
                f"TOWER_WEB_PEERS entry {text!r}: must start with http:// or https://"
            )
        rest = rest.rstrip("/")
        if not rest or any(c in rest for c in "/?#@") or not _HOST_CHARS.fullmatch(rest):
            raise PeerPatternError(
                f"TOWER_WEB_PEERS entry {text!r}: must be scheme://host[:port], "
                "with * only inside the host"
            )
        host, port = rest, None
        if rest.startswith("["):
            host, _, tail = rest[1:].partition("]")
            if tail:
                port = _port(text, tail.removeprefix(":"))
        elif ":" in rest:
            host, _, raw = rest.rpartition(":")
            port = _port(text, raw)
        if not host or "[" in host or "]" in host:
            raise PeerPatternError(f"TOWER_WEB_PEERS entry {text!r}: no host")
        regex = ".".join(
            _LABEL.join(re.escape(piece) for piece in label.split("*"))
            for label in host.lower().split(".")
        )
        return cls(scheme, re.compile(regex, re.IGNORECASE), port, text)

    def matches(self, origin: Origin) -> bool:
        return (
            origin.scheme == self.scheme
            and self.host.fullmatch(origin.host) is not None
            and (self.port is None or origin.port == self.port)
        )


def _port(text: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise PeerPatternError(f"TOWER_WEB_PEERS entry {text!r}: the port must be 1-65535")
    return int(raw)


def parse_peers(text: str) -> tuple[PeerPattern, ...]:
    """The patterns of TOWER_WEB_PEERS; empty entries are skipped."""
    return tuple(PeerPattern.parse(p) for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Refusal:
    """Why an owner URL is not forwarded to: `reason` labels the metric, `detail` is
    logged (never sent to the caller: it names internal addresses)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class PeerPolicy:
    patterns: tuple[PeerPattern, ...]
    require_https: bool

    @classmethod
    def of(cls, peers: str, own_url: str, tls: bool) -> PeerPolicy:
        """From TOWER_WEB_PEERS, else this worker's own scheme and host."""
        patterns = parse_peers(peers)
        own = origin_of(own_url)
        if not patterns and not isinstance(own, str):  # an unusable own URL: no peers
            host = f"[{own.host}]" if ":" in own.host else own.host
            patterns = (PeerPattern.parse(f"{own.scheme}://{host}"),)
        return cls(patterns, require_https=tls)

    def check(self, url: str) -> Origin | Refusal:
        """The origin to forward to, or why not."""
        if not self.patterns:
            return Refusal("not_a_peer", f"owner URL {url!r}: no peers; set TOWER_WEB_PEERS")
        origin = origin_of(url)
        if isinstance(origin, str):
            return Refusal("bad_url", f"owner URL {url!r}: {origin}")
        if self.require_https and origin.scheme != "https":
            return Refusal("not_https", f"owner URL {url!r}: web TLS is on, peers must be https")
        if not any(p.matches(origin) for p in self.patterns):
            allowed = ", ".join(p.text for p in self.patterns)
            return Refusal(
                "not_a_peer",
                f"owner URL {url!r} matches none of the peers ({allowed}); "
                "set TOWER_WEB_PEERS to the workers' URL patterns",
            )
        return origin
