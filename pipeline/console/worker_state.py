"""A customer's live state, from the workers: consents, frequency caps, holds, open cases,
escalation, quiet hours and experiment arms, as the rules see them now.

The audit says what was decided; only the worker that owns the customer's partition holds
their state. The console asks any worker's agents' API
(`GET /api/v1/customers/{id}/context`), which forwards to the owner, with the signed-in
person's own token: console and workers read the same tokens file, so the worker checks
and logs that person, and the console holds no secret of its own for it.

A worker that cannot be reached leaves the page with the audit's timeline and a line that
says why and which setting names the worker (TOWER_CONSOLE_WORKER_URL).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote

import aiohttp

#: how long a page waits for the worker's answer
TIMEOUT_S = 3.0


class WorkerState:
    """Asks the worker at `base_url` for customers' contexts."""

    def __init__(
        self, base_url: str, timeout_s: float = TIMEOUT_S, tls: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def context(self, customer_id: str, token: str | None) -> dict[str, Any]:
        """{"available": True, "context": {...}} or {"available": False, "error": "..."}."""
        url = f"{self.base_url}/api/v1/customers/{quote(customer_id, safe='')}/context"
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(
                url, headers=headers, ssl=self.tls if self.tls is not None else True
            ) as r:
                body = await r.json(content_type=None)
                if r.status != 200 or not isinstance(body, dict):
                    detail = (
                        body.get("detail") or body.get("error") if isinstance(body, dict) else ""
                    )
                    return unavailable(f"the worker answered {r.status}: {detail or 'no detail'}")
                return {"available": True, "context": body}
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as exc:
            return unavailable(
                f"cannot reach the worker at {self.base_url}: {exc or type(exc).__name__}"
            )


def unavailable(why: str) -> dict[str, Any]:
    return {
        "available": False,
        "error": f"{why}; the console asks the worker named by TOWER_CONSOLE_WORKER_URL "
        "(default: TOWER_WEB_URL)",
    }
