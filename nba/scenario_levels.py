"""Individual heterogeneity: each customer's own purchase-rate and dropout-propensity level.

A persona says how a segment behaves on average; customers within it still differ, and the
differences matter (BG/NBD's gamma and beta mixing distributions, whose spread is what lets it
forecast heavy and one-time buyers). The scenario declares them as a few discrete levels, so the
state stays finite and the exact optimum still exists::

    heterogeneity:
      rate_levels:                       # multiplier on the daily purchase probability
        - {multiplier: 0.3, share: 0.5}
        - {multiplier: 1.7, share: 0.5}
      dropout_levels:                    # multiplier on the stage moves into dropout stages
        - {multiplier: 0.5, share: 0.6}
        - {multiplier: 1.75, share: 0.4}
      dropout_stages: [churned]          # default: the churn stage
      source: quantile bins of the fitted gamma and beta mixing distributions

Multipliers are applied as written, never renormalised: the persona's ``base_purchase_rate`` is
the rate of a customer whose rate level has multiplier 1, so the population's mean rate is the
persona's rate times :attr:`Heterogeneity.mean_rate_multiplier`. Levels fitted as quantile bins
of a mixing distribution have a share-weighted mean of 1 and keep the persona's rate as the
mean. Levels are drawn at the start independently of persona and of each other, and never
change (they are who the customer is). Without the block, every customer has one level of each,
multiplier 1: the scenario, its state space and its fingerprint are exactly as before.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from nba.scenario_base import SUM_TOLERANCE, ConfigModel, Probability, check_known

#: Most levels of each kind: the state space multiplies by their product.
MAX_LEVELS = 16


class Level(ConfigModel):
    """One level of a latent customer trait: its multiplier and the share of customers at it."""

    multiplier: float = Field(gt=0.0, description="Multiplier on the persona's own value.")
    share: Probability = Field(description="Share of customers at this level (all sum to 1).")


def _one_level() -> list[Level]:
    return [Level(multiplier=1.0, share=1.0)]


class Heterogeneity(ConfigModel):
    """Each customer's latent purchase-rate and dropout levels (see the module docstring)."""

    rate_levels: list[Level] = Field(
        default_factory=_one_level,
        min_length=1,
        max_length=MAX_LEVELS,
        description="Multipliers on the daily purchase probability (kept a probability).",
    )
    dropout_levels: list[Level] = Field(
        default_factory=_one_level,
        min_length=1,
        max_length=MAX_LEVELS,
        description="Multipliers on the daily and after-purchase moves into dropout stages.",
    )
    dropout_stages: list[str] = Field(
        default_factory=list,
        description="Stages whose inbound moves are dropout (empty: the churn stage).",
    )
    source: str = Field("", description="Where the levels come from.")

    @model_validator(mode="after")
    def _check_shares(self) -> Heterogeneity:
        problems = []
        for field in ("rate_levels", "dropout_levels"):
            total = sum(level.share for level in getattr(self, field))
            if abs(total - 1.0) > SUM_TOLERANCE:
                problems.append(f"{field}[*].share: shares sum to {total:.4f}, expected 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def mean_rate_multiplier(self) -> float:
        """Share-weighted mean rate multiplier (1 for levels fitted as quantile bins)."""
        return sum(level.multiplier * level.share for level in self.rate_levels)


def check_heterogeneity(
    heterogeneity: Heterogeneity | None, stages: list[str], problems: list[str]
) -> None:
    """Add to ``problems`` any dropout stage the scenario does not have."""
    if heterogeneity is not None:
        check_known("heterogeneity.dropout_stages", heterogeneity.dropout_stages, stages, problems)
