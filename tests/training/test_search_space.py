"""Search spaces: the packaged ones load, values land where their paths say, and bad spaces are
refused by name before any trial starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nba.errors import NBAValidationError
from nba.training.config import TrainingConfigError, default_hyperparameters
from nba.training.registry import ALGORITHMS
from nba.training.search_space import load_search_space, parse_search_space


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_has_a_packaged_space_that_fits_its_hyperparameters(algo: str) -> None:
    space = load_search_space(algo, "retail")
    assert space.where == f"{algo}.space.yaml" and space.dimensions
    for path, dist in space.dimensions.items():
        for value in dist.extremes():  # each end of the range builds a valid config
            applied = space.apply({path: value}).model_dump(mode="json")
            node = applied
            for key in path.split("."):
                node = node[key]
            assert node == value


def test_applied_values_replace_only_their_paths() -> None:
    base = default_hyperparameters("ppo", "retail")
    space = load_search_space("ppo", "retail")
    applied = space.apply({"algorithm.learning_rate.initial": 0.001, "policy.net_arch": [128, 128]})
    assert applied.algorithm["learning_rate"] == {"initial": 0.001, "final": 0.0002}
    assert applied.policy.net_arch == [128, 128]
    assert applied.env == base.env
    assert {k: v for k, v in applied.algorithm.items() if k != "learning_rate"} == {
        k: v for k, v in base.algorithm.items() if k != "learning_rate"
    }


def test_a_path_may_name_an_sb3_argument_the_base_leaves_at_its_default() -> None:
    base = default_hyperparameters("ppo", "retail")
    space = parse_search_space("algorithm.vf_coef: {uniform: [0.25, 1.0]}", "ppo", base)
    assert space.apply({"algorithm.vf_coef": 0.5}).algorithm["vf_coef"] == 0.5


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("algorithm.ent_coef: {uniform: [0.1, 0.01]}", "low must be below high"),
        ("algorithm.ent_coef: {loguniform: [0.0, 0.01]}", "above 0"),
        ("algorithm.ent_coef: {uniform: [0, 1], choice: [1]}", "exactly one"),
        ("algorithm.ent_coef: {normal: [0, 1]}", "algorithm.ent_coef"),
        ("algorithm.ent_coef: {choice: []}", "at least one value"),
        ("algorithm.ent_cof: {uniform: [0.0, 0.1]}", "ent_cof"),  # not an SB3 argument
        ("policy.net_arch: {choice: [[64], fast]}", "net_arch"),
        ("policy.activation: {choice: [tanh, gelu]}", "activation"),
        ("optimizer.lr: {uniform: [0.1, 0.2]}", "'optimizer'"),
        ("ent_coef: {uniform: [0.1, 0.2]}", "SECTION.NAME"),
        ("algorithm.learning_rate.start: {uniform: [0.001, 0.002]}", "learning_rate"),
        ("[1, 2]", "mapping of paths"),
        ("algorithm.ent_coef: {uniform: [0, 1]", "cannot parse YAML"),
    ],
)
def test_a_bad_space_is_refused_naming_the_problem(text: str, named: str) -> None:
    base = default_hyperparameters("ppo", "retail")
    with pytest.raises(NBAValidationError, match="space") as caught:
        parse_search_space(text, "ppo", base, where="space")
    assert named in str(caught.value)


def test_a_missing_space_file_and_an_algorithm_without_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingConfigError, match="no such file"):
        load_search_space("ppo", "retail", tmp_path / "missing.yaml")
    base = default_hyperparameters("ppo", "retail")
    given = tmp_path / "mine.yaml"
    given.write_text("algorithm.ent_coef: {choice: [0.001, 0.01]}\n")
    assert load_search_space("ppo", "retail", given, base).describe() == {
        "algorithm.ent_coef": "choice[0.001, 0.01]"
    }


def test_applying_a_path_outside_the_space_is_refused() -> None:
    space = load_search_space("ppo", "retail")
    with pytest.raises(TrainingConfigError, match="not in the search space"):
        space.apply({"algorithm.vf_coef": 0.5})


def test_the_space_round_trips_through_its_yaml() -> None:
    space = load_search_space("dqn", "retail")
    again = parse_search_space(space.to_yaml(), "dqn", space.base)
    assert again.describe() == space.describe()


def test_tune_distributions_sample_inside_the_declared_ranges() -> None:
    pytest.importorskip("ray")
    import numpy as np

    space = load_search_space("ppo", "retail")
    tune_space = space.tune_space()
    rng = np.random.default_rng(0)
    for path, dist in space.dimensions.items():
        drawn = tune_space[path].sample(size=200, random_state=rng)
        if dist.choice is not None:
            assert {str(v) for v in drawn} <= {str(v) for v in dist.choice}
        else:
            low, high = getattr(dist, dist.kind)
            assert low <= min(drawn) and max(drawn) <= high
