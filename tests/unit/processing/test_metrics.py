"""Experience observations land on the same counters and label values whether a label set
is seen for the first time or again (remembered), and bounded labels keep following the
allow-lists of the policy in force."""

from __future__ import annotations

from pipeline.core import experience as xp
from pipeline.core.experience import obs
from pipeline.core.policy_document import load_policy
from pipeline.processing import metrics as metrics_module
from pipeline.processing.label_values import OTHER
from pipeline.processing.metrics import Tally, TowerMetrics


def counts(m: TowerMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in m.registry.collect()
        for s in family.samples
        if s.name == name + "_total"
    }


def test_label_sets_seen_again_count_on_the_same_series() -> None:
    m = TowerMetrics()
    tally = Tally()
    observations = [
        obs(xp.CHANNEL_SWITCHES, from_channel="sms", to_channel="email"),
        obs(xp.CHANNEL_SWITCHES, to_channel="email", from_channel="sms"),  # other order
        obs(xp.TRANSFORMS, transform="ai_disclosure"),
        obs(xp.RESOLUTIONS),
        obs(xp.TIME_TO_RESOLUTION, 120.0),  # a histogram
    ]
    for _ in range(3):
        m.experience.record(observations, tally)
        m.experience.record(observations)  # applied at once, no tally
    tally.flush()
    assert counts(m, xp.CHANNEL_SWITCHES) == {
        (("from_channel", "sms"), ("to_channel", "email")): 12.0
    }
    assert counts(m, xp.TRANSFORMS) == {(("transform", "ai_disclosure"),): 6.0}
    assert counts(m, xp.RESOLUTIONS) == {(): 6.0}


def test_bounded_labels_follow_the_policy_after_being_seen() -> None:
    m = TowerMetrics()
    step = [obs(xp.JOURNEY_STEP, journey="onboarding", step="kyc")]
    m.experience.record(step)
    m.label_values.follow(load_policy("version: 1.0.0\njourneys: {renewal: [reminder]}\n"))
    m.experience.record(step)
    assert counts(m, xp.JOURNEY_STEP) == {
        (("journey", "onboarding"), ("step", "kyc")): 1.0,
        (("journey", OTHER), ("step", OTHER)): 1.0,
    }


def test_the_remembered_label_sets_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "_KNOWN_MAX", 3)
    m = TowerMetrics()
    for i in range(10):
        m.experience.record([obs(xp.TRANSFORMS, transform=f"t{i}")])
        assert len(m.experience._counter_labels) <= 3
    assert sum(counts(m, xp.TRANSFORMS).values()) == 10.0
