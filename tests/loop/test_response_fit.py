"""The response refit: a twin wrong about attention and lifts is pulled to the world's."""

from __future__ import annotations

import numpy as np
import pytest

from nba.belief_values import BeliefValues
from nba.loop.response_fit import ResponseEvidence, ResponseTables, fit_response
from nba.loop.world import wrong_twin
from nba.observation import BeliefObserver
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin


def _evidence(world_twin: CustomerTwin, twin: CustomerTwin, n: int, days: int) -> ResponseEvidence:
    """Random allowed contacts in the world, seen through ``twin``'s beliefs."""
    tables = ResponseTables(BeliefValues(twin))
    observer = BeliefObserver(twin.arrays)
    observer.reset(world_twin.reset(n, seed=5))
    evidence = ResponseEvidence(twin.n_actions)
    rng = np.random.default_rng(0)
    channel = world_twin.arrays.rules.action_channel
    for _ in range(days):
        state, mask = world_twin.state, world_twin.action_masks()
        actions = np.argmax(rng.random(mask.shape) * mask, axis=1)
        context = observer.context(state)
        expected = tables.expected(observer.belief, state, actions)
        result = world_twin.step(actions)
        assert (result.executed == actions).all()
        opened = result.noticed & (channel[result.executed] >= 0)
        evidence.add(result.executed, opened, result.bought, expected)
        observer.update(context, result.bought, result.executed)
    return evidence


@pytest.fixture(scope="module")
def fitted() -> tuple:
    world = load_scenario("retail")
    wrong, factors = wrong_twin(world, 0.3, np.random.default_rng(1))
    evidence = _evidence(CustomerTwin(world, seed=3), CustomerTwin(wrong), 20_000, 14)
    return world, wrong, factors, evidence, fit_response(wrong, evidence)


def test_attention_is_recovered_within_its_standard_errors(fitted: tuple) -> None:
    _, _, factors, _, fit = fitted
    for channel, factor in factors["channel_attention"].items():
        truth = 1.0 / factor  # the world relative to the twin
        se = fit.standard_errors[f"attention.{channel}"]
        assert abs(fit.channel_attention[channel] - truth) < 4 * se + 0.02, channel


def test_lifts_move_towards_the_world_where_the_data_say_so(fitted: tuple) -> None:
    _, _, factors, _, fit = fitted
    before = after = 0.0
    for offer, factor in factors["offer_lift"].items():
        se = fit.standard_errors.get(f"lift.{offer}")
        if se is None or se > 0.2:
            continue  # too little signal: shrunk to the twin, tested below
        truth = 1.0 / factor
        before += abs(1.0 - truth)
        after += abs(fit.offer_lift[offer] - truth)
    assert before > 0 and after < 0.5 * before


def test_without_enough_sends_nothing_moves(fitted: tuple) -> None:
    _, wrong, _, evidence, _ = fitted
    fit = fit_response(wrong, evidence, min_sends=10**9)
    assert set(fit.channel_attention.values()) == {1.0} and set(fit.offer_lift.values()) == {1.0}
    assert fit.apply(wrong, "").fingerprint() == wrong.fingerprint()


def test_applying_the_fit_brings_the_twin_closer_to_the_world(fitted: tuple) -> None:
    world, wrong, _, _, fit = fitted
    refit = fit.apply(wrong)

    def attention_error(scenario: object) -> float:
        return sum(
            abs(a - b)
            for p, q in zip(scenario.personas, world.personas, strict=True)  # type: ignore[attr-defined]
            for a, b in zip(p.channel_affinity.values(), q.channel_affinity.values(), strict=True)
        )

    assert attention_error(refit) < 0.25 * attention_error(wrong)
