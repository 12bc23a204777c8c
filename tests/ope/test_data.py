from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.errors import NBAValidationError
from nba.ope import LoggedBandit, LoggedTrajectories, OPEInputError


def _frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": np.arange(n, dtype=float),
            "action": [0, 1, 1, 0][:n],
            "reward": [1.0, 0.0, 2.0, 1.0][:n],
            "propensity": [0.5, 0.5, 0.25, 0.5][:n],
            "p0": [0.2, 0.5, 1.0, 0.0][:n],
            "p1": [0.8, 0.5, 0.0, 1.0][:n],
        }
    )


def test_from_frame_reads_columns_and_computes_weights() -> None:
    data = LoggedBandit.from_frame(_frame(), ["p0", "p1"], context=["x"], action_names=["a", "b"])
    assert data.n == 4 and data.n_actions == 2 and data.context.shape == (4, 1)
    np.testing.assert_allclose(data.weights, [0.4, 1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns="propensity"),
            r"propensity: missing column \(logging",
        ),
        (lambda f: f.assign(propensity=[0.5, np.nan, 0.5, 0.5]), r"propensity\[1\]: missing"),
        (lambda f: f.assign(propensity=[0.5, 0.0, 0.5, 0.5]), r"propensity\[1\]: propensity 0\.0"),
        (lambda f: f.assign(propensity=[0.5, 1.5, 0.5, 0.5]), r"propensity\[1\]: .*above 1"),
        (lambda f: f.assign(p0=[0.2, 0.5, 0.9, 0.0]), r"target\[2\]: probabilities sum to 0\.9"),
        (lambda f: f.assign(p1=[0.8, 0.5, 0.0, -1.0]), r"target\[3\]: negative"),
        (lambda f: f.assign(action=[0, 1, 2, 0]), r"action\[2\]: action 2 is not in the catalogue"),
        (lambda f: f.assign(reward=[1.0, np.nan, 0.0, 0.0]), r"reward\[1\]: NaN"),
        (lambda f: f.assign(x=[0.0, np.inf, 0.0, 0.0]), r"context\[1\]: NaN or infinity"),
        (lambda f: f.assign(action=[0.0, 0.5, 1.0, 0.0]), r"action: expected integer"),
    ],
)
def test_bad_frames_name_the_field(change, message: str) -> None:
    with pytest.raises(OPEInputError, match=message) as caught:
        LoggedBandit.from_frame(change(_frame()), ["p0", "p1"], context=["x"])
    assert isinstance(caught.value, NBAValidationError) and isinstance(caught.value, ValueError)


def test_shapes_and_catalogues_must_match() -> None:
    target = np.full((3, 2), 0.5)
    with pytest.raises(OPEInputError, match=r"reward: expected shape \(3,\), got \(2,\)"):
        LoggedBandit(np.zeros((3, 1)), [0, 1, 0], [1.0, 2.0], [0.5] * 3, target)
    with pytest.raises(OPEInputError, match=r"target: expected shape \(n, n_actions\)"):
        LoggedBandit(np.zeros((3, 1)), [0, 1, 0], [1.0] * 3, [0.5] * 3, np.full(3, 0.5))
    data = LoggedBandit(np.zeros((3, 1)), [0, 1, 0], [1.0] * 3, [0.5] * 3, target, ("a", "b"))
    with pytest.raises(OPEInputError, match="action catalogue: action 1 is 'b' in the log but 'c'"):
        data.with_target(target, ("a", "c"))
    with pytest.raises(OPEInputError, match="the log has 2 actions, the evaluation policy 3"):
        data.with_target(np.full((3, 3), 1 / 3), ("a", "b", "c"))
    with pytest.raises(OPEInputError, match="log: no decisions"):
        LoggedBandit(np.zeros((0, 1)), [], [], [], np.zeros((0, 2)))


def test_trajectories_pad_after_the_end_and_validate_live_steps_only() -> None:
    n, horizon, actions = 2, 3, 2
    alive = np.array([[True, True, True], [True, False, False]])
    target = np.full((n, horizon, actions), 0.5)
    target[1, 1:] = np.nan  # padding may hold anything
    data = LoggedTrajectories(
        context=np.zeros((n, horizon, 1)),
        action=np.array([[0, 1, 0], [1, 7, 7]]),
        reward=np.array([[1.0, 1.0, 1.0], [2.0, 99.0, 99.0]]),
        propensity=np.array([[0.5, 0.5, 0.5], [0.25, 0.0, 0.0]]),
        target=target,
        alive=alive,
        discount=0.9,
    )
    np.testing.assert_allclose(data.ratios, [[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    assert data.reward[1, 1:].sum() == 0.0
    np.testing.assert_allclose(data.discounts, [1.0, 0.9, 0.81])
    with pytest.raises(OPEInputError, match=r"propensity\[1\]: propensity 0\.0"):
        LoggedTrajectories(
            np.zeros((n, horizon, 1)), np.zeros((n, horizon), dtype=int), np.zeros((n, horizon)),
            np.array([[0.5, 0.5, 0.5], [0.5, 0.0, 0.5]]), np.full((n, horizon, actions), 0.5),
        )  # fmt: skip
    with pytest.raises(OPEInputError, match="discount"):
        LoggedTrajectories(
            np.zeros((n, horizon, 1)), np.zeros((n, horizon), dtype=int), np.zeros((n, horizon)),
            np.full((n, horizon), 0.5), np.full((n, horizon, actions), 0.5), discount=1.5,
        )  # fmt: skip
