"""W3C trace context (https://www.w3.org/TR/trace-context/) as Kafka record headers.

An input's `traceparent` and `tracestate` headers travel, as they are, onto every record
the input causes, so a trace runs from the agent through the tower to the channel. Only a
well-formed `traceparent` is carried (with the `tracestate` next to it); anything else is
left behind and counted, never an error: tracing must not cost a decision.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

#: header pairs as they go onto an output record
TraceHeaders = tuple[tuple[str, bytes], ...]

#: version-traceid-parentid-flags; a later version may append fields after a dash. Version
#: 00 exactly, a later one with optional extra fields; never version ff, an all-zero trace
#: id or parent id: one match, no groups (every traced input is checked)
_IDS = rb"-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
_TRACEPARENT = re.compile(rb"(?:00" + _IDS + rb"|(?!00|ff)[0-9a-f]{2}" + _IDS + rb"(?:-[!-~]*)?)\Z")
#: the spec's limit: 32 list members of at most 256 characters, with separators
_TRACESTATE_MAX = 32 * 257
_STATE_SEPARATOR = "\n"  # never in a valid header value (printable ASCII only)


def valid_traceparent(value: bytes) -> bool:
    """Whether `value` is a traceparent a tracer accepts: version 00 exactly, a later one
    with optional extra fields; never version ff, an all-zero trace id or parent id."""
    return _TRACEPARENT.match(value) is not None


def _printable(value: bytes) -> bool:
    return len(value) <= _TRACESTATE_MAX and all(0x20 <= b < 0x7F or b == 0x09 for b in value)


def trace_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> TraceHeaders | None:
    """The trace context among a record's headers: None when it has none.

    Raises `InvalidTraceContext` when it has a `traceparent` that is malformed (the caller
    counts it and carries nothing); a malformed `tracestate` alone is dropped, as the
    spec says a tracer does."""
    if not headers:
        return None
    if len(headers) == 1:  # the usual case: a traceparent alone, or one unrelated header
        name, value = headers[0]
        if name != TRACEPARENT:
            return None
        if value is None or _TRACEPARENT.match(value) is None:
            raise InvalidTraceContext(f"malformed traceparent {(value or b'')[:64]!r}")
        return ((TRACEPARENT, value),)
    parent: bytes | None = None
    state: bytes | None = None
    for name, value in headers:
        if name == TRACEPARENT:
            if parent is not None:  # two parents: which is the caller is not known
                raise InvalidTraceContext("more than one traceparent header")
            parent = value or b""
        elif name == TRACESTATE and value is not None:
            state = value if state is None else state + b"," + value
    if parent is None:
        return None
    if not valid_traceparent(parent):
        raise InvalidTraceContext(f"malformed traceparent {parent[:64]!r}")
    if state and _printable(state):
        return ((TRACEPARENT, parent), (TRACESTATE, state))
    return ((TRACEPARENT, parent),)


class InvalidTraceContext(ValueError):
    """A `traceparent` header that is not W3C trace context."""


def to_text(headers: TraceHeaders) -> str:
    """The carried headers as one string, to keep with a held proposal in its state."""
    return _STATE_SEPARATOR.join(value.decode("ascii") for _, value in headers)


def from_text(text: str) -> TraceHeaders:
    """`to_text` undone."""
    parts = text.split(_STATE_SEPARATOR)
    names = (TRACEPARENT, TRACESTATE)
    return tuple((name, part.encode("ascii")) for name, part in zip(names, parts, strict=False))
