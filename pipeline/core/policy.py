"""The policy: every rule's settings as one immutable value, identified by version + hash.

The worker stamps `policy_version` on every decision so any decision can be replayed
under the exact policy that made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import orjson

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `limit` approved contacts per rolling `window_ms`, counted across all agents.

    `scope` says what is counted together: contacts on the same `channel`, of the same
    `category` or `department`, or `all` contacts of the customer.
    """

    name: str
    limit: int
    window_ms: int
    scope: str = "channel"
    exempt_categories: frozenset[str] = frozenset({"transactional"})


@dataclass(frozen=True, slots=True)
class Policy:
    version: str = "1.0.0"
    #: categories whose outreach needs an explicit opt-in (consent_changed granted=true)
    opt_in_required: Mapping[str, bool] = field(
        default_factory=lambda: {
            "marketing": True,
            "sales": True,
            "service": False,
            "transactional": False,
        }
    )
    caps: tuple[FrequencyCap, ...] = (
        FrequencyCap("per-channel-daily", limit=3, window_ms=DAY_MS, scope="channel"),
    )
    merge_window_ms: int = 10 * 60_000
    replay_memory: int = 200
    notes: str = ""
    content_hash: str = field(init=False, compare=False, repr=False, default="")

    def __post_init__(self) -> None:
        data = asdict(self)
        for ignored in ("notes", "content_hash"):
            data.pop(ignored)
        digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=sorted))
        object.__setattr__(self, "content_hash", digest.hexdigest())

    @property
    def policy_version(self) -> str:
        """`<semver>+<hash prefix>`: the version the owner wrote plus what it really contains."""
        return f"{self.version}+{self.content_hash[:12]}"

    @property
    def longest_cap_window_ms(self) -> int:
        return max((c.window_ms for c in self.caps), default=0)


DEFAULT_POLICY = Policy()
