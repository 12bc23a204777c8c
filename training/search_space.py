"""Hyper-parameter search spaces: declared in YAML beside the hyper-parameter files.

``training/hyperparams/<algo>.space.yaml`` (or ``<algo>_<scenario>.space.yaml``) says which
settings of ``<algo>.yaml`` a sweep varies and over what, one dotted path per line::

    algorithm.ent_coef: {loguniform: [0.0003, 0.01]}
    algorithm.n_epochs: {choice: [1, 2]}
    policy.net_arch: {choice: [[64, 64], [128, 128]]}

Every path is applied to the base hyper-parameters at both ends of its range (and at every
choice) and the result validated as ``nba train`` would (the SB3 signature included), so a
typo or an impossible value fails before a cluster is asked for anything. Sampling is Ray
Tune's (:meth:`SearchSpace.tune_space`); this module does not need Ray.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from nba.training.config import (
    HyperParameters,
    TrainingConfigError,
    default_hyperparameters,
)

SPACE_SUFFIX = ".space.yaml"
KINDS = ("loguniform", "uniform", "randint", "choice")


class Distribution(BaseModel):
    """One of: ``loguniform: [low, high]``, ``uniform: [low, high]``, ``randint: [low, high]``
    (``high`` excluded, as Tune reads it) or ``choice: [value, ...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {given or 'none'})")
        if self.choice is not None and not self.choice:
            raise ValueError("choice: needs at least one value")
        bounds = self.loguniform or self.uniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{self.kind}: low must be below high (got {list(bounds)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: both bounds must be above 0")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def extremes(self) -> list[Any]:
        """Values that bound what can be sampled: both ends, or every choice."""
        if self.choice is not None:
            return list(self.choice)
        low, high = getattr(self, self.kind)
        return [low, high - 1] if self.randint is not None else [low, high]

    def tune(self) -> Any:
        """The Ray Tune distribution."""
        from ray import tune

        if self.choice is not None:
            return tune.choice(list(self.choice))
        return getattr(tune, self.kind)(*getattr(self, self.kind))

    def describe(self) -> str:
        return f"{self.kind}{list(getattr(self, self.kind))}"


class SearchSpace:
    """Dotted paths of :class:`HyperParameters` and the distribution each is drawn from."""

    def __init__(
        self, base: HyperParameters, dimensions: dict[str, Distribution], algo: str, where: str
    ) -> None:
        self.base = base
        self.dimensions = dimensions
        self.algo = algo
        self.where = where

    def apply(self, values: dict[str, Any]) -> HyperParameters:
        """The base hyper-parameters with ``values`` (path -> value) put in, validated."""
        data = self.base.model_dump(mode="json")
        for path, value in values.items():
            if path not in self.dimensions:
                raise TrainingConfigError(f"{self.where}: {path!r} is not in the search space")
            _put(data, path, value, self.where)
        return _validated(data, self.algo, f"{self.where}: {_describe(values)}")

    def tune_space(self) -> dict[str, Any]:
        """Ray Tune's param space: one distribution per path."""
        return {path: dist.tune() for path, dist in self.dimensions.items()}

    def to_yaml(self) -> str:
        dumped = {
            path: dist.model_dump(exclude_none=True) for path, dist in self.dimensions.items()
        }
        return yaml.safe_dump(dumped, sort_keys=False)

    def describe(self) -> dict[str, str]:
        return {path: dist.describe() for path, dist in self.dimensions.items()}


def load_search_space(
    algo: str,
    scenario: str,
    space: str | Path | None = None,
    base: HyperParameters | None = None,
) -> SearchSpace:
    """The search space of ``algo`` on ``scenario``: ``space`` (a YAML file), else the packaged
    ``<algo>_<scenario>.space.yaml`` or ``<algo>.space.yaml``; checked against ``base`` (default:
    the packaged hyper-parameters that ``nba train`` would use)."""
    base = base or default_hyperparameters(algo, scenario)
    if space is not None:
        path = Path(space)
        if not path.is_file():
            raise TrainingConfigError(f"space: no such file {str(path)!r}")
        return parse_search_space(path.read_text("utf-8"), algo, base, where=str(path))
    folder = resources.files("nba.training").joinpath("hyperparams")
    for name in (f"{algo}_{Path(scenario).stem}{SPACE_SUFFIX}", f"{algo}{SPACE_SUFFIX}"):
        candidate = folder.joinpath(name)
        if candidate.is_file():
            return parse_search_space(candidate.read_text("utf-8"), algo, base, where=name)
    raise TrainingConfigError(
        f"space: no search space for algorithm {algo!r}; give one with --space FILE"
    )


def parse_search_space(
    text: str, algo: str, base: HyperParameters, where: str = "space"
) -> SearchSpace:
    """Parse and check a search space (see the module docstring for the format)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TrainingConfigError(f"{where}: cannot parse YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise TrainingConfigError(f"{where}: expected a mapping of paths to distributions")
    dimensions: dict[str, Distribution] = {}
    for path, spec in data.items():
        try:
            dimensions[str(path)] = Distribution.model_validate(spec)
        except ValidationError as exc:
            problem = "; ".join(
                error["msg"].removeprefix("Value error, ") for error in exc.errors()
            )
            raise TrainingConfigError(f"{where}: {path}: {problem}") from None
    result = SearchSpace(base, dimensions, algo, where)
    for path, dist in dimensions.items():
        for value in dist.extremes():
            result.apply({path: value})
    return result


def _put(data: dict[str, Any], path: str, value: Any, where: str) -> None:
    """Set ``data[a][b][c] = value`` for ``a.b.c``; a path must start at a section and may
    name a new leaf (an SB3 argument the base file leaves at its default) but no new branch."""
    keys = path.split(".")
    if len(keys) < 2:
        raise TrainingConfigError(
            f"{where}: {path}: expected SECTION.NAME, e.g. algorithm.ent_coef"
        )
    if keys[0] not in data:
        raise TrainingConfigError(
            f"{where}: {path}: starts with {keys[0]!r}; expected one of {sorted(data)}"
        )
    node: dict[str, Any] = data
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}  # e.g. algorithm.learning_rate.initial over a constant rate
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)


def _validated(data: dict[str, Any], algo: str, where: str) -> HyperParameters:
    from nba.training.registry import get_algorithm

    try:
        hyperparameters = HyperParameters.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise TrainingConfigError(f"{where}: {problems}") from None
    get_algorithm(algo).check_parameters(hyperparameters.algorithm, f"{where}: algorithm")
    rate = hyperparameters.algorithm.get("learning_rate")
    if isinstance(rate, dict) and set(rate) != {"initial", "final"}:
        raise TrainingConfigError(f"{where}: learning_rate: a schedule needs 'initial' and 'final'")
    return hyperparameters


def _describe(values: dict[str, Any]) -> str:
    def short(value: Any) -> str:
        if isinstance(value, float) and math.isfinite(value):
            return f"{value:.4g}"
        return str(value)

    return ", ".join(f"{path}={short(value)}" for path, value in values.items())
