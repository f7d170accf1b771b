"""The pure text functions behind the content transforms, table by table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.text_guards import (
    ELLIPSIS,
    find_phrases,
    iban_valid,
    luhn_valid,
    phrase_pattern,
    redact_phrases,
    redact_pii,
    truncate,
)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),  # Visa test number
        ("5555555555554444", True),  # Mastercard test number
        ("378282246310005", True),  # Amex, 15 digits
        ("4111111111111112", False),  # last digit off
        ("1234567812345678", False),
        ("0", True),  # degenerate but Luhn-valid
        ("", False),
        ("4111-1111", False),  # digits only
    ],
)
def test_luhn(digits, valid):
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89370400440532013000", True),
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("gb82west12345698765432", True),  # case does not matter to the checksum
        ("NL91ABNA0417164300", True),
        ("DE89370400440532013001", False),  # one digit off
        ("GB82WEST1234569876543", False),  # one character short
        ("8989370400440532013000", False),  # no country letters
        ("DE8937040044053201300!", False),
        ("DE89", False),
    ],
)
def test_iban(iban, valid):
    assert iban_valid(iban) is valid


@pytest.mark.parametrize(
    ("text", "kinds", "expected", "found"),
    [
        # e-mail
        ("write to a.b+c@ex-ample.co.uk!", ("email",), "write to [email]!", ("email",)),
        ("JOHN@EXAMPLE.COM", ("email",), "[email]", ("email",)),
        ("not an email: a@b", ("email",), "not an email: a@b", ()),
        ("@handle and x@y", ("email",), "@handle and x@y", ()),
        # cards, Luhn-checked
        ("card 4111 1111 1111 1111 ok", ("card",), "card [card] ok", ("card",)),
        ("4111-1111-1111-1111", ("card",), "[card]", ("card",)),
        ("amex 378282246310005.", ("card",), "amex [card].", ("card",)),
        ("card 4111111111111112", ("card",), "card 4111111111111112", ()),
        # IBANs, mod-97-checked
        ("iban DE89 3704 0044 0532 0130 00 ok", ("iban",), "iban [iban] ok", ("iban",)),
        ("GB82WEST12345698765432", ("iban",), "[iban]", ("iban",)),
        ("ref DE89370400440532013001", ("iban",), "ref DE89370400440532013001", ()),
        # phone numbers
        ("call +49 30 1234567 now", ("phone",), "call [phone] now", ("phone",)),
        ("call (030) 123-4567", ("phone",), "call [phone]", ("phone",)),
        ("555-123-4567", ("phone",), "[phone]", ("phone",)),
        ("+1 (555) 123-4567", ("phone",), "[phone]", ("phone",)),
        ("0049 30 12345678", ("phone",), "[phone]", ("phone",)),
        ("030.123.4567", ("phone",), "[phone]", ("phone",)),
        ("0301234567", ("phone",), "[phone]", ("phone",)),
        # not phones: dates, versions, prices, short or glued numbers
        ("on 2026-01-01", ("phone",), "on 2026-01-01", ()),
        ("version 1.2.3, price 19.99", ("phone",), "version 1.2.3, price 19.99", ()),
        ("order 12345678", ("phone",), "order 12345678", ()),
        ("order A-12345678", ("phone",), "order A-12345678", ()),
        ("call 123-45", ("phone",), "call 123-45", ()),
        # all kinds together, each replaced by its own token
        (
            "a@b.de, 4111111111111111, DE89370400440532013000, +44 20 7946 0958",
            ("email", "card", "iban", "phone"),
            "[email], [card], [iban], [phone]",
            ("email", "iban", "card", "phone"),
        ),
        # kinds not asked for stay
        ("a@b.de 4111111111111111", ("card",), "a@b.de [card]", ("card",)),
        ("care-bot about cart_abandoned", ("email", "card", "iban", "phone"), None, ()),
    ],
)
def test_redact_pii(text, kinds, expected, found):
    out, kinds_found = redact_pii(text, kinds)
    assert out == (text if expected is None else expected)
    assert kinds_found == found


@pytest.mark.parametrize(
    ("phrases", "text", "found", "redacted"),
    [
        (("guaranteed",), "Returns GUARANTEED!", ("GUARANTEED",), "Returns [removed]!"),
        (
            ("free", "free money"),
            "free money, free",
            ("free money", "free"),
            "[removed], [removed]",
        ),
        (("a.b",), "axb is fine", (), "axb is fine"),  # phrases are literal, not regexes
        ((), "anything", (), "anything"),
    ],
)
def test_banned_phrases(phrases, text, found, redacted):
    pattern = phrase_pattern(phrases)
    assert find_phrases(text, pattern) == found
    assert redact_phrases(text, pattern) == redacted


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("hello", 5, "hello"),
        ("hello world", 8, "hello w" + ELLIPSIS),
        ("hello world", 7, "hello" + ELLIPSIS),  # no dangling space before the ellipsis
        ("hello", 1, ELLIPSIS),
        ("", 3, ""),
    ],
)
def test_truncate(text, limit, expected):
    assert truncate(text, limit) == expected


@given(st.text(), st.integers(min_value=1, max_value=50))
def test_truncate_never_exceeds_the_limit(text, limit):
    out = truncate(text, limit)
    assert len(out) <= limit
    assert out == text or out.endswith(ELLIPSIS)


@given(st.text(alphabet="abc0123456789 +-()@.xyzDE", max_size=60))
def test_redaction_is_idempotent_and_leaves_no_card(text):
    once, _ = redact_pii(text)
    twice, found = redact_pii(once)
    assert twice == once
    assert found == ()


@given(st.integers(min_value=10**12, max_value=10**19 - 1))
def test_every_luhn_valid_number_is_redacted(n):
    digits = str(n)
    if luhn_valid(digits):
        assert redact_pii(f"pay with {digits} today", ("card",))[0] == "pay with [card] today"
