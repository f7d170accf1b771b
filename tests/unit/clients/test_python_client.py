"""The agents' HTTP client (clients/python) against scripted answers: what it sends, how
it reads decisions and errors, its retries and its settings from the environment. The same
client against a real worker: tests/integration/test_http_clients.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from journey_tower_client import (
    AsyncTowerClient,
    AuthError,
    Config,
    InvalidRequest,
    NotFound,
    TowerClient,
    TowerError,
    Unavailable,
)

DRAFT: dict[str, Any] = {
    "department": "service",
    "channel": "chat",
    "action": "answer",
    "category": "service",
}
DECIDED = {
    "api_version": "v1",
    "event_id": "ev-1",
    "customer_id": "cust-42",
    "status": "decided",
    "outcome": "approved",
    "rule": None,
    "reason": "passed every rule",
    "action": {"action_id": "a-1", "channel": "chat", "content": "Hi [AI]"},
    "not_before": None,
    "audit_id": "d-1",
    "policy_version": "p-1",
}
PENDING = {"api_version": "v1", "event_id": "ev-1", "customer_id": "cust-42", "status": "pending"}
CONFIG = Config(url="http://tower:6066", token="tok", agent="care-bot", timeout_s=2.0)

Reply = tuple[int, Any, dict[str, str]]


class Script:
    """Answers requests in order and keeps them."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.asked: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request)
        status, body, headers = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return httpx.Response(status, json=body, headers=headers)

    def body(self, i: int = 0) -> dict[str, Any]:
        return json.loads(self.asked[i].content)


def sync(script: Script, config: Config = CONFIG) -> TowerClient:
    return TowerClient(config=config, transport=httpx.MockTransport(script))


def run_async(script: Script, act: Callable[[AsyncTowerClient], Any]) -> Any:
    async def main() -> Any:
        async with AsyncTowerClient(config=CONFIG, transport=httpx.MockTransport(script)) as tower:
            return await act(tower)

    return asyncio.run(main())


def test_propose_sends_the_event_and_reads_the_decision() -> None:
    script = Script((200, DECIDED, {}))
    decision = sync(script).propose("cust-42", wait_s=5, content="Hi", **DRAFT)
    assert decision.decided and decision.emitted and decision.outcome == "approved"
    assert decision.action == DECIDED["action"] and decision.audit_id == "d-1"
    [request] = script.asked
    assert request.method == "POST" and request.url.path == "/api/v1/proposals"
    assert request.url.params["wait"] == "5"
    assert request.headers["Authorization"] == "Bearer tok"
    body = script.body()
    assert body["event_id"].startswith("ev-") and body["kind"] == "proposal"
    assert (body["customer_id"], body["agent"], body["channel"]) == ("cust-42", "care-bot", "chat")
    assert body["proposal"] == {
        "action": "answer",
        "category": "service",
        "content": "Hi",
        "priority": 50,
    }
    assert "occurred_at" not in body  # the server's clock


def test_a_pending_decision_keeps_where_to_ask_later() -> None:
    location = "/api/v1/decisions/ev-1?customer_id=cust-42"
    script = Script((202, PENDING, {"Location": location}))
    decision = sync(script).propose("cust-42", **DRAFT)
    assert not decision.decided and decision.location == location and decision.outcome is None


def test_wait_decision_polls_until_decided() -> None:
    script = Script((202, PENDING, {}), (202, PENDING, {}), (200, DECIDED, {}))
    assert sync(script).wait_decision("ev-1", "cust-42").outcome == "approved"
    assert [r.url.path for r in script.asked] == ["/api/v1/decisions/ev-1"] * 3
    assert script.asked[0].url.params["customer_id"] == "cust-42"


def test_missing_fields_are_listed_together_and_nothing_is_sent() -> None:
    script = Script((200, DECIDED, {}))
    client = sync(script, Config(url="http://tower:6066"))
    with pytest.raises(InvalidRequest) as caught:
        client.propose("cust-42", action="answer", chanel="chat")  # type: ignore[call-arg]
    fields = [p.field for p in caught.value.problems]
    assert fields == ["department", "channel", "category", "chanel"]  # agent: the token's
    assert script.asked == []


def test_a_503_is_retried_with_the_same_event_id() -> None:
    script = Script((503, {"error": "unavailable"}, {"Retry-After": "0"}), (200, DECIDED, {}))
    assert sync(script).propose("cust-42", **DRAFT).decided
    assert len(script.asked) == 2 and script.body(0)["event_id"] == script.body(1)["event_id"]


def test_a_503_past_the_timeout_is_unavailable() -> None:
    script = Script((503, {"error": "unavailable", "detail": "rebalancing"}, {"Retry-After": "5"}))
    with pytest.raises(Unavailable) as caught:
        sync(script).context("cust-42")
    assert caught.value.retry_after_s == 5.0 and "TOWER_TIMEOUT_S" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (
            400,
            {
                "error": "invalid",
                "detail": "2 fields are invalid: channel, proposal.priority",
                "problems": [
                    {"field": "channel", "message": "required"},
                    {"field": "proposal.priority", "message": "must be 0..100"},
                ],
            },
            InvalidRequest,
            ["channel: required", "proposal.priority: must be 0..100"],
        ),
        (401, {"error": "unauthorized", "detail": "no token"}, AuthError, ["TOWER_TOKEN"]),
        (
            403,
            {"error": "forbidden", "detail": "this token proposes as care-bot only"},
            AuthError,
            ["care-bot only", "the token was refused"],
        ),
        (
            404,
            {"error": "not_found", "detail": "unknown decision", "hint": "propose it again"},
            NotFound,
            ["propose it again"],
        ),
        (500, "Internal Server Error", TowerError, ["answered 500"]),
    ],
)
def test_errors_carry_the_server_s_code_detail_and_problems(
    status: int, body: Any, kind: type[TowerError], words: list[str]
) -> None:
    with pytest.raises(TowerError) as caught:
        sync(Script((status, body, {}))).propose("cust-42", **DRAFT)
    assert type(caught.value) is kind and caught.value.status == status
    assert all(w in str(caught.value) for w in words), str(caught.value)
    if status == 400:
        assert [p.field for p in caught.value.problems] == ["channel", "proposal.priority"]


def test_an_unreachable_tower_names_tower_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = TowerClient(config=CONFIG, transport=httpx.MockTransport(refuse))
    with pytest.raises(TowerError, match="set TOWER_URL"):
        client.context("cust-42")


def test_context_and_preflight_paths() -> None:
    script = Script((200, {"customer_id": "a b", "known": False}, {}))
    client = sync(script)
    assert client.context("a b", at=5)["known"] is False
    client.preflight("a b", **DRAFT)
    assert script.asked[0].url.raw_path == b"/api/v1/customers/a%20b/context?at=5"
    assert script.asked[1].url.path == "/api/v1/preflight"
    assert isinstance(script.body(1)["occurred_at"], int)  # a preflight judges a moment


def test_the_async_client_sends_and_reads_the_same() -> None:
    script = Script((503, {"error": "unavailable"}, {"Retry-After": "0"}), (200, DECIDED, {}))
    decision = run_async(script, lambda tower: tower.propose("cust-42", **DRAFT))
    assert decision.outcome == "approved"
    assert script.body(0) == script.body(1) and script.body(0)["agent"] == "care-bot"
    signal = Script((200, {**DECIDED, "outcome": "recorded", "action": None}, {}))
    answer = run_async(
        signal, lambda tower: tower.signal("cust-42", "case_opened", attributes={"case_id": "k"})
    )
    assert answer.outcome == "recorded" and not answer.emitted
    assert signal.body()["signal"] == {"type": "case_opened", "attributes": {"case_id": "k"}}


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    env = {
        "TOWER_URL": "https://tower.example/",
        "TOWER_TOKEN_FILE": str(secret),
        "TOWER_AGENT": "care-bot",
        "TOWER_TIMEOUT_S": "3",
    }
    assert Config.from_env(env) == Config(
        url="https://tower.example", token="from-file", agent="care-bot", timeout_s=3.0
    )
    assert Config.from_env({**env, "TOWER_TOKEN": "direct"}).token == "direct"
    assert Config.from_env({}) == Config()
    with pytest.raises(TowerError, match=r"TOWER_TOKEN_FILE=.* cannot be read"):
        Config.from_env({"TOWER_TOKEN_FILE": str(tmp_path / "absent")})
    with pytest.raises(TowerError, match="TOWER_TIMEOUT_S='soon'"):
        Config.from_env({"TOWER_TIMEOUT_S": "soon"})
    assert "from-file" not in repr(Config.from_env(env))


def test_a_wait_beyond_the_server_s_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"wait_s must be 0\.\.30"):
        sync(Script((200, DECIDED, {}))).propose("cust-42", wait_s=31, **DRAFT)
