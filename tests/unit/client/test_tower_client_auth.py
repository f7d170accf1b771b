"""The client against a worker that requires tokens: it sends its bearer token (given, or
from TOWER_WEB_TOKEN), a refusal says what to do, and the token is in no error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.client import TowerClient, TowerError
from pipeline.settings import Settings
from pipeline.web.server import build_app, serve_in_thread
from tests.unit.web.test_auth import (
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    NoOwners,
    peer_key,
    tokens_file,
)
from tests.unit.web.test_server import worker_port

DRAFT = {
    "agent": "winback-bot",
    "department": "marketing",
    "channel": "email",
    "action": "message",
    "category": "marketing",
}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A worker owning every partition, that knows ana, with a viewer and an operator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    settings = Settings(
        web_port=free, web_tokens_file=tokens_file(tmp_path), web_peer_key_file=peer_key(tmp_path)
    )
    port = worker_port(settings, set(range(8)), ["ana"])
    app = build_app(port, NoOwners(), timeline=lambda *_: [])  # type: ignore[arg-type]
    stop = serve_in_thread(app, "127.0.0.1", free)
    try:
        yield settings.advertised_url
    finally:
        stop()


def test_the_client_sends_its_token_and_the_role_decides(url: str) -> None:
    viewer = TowerClient(web_url=url, token=VIEWER_TOKEN, timeout_s=5)
    assert viewer.context("ana")["customer_id"] == "ana"
    with pytest.raises(TowerError) as caught:
        viewer.preflight("ana", **DRAFT)
    assert "403" in str(caught.value) and "needs operator" in str(caught.value)
    assert VIEWER_TOKEN not in str(caught.value) and VIEWER_TOKEN not in repr(viewer)
    operator = TowerClient(web_url=url, token=OPERATOR_TOKEN, timeout_s=5)
    assert operator.preflight("ana", **DRAFT).outcome == "approved"
    assert operator.context("ana")["known"]


def test_the_token_comes_from_tower_web_token(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWER_WEB_TOKEN", OPERATOR_TOKEN)
    assert TowerClient(web_url=url, timeout_s=5).preflight("ana", **DRAFT).outcome == "approved"
    with pytest.raises(TowerError, match=r"answered 401.*the token was refused"):
        TowerClient(web_url=url, token="not-it", timeout_s=5).context("ana")


def test_the_token_comes_from_tower_token_or_its_file(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOWER_WEB_TOKEN", "not-it")  # the earlier name comes last
    monkeypatch.setenv("TOWER_TOKEN", OPERATOR_TOKEN)
    assert TowerClient(web_url=url, timeout_s=5).preflight("ana", **DRAFT).outcome == "approved"
    monkeypatch.delenv("TOWER_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(OPERATOR_TOKEN + "\n")
    monkeypatch.setenv("TOWER_TOKEN_FILE", str(secret))
    assert TowerClient(web_url=url, timeout_s=5).preflight("ana", **DRAFT).outcome == "approved"
    monkeypatch.setenv("TOWER_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(TowerError, match=r"TOWER_TOKEN_FILE=.*cannot be read"):
        TowerClient(web_url=url, timeout_s=5)


def test_without_a_token_a_refusal_says_how_to_give_one(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TOWER_TOKEN", "TOWER_TOKEN_FILE", "TOWER_WEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TowerError) as caught:
        TowerClient(web_url=url, timeout_s=5).context("ana")
    message = str(caught.value)
    assert "answered 401" in message and "no token was given" in message
    assert "TOWER_TOKEN" in message and "TOWER_TOKEN_FILE" in message
    # an empty token counts as none
    with pytest.raises(TowerError, match="no token was given"):
        TowerClient(web_url=url, token="", timeout_s=5).context("ana")
