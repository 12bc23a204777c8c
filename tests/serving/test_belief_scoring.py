"""Scoring a policy trained on belief observations: ``score_batch(..., belief=)``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba import policy_head
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.policy_head import Exploration
from nba.scenarios import load_scenario
from nba.serving.decision_log import DecisionLog
from nba.serving.scorer import PolicyScorer, ScoringInputError
from nba.serving.spec import SPEC_FILE
from tests.serving.conftest import population

T, K = 4, 7  # retail: 4 personas (no levels) x 7 stages


@pytest.fixture(scope="module")
def belief_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded PPO on belief observations, exported as training exports it."""
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.serving.export import export_policy

    scenario = load_scenario("retail")
    env = TwinVecEnv(scenario, n_envs=4, seed=0, observation="belief")
    model = PPO("MlpPolicy", env, seed=0, device="cpu")
    folder = tmp_path_factory.mktemp("belief_policy")
    export_policy(model, scenario, folder, algo="ppo", value_scale=3.0)
    return folder


def _load(folder: Path, exploration: Exploration | None = None) -> PolicyScorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test export
        return PolicyScorer.load(folder, exploration=exploration)


@pytest.fixture(scope="module")
def scorer(belief_export: Path) -> PolicyScorer:
    return _load(belief_export)


@pytest.fixture(scope="module")
def state_scorer(export_dir: Path) -> PolicyScorer:
    return _load(export_dir)


def _beliefs(n: int, seed: int, concentration: float = 0.3) -> np.ndarray:
    """Random (n, T, K) beliefs, some sharp, some diffuse."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(T * K, concentration), n).reshape(n, T, K)


def _certain(frame: pd.DataFrame) -> np.ndarray:
    """One-hot beliefs at each row's own persona and stage."""
    scenario = load_scenario("retail")
    persona = frame["persona"].map(scenario.persona_names.index).to_numpy()
    stage = frame["stage"].map(scenario.stage_names.index).to_numpy()
    belief = np.zeros((len(frame), T, K))
    belief[np.arange(len(frame)), persona, stage] = 1.0
    return belief


def test_export_records_the_belief_layout(belief_export: Path, scorer: PolicyScorer) -> None:
    arrays = ScenarioArrays.from_scenario(load_scenario("retail"))
    names = json.loads((belief_export / SPEC_FILE).read_text())["features"]
    assert names == FeatureBuilder(arrays, observation="belief").names
    assert scorer.features.observation == "belief"
    assert scorer.features.latent_shape == (T, K)


def test_state_export_keeps_the_state_layout(state_scorer: PolicyScorer) -> None:
    assert state_scorer.features.observation == "state"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40))
def test_each_row_is_decided_on_its_own_belief(scorer: PolicyScorer, seed: int, n: int) -> None:
    frame = population(n, seed=seed, consent=True)
    belief = _beliefs(n, seed)
    got = scorer.score_batch(frame, belief=belief, capacity={"call_centre": None})
    # the oracle: features built here from the request, the network and the head by hand
    request = scorer.schema.parse(frame)
    obs = FeatureBuilder(scorer.arrays, observation="belief").build(
        request.state, request.day, weekday=request.weekday, belief=belief
    )
    allowed = scorer.rule_masks(request).allowed
    preferences = scorer.policy.policy.forward(obs)
    expected = policy_head.decide(preferences, allowed, scorer.policy.output_kind)
    np.testing.assert_array_equal(got["action"].to_numpy(), expected.greedy)
    values = scorer.policy.value.forward(obs)[:, 0] * scorer.policy.value_scale
    np.testing.assert_allclose(got["value_estimate"], values, rtol=1e-6)
    # one row at a time: no row borrows another's result
    for i in range(min(n, 3)):
        alone = scorer.score_batch(frame.iloc[[i]], belief=belief[[i]])
        assert alone["action"].iloc[0] == got["action"].iloc[i]
        assert alone["value_estimate"].iloc[0] == pytest.approx(
            got["value_estimate"].iloc[i], rel=1e-5, abs=1e-6
        )


def test_belief_changes_decisions(scorer: PolicyScorer) -> None:
    frame = population(300, seed=4)
    plain = scorer.score_batch(frame)
    believed = scorer.score_batch(frame, belief=_beliefs(300, 4))
    assert (plain["action"] != believed["action"]).any()
    assert not np.allclose(plain["value_estimate"], believed["value_estimate"])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_certain_belief_is_explicit_state_scoring(scorer: PolicyScorer, seed: int) -> None:
    frame = population(25, seed=seed, consent=seed % 2 == 0)
    as_of = pd.Timestamp("2025-03-04 10:00", tz="UTC")
    certain = scorer.score_batch(frame, belief=_certain(frame), as_of=as_of)
    plain = scorer.score_batch(frame, as_of=as_of)
    pd.testing.assert_frame_equal(certain, plain, rtol=1e-5, atol=1e-6)
    for i in range(3):
        one = scorer.score(frame.iloc[i].to_dict(), as_of=as_of)
        assert one.action == certain["action"].iloc[i]
        assert one.propensity == certain["propensity"].iloc[i]
        assert one.value_estimate == pytest.approx(certain["value_estimate"].iloc[i], rel=1e-5)


@pytest.mark.parametrize("persona", range(T))
def test_belief_on_a_persona_decides_as_that_persona(scorer: PolicyScorer, persona: int) -> None:
    """The request's own persona and stage are overruled by the belief (consent is explicit,
    so the contact rules are the same for both requests)."""
    scenario = load_scenario("retail")
    frame = population(200, seed=10 + persona, consent=True)
    rng = np.random.default_rng(persona)
    stage = rng.integers(0, K, len(frame))
    belief = np.zeros((len(frame), T, K))
    belief[np.arange(len(frame)), persona, stage] = 1.0
    explicit = frame.assign(
        persona=scenario.persona_names[persona],
        stage=np.array(scenario.stage_names, dtype=object)[stage],
    )
    others = frame.assign(persona=scenario.persona_names[(persona + 1) % T])
    believed = scorer.score_batch(others, belief=belief)
    expected = scorer.score_batch(explicit)
    np.testing.assert_array_equal(believed["action"], expected["action"])
    np.testing.assert_allclose(
        believed["value_estimate"], expected["value_estimate"], rtol=1e-5, atol=1e-6
    )
    # and a belief spread over the stages decides otherwise for some customers
    spread = np.zeros_like(belief)
    spread[:, persona, :] = 1.0 / K
    assert (scorer.score_batch(others, belief=spread)["action"] != expected["action"]).any()


def test_rules_capacity_exploration_and_log_apply(scorer: PolicyScorer, tmp_path: Path) -> None:
    frame = population(400, seed=3)
    belief = _beliefs(400, 3)
    capped = scorer.score_batch(frame, belief=belief, capacity={"push": 5, "email": 0})
    assert (capped["channel"] == "push").sum() <= 5
    assert (capped["channel"] == "email").sum() == 0
    allowed = scorer.rule_masks(scorer.schema.parse(frame)).allowed
    assert allowed[np.arange(400), capped["action"].to_numpy()].all()
    assert not allowed.all()  # the rules did forbid something
    exploring = _load_like(scorer, Exploration(kind="epsilon", epsilon=0.5, seed=1))
    explored = exploring.score_batch(frame, belief=belief)
    assert explored["explored"].any()
    assert (explored["propensity"] < 1).any()
    with DecisionLog(tmp_path / "log.db") as log:
        scorer.score_batch(frame.iloc[:5], belief=belief[:5], log=log)
        logged = log.read()
    request = scorer.schema.parse(frame.iloc[:5])
    seen = scorer.features.build(
        request.state, request.day, weekday=request.weekday, belief=belief[:5]
    )
    np.testing.assert_array_equal(np.stack(logged["features"].to_list()), seen)


def _load_like(scorer: PolicyScorer, exploration: Exploration) -> PolicyScorer:
    return PolicyScorer(scorer.policy, exploration=exploration)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b[:, :3], r"belief: expected shape \(6, 4, 7\)"),
        (lambda b: b[:5], r"belief: expected shape"),
        (lambda b: np.where(np.arange(T * K).reshape(T, K) == 0, np.nan, b), "non-finite"),
        (lambda b: b - np.eye(T, K)[None] * 2, "negative"),
        (lambda b: b * 1.00001, "sums to"),
        (lambda b: [["x"]], "belief: expected an array of numbers"),
    ],
)
def test_bad_beliefs_are_refused_by_name(scorer: PolicyScorer, change, message: str) -> None:
    frame = population(6, seed=1)
    with pytest.raises(ScoringInputError, match=message):
        scorer.score_batch(frame, belief=change(_beliefs(6, 1)))


def test_belief_within_tolerance_is_accepted(scorer: PolicyScorer) -> None:
    belief = _beliefs(6, 2) * (1 + 5e-7)
    assert len(scorer.score_batch(population(6, seed=2), belief=belief)) == 6


def test_belief_for_a_state_model_is_refused(state_scorer: PolicyScorer) -> None:
    with pytest.raises(ScoringInputError, match="belief: this model was trained on the full"):
        state_scorer.score_batch(population(3, seed=0), belief=_beliefs(3, 0))


def test_blocks_join_to_the_whole_batch(
    scorer: PolicyScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nba.serving import batch

    frame, belief = population(50, seed=7, consent=True), _beliefs(50, 7)
    whole = scorer.score_batch(frame, belief=belief, top_k=13)
    monkeypatch.setattr(batch, "BELIEF_BLOCK", 7)
    blocks = scorer.score_batch(frame, belief=belief, top_k=13)
    pd.testing.assert_frame_equal(blocks, whole, rtol=1e-5, atol=1e-6)
