"""Each customer's own purchase-rate and dropout levels: scenario, dynamics, kernel, features."""

from __future__ import annotations

import numpy as np
import pytest

from nba import CustomerTwin, optimal
from nba.dynamics import CASE_BOUGHT, outcome_model
from nba.errors import NBAValidationError, ScenarioError
from nba.features import FeatureBuilder
from nba.kernel import TransitionKernel, build_kernel
from nba.level_value import level_blind_policy, value_of_levels, without_levels
from nba.parameters import ScenarioArrays, scale_dropout
from nba.scenario import Scenario
from nba.serving.schema import RequestSchema
from nba.state import StateSpace
from tests.kernel_checks import simulated_day_fits
from tests.scenario_variants import retail_with_levels

#: retail's fingerprint before individual levels existed: an absent block must not change it
RETAIL_FINGERPRINT = "d56e2b24b3c66e6a438de47d841238cbc183185679acdfce2c900a2a07860d42"
RETAIL_FEATURES = 44


@pytest.fixture(scope="module")
def levels() -> Scenario:
    return retail_with_levels()


@pytest.fixture(scope="module")
def levels_kernel(levels: Scenario) -> TransitionKernel:
    return build_kernel(levels)


# ------------------------------------------------------------------------------- scenario
def test_retail_without_the_block_is_as_before(retail: Scenario) -> None:
    assert retail.heterogeneity is None and "heterogeneity" not in retail.to_dict()
    assert retail.fingerprint() == RETAIL_FINGERPRINT
    arrays = ScenarioArrays.from_scenario(retail)
    names = FeatureBuilder(arrays).names
    assert len(names) == RETAIL_FEATURES
    assert not [n for n in names if n.startswith(("rate_level", "dropout_level"))]
    space = StateSpace(arrays)
    assert space.size == 10_976 and ("heterogeneity.rate_levels", 1) in space.factors
    schema = RequestSchema(arrays)
    assert not {"rate_level", "dropout_level"} & set(schema.fields)


def test_one_level_each_gives_retail_s_kernel_bit_for_bit(
    retail: Scenario, retail_kernel: TransitionKernel
) -> None:
    explicit = retail.updated({"heterogeneity": {"dropout_stages": ["lapsed", "churned"]}})
    assert explicit.fingerprint() != retail.fingerprint()  # a written block is content
    kernel = build_kernel(explicit)
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(
            getattr(kernel.transition, name), getattr(retail_kernel.transition, name)
        )
    np.testing.assert_array_equal(kernel.reward, retail_kernel.reward)
    np.testing.assert_array_equal(kernel.initial, retail_kernel.initial)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"rate_levels": [{"multiplier": 1.0, "share": 0.5}]},
            r"heterogeneity\.rate_levels\[\*\]\.share: shares sum to 0\.5000, expected 1",
        ),
        (
            {"dropout_levels": [{"multiplier": 0.0, "share": 1.0}]},
            r"heterogeneity\.dropout_levels\[0\]\.multiplier: .*greater than 0",
        ),
        ({"dropout_stages": ["gone"]}, r"heterogeneity\.dropout_stages: unknown \['gone'\]"),
        ({"rate_level": []}, r"heterogeneity\.rate_level: Extra inputs"),
        ({"rate_levels": []}, r"heterogeneity\.rate_levels: List should have at least 1 item"),
    ],
)
def test_the_block_is_validated_and_errors_name_the_field(
    retail: Scenario, block: dict[str, object], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message):
        retail.updated({"heterogeneity": block})


def test_the_variant_round_trips_to_yaml(levels: Scenario) -> None:
    again = Scenario.from_yaml(levels.to_yaml())
    assert again == levels and again.fingerprint() == levels.fingerprint()
    assert levels.heterogeneity is not None
    assert levels.heterogeneity.mean_rate_multiplier == pytest.approx(1.0)


# ------------------------------------------------------------------------------- dynamics
def test_dropout_scaling_keeps_rows_stochastic() -> None:
    matrix = np.array([[0.9, 0.06, 0.04], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    dropout = np.array([False, False, True])
    np.testing.assert_array_equal(scale_dropout(matrix, dropout, 1.0), matrix)
    doubled = scale_dropout(matrix, dropout, 2.0)
    np.testing.assert_allclose(doubled.sum(axis=1), 1.0)
    assert doubled[0, 2] == pytest.approx(0.08) and doubled[1, 2] == 1.0  # capped at the row
    assert doubled[0, 1] / doubled[0, 0] == pytest.approx(0.06 / 0.9)  # the rest in proportion
    np.testing.assert_array_equal(doubled[2], matrix[2])  # staying in a dropout stage is not a move


def test_levels_scale_purchases_and_dropout(retail: Scenario, levels: Scenario) -> None:
    arrays, plain = ScenarioArrays.from_scenario(levels), ScenarioArrays.from_scenario(retail)
    space = StateSpace(arrays)
    active = levels.stage_names.index("active")
    churned = levels.stage_names.index("churned")
    n = arrays.n_rate_levels * arrays.n_dropout_levels
    rate, drop = np.divmod(np.arange(n), arrays.n_dropout_levels)
    state = space.rested_state(
        np.zeros(n, dtype=np.int64), np.full(n, active), rate_level=rate, dropout_level=drop
    )
    out = outcome_model(arrays, state, np.zeros(n, dtype=np.int64))
    bought = out.case_probs[:, CASE_BOUGHT].sum(axis=1)
    base = plain.persona_base_rate[0] * plain.stage_purchase_multiplier[active]
    np.testing.assert_allclose(bought, base * arrays.rate_level_multiplier[rate])
    quiet_churn = out.next_stage[:, 0, churned]
    expected = plain.daily_transition[active, churned] * arrays.dropout_level_multiplier[drop]
    np.testing.assert_allclose(quiet_churn, expected)
    np.testing.assert_allclose(out.next_stage.sum(axis=2), 1.0)


def test_the_twin_draws_levels_at_their_shares_and_keeps_them(levels: Scenario) -> None:
    twin = CustomerTwin(levels, seed=7)
    start = twin.reset(40_000).copy()
    for name, shares in (
        ("rate_level", twin.arrays.rate_level_share),
        ("dropout_level", twin.arrays.dropout_level_share),
    ):
        seen = np.bincount(getattr(start, name), minlength=len(shares)) / 40_000
        np.testing.assert_allclose(seen, shares, atol=0.01)
    for _ in range(20):
        twin.step(np.zeros(twin.n, dtype=np.int64))
    np.testing.assert_array_equal(twin.state.rate_level, start.rate_level)
    np.testing.assert_array_equal(twin.state.dropout_level, start.dropout_level)
    # heavy buyers buy more: the level is a trait the twin acts on
    heavy, light = start.rate_level == 2, start.rate_level == 0
    assert twin.kpis.purchases[heavy].mean() > 3 * twin.kpis.purchases[light].mean()


# ------------------------------------------------------------------------------- kernel
def test_the_kernel_is_a_distribution_with_the_level_shares(
    levels: Scenario, levels_kernel: TransitionKernel
) -> None:
    sums = np.asarray(levels_kernel.transition.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    space = StateSpace(ScenarioArrays.from_scenario(levels))
    assert levels_kernel.n_states == 6 * 10_976
    assert levels_kernel.initial.sum() == pytest.approx(1.0)
    states = space.all_states()
    for name, shares in (("rate_level", [0.4, 0.4, 0.2]), ("dropout_level", [0.6, 0.4])):
        mass = np.bincount(getattr(states, name), weights=levels_kernel.initial)
        np.testing.assert_allclose(mass, shares)
    # a level never changes: every successor has the row's levels
    rows = levels_kernel.transition.tocoo()
    origin = rows.row // levels_kernel.n_actions
    sample = np.random.default_rng(0).choice(rows.nnz, 200_000, replace=False)
    before, after = space.decode(origin[sample]), space.decode(rows.col[sample])
    np.testing.assert_array_equal(before.rate_level, after.rate_level)
    np.testing.assert_array_equal(before.dropout_level, after.dropout_level)


def test_the_kernel_agrees_with_the_twin(levels: Scenario, levels_kernel: TransitionKernel) -> None:
    twin = CustomerTwin(levels, seed=20261123)
    fits = simulated_day_fits(
        twin,
        levels_kernel,
        pairs=8,
        draws=20_000,
        min_successors=3,
        rng=np.random.default_rng(1),
    )
    for state_index, action, pvalue in fits:
        assert pvalue > 1e-3, (twin.space.decode(np.array([state_index])), action)


def test_knowing_each_customer_s_level_is_worth_something(
    retail: Scenario,
    levels: Scenario,
    levels_kernel: TransitionKernel,
    retail_optimum: optimal.PolicySolution,
) -> None:
    """The optimum with levels against the best level-blind plan (retail's optimum), exactly.

    Retail's optimal policy, applied to every level alike, is a policy that ignores the level;
    its exact value in the variant is at most the variant's optimum, and the difference is
    what knowing each customer's own rate and dropout is worth per customer.
    """
    arrays = ScenarioArrays.from_scenario(levels)
    space = StateSpace(arrays)
    assert without_levels(levels).heterogeneity is None
    blind = level_blind_policy(levels, retail_optimum.policy)
    blind_value = optimal.evaluate(levels_kernel, blind).value
    best = optimal.solve(levels_kernel)
    nothing = optimal.evaluate(levels_kernel, optimal.no_action_policy(levels_kernel)).value
    print(
        f"levels variant per customer: optimum {best.value:.4f}, level-blind (retail's optimum) "
        f"{blind_value:.4f}, no action {nothing:.4f}; knowing the level is worth "
        f"{best.value - blind_value:.4f} ({(best.value - blind_value) / (best.value - nothing):.1%}"
        " of the optimum's gain over no action)"
    )
    assert best.value >= blind_value >= nothing
    assert best.value - blind_value > 0.01 * (best.value - nothing)  # the levels change decisions
    # the optimum treats levels differently: some state's action depends on its rate level
    shape = (-1, arrays.n_rate_levels, arrays.n_dropout_levels, space.history_size)
    day0 = best.policy[0].reshape(shape)
    assert (day0 != day0[:, :1, :1]).any()


# ------------------------------------------------------------------------------- features
def test_features_are_one_hot_over_levels_and_round_trip(
    levels: Scenario, levels_kernel: TransitionKernel
) -> None:
    arrays = ScenarioArrays.from_scenario(levels)
    features = FeatureBuilder(arrays)
    blocks = dict(features.blocks)
    assert blocks["rate_level"] == ["rate_level=0", "rate_level=1", "rate_level=2"]
    assert blocks["dropout_level"] == ["dropout_level=0", "dropout_level=1"]
    assert features.size == RETAIL_FEATURES + 5
    space = StateSpace(arrays)
    index = np.random.default_rng(3).choice(space.size, 5_000, replace=False)
    states = space.decode(index)
    day = np.random.default_rng(4).integers(0, levels.horizon_days, size=len(index))
    obs = features.build(states, day)
    start = features.offsets["rate_level"]
    np.testing.assert_array_equal(np.argmax(obs[:, start : start + 3], axis=1), states.rate_level)
    assert (obs[:, start : start + 3].sum(axis=1) == 1).all()
    decoded, decoded_day = features.decode(obs)
    np.testing.assert_array_equal(space.encode(decoded), index)
    np.testing.assert_array_equal(decoded_day, day)


def test_requests_carry_the_levels_optionally(levels: Scenario) -> None:
    schema = RequestSchema(ScenarioArrays.from_scenario(levels))
    assert {"rate_level", "dropout_level"} <= set(schema.fields)
    assert not {"rate_level", "dropout_level"} & set(schema.required)
    properties = schema.json_schema()["properties"]
    assert properties["rate_level"]["maximum"] == 2 and properties["dropout_level"]["maximum"] == 1
    row = {
        "customer_id": "c1",
        "persona": levels.persona_names[0],
        "stage": "active",
        "pressure": 0,
        "discount_habit": False,
        "opted_out": False,
        **{name: 30 for name in schema.days_columns},
    }
    assert schema.parse_mapping(row).state.rate_level.tolist() == [0]  # default: level 0
    parsed = schema.parse_mapping({**row, "rate_level": 2, "dropout_level": 1}).state
    assert (parsed.rate_level.tolist(), parsed.dropout_level.tolist()) == ([2], [1])
    with pytest.raises(ValueError, match="rate_level"):
        schema.parse_mapping({**row, "rate_level": 3})


def test_value_of_levels_refuses_a_scenario_without_levels(retail: Scenario) -> None:
    with pytest.raises(NBAValidationError, match="has no heterogeneity block"):
        value_of_levels(retail)
