"""Round trip: logs from a known twin -> calibrate -> the truth inside the intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from nba.calibration import CalibrationResult, calibrate
from nba.calibration.synthetic import (
    SyntheticLog,
    optimum_in_truth,
    persona_map,
    reference_scenario,
    simulate_log,
)
from nba.scenario import Scenario


@dataclass(frozen=True)
class RoundTrip:
    truth: Scenario
    synthetic: SyntheticLog
    result: CalibrationResult
    personas: np.ndarray  # recovered persona of each true persona


@pytest.fixture(scope="module")
def round_trip() -> RoundTrip:
    truth = reference_scenario()
    synthetic = simulate_log(truth, 60_000, seed=1)
    result = calibrate(synthetic.log, n_bootstrap=200, seed=0, data_label="synthetic")
    recovered = result.snapshot.customers["persona"].to_numpy()
    order = pd.Index(result.snapshot.customers.index).get_indexer(
        np.char.add("s", np.arange(len(synthetic.persona)).astype(str))
    )
    mapping = persona_map(synthetic.persona, recovered[order], len(truth.personas))
    return RoundTrip(truth, synthetic, result, mapping)


def checks(trip: RoundTrip) -> pd.DataFrame:
    """Each fitted quantity next to the true value it estimates."""
    truth, result = trip.truth, trip.result
    fitted = result.parameters.set_index("name")
    recovered_of = {r: t for t, r in enumerate(trip.personas)}  # recovered -> true persona
    customers = result.snapshot.customers
    rows = []
    for r in range(result.persona_model.k):
        members = customers["segment"][customers["persona"] == r]
        t = recovered_of.get(
            r, int(trip.personas.tolist().index(r)) if r in trip.personas else None
        )
        t = truth.persona_names.index(members.mode().iloc[0]) if t is None else t
        persona = truth.personas[t]
        rows += [
            (f"personas[{r}].base_purchase_rate", persona.base_purchase_rate),
            (f"personas[{r}].basket_value", persona.basket_value),
            (f"personas[{r}].channel_affinity.email", persona.channel_affinity["email"]),
        ]
        for offer in truth.offers:
            lift = offer.purchase_lift * persona.offer_response.get(offer.name, 1.0)
            rows.append((f"personas[{r}].offer_lift.{offer.name}", lift))
    multipliers = {s.name: s.purchase_multiplier for s in truth.stages}
    rows += [(f"stages[{s}].purchase_multiplier", multipliers[s]) for s in ("aware", "lapsed")]
    rows.append(("channels[email].unsubscribe_risk", truth.channels[0].unsubscribe_risk))
    frame = pd.DataFrame(rows, columns=["name", "truth"]).set_index("name")
    frame = frame.join(fitted[["estimate", "lower", "upper", "source"]])
    frame["inside"] = (frame["lower"] <= frame["truth"]) & (frame["truth"] <= frame["upper"])
    return frame


def test_every_persona_is_recovered_pure(round_trip: RoundTrip) -> None:
    customers = round_trip.result.snapshot.customers
    purity = pd.crosstab(customers["persona"], customers["segment"]).max(axis=1).sum()
    assert purity / len(customers) > 0.99


def test_recovered_parameters_sit_inside_their_intervals(round_trip: RoundTrip) -> None:
    frame = checks(round_trip)
    assert (frame["source"] == "fitted").all(), frame[frame["source"] != "fitted"]
    # 95% intervals: a few of ~30 may miss by chance, a biased estimator would miss many
    assert frame["inside"].mean() >= 0.9, frame[~frame["inside"]].to_string()


def test_recovered_twin_plans_within_two_percent_of_the_true_optimum(
    round_trip: RoundTrip,
) -> None:
    best, transferred = optimum_in_truth(
        round_trip.truth, round_trip.result.scenario, round_trip.personas
    )
    assert transferred >= 0.98 * best, (transferred, best)
