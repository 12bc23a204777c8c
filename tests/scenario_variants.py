"""Scenario variants the tests share: built from the packaged ones, never kept as copies."""

from __future__ import annotations

from nba.scenario import Scenario
from nba.scenarios import load_scenario

#: Name of the retail variant whose customers carry widely spread rate and dropout levels (the
#: packaged ``retail_levels`` is the sourced one; this one's spread makes effects easy to see).
RETAIL_LEVELS = "retail_wide_levels"


def retail_with_levels() -> Scenario:
    """Retail with 3 purchase-rate levels and 2 dropout levels (share-weighted means of 1).

    Light, middle and heavy buyers (a quarter, one and two and a half times the persona's rate)
    and slow and fast leavers, whose moves into lapsed and churned are halved or scaled by 1.75.
    """
    retail = load_scenario("retail")
    return retail.updated(
        {
            "name": RETAIL_LEVELS,
            "heterogeneity": {
                "rate_levels": [
                    {"multiplier": 0.25, "share": 0.4},
                    {"multiplier": 1.0, "share": 0.4},
                    {"multiplier": 2.5, "share": 0.2},
                ],
                "dropout_levels": [
                    {"multiplier": 0.5, "share": 0.6},
                    {"multiplier": 1.75, "share": 0.4},
                ],
                "dropout_stages": ["lapsed", "churned"],
                "source": "test variant: BG/NBD-like spread around the persona rates",
            },
        }
    )
