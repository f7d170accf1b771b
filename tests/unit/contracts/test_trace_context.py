"""W3C trace context headers: which are carried, which are left behind, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.trace_context import (
    InvalidTraceContext,
    from_text,
    to_text,
    trace_headers,
    valid_traceparent,
)

GOOD = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (GOOD, True),
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", True),  # not sampled
        (b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later", True),  # newer
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", False),  # 00: no tail
        (b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),  # forbidden
        (b"00-00000000000000000000000000000000-b7ad6b7169203331-01", False),  # zero trace
        (b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),  # zero parent
        (b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),  # upper case
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", False),  # no flags
        (b"", False),
        (b"not a traceparent", False),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\u00e9".encode(), False),
    ],
)
def test_which_traceparents_are_valid(value, valid):
    assert valid_traceparent(value) is valid


@pytest.mark.parametrize(
    ("headers", "carried"),
    [
        (None, None),
        ([], None),
        ([("other", b"x")], None),
        ([("tracestate", b"a=1")], None),  # a state without a parent is nothing
        ([("traceparent", GOOD)], (("traceparent", GOOD),)),
        (
            [("x", b"1"), ("traceparent", GOOD), ("tracestate", b"congo=t61rcWkgMzE")],
            (("traceparent", GOOD), ("tracestate", b"congo=t61rcWkgMzE")),
        ),
        (  # a state split over two headers is one list
            [("traceparent", GOOD), ("tracestate", b"a=1"), ("tracestate", b"b=2")],
            (("traceparent", GOOD), ("tracestate", b"a=1,b=2")),
        ),
        ([("traceparent", GOOD), ("tracestate", b"a=\x00")], (("traceparent", GOOD),)),
        ([("traceparent", GOOD), ("tracestate", b"")], (("traceparent", GOOD),)),
    ],
)
def test_the_trace_headers_carried(headers, carried):
    assert trace_headers(headers) == carried


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", b"garbage")],
        [("traceparent", None)],
        [("traceparent", GOOD), ("traceparent", GOOD)],
    ],
)
def test_a_malformed_traceparent_is_refused_with_a_reason(headers):
    with pytest.raises(InvalidTraceContext):
        trace_headers(headers)


@given(st.lists(st.tuples(st.sampled_from(["traceparent", "tracestate", "x"]), st.binary())))
def test_any_headers_give_a_context_or_a_refusal_never_a_crash(headers):
    try:
        carried = trace_headers(headers)
    except InvalidTraceContext:
        return
    if carried is not None:
        assert from_text(to_text(carried)) == carried


def test_the_text_kept_in_the_state_gives_the_headers_back():
    both = (("traceparent", GOOD), ("tracestate", b"a=1, b=2\t"))
    assert from_text(to_text(both)) == both
    assert from_text(to_text(both[:1])) == both[:1]


def spec_valid(value: bytes) -> bool:
    """The spec's reading, field by field (the model the one-pattern check must equal)."""
    fields = value.split(b"-")
    if len(fields) < 4 or any(len(f) != n for f, n in zip(fields, (2, 32, 16, 2), strict=False)):
        return False
    if any(set(f) - set(b"0123456789abcdef") for f in fields[:4]):
        return False
    version, trace_id, parent_id = fields[:3]
    if version == b"ff" or set(trace_id) == {ord("0")} or set(parent_id) == {ord("0")}:
        return False
    if version == b"00":
        return len(fields) == 4
    return all(0x21 <= b <= 0x7E for b in value[55:]) and (len(value) == 55 or value[55] == 0x2D)


HEX = "0123456789abcdef"
TRACEPARENTS = st.builds(
    lambda v, t, p, f, tail: f"{v}-{t}-{p}-{f}".encode() + tail,
    st.sampled_from(["00", "01", "ff", "0a", "0A", "0"]),
    st.one_of(st.just("0" * 32), st.text(HEX, min_size=31, max_size=33)),
    st.one_of(st.just("0" * 16), st.text(HEX, min_size=15, max_size=17)),
    st.text(HEX, min_size=1, max_size=3),
    st.one_of(st.just(b""), st.binary(max_size=6), st.builds(lambda b: b"-" + b, st.binary())),
)


@given(TRACEPARENTS)
def test_the_traceparent_check_is_the_spec_s(value: bytes) -> None:
    assert valid_traceparent(value) is spec_valid(value)


def outcome(headers):
    try:
        return trace_headers(headers)
    except InvalidTraceContext:
        return InvalidTraceContext


@given(
    st.tuples(
        st.sampled_from(["traceparent", "tracestate", "x"]), st.one_of(TRACEPARENTS, st.none())
    )
)
def test_a_lone_header_is_read_as_it_is_among_others(header) -> None:
    assert outcome([header]) == outcome([header, ("x", b"1")])
