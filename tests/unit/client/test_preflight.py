"""`Preflight` read from the API's answer: `approved` follows the emitting outcomes."""

from __future__ import annotations

import pytest

from pipeline.client import Preflight
from pipeline.core.decision import OUTCOMES
from tests.unit.client.test_tower_client import PREFLIGHT


@pytest.mark.parametrize("outcome", [*OUTCOMES])
def test_approved_means_an_action_would_be_emitted(outcome: str) -> None:
    answer = Preflight.from_json({**PREFLIGHT, "outcome": outcome})
    assert answer.approved is (outcome in ("approved", "deferred", "escalated"))
