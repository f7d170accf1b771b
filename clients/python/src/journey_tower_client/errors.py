"""What the tower refused or could not answer, as exceptions that carry its JSON error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid field of a request: its dotted name and what is wrong with it."""

    field: str
    message: str


class TowerError(Exception):
    """Anything the tower refused or did not answer. `status` is the HTTP status (0: no
    answer at all), `code` the error code (`invalid`, `forbidden`, ...), `detail` the
    server's one line, `problems` every invalid field of a 400."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        detail: str = "",
        problems: tuple[Problem, ...] = (),
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.problems = problems
        self.hint = hint


class InvalidRequest(TowerError):
    """400: the body or query is not valid; `problems` lists every invalid field."""


class AuthError(TowerError):
    """401 (no token, or an unknown one) or 403 (the token may not do this, e.g. an agent
    token proposing as another agent)."""


class NotFound(TowerError):
    """404: an unknown decision (never sent, or past the index of recent decisions)."""


class Unavailable(TowerError):
    """503 past the client's timeout: the tower is starting or rebalancing.
    `retry_after_s` is the server's last Retry-After."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


def error_for(status: int, body: Any, what: str, token_given: bool) -> TowerError:
    """The exception for a non-success answer: the server's code, detail and problems,
    and for 401/403 how to give a token."""
    data = body if isinstance(body, dict) else {}
    code = _text(data, "reason") or _text(data, "error")
    detail = _text(data, "detail") or _text(data, "error") or f"HTTP {status}"
    hint = _text(data, "hint")
    problems = tuple(
        Problem(str(p.get("field", "")), str(p.get("message", "")))
        for p in data.get("problems") or ()
        if isinstance(p, dict)
    )
    message = f"{what} answered {status}" + (f" {code}" if code and code != detail else "")
    message += f": {detail}"
    if problems and not all(p.message in detail for p in problems):
        message += " (" + "; ".join(f"{p.field}: {p.message}" for p in problems) + ")"
    if hint:
        message += f"; {hint}"
    kw: dict[str, Any] = {
        "status": status,
        "code": code,
        "detail": detail,
        "problems": problems,
        "hint": hint,
    }
    if status == 400:
        return InvalidRequest(message, **kw)
    if status in (401, 403):
        which = "the token was refused" if token_given else "no token was given"
        return AuthError(f"{message} ({which}: set TOWER_TOKEN or TOWER_TOKEN_FILE)", **kw)
    if status == 404:
        return NotFound(message, **kw)
    return TowerError(message, **kw)


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""
