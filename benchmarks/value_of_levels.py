"""What knowing each customer's own levels is worth on the reference scenario, exactly.

``retail_levels`` (retail, with light, middle and heavy buyers and slow and fast leavers): the
exact optimum, which knows each customer's levels, against retail's optimum (the mean customer
of each persona) applied to every level alike, and no action; overall and per rate level.
Values are per customer over the horizon, computed from the kernel (no sampling noise).

Run: ``python benchmarks/value_of_levels.py [--scenario retail_levels]``. Last line: JSON with
``optimum``, ``level_blind``, ``no_action``, ``worth`` and ``share_of_gain``.
"""

from __future__ import annotations

import argparse
import json
import time

from nba.level_value import value_of_levels
from nba.scenarios import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="retail_levels")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    started = time.perf_counter()
    value = value_of_levels(scenario)
    seconds = time.perf_counter() - started
    block = scenario.heterogeneity
    assert block is not None  # value_of_levels refuses a scenario without levels
    print(f"{scenario.name}: exact values per customer over {scenario.horizon_days} days")
    print(f"{'customers':>26} {'optimum':>9} {'level-blind':>12} {'no action':>10} {'worth':>7}")
    for k, level in enumerate(block.rate_levels):
        best, blind, nothing = value.by_rate_level[k]
        label = f"rate level {k} (x{level.multiplier:.2f}, {level.share:.0%})"
        print(f"{label:>26} {best:9.3f} {blind:12.3f} {nothing:10.3f} {best - blind:7.3f}")
    print(
        f"{'everyone':>26} {value.optimum:9.3f} {value.level_blind:12.3f} "
        f"{value.no_action:10.3f} {value.worth:7.3f}"
    )
    print(
        f"knowing each customer's levels is worth {value.worth:.3f} per customer, "
        f"{value.share_of_gain:.1%} of the optimum's gain over no action ({seconds:.1f} s)"
    )
    print(
        json.dumps(
            {
                "benchmark": "value_of_levels",
                "scenario": scenario.name,
                "optimum": round(value.optimum, 4),
                "level_blind": round(value.level_blind, 4),
                "no_action": round(value.no_action, 4),
                "worth": round(value.worth, 4),
                "share_of_gain": round(value.share_of_gain, 4),
                "by_rate_level": value.by_rate_level.round(4).tolist(),
                "seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
