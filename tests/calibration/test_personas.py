from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLogError
from nba.calibration.personas import PersonaModel


def population(seed: int = 0) -> pd.DataFrame:
    """Three well-separated groups in spend and channel, plus a duplicated column."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, 3_000)
    spend = np.array([20.0, 200.0, 2_000.0])[group] * rng.lognormal(0, 0.1, 3_000)
    return pd.DataFrame(
        {
            "customer_id": np.arange(3_000).astype(str),
            "monetary": spend,
            "monetary_copy": spend * 2.0,
            "web": np.array([True, False, True])[group],
            "region": np.array(["north", "south", "south"])[group],
            "truth": group,
        }
    )


def test_finds_the_groups_and_assigns_new_customers_from_plain_numbers() -> None:
    frame = population()
    model = PersonaModel.fit(frame.drop(columns="truth"), k_range=range(2, 6), seed=0)
    assert model.k == 3
    assert "monetary_copy" not in model.numeric  # a duplicate would count twice
    labels = model.assign(frame.drop(columns="truth"))
    # each true group maps to one persona
    assert pd.crosstab(frame["truth"], labels).gt(0).sum(axis=1).eq(1).all()
    again = PersonaModel.from_dict(model.to_dict())
    fresh = population(seed=1)
    np.testing.assert_array_equal(
        again.assign(fresh.drop(columns="truth")), model.assign(fresh.drop(columns="truth"))
    )
    assert set(model.explained) == {2, 3, 4, 5} and set(model.silhouette) == {2, 3, 4, 5}


def test_response_profiles_group_customers_who_behave_alike() -> None:
    rng = np.random.default_rng(3)
    n = 6_000
    frame = pd.DataFrame({"customer_id": np.arange(n).astype(str), "age": rng.uniform(20, 70, n)})
    frame["noise"] = rng.normal(size=n)
    arm = rng.choice(["held_out", "promo"], n)
    young = frame["age"] < 40
    # only the young respond to the promotion; noise is irrelevant to behaviour
    rate = np.where((arm == "promo") & young, 0.6, 0.1)
    outcomes = pd.DataFrame({"arm": arm, "bought": (rng.random(n) < rate).astype(int)})
    model = PersonaModel.fit(frame, k_range=range(2, 5), seed=0, outcomes=outcomes)
    labels = model.assign(frame)
    purity = pd.crosstab(labels, young).max(axis=1).sum() / n
    assert purity > 0.9
    assert model.profile and PersonaModel.from_dict(model.to_dict()).profile == model.profile


def test_missing_attributes_are_named() -> None:
    frame = population()
    model = PersonaModel.fit(frame.drop(columns="truth"), k_range=range(2, 4))
    with pytest.raises(EventLogError, match="missing attribute column"):
        model.assign(frame.drop(columns=["truth", "region"]))
