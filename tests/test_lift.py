"""Lift against the holdout on a simulated truth: twin customers, treated by a policy that
truly lifts revenue, control by no action; events as a company logs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.features import FeatureBuilder
from nba.holdout import Holdout
from nba.lift import LiftError, cumulative_lift, lift
from nba.lift_figure import lift_figure
from nba.policies import make_baseline
from nba.twin import CustomerTwin
from nba.twin_events import day_events

START = pd.Timestamp("2026-12-01", tz="UTC")


def simulate(n: int, days: int, seed: int, policy: str = "myopic", share: float = 0.2):
    """(decisions, events, twin, held): the policy treats, the holdout gets no action."""
    twin = CustomerTwin("retail", seed=seed)
    twin.reset(n)
    ids = np.array([f"c{i}" for i in range(n)])
    held = Holdout(share, f"salt-{seed}").assign(ids)
    chooser = make_baseline(policy, twin)
    features = FeatureBuilder(twin.arrays)
    events = []
    for d in range(days):
        actions, _ = chooser.act(features.build(twin.state, twin.day), twin.action_masks())
        result = twin.step(np.where(held, 0, actions))
        events.append(day_events(twin.arrays, result, ids, START + pd.Timedelta(days=d)))
    decisions = pd.DataFrame(
        {
            "customer_id": ids,
            "decided_at": START + pd.Timedelta(hours=6),
            "holdout": held,
            "persona": np.array(twin.scenario.persona_names)[twin.state.persona],
        }
    )
    return decisions, pd.concat(events, ignore_index=True), twin, held


def mean_kpis(policy: str, n: int, days: int, seed: int) -> tuple[float, float]:
    """The twin's own expected revenue and value per customer under a policy (large cohort)."""
    twin = CustomerTwin("retail", seed=seed)
    twin.reset(n)
    chooser = make_baseline(policy, twin)
    features = FeatureBuilder(twin.arrays)
    for _ in range(days):
        actions, _ = chooser.act(features.build(twin.state, twin.day), twin.action_masks())
        twin.step(actions)
    k = twin.kpis
    margin = twin.scenario.margin_rate
    value = (k.revenue + k.discount_cost) * margin - k.discount_cost - k.contact_cost
    return float(k.revenue.mean()), float(value.mean())


def test_matches_the_twin_on_its_own_customers() -> None:
    decisions, events, twin, held = simulate(3000, 20, seed=11)
    table = lift(decisions, events, scenario="retail").set_index("kpi")
    k = twin.kpis
    assert table.loc["revenue", "treated_mean"] == pytest.approx(k.revenue[~held].mean())
    assert table.loc["revenue", "control_mean"] == pytest.approx(k.revenue[held].mean())
    assert table.loc["contacts", "control_mean"] == 0.0
    assert table.loc["purchases", "difference"] == pytest.approx(
        k.purchases[~held].mean() - k.purchases[held].mean()
    )
    assert table.loc["revenue", "treated_n"] + table.loc["revenue", "control_n"] == 3000


def test_interval_covers_the_true_difference() -> None:
    days = 30
    decisions, events, _, _ = simulate(4000, days, seed=5)
    table = lift(decisions, events, scenario="retail").set_index("kpi")
    treated_revenue, treated_value = mean_kpis("myopic", 30_000, days, seed=101)
    control_revenue, control_value = mean_kpis("no_action", 30_000, days, seed=102)
    for kpi, truth in (
        ("revenue", treated_revenue - control_revenue),
        ("value", treated_value - control_value),
    ):
        row = table.loc[kpi]
        assert truth > 0  # the policy truly lifts it
        assert row["difference_lower"] <= truth <= row["difference_upper"], (kpi, truth, row)
    assert table.loc["revenue", "difference_lower"] > 0  # and the test sees it


def test_an_aa_split_covers_zero_and_bootstrap_agrees() -> None:
    decisions, events, _, _ = simulate(3000, 20, seed=8, policy="no_action")
    welch = lift(decisions, events, kpis=["revenue"], scenario="retail").iloc[0]
    assert welch["difference_lower"] <= 0 <= welch["difference_upper"]
    boot = lift(decisions, events, kpis=["revenue"], interval="bootstrap", n_boot=400, seed=1)
    boot_row = boot.iloc[0]
    assert boot_row["difference_lower"] <= 0 <= boot_row["difference_upper"]
    width_w = welch["difference_upper"] - welch["difference_lower"]
    width_b = boot_row["difference_upper"] - boot_row["difference_lower"]
    assert width_b == pytest.approx(width_w, rel=0.2)
    again = lift(decisions, events, kpis=["revenue"], interval="bootstrap", n_boot=400, seed=1)
    assert again.equals(boot)  # seeded


def test_segments_and_periods() -> None:
    decisions, events, _, _ = simulate(2000, 10, seed=4)
    table = lift(decisions, events, kpis=["revenue"], by="persona")
    segments = table["segment"].tolist()
    assert segments[0] == "all" and set(segments[1:]) == set(decisions["persona"])
    per_segment = table.iloc[1:]
    assert per_segment["treated_n"].sum() == table.iloc[0]["treated_n"]
    first_days = lift(decisions, events, kpis=["purchases"], end="2026-12-04")
    whole = lift(decisions, events, kpis=["purchases"])
    assert first_days.iloc[0]["treated_mean"] < whole.iloc[0]["treated_mean"]
    # a second decision for a customer does not count them twice
    twice = pd.concat([decisions, decisions.assign(decided_at=START + pd.Timedelta(days=2))])
    assert lift(twice, events, kpis=["purchases"]).equals(whole)


def test_clear_errors() -> None:
    decisions, events, _, _ = simulate(300, 3, seed=2)
    with pytest.raises(LiftError, match=r"^decisions: none in the period"):
        lift(decisions, events, start="2027-01-01")
    with pytest.raises(LiftError, match=r"^holdout: the control group has 0"):
        lift(decisions.assign(holdout=False), events)
    with pytest.raises(LiftError, match=r"^decisions\.holdout: missing column"):
        lift(decisions.drop(columns="holdout"), events)
    with pytest.raises(LiftError, match=r"^decisions\.segment: missing column"):
        lift(decisions, events, by="segment")
    with pytest.raises(LiftError, match=r"^kpis: 'value' is not in the outcomes"):
        lift(decisions, events, kpis=["value"])
    with pytest.raises(LiftError, match=r"^kpis: unknown KPI"):
        lift(decisions, events, kpis=["profit"])
    with pytest.raises(LiftError, match=r"^end: .* is not after start"):
        lift(decisions, events, start="2026-12-05", end="2026-12-01")
    with pytest.raises(ValueError, match="customer_id"):
        lift(decisions, events.drop(columns="customer_id"))


def test_per_customer_outcomes() -> None:
    decisions, _, _, held = simulate(500, 1, seed=3)
    rng = np.random.default_rng(0)
    outcomes = pd.DataFrame(
        {"customer_id": decisions["customer_id"], "revenue": rng.normal(10 + held, 1.0)}
    )
    row = lift(decisions, outcomes).iloc[0]
    assert row["kpi"] == "revenue"
    assert row["difference_upper"] < 0  # control was given +1 here


def test_cumulative_lift_and_figure(tmp_path: pytest.TempPathFactory) -> None:
    decisions, events, _, _ = simulate(2000, 15, seed=6)
    cumulative = cumulative_lift(decisions, events, scenario="retail")
    assert len(cumulative) == 15
    assert (np.diff(cumulative["control_mean"]) >= 0).all()  # no action: value only grows
    final = lift(decisions, events, kpis=["value"], scenario="retail").iloc[0]
    assert cumulative["difference"].iloc[-1] == pytest.approx(final["difference"])
    assert (cumulative["treated_lower"] <= cumulative["treated_mean"]).all()
    figure = lift_figure(cumulative)
    path = tmp_path / "lift.png"  # type: ignore[operator]
    figure.savefig(path)
    assert path.stat().st_size > 10_000
    with pytest.raises(LiftError, match=r"^kpi: 'value' needs a scenario"):
        cumulative_lift(decisions, events)
