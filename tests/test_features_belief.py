"""The belief feature layout: marginals in the latent blocks, the joint belief at the end."""

from __future__ import annotations

import numpy as np
import pytest

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.twin import CustomerTwin

N = 64


def _population(scenario: str, seed: int = 0) -> tuple[CustomerTwin, np.ndarray]:
    """A twin of ``N`` customers moved a few days under random allowed contacts, and its days."""
    twin = CustomerTwin(scenario, seed=seed)
    twin.reset(N)
    rng = np.random.default_rng(seed + 1)
    for _ in range(5):
        mask = twin.action_masks()
        actions = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
        twin.step(actions)
    return twin, twin.day.copy()


def _random_beliefs(builder: FeatureBuilder, n: int, seed: int) -> np.ndarray:
    """(n, T, K) beliefs that put mass on every cell (Dirichlet), so marginals are not trivial."""
    n_types, n_stages = builder.latent_shape
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(n_types * n_stages), size=n).reshape(n, n_types, n_stages)


def _block(builder: FeatureBuilder, obs: np.ndarray, name: str) -> np.ndarray:
    width = len(dict(builder.blocks)[name])
    return obs[:, builder.offsets[name] : builder.offsets[name] + width]


@pytest.mark.parametrize("scenario", ["retail", "retail_levels"])
def test_a_certain_belief_is_the_state_layout_plus_a_one_hot_joint(scenario: str) -> None:
    twin, day = _population(scenario)
    plain = FeatureBuilder(twin.arrays)
    belief = FeatureBuilder(twin.arrays, observation="belief")
    assert belief.names[: plain.size] == plain.names
    state_obs = plain.build(twin.state, day)
    certain = belief.build(twin.state, day)
    np.testing.assert_array_equal(certain[:, : plain.size], state_obs)
    # the trailing joint is one-hot at the customer's (type, stage) in the tracker's order
    a, s = twin.arrays, twin.state
    kind = (s.persona * a.n_rate_levels + s.rate_level) * a.n_dropout_levels + s.dropout_level
    joint = _block(belief, certain, "belief").reshape(N, *belief.latent_shape)
    expected = np.zeros_like(joint)
    expected[np.arange(N), kind, s.stage] = 1.0
    np.testing.assert_array_equal(joint, expected)
    # the same certainty given explicitly as a belief builds the same observation
    np.testing.assert_array_equal(belief.build(twin.state, day, belief=expected * 1.0), certain)


@pytest.mark.parametrize("scenario", ["retail", "retail_levels"])
def test_latent_blocks_hold_the_marginals_of_the_joint(scenario: str) -> None:
    twin, day = _population(scenario)
    builder = FeatureBuilder(twin.arrays, observation="belief")
    plain = FeatureBuilder(twin.arrays)
    beliefs = _random_beliefs(builder, N, seed=3)
    obs = builder.build(twin.state, day, belief=beliefs)
    a = twin.arrays
    joint = beliefs.reshape(N, a.n_personas, a.n_rate_levels, a.n_dropout_levels, a.n_stages)
    np.testing.assert_allclose(_block(builder, obs, "persona"), joint.sum(axis=(2, 3, 4)), 1e-6)
    np.testing.assert_allclose(_block(builder, obs, "stage"), joint.sum(axis=(1, 2, 3)), 1e-6)
    for block in ("persona", "stage"):
        assert _block(builder, obs, block).sum(axis=1) == pytest.approx(np.ones(N), abs=1e-6)
    np.testing.assert_allclose(_block(builder, obs, "belief"), beliefs.reshape(N, -1), 1e-6)
    # the state's own latent parts are not read: the observed parts are the state's
    observed = [
        i
        for i, name in enumerate(plain.names)
        if name.split("=")[0] not in {"persona", "stage", "rate_level", "dropout_level"}
    ]
    np.testing.assert_array_equal(obs[:, observed], plain.build(twin.state, day)[:, observed])
    assert obs.dtype == np.float32
    assert obs.min() >= 0.0 and obs.max() <= 1.0


def test_rate_and_dropout_marginals_on_retail_levels() -> None:
    twin, day = _population("retail_levels")
    builder = FeatureBuilder(twin.arrays, observation="belief")
    assert builder.latent_shape == (4 * 3 * 2, 7)
    beliefs = _random_beliefs(builder, N, seed=4)
    obs = builder.build(twin.state, day, belief=beliefs)
    # by hand: type t = (persona * 3 + rate) * 2 + dropout
    rate = np.zeros((N, 3))
    dropout = np.zeros((N, 2))
    for t in range(24):
        rate[:, (t // 2) % 3] += beliefs[:, t].sum(axis=1)
        dropout[:, t % 2] += beliefs[:, t].sum(axis=1)
    np.testing.assert_allclose(_block(builder, obs, "rate_level"), rate, atol=1e-6)
    np.testing.assert_allclose(_block(builder, obs, "dropout_level"), dropout, atol=1e-6)
    # and the names of the joint say the same order
    names = dict(builder.blocks)["belief"]
    assert names[0] == "belief=deal_seeker|r0|d0|aware"
    assert names[7] == "belief=deal_seeker|r0|d1|aware"
    assert names[14] == "belief=deal_seeker|r1|d0|aware"


@pytest.mark.parametrize("scenario", ["retail", "retail_levels"])
def test_decode_belief_inverts_build_to_float32_precision(scenario: str) -> None:
    twin, day = _population(scenario)
    builder = FeatureBuilder(twin.arrays, observation="belief")
    beliefs = _random_beliefs(builder, N, seed=5)
    obs = builder.build(twin.state, day, belief=beliefs)
    decoded = builder.decode_belief(obs)
    assert decoded.dtype == np.float64 and decoded.shape == beliefs.shape
    np.testing.assert_allclose(decoded, beliefs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(decoded.sum(axis=(1, 2)), 1.0, atol=1e-12)
    # decode: observed parts exact, latent parts at the marginals' argmax, the day exact
    state, decoded_day = builder.decode(obs)
    np.testing.assert_array_equal(decoded_day, day)
    np.testing.assert_array_equal(state.pressure, twin.state.pressure)
    np.testing.assert_array_equal(state.days_since, twin.state.days_since)
    np.testing.assert_array_equal(state.habit, twin.state.habit)
    a = twin.arrays
    joint = beliefs.reshape(N, a.n_personas, a.n_rate_levels, a.n_dropout_levels, a.n_stages)
    np.testing.assert_array_equal(state.persona, joint.sum(axis=(2, 3, 4)).argmax(axis=1))
    np.testing.assert_array_equal(state.stage, joint.sum(axis=(1, 2, 3)).argmax(axis=1))


def test_wrong_beliefs_are_refused_naming_belief() -> None:
    twin, day = _population("retail")
    builder = FeatureBuilder(twin.arrays, observation="belief")
    good = _random_beliefs(builder, N, seed=6)
    bad = [
        good[:, :, :-1],  # one stage short
        good[:-1],  # one customer short
        good.reshape(N, -1),  # flat
        good.tolist(),  # not an array
    ]
    for belief in bad:
        with pytest.raises(NBAValidationError, match=r"^belief: expected"):
            builder.build(twin.state, day, belief=belief)  # type: ignore[arg-type]
    with pytest.raises(NBAValidationError, match=r"^belief: only a belief"):
        FeatureBuilder(twin.arrays).build(twin.state, day, belief=good)
    with pytest.raises(NBAValidationError, match="obs:"):
        FeatureBuilder(twin.arrays).decode_belief(
            FeatureBuilder(twin.arrays).build(twin.state, day)
        )
    with pytest.raises(NBAValidationError, match="observation:"):
        FeatureBuilder(twin.arrays, observation="beliefs")  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", ["retail", "retail_levels"])
def test_for_names_recognises_the_belief_layout(scenario: str) -> None:
    twin = CustomerTwin(scenario, seed=0)
    for final_days in (7, 0):
        for observation in ("state", "belief"):
            names = FeatureBuilder(twin.arrays, final_days, observation=observation).names
            found = FeatureBuilder.for_names(twin.arrays, names)
            assert (found.observation, found.final_days) == (observation, final_days)
    names = FeatureBuilder(twin.arrays, observation="belief").names
    with pytest.raises(NBAValidationError, match="features:"):
        FeatureBuilder.for_names(twin.arrays, names[:-1])  # the joint one cell short


def test_beliefs_that_are_not_probabilities_are_refused() -> None:
    twin, day = _population("retail")
    builder = FeatureBuilder(twin.arrays, observation="belief")
    good = _random_beliefs(builder, N, seed=3)
    negative, missing, short = good.copy(), good.copy(), good * 0.9
    negative[0, 0, :2] = [-0.5, 0.5 + negative[0, 0, 1]]
    missing[1, 0, 0] = np.nan
    for belief in (negative, missing, short):
        with pytest.raises(NBAValidationError, match=r"^belief: expected probabilities"):
            builder.build(twin.state, day, belief=belief)
    obs = builder.build(twin.state, day, belief=good)
    obs[2, builder.offsets["belief"] :] = 0.0  # an all-zero belief block
    with pytest.raises(NBAValidationError, match=r"^obs: a belief block"):
        builder.decode_belief(obs)
