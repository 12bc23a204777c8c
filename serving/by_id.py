"""Decide from the customer-state store: score by customer id, and decide for the whole base.

The store (:mod:`nba.store`) answers each customer's state in the scoring request's own field
names plus a belief summary. Policies trained today take the full state, persona and journey
stage included, which a company never observes; until belief-trained policies exist, deciding
from the store uses each customer's MOST LIKELY persona and stage (and most likely purchase-rate
and dropout level where the scenario has levels) under the belief: the issue's
"act on the most likely state" belief baseline. Every decision carries the belief summary
(most likely persona and stage with their probabilities) so a marketer sees how sure the twin
is. The scoring itself is :meth:`PolicyScorer.score_batch` unchanged: rules, capacity,
exploration and the decision log exactly as for an explicit batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from nba.errors import NBAValidationError

if TYPE_CHECKING:
    from nba.serving.decision import Decision
    from nba.serving.scorer import PolicyScorer
    from nba.store import StateStore

#: belief-summary columns of the store's state carried to each decision (when present)
BELIEF_COLUMNS = (
    "persona",
    "persona_probability",
    "stage",
    "stage_probability",
    "discount_habit_probability",
)


class TwinMismatchError(NBAValidationError):
    """The model was trained on another twin than the one the store's beliefs come from."""


def check_same_twin(scorer: PolicyScorer, store: StateStore) -> None:
    """Refuse a model whose scenario fingerprint differs from the store's scenario.

    The store's beliefs and observed state follow its scenario's rules; a policy trained on
    another twin would decide on them without any error: a silent wrong answer.
    """
    scenario = getattr(store, "scenario", None)
    if scenario is None:  # a store that does not say its scenario cannot be checked
        return
    model = scorer.policy.scenario
    if model.fingerprint() != scenario.fingerprint():
        where = getattr(store, "path", "the store")
        raise TwinMismatchError(
            f"--model: trained on scenario {model.name!r} (fingerprint "
            f"{model.fingerprint()[:12]}), but store {str(where)!r} holds scenario "
            f"{scenario.name!r} (fingerprint {scenario.fingerprint()[:12]}); deciding with a "
            "model of another twin is refused"
        )


def split_state(scorer: PolicyScorer, state: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request rows the model's schema accepts, belief summary columns) of a store's state."""
    fields = scorer.schema.fields
    request = state[[c for c in state.columns if c in fields]]
    belief = state[[c for c in BELIEF_COLUMNS if c in state.columns]]
    return request, belief


def decide_from_store(
    scorer: PolicyScorer,
    store: StateStore,
    customer_ids: Any = None,
    as_of: pd.Timestamp | str | None = None,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
) -> pd.DataFrame:
    """One decision per customer (default: every customer in the store), in ``customer_ids``
    order, each with its belief summary in the store's names (``persona``,
    ``persona_probability``, ``stage``, ``stage_probability``, ``discount_habit_probability``).

    Decides on the most likely persona and stage (see the module docstring). ``capacity``,
    ``top_k``, ``log`` and ``batch_id`` are :meth:`PolicyScorer.score_batch`'s. Unknown ids are
    refused by the store, naming them.
    """
    decisions, _ = decide_timed(scorer, store, customer_ids, as_of, capacity, top_k, log, batch_id)
    return decisions


def decide_timed(
    scorer: PolicyScorer,
    store: StateStore,
    customer_ids: Any = None,
    as_of: pd.Timestamp | str | None = None,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`decide_from_store` and its seconds split (``state_s``, ``score_s``)."""
    check_same_twin(scorer, store)
    began = time.perf_counter()
    ids = store.customer_ids() if customer_ids is None else customer_ids
    state = store.state(ids, as_of=as_of)
    read = time.perf_counter()
    decisions = decide_state(scorer, state, capacity, top_k, log, batch_id)
    return decisions, {"state_s": read - began, "score_s": time.perf_counter() - read}


def decide_state(
    scorer: PolicyScorer,
    state: pd.DataFrame,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
) -> pd.DataFrame:
    """Decisions for a state frame the store answered, with its belief summary appended."""
    request, belief = split_state(scorer, state)
    decisions = scorer.score_batch(
        request, capacity=capacity, top_k=top_k, log=log, batch_id=batch_id
    )
    for column in belief.columns:
        decisions[column] = belief[column].to_numpy()
    return decisions


def score_id(
    scorer: PolicyScorer, customer_id: str, store: StateStore, as_of: Any = None
) -> Decision:
    """One customer's decision from the store (``PolicyScorer.score`` on the stored state)."""
    check_same_twin(scorer, store)
    request, _ = split_state(scorer, store.state([str(customer_id)], as_of=as_of))
    return scorer.score(request_row(request))


def request_row(request: pd.DataFrame) -> dict[str, Any]:
    """The first request row as a mapping of plain values (a never-made contact is ``None``)."""
    row = request.iloc[0].to_dict()
    return {str(k): _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    """A frame cell as the single path reads it: Python scalars, ``None`` for missing."""
    if value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
