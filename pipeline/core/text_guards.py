"""Pure text functions behind the content transforms: PII redaction, banned phrases, length.

Every function takes and returns plain strings, so each is tested on its own by table.
Redaction order is e-mail, IBAN, card, phone: the replacement tokens carry no digits, so a
later pattern never sees what an earlier one replaced, and the checksummed patterns (IBAN
mod 97, card Luhn) claim their digits before the looser phone pattern does.

Any agent can send the text, so every pattern runs in time linear in its length: each
repetition is bounded or possessive, so the regex matcher never tries the many ways of splitting
one run of characters, and a text longer than `MAX_SCAN_CHARS` is cut before it is scanned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

#: RFC 5321's limits bound every part: a local part of at most 64 characters, labels of at most
#: 63, so no start position is rescanned further than that.
EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,30}\.[A-Za-z]{2,63}"
)
#: Two letters, two check digits, 11-30 alphanumerics, optionally grouped by single spaces.
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
#: 13-19 digits, optionally grouped by single spaces or dashes.
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
#: An optional + or 00 country prefix, then digit groups separated by space . - / or (..);
#: 7-15 digits in all (E.164), not glued to letters or other numbers. A run of digits is taken
#: whole (possessive) and the groups are at most 20, so the match is found in linear time.
PHONE = re.compile(
    r"(?<![\w+\-/.])(?:\+|00)?(?:\(\d{1,5}\) ?|\d)(?:[ ./-]?\(?\d++\)?){1,20}(?![\w\-/])"
)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DIGIT = re.compile(r"\d")

ELLIPSIS = "…"
#: the longest text a guard scans; a longer one is cut to this length first (an event is at
#: most `TOWER_MAX_EVENT_BYTES`, 64 KiB by default, and no message to a customer is this long)
MAX_SCAN_CHARS = 16_384
REMOVED = "[removed]"


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment cards)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616 check: country letters, check digits, mod 97 of the rearranged number == 1."""
    s = text.replace(" ", "").upper()
    if not (15 <= len(s) <= 34 and s[:2].isalpha() and s[2:4].isdigit() and s.isalnum()):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_card(m: re.Match[str]) -> bool:
    digits = _digits(m.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _is_phone(m: re.Match[str]) -> bool:
    """7-15 digits; a bare run of digits (no +, no separators) only from 10, so order numbers
    and amounts stay readable; ISO dates are never phones."""
    text = m.group()
    n = len(_digits(text))
    if text.isdigit() and n < 10:
        return False
    return 7 <= n <= 15 and not ISO_DATE.fullmatch(text)


def _replace(
    pattern: re.Pattern[str], token: str, check: Callable[[re.Match[str]], bool] | None = None
) -> Callable[[str], str]:
    def sub(text: str) -> str:
        if check is None:
            return pattern.sub(token, text)
        return pattern.sub(lambda m: token if check(m) else m.group(), text)

    return sub


DETECTORS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], bool] | None]] = {
    "email": (EMAIL, None),
    "iban": (IBAN, lambda m: iban_valid(m.group())),
    "card": (CARD, _is_card),
    "phone": (PHONE, _is_phone),
}
#: the content transform's tokens: `[email]` ...
REDACTORS: dict[str, Callable[[str], str]] = {
    kind: _replace(pattern, f"[{kind}]", check) for kind, (pattern, check) in DETECTORS.items()
}
#: the audit's markers (core/audit_minimisation.py): `[redacted:email]` ..., so that audit
#: minimisation is never mistaken for what the policy did to the content
AUDIT_REDACTORS: dict[str, Callable[[str], str]] = {
    kind: _replace(pattern, f"[redacted:{kind}]", check)
    for kind, (pattern, check) in DETECTORS.items()
}
ORDER = ("email", "iban", "card", "phone")


def redact_pii(
    text: str,
    kinds: Iterable[str] = ORDER,
    redactors: Mapping[str, Callable[[str], str]] = REDACTORS,
) -> tuple[str, tuple[str, ...]]:
    """`text` with the PII of `kinds` replaced by tokens; also which kinds were found. A text
    longer than `MAX_SCAN_CHARS` is cut to that length first, so nothing unscanned is kept."""
    text = truncate(text, MAX_SCAN_CHARS)
    wanted = frozenset(kinds)
    has_digit = DIGIT.search(text) is not None
    found: list[str] = []
    for kind in ORDER:
        if kind not in wanted or (kind == "email" and "@" not in text):
            continue
        if kind != "email" and not has_digit:
            continue
        out = redactors[kind](text)
        if out != text:
            found.append(kind)
            text = out
    return text, tuple(found)


@lru_cache(maxsize=64)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for all phrases, longest first (None if there are none)."""
    items = sorted({p for p in phrases if p}, key=len, reverse=True)
    if not items:
        return None
    return re.compile("|".join(re.escape(p) for p in items), re.IGNORECASE)


def find_phrases(text: str, pattern: re.Pattern[str] | None) -> tuple[str, ...]:
    """The banned phrases in `text` as written there, each once, in order of appearance."""
    if pattern is None:
        return ()
    return tuple(dict.fromkeys(m.group() for m in pattern.finditer(text)))


def redact_phrases(text: str, pattern: re.Pattern[str] | None) -> str:
    return text if pattern is None else pattern.sub(REMOVED, text)


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, the last one an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS
