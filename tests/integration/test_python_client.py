"""The agents' HTTP client (clients/python) against a real worker on each runtime, with an
agent-bound token: context, preflight, ask-and-decide (a retry gives the same decision),
signals, decisions by id, and the errors an agent meets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from journey_tower_client import (
    AsyncTowerClient,
    AuthError,
    Config,
    InvalidRequest,
    NotFound,
    TowerClient,
)

from tests.agent_worker import AGENT, AgentWorker, agent_worker

pytestmark = pytest.mark.integration

ANSWER = {"department": "service", "channel": "chat", "action": "answer", "category": "service"}


# both runtimes answer the API through the same server (test_agents_http.py runs it on
# both); the client's run on the transactional runtime is in `make soak`
@pytest.fixture(
    scope="module", params=["faust", pytest.param("transactional", marks=pytest.mark.soak)]
)
def tower(
    request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentWorker]:
    with agent_worker(kafka_bootstrap, tmp_path_factory.mktemp(request.param), request.param) as w:
        yield w


def client(tower: AgentWorker) -> TowerClient:
    """Configured as an agent's process is: from the environment alone."""
    return TowerClient(config=Config.from_env({**tower.env(), "TOWER_TIMEOUT_S": "30"}))


def test_ask_and_decide_with_an_agent_token(tower: AgentWorker) -> None:
    with client(tower) as agent:
        ctx = agent.context("py-new")
        assert ctx["known"] is False and ctx["customer_id"] == "py-new"
        advice = agent.preflight("py-new", **ANSWER, content="Your parcel left the depot.")
        assert advice["outcome"] == "approved" and advice["advisory"] is True

        decision = agent.propose(
            "py-new", wait_s=10, event_id="py-ev-1", **ANSWER, content="Your parcel left."
        )
        assert decision.decided and decision.outcome == "approved" and decision.emitted
        assert decision.action is not None and decision.action["channel"] == "chat"
        assert decision.audit_id and decision.policy_version
        # a retry of the same event is the same decision, never a second action
        again = agent.propose("py-new", wait_s=10, event_id="py-ev-1", **ANSWER)
        assert (again.audit_id, again.action) == (decision.audit_id, decision.action)
        assert agent.decision("py-ev-1", "py-new").audit_id == decision.audit_id
        # the decision is answered as soon as it is made; the state is stored with its batch
        deadline = time.monotonic() + 60
        while not agent.context("py-new")["known"]:
            assert time.monotonic() < deadline, "the decided customer never became known"
            time.sleep(0.2)

        with pytest.raises(AuthError) as refused:
            agent.propose("py-new", agent="promo-bot", **ANSWER)
        assert refused.value.status == 403
        with pytest.raises(InvalidRequest) as invalid:
            agent.propose("py-new", **{**ANSWER, "channel": "fax"}, priority=500)
        assert {p.field for p in invalid.value.problems} >= {"channel", "proposal.priority"}
        with pytest.raises(NotFound):
            agent.decision("never-sent", "py-new")


def test_signals_and_the_async_client(tower: AgentWorker) -> None:
    async def run() -> None:
        config = Config.from_env({**tower.env(), "TOWER_TIMEOUT_S": "30"})
        async with AsyncTowerClient(config=config) as agent:
            consent = await agent.signal(
                "py-async",
                "consent_changed",
                channel="email",
                attributes={"purpose": "marketing", "granted": "true"},
                wait_s=10,
            )
            assert consent.decided and consent.outcome == "recorded" and not consent.emitted
            deadline = time.monotonic() + 60  # the state is stored with its batch
            while not (ctx := await agent.context("py-async"))["known"]:
                assert time.monotonic() < deadline, "the signalled customer never became known"
                await asyncio.sleep(0.2)
            assert ctx["consents"][0]["granted"] is True
            decision = await agent.propose(
                "py-async",
                department="marketing",
                channel="email",
                action="message",
                category="marketing",
                wait_s=10,
            )
            assert decision.decided and decision.outcome in ("approved", "deferred")
            assert decision.action is not None and decision.action["agents"] == [AGENT]
            later = await agent.wait_decision(decision.event_id, "py-async")
            assert later.audit_id == decision.audit_id

    asyncio.run(run())


def test_the_openapi_document_is_served(tower: AgentWorker, tmp_path: Path) -> None:
    with client(tower) as agent:
        spec = agent.openapi()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/proposals" in spec["paths"]
