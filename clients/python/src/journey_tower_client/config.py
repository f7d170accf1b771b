"""The client's settings from the environment, so an agent's code names none of them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from journey_tower_client.errors import TowerError

DEFAULT_URL = "http://127.0.0.1:6066"


@dataclass(frozen=True, slots=True)
class Config:
    """`url`: a worker (any: it forwards to the one owning the customer); `token`: the
    bearer token (an `agent` token is bound to one agent's name); `agent` and
    `department`: the defaults of every proposal and signal; `timeout_s`: how long a call
    may take on top of the decision wait, 503 retries included."""

    url: str = DEFAULT_URL
    token: str | None = field(default=None, repr=False)
    agent: str | None = None
    department: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """TOWER_URL, TOWER_TOKEN (else the file TOWER_TOKEN_FILE names), TOWER_AGENT,
        TOWER_DEPARTMENT and TOWER_TIMEOUT_S; a bad value names its variable."""
        env = os.environ if env is None else env
        timeout = env.get("TOWER_TIMEOUT_S") or "10"
        try:
            timeout_s = float(timeout)
        except ValueError:
            raise TowerError(f"TOWER_TIMEOUT_S={timeout!r} is not a number of seconds") from None
        return cls(
            url=(env.get("TOWER_URL") or DEFAULT_URL).rstrip("/"),
            token=token_from(env),
            agent=env.get("TOWER_AGENT") or None,
            department=env.get("TOWER_DEPARTMENT") or None,
            timeout_s=timeout_s,
        )


def token_from(env: Mapping[str, str]) -> str | None:
    """TOWER_TOKEN, else the content of TOWER_TOKEN_FILE (a mounted secret), else None."""
    if env.get("TOWER_TOKEN"):
        return env["TOWER_TOKEN"].strip()
    path = env.get("TOWER_TOKEN_FILE")
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise TowerError(
            f"TOWER_TOKEN_FILE={path!r} cannot be read ({exc.strerror}); mount the token "
            "there or set TOWER_TOKEN"
        ) from None
