from __future__ import annotations

from pathlib import Path

import pytest

from nba.datasets import dataset_path
from nba.ope.hillstrom import ARMS, load_hillstrom, validate


@pytest.fixture(scope="module")
def hillstrom_csv(data_home: Path) -> Path:
    """The Hillstrom file from the data home (tests/conftest.py: skipped locally, failed in CI)."""
    return dataset_path("hillstrom", data_home=data_home, download_if_missing=False)


def test_known_figures_reproduce(hillstrom_csv: Path) -> None:
    data = load_hillstrom(hillstrom_csv)
    visits = data.frame.groupby("segment")["visit"].mean()
    assert len(data.arm) == 64_000 and data.context.shape[0] == 64_000
    assert visits["Mens E-Mail"] == pytest.approx(0.183, abs=5e-4)
    assert visits["Womens E-Mail"] == pytest.approx(0.151, abs=5e-4)
    assert visits["No E-Mail"] == pytest.approx(0.106, abs=5e-4)
    assert set(data.frame["segment"]) == set(ARMS)


def test_ope_on_one_half_agrees_with_the_direct_estimate_on_the_other(
    hillstrom_csv: Path,
) -> None:
    table = validate(load_hillstrom(hillstrom_csv), "visit", n_boot=300, seed=0)
    assert set(table["estimator"]) == {"ips", "dr"} and len(table) == 8
    assert (table["z"].abs() < 3).all(), table
    by_policy = table[table["estimator"] == "dr"].set_index("policy")["estimate"]
    assert by_policy["everyone mens"] > by_policy["nobody"] + 0.05  # e-mail drives visits
