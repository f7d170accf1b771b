"""Control groups and agent holdouts (pipeline/core/experiments.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import experiments as ex
from pipeline.core.arbitration import decide
from pipeline.core.decision import APPROVED, EMITTING, SUPPRESSED, WITHHELD
from pipeline.core.experience import REPEAT_CONTACTS, obs
from pipeline.core.policy import DAY_MS, ControlGroup, Experiments, KillSwitch, Policy
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.state import EMPTY_STATE, CustomerState, Exposure
from tests.factories import T0, proposal, signal

NO_OPT_IN = {"marketing": False, "sales": False, "service": False, "transactional": False}
EXPERIMENTS = Experiments(
    salt="2026-q4",
    control_group=ControlGroup(share=0.10, categories=frozenset({"marketing", "sales"})),
    holdouts={"winback-bot": 0.20, "upsell-bot": 0.10},
)
POLICY = Policy(opt_in_required=NO_OPT_IN, caps=(), experiments=EXPERIMENTS)


def customers_in(experiment: str, share: float, want: bool, n: int = 5) -> list[str]:
    """The first `n` customer ids inside (want=True) or outside the experiment's share."""
    ids = (f"cust-{i}" for i in range(100_000))
    return [c for c in ids if (ex.bucket("2026-q4", experiment, c) < share) == want][:n]


CONTROL = customers_in(ex.CONTROL_GROUP, 0.10, True)
NOT_CONTROL = customers_in(ex.CONTROL_GROUP, 0.10, False, 200)
#: outside the control group and inside (or outside) winback-bot's holdout
WINBACK_HELD = [c for c in NOT_CONTROL if ex.bucket("2026-q4", "holdout:winback-bot", c) < 0.2]
WINBACK_TREATED = [c for c in NOT_CONTROL if ex.bucket("2026-q4", "holdout:winback-bot", c) >= 0.2]


# --- assignment --------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.05, 0.10, 0.20, 0.50])
@pytest.mark.parametrize("experiment", [ex.CONTROL_GROUP, "holdout:winback-bot"])
def test_assignment_matches_the_share_within_binomial_tolerance(share, experiment):
    n = 100_000
    inside = sum(ex.bucket("2026-q4", experiment, f"c{i}") < share for i in range(n))
    sd = math.sqrt(n * share * (1 - share))
    assert abs(inside - n * share) < 5 * sd  # fails by chance about once in 1.7 million


def test_assignment_is_deterministic_and_depends_on_salt_and_experiment():
    ids = [f"c{i}" for i in range(2_000)]
    first = [ex.bucket("s", ex.CONTROL_GROUP, c) for c in ids]
    assert first == [ex.bucket("s", ex.CONTROL_GROUP, c) for c in ids]
    assert first != [ex.bucket("t", ex.CONTROL_GROUP, c) for c in ids]
    assert first != [ex.bucket("s", "holdout:a", c) for c in ids]
    assert all(0 <= b < 1 for b in first)


def test_experiments_of_different_names_are_independent():
    """Being in the control group says nothing about being in an agent's holdout."""
    n = 50_000
    both = sum(
        ex.bucket("s", ex.CONTROL_GROUP, f"c{i}") < 0.5
        and ex.bucket("s", "holdout:a", f"c{i}") < 0.5
        for i in range(n)
    )
    assert abs(both - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75)


# --- withholding, table-driven ------------------------------------------------------------

CASES = [
    # (customer, proposal kwargs, outcome, rule, arms)
    pytest.param(
        CONTROL[0],
        {"agent": "winback-bot", "category": "marketing"},
        WITHHELD,
        ex.CONTROL_GROUP,
        ((ex.CONTROL_GROUP, ex.CONTROL),),
        id="control group withholds a listed category",
    ),
    pytest.param(
        CONTROL[0],
        {"agent": "service-bot", "category": "service"},
        APPROVED,
        None,
        (),
        id="control group never withholds a category it does not list",
    ),
    pytest.param(
        WINBACK_HELD[0],
        {"agent": "winback-bot", "category": "marketing"},
        WITHHELD,
        ex.HOLDOUT,
        ((ex.CONTROL_GROUP, ex.TREATMENT), ("holdout:winback-bot", ex.HELD_OUT)),
        id="agent holdout withholds",
    ),
    pytest.param(
        WINBACK_HELD[0],
        {"agent": "winback-bot", "category": "service"},
        APPROVED,
        None,
        (),
        id="agent holdout never withholds service",
    ),
    pytest.param(
        WINBACK_HELD[0],
        {"agent": "winback-bot", "category": "transactional"},
        APPROVED,
        None,
        (),
        id="agent holdout never withholds transactional",
    ),
    pytest.param(
        WINBACK_HELD[0],
        {"agent": "other-bot", "category": "marketing"},
        APPROVED,
        None,
        ((ex.CONTROL_GROUP, ex.TREATMENT),),
        id="another agent is not held out",
    ),
    pytest.param(
        WINBACK_TREATED[0],
        {"agent": "winback-bot", "category": "marketing"},
        APPROVED,
        None,
        ((ex.CONTROL_GROUP, ex.TREATMENT), ("holdout:winback-bot", ex.TREATMENT)),
        id="treatment arms go out and are named",
    ),
]


@pytest.mark.parametrize(("customer", "kwargs", "outcome", "rule", "arms"), CASES)
def test_withholding(customer, kwargs, outcome, rule, arms):
    event = proposal(customer, T0, **kwargs)
    decision, state = decide(EMPTY_STATE, event, POLICY, T0)
    assert (decision.outcome, decision.rule, decision.experiments) == (outcome, rule, arms)
    assert (decision.action is None) == (outcome == WITHHELD)
    assert state.exposures == {e: Exposure(arm, T0) for e, arm in arms}
    if arms:
        last = decision.trace[-1]
        assert last.rule == (rule or ex.EXPERIMENTS)
        assert last.verdict == ("withhold" if outcome == WITHHELD else "pass")
    if outcome == WITHHELD:
        assert state.contacts == () and state.triggers == {}  # not a contact


def test_a_proposal_the_rules_stop_is_not_withheld():
    """The rules before withholding still run: a suppressed proposal is no exposure."""
    policy = replace(POLICY, kill_switch=KillSwitch(agents=frozenset({"winback-bot"})))
    decision, state = decide(EMPTY_STATE, proposal(CONTROL[0], agent="winback-bot"), policy, T0)
    assert (decision.outcome, decision.rule, decision.experiments) == (
        SUPPRESSED,
        "kill_switch",
        (),
    )
    assert state.exposures == {}


def test_the_first_exposure_starts_the_window_and_a_later_one_keeps_it():
    customer = WINBACK_TREATED[0]
    _, state = decide(EMPTY_STATE, proposal(customer, T0, agent="winback-bot"), POLICY, T0)
    later = T0 + DAY_MS
    _, state = decide(state, proposal(customer, later, agent="winback-bot"), POLICY, later)
    assert state.exposures["holdout:winback-bot"] == Exposure(ex.TREATMENT, T0)


def test_a_new_salt_that_moves_the_customer_starts_a_new_window():
    exposures = {ex.CONTROL_GROUP: Exposure(ex.CONTROL, T0)}
    moved = ex.expose(exposures, [(ex.CONTROL_GROUP, ex.TREATMENT)], T0 + 5)
    assert moved == {ex.CONTROL_GROUP: Exposure(ex.TREATMENT, T0 + 5)}
    assert ex.expose(exposures, [(ex.CONTROL_GROUP, ex.CONTROL)], T0 + 5) == exposures


def test_a_policy_without_experiments_assigns_nothing():
    event = proposal(CONTROL[0], agent="winback-bot")
    decision, state = decide(EMPTY_STATE, event, replace(POLICY, experiments=Experiments()), T0)
    assert decision.outcome == APPROVED and decision.experiments == ()
    assert state.exposures == {} and all(s.rule != ex.EXPERIMENTS for s in decision.trace)


def test_exposures_survive_the_changelog():
    _, state = decide(EMPTY_STATE, proposal(WINBACK_HELD[0], agent="winback-bot"), POLICY, T0)
    assert CustomerState.from_bytes(state.to_bytes()) == state


# --- properties --------------------------------------------------------------------------

AGENTS = ("winback-bot", "upsell-bot", "service-bot")
CATEGORIES = ("marketing", "sales", "service", "transactional")
CUSTOMERS = tuple(CONTROL[:2] + WINBACK_HELD[:2] + WINBACK_TREATED[:2])
STEP = st.tuples(
    st.sampled_from(CUSTOMERS),
    st.sampled_from(AGENTS),
    st.sampled_from(CATEGORIES),
    st.integers(0, 3 * DAY_MS),
    st.sampled_from([None, "t1", "t2"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=25), st.booleans())
def test_withheld_never_acts_and_the_control_group_never_gets_a_withheld_category(
    steps, with_holds
):
    policy = POLICY
    if with_holds:
        policy = replace(policy, holds=replace(policy.holds, hold_ms={"message": 60_000}))
    states: dict[str, CustomerState] = {}
    for customer, agent, category, dt, trigger in sorted(steps, key=lambda s: s[3]):
        event = proposal(customer, T0 + dt, agent=agent, category=category, trigger=trigger)
        decision, states[customer] = decide(
            states.get(customer, EMPTY_STATE), event, policy, event.occurred_at
        )
        if decision.outcome == WITHHELD:
            assert decision.action is None and decision.action_id is None
        if decision.outcome in EMITTING and customer in CONTROL:
            assert category not in EXPERIMENTS.control_group.categories


# --- per-arm counters --------------------------------------------------------------------


def test_exposure_is_counted_once_per_customer_and_arm():
    customer = WINBACK_TREATED[0]
    decision, state = decide(EMPTY_STATE, proposal(customer, agent="winback-bot"), POLICY, T0)
    first = ex.observe(EMPTY_STATE.exposures, proposal(customer), decision, [], POLICY)
    assert first == [
        obs(ex.EXPOSURES, experiment=ex.CONTROL_GROUP, arm=ex.TREATMENT),
        obs(ex.EXPOSURES, experiment="holdout:winback-bot", arm=ex.TREATMENT),
    ]
    assert ex.observe(state.exposures, proposal(customer), decision, [], POLICY) == []


EXPOSED = {ex.CONTROL_GROUP: Exposure(ex.CONTROL, T0), "holdout:a": Exposure(ex.TREATMENT, T0)}
WEEK = EXPERIMENTS.attribution_window_ms


@pytest.mark.parametrize(
    ("event", "experience", "metrics"),
    [
        pytest.param(
            signal("purchase", at=T0 + 1, amount="30"),
            [],
            [("conversion", None), ("revenue", 30.0)],
            id="purchase",
        ),
        pytest.param(signal("purchase", at=T0 + 1), [], [("conversion", None)], id="no amount"),
        pytest.param(
            signal("consent_changed", at=T0 + 1, granted="false"),
            [],
            [("unsubscribe", None)],
            id="unsubscribe",
        ),
        pytest.param(
            signal("consent_changed", at=T0 + 1, granted="true"), [], [], id="opt-in is none"
        ),
        pytest.param(
            signal("sentiment", at=T0 + 1, score="-0.8"), [], [("complaint", None)], id="complaint"
        ),
        pytest.param(signal("sentiment", at=T0 + 1, score="-0.2"), [], [], id="mild sentiment"),
        pytest.param(signal("csat", at=T0 + 1, score="4"), [], [("csat", 4.0)], id="csat"),
        pytest.param(
            signal("message_received", at=T0 + 1),
            [obs(REPEAT_CONTACTS)],
            [("repeat_contact", None)],
            id="repeat contact",
        ),
        pytest.param(signal("message_received", at=T0 + 1), [], [], id="first contact"),
        pytest.param(signal("purchase", at=T0 - 1), [], [], id="before the window"),
        pytest.param(signal("purchase", at=T0 + WEEK), [], [], id="after the window"),
    ],
)
def test_outcomes_are_counted_per_arm_within_the_window(event, experience, metrics):
    decision, _ = decide(EMPTY_STATE, event, POLICY, event.occurred_at)
    out = ex.observe(EXPOSED, event, decision, experience, POLICY)
    expected = []
    for experiment, exposure in EXPOSED.items():
        for metric, value in metrics:
            labels = {"experiment": experiment, "arm": exposure.arm, "metric": metric}
            expected.append(obs(ex.OUTCOMES, **labels))
            if value is not None:
                expected.append(obs(ex.OUTCOME_VALUES, value, **labels))
    assert out == expected


# --- policy ------------------------------------------------------------------------------

DOC = """\
version: 1.0.0
agents: [winback-bot, upsell-bot]
experiments:
  salt: "2026-q4"
  control_group: {share: 0.10, categories: [marketing, sales]}
  holdouts: {winback-bot: 0.20, upsell-bot: 0.10}
  attribution_window_ms: 604800000
"""


def test_the_policy_document_reads_the_experiments_block():
    assert load_policy(DOC).experiments == EXPERIMENTS


def test_a_policy_without_experiments_keeps_its_version_hash():
    """Adding the setting must not change the version of every policy published before."""
    assert Policy().policy_version == "1.0.0+747d035d5eff"


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        ('  salt: "2026-q4"\n', 4, "experiments.salt: required when a share is set"),
        ("share: 0.10", 5, "must be a share from 0 to below 1 (0.1 is 10 %), got 1"),
        ("upsell-bot: 0.10}", 6, "experiments.holdouts.ghost-bot: agent 'ghost-bot' is not"),
        ("categories: [marketing, sales]", 5, "unknown category 'spam'"),
        ("attribution_window_ms: 604800000", 7, "must be an integer of milliseconds > 0"),
    ],
)
def test_bad_experiment_settings_are_refused_with_the_line(change, line, message):
    replacement = {
        '  salt: "2026-q4"\n': "",
        "share: 0.10": "share: 1.0",
        "upsell-bot: 0.10}": "ghost-bot: 0.10}",
        "categories: [marketing, sales]": "categories: [spam]",
        "attribution_window_ms: 604800000": "attribution_window_ms: 0",
    }[change]
    with pytest.raises(PolicyError) as err:
        load_policy(DOC.replace(change, replacement))
    assert f"<policy>:{line}:" in str(err.value) and message in str(err.value)
