"""The store's answer for a set of customers: a frame in the scoring request's own field names.

The state components (:data:`nba.state.COMPONENTS`) name the request's fields, so the frame is
built by walking them: the latent ones (persona, stage and, where the scenario has them, the
customer's own levels) at their most likely value under the belief, the observed ones from the
events. A component the store cannot derive is an error here, not a silently missing field.
The belief summary follows: the most likely persona's and stage's probabilities (each the
marginal of the joint belief, so they are the most likely persona and the most likely stage,
not the most likely pair), and the discount habit's probability. Consent is in the request's
``consent_<channel>`` fields, every channel, always (:mod:`nba.store.consent` says what a
customer without a consent record gets), and ``belief_consent`` says whether the belief's prior
is conditioned on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import COMPONENTS
from nba.store.consent import consent_columns
from nba.store.database import StoreError
from nba.store.observed import NEVER, ObservedRules, Summary, state_at

LAST_CONTACT = "last_contact_"  # the request's timestamp form of the contact history


def marginals(joint: np.ndarray) -> dict[str, np.ndarray]:
    """Each latent part's marginal from the (N, P, Lr, Ld, K) joint belief."""
    joint64 = joint.astype(np.float64)
    return {
        "persona": joint64.sum(axis=(2, 3, 4)),
        "rate_level": joint64.sum(axis=(1, 3, 4)),
        "dropout_level": joint64.sum(axis=(1, 2, 4)),
        "stage": joint64.sum(axis=(1, 2, 3)),
    }


def state_frame(
    scenario: Scenario,
    rules: ObservedRules,
    ids: pd.Index,
    as_of: int,
    summary: Summary,
    joint: np.ndarray,
    consent_required: bool = True,
) -> pd.DataFrame:
    """The request-shaped frame of ``ids`` as of ``as_of`` (UTC ns); see the module docstring."""
    arrays = ScenarioArrays.from_scenario(scenario)
    observed = state_at(summary, as_of, rules)
    margin = marginals(joint)
    likely = {name: probs.argmax(axis=1) for name, probs in margin.items()}
    values: dict[str, np.ndarray] = {
        "persona": np.array(scenario.persona_names, dtype=object)[likely["persona"]],
        "stage": np.array(scenario.stage_names, dtype=object)[likely["stage"]],
        "pressure": observed["pressure"],
        "habit": observed["discount_habit"],
        "opted_out": observed["opted_out"],
        "rate_level": likely["rate_level"],
        "dropout_level": likely["dropout_level"],
        "days_since": observed["days_since"],
    }
    columns: dict[str, object] = {
        "customer_id": ids.to_numpy(dtype=object),
        "as_of": pd.Timestamp(as_of, unit="ns", tz="UTC"),
    }
    for component in COMPONENTS:
        if component.request is None or component.is_silent(arrays):
            continue
        if component.name not in values:
            raise StoreError(f"state: the store does not derive component {component.name!r}")
        names = component.request.names(component.column_names(arrays))
        value = values[component.name]
        if value.ndim == 1:
            columns[names[0]] = value
        else:
            columns.update({name: value[:, g] for g, name in enumerate(names)})
    for channel in rules.capped_channels:
        sent = observed["last_contact"][:, rules.channels.index(channel)]
        columns[f"{LAST_CONTACT}{channel}"] = pd.to_datetime(
            np.where(sent == NEVER, np.datetime64("NaT", "ns"), sent.astype("datetime64[ns]")),
            utc=True,
        )
    columns.update(
        consent_columns(
            arrays, scenario, observed["consented"], likely["persona"], consent_required
        )
    )
    rows = np.arange(len(ids))
    columns["persona_probability"] = margin["persona"][rows, likely["persona"]]
    columns["stage_probability"] = margin["stage"][rows, likely["stage"]]
    columns["discount_habit_probability"] = observed["habit_probability"]
    return pd.DataFrame(columns, index=pd.RangeIndex(len(ids)))
