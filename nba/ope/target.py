"""An exported policy as the evaluation policy: its probabilities on logged features.

The decision log stores the features each decision saw, so a model's choice can be replayed
on them with its numpy network. Which actions may it choose? Exactly those the contact rules
allowed at decision time: they are recomputed from the logged features by the one rule module
(:func:`nba.contact_rules.rule_masks`, with the consent implied by persona and opt-out). Where
the logged probabilities have more than one non-zero entry (a softmax serving policy), their
support *is* the allowed set as served, so it is intersected in; that also honours per-request
consent the features do not carry. "No action" is always allowed.

``kind="greedy"`` evaluates the policy as served by default (argmax over the allowed actions);
``kind="softmax"`` its stochastic form (logit policies only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from nba import policy_head
from nba.contact_rules import rule_masks
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.ope.data import OPEInputError
from nba.serving.scorer import PolicyScorer, ServedPolicy
from nba.types import BoolArray, FloatArray

TargetKind = Literal["greedy", "softmax"]
_CHUNK = 262_144  # rows per network call: bounds the hidden activations' memory


def model_features(
    scorer: PolicyScorer, features: np.ndarray, names: Sequence[str] | None
) -> np.ndarray:
    """Logged features in the evaluation model's layout.

    A log and a model from either side of a trailing feature block (``days_left``) still meet:
    a model that predates it reads the prefix; for a log that predates it, the state, day and
    weekday are decoded from the logged features and built again with the model's builder.
    """
    wanted = scorer.features.names
    logged = list(names) if names is not None else wanted
    if features.shape[1] != len(logged):
        raise OPEInputError(
            f"features: the log has {features.shape[1]}, its feature names {len(logged)}"
        )
    if logged == wanted:
        return features
    if logged[: len(wanted)] == wanted:
        return features[:, : len(wanted)]
    if wanted[: len(logged)] == logged:
        legacy = FeatureBuilder.for_names(scorer.arrays, logged)
        state, day = legacy.decode(features)
        start = legacy.offsets["weekday"]
        weekday = np.argmax(features[:, start : start + 7], axis=1).astype(np.int64)
        return scorer.features.build(state, day, weekday=weekday)
    raise OPEInputError("features: the log's feature names differ from the evaluation policy's")


def allowed_actions(
    scorer: PolicyScorer, features: np.ndarray, logged: np.ndarray | None = None
) -> BoolArray:
    """(n, A) actions the rules allowed for each logged decision (see the module note)."""
    builder = scorer.features
    state, _ = builder.decode(features)
    start = builder.offsets["weekday"]
    weekday = np.argmax(features[:, start : start + 7], axis=1).astype(np.int64)
    allowed = rule_masks(scorer.arrays.rules, state, weekday, state.consent(scorer.arrays)).allowed
    if logged is not None:
        support = logged > 0
        stochastic = support.sum(axis=1) > 1
        allowed = np.where(stochastic[:, None], allowed & support, allowed)
    allowed[:, 0] = True
    return allowed


def preferences(scorer: PolicyScorer, features: np.ndarray) -> FloatArray:
    """(n, A) network outputs (logits or Q values), computed in chunks."""
    network = scorer.policy.policy
    out = np.empty((features.shape[0], network.output_size), dtype=np.float64)
    for start in range(0, features.shape[0], _CHUNK):
        out[start : start + _CHUNK] = network.forward(features[start : start + _CHUNK])
    return out


def policy_probabilities(
    scorer: PolicyScorer,
    features: np.ndarray,
    allowed: BoolArray,
    kind: TargetKind = "greedy",
) -> FloatArray:
    """(n, A) evaluation-policy probabilities over the allowed actions (the policy head's)."""
    if kind not in ("greedy", "softmax"):
        raise NBAValidationError(f"target: unknown kind {kind!r}; expected greedy or softmax")
    if kind == "softmax" and scorer.policy.output_kind != "logits":
        raise NBAValidationError("target: softmax needs a policy with logits, not Q values")
    head = policy_head.decide(preferences(scorer, features), allowed, scorer.policy.output_kind)
    if kind == "greedy":
        return policy_head.one_hot(head.greedy, allowed.shape[1])
    return head.probabilities


#: Kept under its first name: an exported policy as a :class:`nba.policies.Policy`.
ScorerPolicy = ServedPolicy
