"""Every console action is audited as a `console_action` record: who (from the token),
what, when, done or refused; a look at a customer's page too. The records are audit
records of their own kind, shown on the policy page, apart from the governance records."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.console import html, views
from pipeline.console.action_audit import KIND, OUTCOME, ConsoleAction, action_record
from pipeline.console.app import ActionRefused, build_app
from pipeline.console.store import Batch, Store, audit_row
from pipeline.contracts.codec import decode_record, encode_record
from pipeline.contracts.policy_record import PolicyRecord
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.web.auth import TokenFile, WebSecurity
from tests.unit.console.records import HOSTILE, NOW, audit
from tests.unit.web.test_auth import OPERATOR_TOKEN, VIEWER_TOKEN, tokens_file

BY_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


class Actions:
    """Policy actions that approve anything but what `ops-bot` proposed."""

    def propose(self, text: str, source: str, by: str) -> str:
        return f"proposed by {by}"

    def approve(self, version: str, by: str) -> str:
        if version == "mine":
            raise ActionRefused(f"{by} proposed {version} and cannot also approve it")
        return f"approved {version} by {by}"

    def reject(self, version: str, by: str, reason: str) -> str:
        return f"rejected {version}"

    def accept(self, record: PolicyRecord, in_force: Policy) -> Policy:
        return in_force

    def load(self, record: PolicyRecord) -> Policy:
        return DEFAULT_POLICY


class Recorded:
    def __init__(self, refuse: str | None = None) -> None:
        self.actions: list[ConsoleAction] = []
        self.refuse = refuse

    def record(self, action: ConsoleAction) -> str | None:
        self.actions.append(action)
        return self.refuse


def served(tmp_path: Path, log: Recorded, check: Callable[[TestClient], Awaitable[None]]) -> Store:
    store = Store.open(None)
    b = Batch()
    b.audit.append(audit_row(0, 0, audit(0, "ana")))
    b.next_offsets[("audit", 0)] = 1
    store.add(b)
    security = WebSecurity(tokens=TokenFile(tokens_file(tmp_path)))

    async def main() -> None:
        app = build_app(store, security, Actions(), action_log=log, report_every_s=3600)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())
    return store


def test_an_action_done_and_one_refused_are_both_audited_with_the_tokens_name(
    tmp_path: Path,
) -> None:
    log = Recorded()

    async def check(client: TestClient) -> None:
        r = await client.post(
            "/api/console/v1/policy/approve", json={"version": "v2"}, headers=BY_OPERATOR
        )
        assert r.status == 200 and (await r.json())["audited"] is True
        r = await client.post(
            "/api/console/v1/policy/approve",
            json={"version": "mine", "by": "someone-else"},
            headers=BY_OPERATOR,
        )
        assert r.status == 409
        r = await client.post(
            "/api/console/v1/policy/kill-switch", json={"agent": "promo-bot"}, headers=BY_OPERATOR
        )
        assert r.status == 200

    served(tmp_path, log, check)
    got = [(a.action, a.by, a.role, a.done) for a in log.actions]
    assert got == [
        ("approve", "ops-bot", "operator", True),
        ("approve", "ops-bot", "operator", False),
        ("kill_switch", "ops-bot", "operator", True),
    ]
    assert "cannot also approve" in log.actions[1].message
    assert log.actions[1].request["by"] == "someone-else"  # kept as asked, never trusted


def test_an_action_the_audit_refused_still_stands_and_says_so(tmp_path: Path) -> None:
    log = Recorded(refuse="the console_action audit record was not written: denied")

    async def check(client: TestClient) -> None:
        r = await client.post(
            "/api/console/v1/policy/reject", json={"version": "v2"}, headers=BY_OPERATOR
        )
        body = await r.json()
        assert r.status == 200 and body["audited"] is False and "not written" in body["warning"]

    served(tmp_path, log, check)


def test_a_look_at_a_customers_page_is_audited(tmp_path: Path) -> None:
    log = Recorded()

    async def check(client: TestClient) -> None:
        for path in ("/customers/ana", "/api/console/v1/customers/nobody"):
            r = await client.get(path, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
            assert r.status in (200, 404)
        assert (await client.get("/agents", headers=BY_OPERATOR)).status == 200
        for _ in range(50):
            if len(log.actions) == 2:
                break
            await asyncio.sleep(0.05)

    served(tmp_path, log, check)
    got = [(a.action, a.by, a.done, a.request["customer_id"]) for a in log.actions]
    assert got == [("view_customer", "ana", True, "ana"), ("view_customer", "ana", False, "nobody")]


def action(**kw: Any) -> ConsoleAction:
    base = dict(
        action="rollback", by="ana", role="operator", done=True, message="proposed 1.0.0",
        request={"version": "1.0.0"}, policy_in_force="2.0.0+abc", at=NOW,
    )  # fmt: skip
    return ConsoleAction(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_the_record_is_an_audit_record_of_its_own_kind(fmt: str) -> None:
    record = action_record(action())
    back = decode_record("audit_record", encode_record("audit_record", record, fmt))
    assert (back["kind"], back["outcome"], back["agent"], back["trigger"]) == (
        KIND,
        OUTCOME,
        "ana",
        "rollback",
    )
    assert orjson.loads(back["input"]) == {
        "action": "rollback", "by": "ana", "role": "operator", "result": "done",
        "request": {"version": "1.0.0"},
    }  # fmt: skip
    assert back["reason"] == "ana (operator) rollback: done: proposed 1.0.0"
    assert action_record(action())["event_id"] != record["event_id"]


def test_the_policy_page_lists_console_actions_apart_and_inert() -> None:
    store = Store.open(None)
    b = Batch()
    b.audit.append(audit_row(0, 0, audit(0, "ana")))
    b.audit.append(audit_row(0, 1, action_record(action(by=HOSTILE, done=False))))
    b.next_offsets[("audit", 0)] = 2
    store.add(b)
    listed = views.console_actions(store)
    assert [(a["by"], a["action"]) for a in listed] == [(HOSTILE, "rollback")]
    assert "refused" in listed[0]["what"] and not re.search(r"1\d{12}", str(listed))
    d = {**views.policy_view(views.PolicyState()), "console_actions": listed}
    page = html.policy_page(d, None)
    assert "Console actions" in page and HOSTILE not in page and "&lt;script&gt;" in page
    assert views.overview(store, "hour", now=NOW + 1000)["totals"] == {"approved": 1}
