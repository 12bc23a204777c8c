"""Conformance: every built-in scenario, and calibration's synthetic truth, honours the contracts.

The list of scenarios comes from :func:`nba.scenarios.builtin_scenario_names` (plus the synthetic
scenario calibration recovers), so a scenario added to the package is checked here without an
edit: its twin's invariants, its exact kernel against simulation, the feature round trip, the
Gymnasium and SB3 env contracts, seeded determinism, and serving that never breaks the rules
the twin enforces.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import nba.envs  # noqa: F401  (registers the env ids)
from nba import CustomerTwin
from nba.calibration.synthetic import reference_scenario
from nba.envs import JourneyEnv, TwinVecEnv
from nba.features import FeatureBuilder
from nba.kernel import TransitionKernel, build_kernel
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import builtin_scenario_names, load_scenario
from nba.state import COMPONENTS, CustomerState
from tests.kernel_checks import simulated_day_fits
from tests.test_twin import _rollout

SYNTHETIC = "synthetic_calibration_truth"
#: scenarios built for the tests, by name: calibration's synthetic truth (the packaged
#: ``retail_levels`` carries each customer's own rate and dropout levels)
VARIANTS: dict[str, Callable[[], Scenario]] = {SYNTHETIC: reference_scenario}
SCENARIOS = [*builtin_scenario_names(), *VARIANTS]
#: Chi-square p-value below which one simulated kernel row counts as a disagreement. With
#: :data:`KERNEL_PAIRS` rows per scenario at fixed seeds, a correct twin passes with
#: probability above 1 - 8e-3; a wrong successor probability of 1% of 20,000 draws fails.
KERNEL_P_VALUE = 1e-3
KERNEL_PAIRS = 8
KERNEL_DRAWS = 20_000


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> Scenario:
    name = request.param
    return VARIANTS[name]() if name in VARIANTS else load_scenario(name)


@pytest.fixture(scope="module")
def kernel(scenario: Scenario) -> TransitionKernel:
    return build_kernel(scenario)


def test_the_list_is_not_hard_coded() -> None:
    assert "retail" in SCENARIOS and len(SCENARIOS) == len(set(SCENARIOS)) >= 3


# ------------------------------------------------------------------------- twin invariants
def test_outcome_probabilities_and_costs_are_sound(scenario: Scenario) -> None:
    """Every (response state, action) pair: probabilities in [0, 1] that sum to 1, costs >= 0."""
    outcomes = CustomerTwin(scenario, tabulate=True).tables.outcomes
    for name in ("case_probs", "next_stage", "habit_next", "opt_out_next"):
        values = getattr(outcomes, name)
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), name
    np.testing.assert_allclose(outcomes.case_probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(outcomes.next_stage.sum(axis=2), 1.0, atol=1e-12)
    assert (outcomes.contact_cost >= 0).all() and (outcomes.spend >= 0).all()
    assert ((outcomes.discount >= 0) & (outcomes.discount < 1)).all()
    assert (outcomes.referral >= 0).all()


def test_kernel_rows_are_distributions_and_no_action_is_always_allowed(
    kernel: TransitionKernel,
) -> None:
    sums = np.asarray(kernel.transition.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    assert kernel.transition.min() >= 0.0
    np.testing.assert_allclose(kernel.initial.sum(), 1.0)
    assert kernel.masks[:, :, 0].all()
    assert np.isfinite(kernel.reward).all()


def test_every_stage_is_reachable_and_churn_absorbs(
    scenario: Scenario, kernel: TransitionKernel
) -> None:
    twin = CustomerTwin(scenario)
    stage = twin.space.decode(np.arange(kernel.n_states)).stage
    n_actions = kernel.n_actions
    # states reachable from the start under any allowed actions (breadth-first over the kernel)
    allowed = kernel.masks.any(axis=0).reshape(-1)  # (S * A,) allowed on some weekday
    reached = kernel.initial > 0
    frontier = reached.copy()
    while frontier.any():
        rows = np.repeat(frontier, n_actions) & allowed
        successors = np.asarray(kernel.transition[rows].sum(axis=0)).ravel() > 0
        frontier = successors & ~reached
        reached |= successors
    assert set(stage[reached]) == set(range(len(scenario.stages))), "a stage is unreachable"
    # churn is absorbing: every successor of a churned state, under any action, is churned
    churn = scenario.stage_names.index(scenario.churn_stage)
    churned_rows = np.repeat(stage == churn, n_actions)
    successors = np.asarray(kernel.transition[churned_rows].sum(axis=0)).ravel() > 0
    assert (stage[successors] == churn).all()


def test_simulation_keeps_the_rules_and_stays_in_the_space(scenario: Scenario) -> None:
    """Random requests (many forbidden) for 60 days, checked by an independent rule checker."""
    twin = _rollout(CustomerTwin(scenario, seed=3), n=400, days=60, seed=5, policy_seed=6)
    state, space = twin.state, twin.space
    index = space.encode(state)
    assert ((index >= 0) & (index < space.size)).all()
    decoded = space.decode(index)
    for component in COMPONENTS:
        np.testing.assert_array_equal(
            getattr(decoded, component.name), getattr(state, component.name)
        )


def test_excluded_offers_never_reach_excluded_stages(scenario: Scenario) -> None:
    twin = CustomerTwin(scenario, seed=11)
    twin.reset(2_000)
    rng = np.random.default_rng(12)
    excluded = twin.arrays.rules.excluded
    for _ in range(30):
        stage = twin.state.stage.copy()
        result = twin.step(rng.integers(0, twin.n_actions, size=twin.n))
        if excluded.size:
            assert not excluded[stage, result.executed].any()
    if scenario.contact_rules.exclusions:
        assert excluded.any(), "exclusions declared but none compiled"


# ------------------------------------------------------------------ kernel against the twin
def test_simulated_transitions_agree_with_the_kernel(
    scenario: Scenario, kernel: TransitionKernel
) -> None:
    """Chi-square goodness of fit of one simulated day against sampled kernel rows."""
    twin = CustomerTwin(scenario, seed=20261123)
    fits = simulated_day_fits(
        twin,
        kernel,
        pairs=KERNEL_PAIRS,
        draws=KERNEL_DRAWS,
        min_successors=3,
        rng=np.random.default_rng(0),
    )
    for state_index, action, pvalue in fits:
        assert pvalue > KERNEL_P_VALUE, (twin.space.decode(np.array([state_index])), action)


# -------------------------------------------------------------------------------- features
def test_features_round_trip_for_every_state(scenario: Scenario, kernel: TransitionKernel) -> None:
    twin = CustomerTwin(scenario)
    features = FeatureBuilder(twin.arrays)
    states = twin.space.all_states()
    rng = np.random.default_rng(1)
    day = rng.integers(0, scenario.horizon_days, size=len(states))
    obs = features.build(states, day)
    assert obs.dtype == np.float32 and ((obs >= 0) & (obs <= 1)).all()
    decoded, decoded_day = features.decode(obs)
    np.testing.assert_array_equal(decoded_day, day)
    np.testing.assert_array_equal(twin.space.encode(decoded), np.arange(kernel.n_states))


# ------------------------------------------------------------------------------------ envs
def test_env_passes_gymnasium_and_sb3_checkers(scenario: Scenario) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gymnasium.make("nba/CustomerJourney-v0", scenario=scenario).unwrapped)
        sb3_check_env(JourneyEnv(scenario), warn=True)
    assert [str(w.message) for w in caught] == []


def test_vec_env_contract(scenario: Scenario) -> None:
    """The SB3 VecEnv: shapes, masks, auto-reset with terminal observations at the horizon."""
    env = TwinVecEnv(scenario, n_envs=32, seed=1, stagger=False, terminate_on_churn=False)
    obs = env.reset()
    assert obs.shape == (32, *env.observation_space.shape) and obs.dtype == np.float32
    horizon = scenario.horizon_days
    rng = np.random.default_rng(2)
    for step in range(horizon):
        masks = env.action_masks()
        assert masks.shape == (32, env.action_space.n) and masks[:, 0].all()
        choice = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, rewards, dones, infos = env.step(choice)
        assert env.observation_space.contains(obs[0]) and np.isfinite(rewards).all()
        assert dones.all() == (step == horizon - 1)
    assert all(info["episode"]["l"] == horizon for info in infos)
    assert all(env.observation_space.contains(info["terminal_observation"]) for info in infos)


def test_seeded_runs_repeat_and_seeds_differ(scenario: Scenario) -> None:
    def run(seed: int) -> np.ndarray:
        env = TwinVecEnv(scenario, n_envs=64, seed=seed)
        frames = [env.reset()]
        rng = np.random.default_rng(0)
        for _ in range(20):
            obs, rewards, _, _ = env.step(rng.integers(0, env.action_space.n, 64))
            frames.append(obs)
            frames.append(np.repeat(rewards[:, None], obs.shape[1], axis=1))
        return np.stack(frames)

    first = run(5)
    np.testing.assert_array_equal(first, run(5))
    assert not np.array_equal(first, run(6))


# --------------------------------------------------------------------------------- serving
def request_frame(arrays: ScenarioArrays, state: CustomerState) -> pd.DataFrame:
    """Live requests describing ``state``, one row per customer, built from the declaration."""
    columns: dict[str, object] = {"customer_id": [f"c{i}" for i in range(len(state))]}
    for component in COMPONENTS:
        if component.request is None or component.is_silent(arrays):
            continue
        values = np.asarray(getattr(state, component.name))
        names = component.request.names(component.column_names(arrays))
        values = values.reshape(len(state), len(names))
        for j, field in enumerate(names):
            if component.kind == "category":
                labels = component.value_labels(0, arrays)
                columns[field] = np.asarray(labels, dtype=object)[values[:, j]]
            elif component.kind == "flag":
                columns[field] = values[:, j].astype(bool)
            else:
                columns[field] = values[:, j].astype(np.int64)
    return pd.DataFrame(columns)


@pytest.fixture(scope="module")
def export_dir(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded PPO policy exported for the scenario: decisions spread widely."""
    from stable_baselines3 import PPO

    from nba.serving.export import export_policy

    model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=0, device="cpu")
    folder = tmp_path_factory.mktemp(f"policy-{scenario.name}")
    export_policy(model, scenario, folder, algo="ppo", value_scale=1.0)
    return folder


@pytest.mark.parametrize("weekday", [0, 6])  # a Monday and a Sunday (quiet days)
def test_scorer_never_breaks_the_twins_rules(
    scenario: Scenario, export_dir: Path, weekday: int
) -> None:
    from nba.serving.scorer import PolicyScorer

    scorer = PolicyScorer.load(export_dir, model_version="conformance", trusted_scenario=scenario)
    twin = CustomerTwin(scenario, seed=0)
    rng = np.random.default_rng(weekday)
    n = 3_000
    state = twin.space.decode(rng.integers(0, twin.space.size, size=n))
    as_of = pd.Timestamp("2026-11-23T10:00:00Z") + pd.Timedelta(days=weekday)  # a Monday + k
    decisions = scorer.score_batch(request_frame(twin.arrays, state), as_of=as_of)
    twin.set_state(state, day=np.full(n, (weekday - twin.arrays.weekday_of_start) % 7))
    assert (twin.weekday == weekday).all()
    allowed = twin.action_masks()
    actions = decisions["action"].to_numpy()
    assert allowed[np.arange(n), actions].all(), "the scorer chose an action the twin forbids"
    assert (actions != 0).any(), "an untrained policy should contact somebody"
    suppressed = decisions["suppressed_action"].notna().to_numpy()
    names = np.asarray(scenario.action_names)
    favourite = decisions.loc[suppressed, "suppressed_action"].to_numpy()
    rows = np.flatnonzero(suppressed)
    index = {name: a for a, name in enumerate(names)}
    assert not allowed[rows, [index[f] for f in favourite]].any(), "suppressed an allowed action"
