"""The client's settings from the environment, read as the worker reads them, so a client
on the worker's host needs no setting of its own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.client.errors import TowerError
from pipeline.settings import Settings

#: the client's bearer token when `token=` is not given, in this order: the token itself,
#: a file holding it (a mounted secret), and the earlier name
TOKEN_ENV = "TOWER_TOKEN"
TOKEN_FILE_ENV = "TOWER_TOKEN_FILE"
WEB_TOKEN_ENV = "TOWER_WEB_TOKEN"
#: the web API's base URL when `web_url=` is not given (else the worker's own settings)
URL_ENV = "TOWER_URL"


def client_settings(env: Mapping[str, str]) -> Settings:
    """The worker's settings as a client reads them. A worker may bind every interface
    (TOWER_WEB_HOST=0.0.0.0); a client calls it on this host instead."""
    env = dict(env)
    if env.get("TOWER_WEB_HOST", "").strip() in ("0.0.0.0", "::"):
        env["TOWER_WEB_HOST"] = "127.0.0.1"
    try:
        return Settings.from_env(env)
    except ValueError as exc:
        raise TowerError(str(exc)) from None


def web_url_from(env: Mapping[str, str], settings: Settings) -> str:
    """TOWER_URL, else the worker's advertised URL (TOWER_WEB_URL, else TOWER_WEB_HOST and
    TOWER_WEB_PORT): a client on the worker's host needs no setting of its own."""
    return env.get(URL_ENV) or settings.advertised_url


def token_from(env: Mapping[str, str]) -> str | None:
    """The bearer token: TOWER_TOKEN, else the file TOWER_TOKEN_FILE names, else
    TOWER_WEB_TOKEN; None when none is set (authentication off)."""
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = env.get(TOKEN_FILE_ENV)
    if path:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise TowerError(
                f"{TOKEN_FILE_ENV}={path!r} cannot be read ({exc.strerror}); mount the token "
                f"there or set {TOKEN_ENV}"
            ) from None
    return env.get(WEB_TOKEN_ENV, "").strip() or None
