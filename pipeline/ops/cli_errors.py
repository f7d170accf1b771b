"""Expected failures of a CLI command: one line on stderr (what to do), exit 1, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import click

from pipeline.core.policy_document import PolicyError

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(*expected: type[BaseException]) -> Callable[[F], F]:
    """Decorate a command so `expected` errors (and ValueError) end it cleanly.

    A `PolicyError` prints as is: one `file:line: path: message` line per problem.
    """
    caught: tuple[type[BaseException], ...] = (*expected, ValueError)

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except PolicyError as exc:
                click.echo(str(exc), err=True)
                sys.exit(1)
            except caught as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(1)

        return cast(F, wrapper)

    return decorate
