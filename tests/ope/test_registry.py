from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from nba.errors import NBAValidationError, UnknownNameError
from nba.ope import (
    ESTIMATORS,
    IPS,
    PDIS,
    TRAJECTORY_ESTIMATORS,
    BanditEstimator,
    LoggedBandit,
    SwitchDR,
    Terms,
    available_estimators,
    estimator_parameters,
    evaluate_bandit,
    make_estimator,
    register_estimator,
    unregister_estimator,
)
from nba.ope.promotion import GateSettings
from nba.ope.registry import parse_estimators
from nba.types import FloatArray
from tests.ope.conftest import synthetic_bandit


@dataclass
class ClippedIPS(BanditEstimator):
    """IPS with weights capped at ``cap``: a toy plug-in."""

    name: ClassVar[str] = "clipped_ips"
    cap: float = 10.0

    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        return Terms(np.minimum(data.weights, self.cap) * data.reward)


@pytest.fixture
def clipped() -> Iterator[type[ClippedIPS]]:
    register_estimator("clipped_ips", ClippedIPS)
    yield ClippedIPS
    unregister_estimator("clipped_ips")


def test_a_registered_estimator_is_made_by_name_with_parameters(clipped: type) -> None:
    assert "clipped_ips" in available_estimators("bandit")
    assert "clipped_ips" not in available_estimators("trajectory")
    assert estimator_parameters("clipped_ips") == {"cap": 10.0}
    made = make_estimator("clipped_ips", cap=2)
    assert isinstance(made, ClippedIPS) and made.cap == 2
    assert made.label == "clipped_ips(cap=2)"
    assert make_estimator("clipped_ips").label == "clipped_ips"
    data = synthetic_bandit(n=2_000, seed=3).data
    expected = float(np.mean(np.minimum(data.weights, 2) * data.reward))
    assert made.estimate(data) == pytest.approx(expected, rel=1e-12)
    # a huge cap is plain IPS
    assert make_estimator("clipped_ips", cap=1e12).estimate(data) == pytest.approx(
        IPS().estimate(data), rel=1e-12
    )


def test_evaluate_bandit_takes_instances_and_names_together(clipped: type) -> None:
    data = synthetic_bandit(n=3_000, seed=4).data
    tight, loose = make_estimator("clipped_ips", cap=1.5), SwitchDR(tau=3)
    intervals = evaluate_bandit(data, ["ips", tight, loose, "clipped_ips"], n_boot=100, seed=0)
    labels = [i.estimator for i in intervals]
    assert labels == ["ips", "clipped_ips(cap=1.5)", "switch_dr(tau=3)", "clipped_ips"]
    assert intervals[1].estimate == pytest.approx(tight.estimate(data))
    assert intervals[1].estimate != pytest.approx(intervals[3].estimate)
    # names and instances give the same numbers for the same estimator and seed
    by_name = evaluate_bandit(data, ["ips"], n_boot=100, seed=0)[0]
    by_instance = evaluate_bandit(data, [IPS()], n_boot=100, seed=0)[0]
    assert by_name == by_instance
    # one estimator may be given alone
    assert evaluate_bandit(data, "snips", n_boot=50)[0].estimator == "snips"
    assert (
        evaluate_bandit(data, IPS(), n_boot=50)[0] == evaluate_bandit(data, ["ips"], n_boot=50)[0]
    )


def test_bad_registrations_are_refused_with_the_reason() -> None:
    with pytest.raises(NBAValidationError, match="already registered"):
        register_estimator("ips", IPS)
    with pytest.raises(NBAValidationError, match="not an estimator"):
        register_estimator("toy", dict)
    with pytest.raises(NBAValidationError, match="with a class"):
        register_estimator("toy", IPS())
    with pytest.raises(NBAValidationError, match="abstract"):
        register_estimator("toy", BanditEstimator)
    with pytest.raises(NBAValidationError, match=r"ClippedIPS\.name is 'clipped_ips'"):
        register_estimator("clipped", ClippedIPS)
    with pytest.raises(NBAValidationError, match="lower-case"):
        register_estimator("Clipped IPS", ClippedIPS)
    assert "clipped" not in available_estimators() and "toy" not in available_estimators()
    assert set(ESTIMATORS) == {"dm", "ips", "snips", "dr", "switch_dr", "dr_os"}
    assert set(TRAJECTORY_ESTIMATORS) == {"pdis", "wpdis", "dr_fqe"}
    with pytest.raises(UnknownNameError, match="estimator: unknown 'magic'"):
        unregister_estimator("magic")


def test_unknown_or_mistyped_parameters_name_the_accepted_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"\['taw'\] for switch_dr; accepted: \['tau'\]"):
        make_estimator("switch_dr", taw=20)
    with pytest.raises(UnknownNameError, match="it takes no parameters"):
        make_estimator("ips", tau=1)
    with pytest.raises(NBAValidationError, match="tau expects float, got '20'"):
        make_estimator("switch_dr", tau="20")
    with pytest.raises(NBAValidationError, match="tau: -1 must be > 0"):
        make_estimator("switch_dr", tau=-1)
    assert make_estimator("switch_dr", tau=20).tau == 20
    assert isinstance(make_estimator("pdis"), PDIS)


def test_one_step_entry_points_refuse_trajectory_estimators() -> None:
    data = synthetic_bandit(n=200, seed=5).data
    with pytest.raises(NBAValidationError, match="pdis evaluates trajectories"):
        evaluate_bandit(data, ["ips", "pdis"], n_boot=10)
    with pytest.raises(NBAValidationError, match="given twice"):
        evaluate_bandit(data, ["dr", "dr"], n_boot=10)
    with pytest.raises(NBAValidationError, match="at least one"):
        evaluate_bandit(data, [], n_boot=10)
    with pytest.raises(UnknownNameError, match="estimator: unknown 'magic'"):
        GateSettings(estimator="magic")
    assert GateSettings(estimator=SwitchDR(tau=5)).estimator == SwitchDR(tau=5)


def test_estimators_are_read_as_tables_label_them() -> None:
    parsed = parse_estimators("ips, switch_dr(tau=20), dr_os(lam=5.5)")
    assert [e.label for e in parsed] == ["ips", "switch_dr(tau=20)", "dr_os(lam=5.5)"]
    assert [e.label for e in parse_estimators(",".join(e.label for e in parsed))] == [
        e.label for e in parsed
    ]
    for text, message in (
        ("", "at least one"),
        ("switch_dr(tau=20", "unbalanced"),
        ("switch_dr(tau=fast)", "not a number"),
        ("ips(x)", "key=value"),
        ("switch_dr(t=1)", r"unknown parameter\(s\) \['t'\]"),
    ):
        with pytest.raises(NBAValidationError, match=message):
            parse_estimators(text)
