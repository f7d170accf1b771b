"""The sync and async clients: one set of calls (`Calls`), two ways to send them.

A 503 (the tower starting or rebalancing) is retried after its Retry-After until the
client's timeout; every other failure raises a `TowerError` at once. Proposals and signals
carry an event id made here, so a retry is the same event and never a second action.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import quote

import httpx

from journey_tower_client.config import Config
from journey_tower_client.errors import TowerError, Unavailable, error_for
from journey_tower_client.requests import Decision, now_ms, proposal_body, signal_body

API = "/api/v1"
#: the pause before retrying a 503 that names no Retry-After, and between polls
DEFAULT_RETRY_S = 0.5
#: the server's longest decision wait
MAX_WAIT_S = 30.0
USER_AGENT = "journey-tower-client"


class ProposalFields(TypedDict, total=False):
    """A proposal's fields; `agent` and `department` default to TOWER_AGENT and
    TOWER_DEPARTMENT, and `agent` to an agent token's own name on the server."""

    agent: str
    department: str
    channel: str
    action: str
    category: str
    priority: int
    content: str
    offer_id: str
    offer_value: float
    propensity: float
    asserts: Mapping[str, str]
    ai_generated: bool
    expires_at: int
    conversation_id: str
    trigger: str


@dataclass(frozen=True, slots=True)
class Call:
    """One request: what to send and which statuses answer it."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None
    #: the server may hold the answer this long (a decision's wait)
    wait_s: float = 0.0
    ok: tuple[int, ...] = (200,)


class Calls:
    """The requests of the API, built from the client's config."""

    config: Config

    def _fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        defaults = {"agent": self.config.agent, "department": self.config.department}
        return {**{k: v for k, v in defaults.items() if v is not None}, **fields}

    def _context(self, customer_id: str, at: int | None) -> Call:
        params = None if at is None else {"at": str(at)}
        return Call("GET", f"/customers/{quote(customer_id, safe='')}/context", params)

    def _preflight(self, customer_id: str, fields: Mapping[str, Any]) -> Call:
        body = proposal_body(customer_id, self._fields(fields), occurred_at=now_ms())
        return Call("POST", "/preflight", body=body)

    def _propose(
        self, customer_id: str, fields: Mapping[str, Any], wait_s: float, event_id: str | None
    ) -> Call:
        body = proposal_body(customer_id, self._fields(fields), event_id=event_id)
        return _ask("/proposals", body, wait_s)

    def _signal(
        self,
        customer_id: str,
        type_: str,
        attributes: Mapping[str, str] | None,
        channel: str | None,
        conversation_id: str | None,
        wait_s: float,
        event_id: str | None,
    ) -> Call:
        body = signal_body(
            customer_id,
            type_,
            agent=self.config.agent,
            department=self.config.department,
            attributes=attributes,
            channel=channel,
            conversation_id=conversation_id,
            event_id=event_id,
        )
        return _ask("/signals", body, wait_s)

    def _decision(self, event_id: str, customer_id: str) -> Call:
        path = f"/decisions/{quote(event_id, safe='')}"
        return Call("GET", path, {"customer_id": customer_id}, ok=(200, 202))

    def _http_client_args(self) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return {"base_url": self.config.url + API, "headers": headers}

    def _request(self, call: Call) -> dict[str, Any]:
        """The HTTP request of `call`, the same for both clients."""
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.body,
            "timeout": self.config.timeout_s + call.wait_s,
        }

    def _retry_pause(self, call: Call, response: httpx.Response, deadline: float) -> float | None:
        """None when `response` answers `call`; for a 503, the pause before the retry, or
        Unavailable when that pause would pass `deadline`; a TowerError for the rest."""
        if response.status_code in call.ok:
            return None
        if response.status_code != 503:
            raise error_for(
                response.status_code,
                _body(response),
                f"{call.method} {API}{call.path}",
                bool(self.config.token),
            )
        pause = retry_after(response) or DEFAULT_RETRY_S
        if time.monotonic() + pause >= deadline:
            raise self._unavailable(response)
        return pause

    def _unreachable(self, call: Call, exc: httpx.HTTPError) -> TowerError:
        return TowerError(
            f"{call.method} {API}{call.path}: cannot reach the tower at {self.config.url} "
            f"({exc or type(exc).__name__}); set TOWER_URL to a worker's URL"
        )

    def _unavailable(self, response: httpx.Response) -> Unavailable:
        body = _body(response)
        detail = body.get("detail") or body.get("error") if isinstance(body, dict) else None
        after = retry_after(response)
        return Unavailable(
            f"the tower is unavailable ({detail or 'starting or rebalancing'}) and stayed so "
            f"for the client's {self.config.timeout_s:g} s (TOWER_TIMEOUT_S)",
            retry_after_s=after,
            status=503,
            code="unavailable",
            detail=str(detail or ""),
        )


class TowerClient(Calls):
    """The synchronous client. Settings not passed come from the environment
    (`Config.from_env`); `transport` replaces the network (tests)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        agent: str | None = None,
        department: str | None = None,
        timeout_s: float | None = None,
        config: Config | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = _configured(config, url, token, agent, department, timeout_s)
        self._http = httpx.Client(transport=transport, **self._http_client_args())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def context(self, customer_id: str, *, at: int | None = None) -> dict[str, Any]:
        """What the tower knows about the customer now (or at `at`, epoch ms): consents,
        open cases, facts told and known, cap headroom, quiet hours, holds, escalation.
        `known` is False for a customer it has not met: the policy's empty context."""
        return self._json(self._context(customer_id, at))

    def preflight(self, customer_id: str, **fields: Unpack[ProposalFields]) -> dict[str, Any]:
        """What the tower would decide for this proposal now, advisory (nothing is kept)."""
        return self._json(self._preflight(customer_id, fields))

    def propose(
        self,
        customer_id: str,
        *,
        wait_s: float = 2.0,
        event_id: str | None = None,
        **fields: Unpack[ProposalFields],
    ) -> Decision:
        """Ask and decide: the tower's final decision, or a pending one after `wait_s`
        (at most 30). Carry out `decision.action` only if `decision.emitted`."""
        return self._decided(self._propose(customer_id, fields, wait_s, event_id))

    def signal(
        self,
        customer_id: str,
        type_: str,
        *,
        attributes: Mapping[str, str] | None = None,
        channel: str | None = None,
        conversation_id: str | None = None,
        wait_s: float = 2.0,
        event_id: str | None = None,
    ) -> Decision:
        """Tell the tower what happened to the customer (e.g. `consent_changed`)."""
        call = self._signal(
            customer_id, type_, attributes, channel, conversation_id, wait_s, event_id
        )
        return self._decided(call)

    def decision(self, event_id: str, customer_id: str) -> Decision:
        """The event's decision now: decided, or pending."""
        return self._decided(self._decision(event_id, customer_id))

    def wait_decision(
        self, event_id: str, customer_id: str, *, timeout_s: float = 30.0
    ) -> Decision:
        """The event's decision once decided, or the pending one after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not (found := self.decision(event_id, customer_id)).decided:
            if (pause := _poll_pause(deadline)) is None:
                break
            time.sleep(pause)
        return found

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document."""
        return self._json(Call("GET", "/openapi.json"))

    def _json(self, call: Call) -> dict[str, Any]:
        return _object(self._send(call), call)

    def _decided(self, call: Call) -> Decision:
        return _decision_of(self._send(call))

    def _send(self, call: Call) -> httpx.Response:
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            try:
                response = self._http.request(**self._request(call))
            except httpx.HTTPError as exc:
                raise self._unreachable(call, exc) from None
            pause = self._retry_pause(call, response, deadline)
            if pause is None:
                return response
            time.sleep(pause)


class AsyncTowerClient(Calls):
    """The asyncio client: `TowerClient`'s methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        agent: str | None = None,
        department: str | None = None,
        timeout_s: float | None = None,
        config: Config | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = _configured(config, url, token, agent, department, timeout_s)
        self._http = httpx.AsyncClient(transport=transport, **self._http_client_args())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def context(self, customer_id: str, *, at: int | None = None) -> dict[str, Any]:
        """See `TowerClient.context`."""
        return await self._json(self._context(customer_id, at))

    async def preflight(self, customer_id: str, **fields: Unpack[ProposalFields]) -> dict[str, Any]:
        """See `TowerClient.preflight`."""
        return await self._json(self._preflight(customer_id, fields))

    async def propose(
        self,
        customer_id: str,
        *,
        wait_s: float = 2.0,
        event_id: str | None = None,
        **fields: Unpack[ProposalFields],
    ) -> Decision:
        """See `TowerClient.propose`."""
        return await self._decided(self._propose(customer_id, fields, wait_s, event_id))

    async def signal(
        self,
        customer_id: str,
        type_: str,
        *,
        attributes: Mapping[str, str] | None = None,
        channel: str | None = None,
        conversation_id: str | None = None,
        wait_s: float = 2.0,
        event_id: str | None = None,
    ) -> Decision:
        """See `TowerClient.signal`."""
        call = self._signal(
            customer_id, type_, attributes, channel, conversation_id, wait_s, event_id
        )
        return await self._decided(call)

    async def decision(self, event_id: str, customer_id: str) -> Decision:
        """See `TowerClient.decision`."""
        return await self._decided(self._decision(event_id, customer_id))

    async def wait_decision(
        self, event_id: str, customer_id: str, *, timeout_s: float = 30.0
    ) -> Decision:
        """See `TowerClient.wait_decision`."""
        deadline = time.monotonic() + timeout_s
        while not (found := await self.decision(event_id, customer_id)).decided:
            if (pause := _poll_pause(deadline)) is None:
                break
            await asyncio.sleep(pause)
        return found

    async def openapi(self) -> dict[str, Any]:
        """See `TowerClient.openapi`."""
        return await self._json(Call("GET", "/openapi.json"))

    async def _json(self, call: Call) -> dict[str, Any]:
        return _object(await self._send(call), call)

    async def _decided(self, call: Call) -> Decision:
        return _decision_of(await self._send(call))

    async def _send(self, call: Call) -> httpx.Response:
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            try:
                response = await self._http.request(**self._request(call))
            except httpx.HTTPError as exc:
                raise self._unreachable(call, exc) from None
            pause = self._retry_pause(call, response, deadline)
            if pause is None:
                return response
            await asyncio.sleep(pause)


def _ask(path: str, body: Mapping[str, Any], wait_s: float) -> Call:
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise ValueError(f"wait_s must be 0..{MAX_WAIT_S:g} seconds, not {wait_s!r}")
    return Call("POST", path, {"wait": f"{wait_s:g}"}, body, wait_s, ok=(200, 202))


def _configured(
    config: Config | None,
    url: str | None,
    token: str | None,
    agent: str | None,
    department: str | None,
    timeout_s: float | None,
) -> Config:
    base = config or Config.from_env()
    return Config(
        url=(url or base.url).rstrip("/"),
        token=token if token is not None else base.token,
        agent=agent or base.agent,
        department=department or base.department,
        timeout_s=base.timeout_s if timeout_s is None else timeout_s,
    )


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def _decision_of(response: httpx.Response) -> Decision:
    return Decision.from_json(_body(response), response.headers.get("Location"))


def _poll_pause(deadline: float) -> float | None:
    """The pause before asking for a pending decision again; None once past `deadline`."""
    return None if time.monotonic() + DEFAULT_RETRY_S > deadline else DEFAULT_RETRY_S


def _object(response: httpx.Response, call: Call) -> dict[str, Any]:
    body = _body(response)
    if not isinstance(body, dict):
        raise TowerError(f"{call.method} {API}{call.path} answered without a JSON object")
    return body


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the tower sends seconds)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
