"""The text guards run in linear time on hostile input: any agent can send content, asserts
or attributes, and a guard that backtracks hangs every worker that takes the partition.

Each check times one guard on an input and on the same input made longer, and compares the
time per character (processor time, best of several runs): about 1 for a linear guard, the
growth factor or more for a quadratic one, astronomically more for an exponential one. The
sizes are small enough that a super-linear guard fails here instead of hanging.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pipeline.core.audit_minimisation import redact_text
from pipeline.core.text_guards import MAX_SCAN_CHARS, ORDER, redact_pii

#: time per character, large input against small; linear is ~1, quadratic ~ the size ratio
MAX_GROWTH = 2.5


def _per_char(guard: Callable[[str], object], text: str) -> float:
    """Processor time per character of one call, best of three runs of at least 20 ms."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.process_time()
        while (elapsed := time.process_time() - start) < 0.02 or calls == 0:
            guard(text)
            calls += 1
        best = min(best, elapsed / calls)
    return best / len(text)


#: (name, input of size n, small n, large n): long digit runs followed by a letter, nested
#: separators, and the e-mail parts that a backtracking pattern rescans from every start
HOSTILE: list[tuple[str, Callable[[int], str], int, int]] = [
    ("digits then a letter", lambda n: "1" * n + "a", 14, 24),
    ("digits after a plus", lambda n: "+" + "1" * n + "x", 14, 24),
    ("grouped digits then a letter", lambda n: "12 " + "(3)-4" * n + "a", 400, 3200),
    ("nested separators", lambda n: "(1) " + "./-(2)" * n + "/", 400, 3200),
    ("spaced single digits", lambda n: "1 " * n, 400, 3200),
    ("local part without a domain", lambda n: "a" * n + "@", 400, 3200),
    ("dotted local part", lambda n: "a." * n + "@b", 400, 3200),
    ("one-letter labels", lambda n: "x@" + "a." * n + "b", 400, 3200),
    ("many at signs", lambda n: "a@" * n, 400, 3200),
    ("card-like digits", lambda n: "4 1 1 1 " * n + "-", 400, 3200),
    ("iban-like run", lambda n: "DE89 " + "A1 " * n + "x", 400, 3200),
]


@pytest.mark.parametrize(
    "guard", [lambda t: redact_pii(t, ORDER), redact_text], ids=["content", "audit"]
)
@pytest.mark.parametrize(
    ("make", "small", "large"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_guards_scale_linearly_on_hostile_input(guard, make, small, large):
    growth = _per_char(guard, make(large)) / _per_char(guard, make(small))
    assert growth < MAX_GROWTH, f"time per character grew {growth:.1f}x from {small} to {large}"


def test_a_hundred_kilobytes_are_scanned_up_to_the_cap():
    text = ("call 1 2 3 4 5 6 7 8 9 0 1 2 a@b.de " + "9" * 30 + "a ") * 2_000  # ~130 kB
    out, found = redact_pii(text)
    assert len(out) <= MAX_SCAN_CHARS
    assert "phone" in found and "email" in found
