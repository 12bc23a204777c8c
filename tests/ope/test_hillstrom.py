from __future__ import annotations

from pathlib import Path

import pytest

from nba.ope.hillstrom import ARMS, load_hillstrom, validate

DATA = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hillstrom" / "hillstrom.csv"
)
pytestmark = pytest.mark.skipif(
    not DATA.is_file(), reason=f"Hillstrom data not found at {DATA} (the shared data folder)"
)


def test_known_figures_reproduce() -> None:
    data = load_hillstrom(DATA)
    visits = data.frame.groupby("segment")["visit"].mean()
    assert len(data.arm) == 64_000 and data.context.shape[0] == 64_000
    assert visits["Mens E-Mail"] == pytest.approx(0.183, abs=5e-4)
    assert visits["Womens E-Mail"] == pytest.approx(0.151, abs=5e-4)
    assert visits["No E-Mail"] == pytest.approx(0.106, abs=5e-4)
    assert set(data.frame["segment"]) == set(ARMS)


def test_ope_on_one_half_agrees_with_the_direct_estimate_on_the_other() -> None:
    table = validate(load_hillstrom(DATA), "visit", n_boot=300, seed=0)
    assert set(table["estimator"]) == {"ips", "dr"} and len(table) == 8
    assert (table["z"].abs() < 3).all(), table
    by_policy = table[table["estimator"] == "dr"].set_index("policy")["estimate"]
    assert by_policy["everyone mens"] > by_policy["nobody"] + 0.05  # e-mail drives visits
