"""A warm-started run begins as the exported policy: its first evaluation is that policy's."""

from __future__ import annotations

from pathlib import Path

import pytest

from nba.errors import NBAValidationError
from nba.evaluation import CohortScorer
from nba.ope.target import ScorerPolicy
from nba.serving.scorer import PolicyScorer
from nba.training import train
from tests.training.conftest import TINY_RUN


def test_the_first_evaluation_of_a_warm_start_equals_the_exported_policys_value(
    workdir: Path, tiny_config: Path
) -> None:
    # one rollout and update each; evaluated only at the start and the end (the first and
    # the exported policy), which is all this compares
    run = {**TINY_RUN, "timesteps": 512, "eval_every_steps": 10**9}
    first = train(config=tiny_config, observation="belief", seed=0, **run)
    # the export's own value, on the cohort every evaluation of a belief run uses
    exported = PolicyScorer.load(first.export_dir)
    value = CohortScorer("retail").score(ScorerPolicy(exported, "champion")).value
    assert value != pytest.approx(first.history[0]["value"], rel=1e-6)  # it learned something
    warm = train(
        config=tiny_config,
        observation="belief",
        seed=1,
        init_from=first.export_dir,
        **run,
    )
    assert warm.history[0]["timesteps"] == 0
    assert warm.history[0]["value"] == pytest.approx(value, rel=1e-12)


def test_a_warm_start_without_an_export_is_refused_by_name(
    workdir: Path, tiny_config: Path
) -> None:
    with pytest.raises(NBAValidationError, match=r"^init_from: no exported policy"):
        train(config=tiny_config, observation="belief", init_from=workdir, **TINY_RUN)
