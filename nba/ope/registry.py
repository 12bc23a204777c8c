"""The estimator registry: names users type, mapped to estimator classes.

Extend it with :func:`register_estimator`, as algorithms register with
:func:`nba.training.register_algorithm`; build one with its parameters by name::

    register_estimator("clipped_ips", ClippedIPS)
    make_estimator("switch_dr", tau=20)

One-step estimators (:class:`~nba.ope.estimators.BanditEstimator`) are listed in
:data:`ESTIMATORS`, multi-step ones (:class:`~nba.ope.sequential.TrajectoryEstimator`) in
:data:`TRAJECTORY_ESTIMATORS`; a name is unique across both. Nothing else in ``nba.ope``
names an estimator class.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from typing import Any, Literal, TypeVar

from nba.errors import NBAValidationError, UnknownNameError
from nba.ope.base import Estimator
from nba.ope.estimators import (
    IPS,
    SNIPS,
    BanditEstimator,
    DirectMethod,
    DoublyRobust,
    DRShrinkage,
    SwitchDR,
)
from nba.ope.sequential import PDIS, WPDIS, SequentialDR, TrajectoryEstimator

EstimatorKind = Literal["bandit", "trajectory"]
E = TypeVar("E", bound=type[Estimator])

#: One-step estimators by name, in registration order (``nba ope --estimators``).
ESTIMATORS: dict[str, type[BanditEstimator]] = {}
#: Multi-step estimators by name.
TRAJECTORY_ESTIMATORS: dict[str, type[TrajectoryEstimator]] = {}

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_estimator(name: str, cls: E) -> E:
    """Make ``cls`` available as ``name`` to :func:`make_estimator`, the CLI and the gate.

    :param name: lower-case letters, digits and ``_`` (names are typed in comma lists); it
        must be the class's own ``name``, which labels its intervals.
    :param cls: a concrete subclass of ``BanditEstimator`` or ``TrajectoryEstimator``.
    :returns: ``cls``, unchanged.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise NBAValidationError(
            f"estimator: name {name!r} must be lower-case letters, digits and '_', "
            "starting with a letter"
        )
    table = _table_for(name, cls)
    own = getattr(cls, "name", None)
    if own != name:
        raise NBAValidationError(
            f"estimator: {cls.__name__}.name is {own!r}, so its intervals would not say "
            f"{name!r}; set name: ClassVar[str] = {name!r} on the class"
        )
    if name in ESTIMATORS or name in TRAJECTORY_ESTIMATORS:
        existing = _lookup(name)
        raise NBAValidationError(
            f"estimator: {name!r} is already registered ({existing.__module__}."
            f"{existing.__qualname__}); unregister_estimator({name!r}) first to replace it"
        )
    table[name] = cls
    return cls


def unregister_estimator(name: str) -> type[Estimator]:
    """Remove ``name`` from the registry; returns its class."""
    cls = _lookup(name)
    ESTIMATORS.pop(name, None)
    TRAJECTORY_ESTIMATORS.pop(name, None)
    return cls


def available_estimators(kind: EstimatorKind | None = None) -> tuple[str, ...]:
    """Registered names, one-step first, each group in registration order."""
    if kind not in (None, "bandit", "trajectory"):
        raise NBAValidationError(f"kind: {kind!r} is not 'bandit' or 'trajectory'")
    bandit = tuple(ESTIMATORS) if kind in (None, "bandit") else ()
    trajectory = tuple(TRAJECTORY_ESTIMATORS) if kind in (None, "trajectory") else ()
    return bandit + trajectory


def estimator_parameters(name: str) -> dict[str, Any]:
    """The parameters ``name`` takes, with their defaults (``inspect.Parameter.empty`` if none)."""
    return {p.name: p.default for p in _parameters(_lookup(name))}


def make_estimator(name: str, **parameters: Any) -> Estimator:
    """The estimator registered as ``name``, configured by keyword: ``make_estimator("switch_dr",
    tau=20)``. Unknown names and parameters are refused with the accepted ones listed.
    """
    cls = _lookup(name)
    accepted = {p.name: p for p in _parameters(cls)}
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        takes = f"accepted: {sorted(accepted)}" if accepted else "it takes no parameters"
        raise UnknownNameError(f"estimator: unknown parameter(s) {unknown} for {name}; {takes}")
    empty = inspect.Parameter.empty
    missing = [p for p, spec in accepted.items() if spec.default is empty and p not in parameters]
    if missing:
        raise NBAValidationError(f"estimator: {name} needs parameter(s) {missing}")
    _check_types(name, cls, parameters)
    estimator: Estimator = cls(**parameters)
    return estimator


def parse_estimators(text: str) -> list[Estimator]:
    """Estimators from a comma list as tables label them: ``"ips, switch_dr(tau=20)"``.

    Parameter values are Python literals (numbers, strings, booleans); what the text names
    goes through :func:`make_estimator`, so unknown names and parameters are refused alike.
    """
    items = [item.strip() for item in _split_outside_parentheses(text)]
    if not any(items):
        raise NBAValidationError("estimators: give at least one name")
    return [_parse_one(item) for item in items if item]


def make_bandit_estimator(spec: str | Estimator) -> BanditEstimator:
    """A one-step estimator from a name or a configured instance (what entry points accept)."""
    estimator = make_estimator(spec) if isinstance(spec, str) else spec
    if not isinstance(estimator, BanditEstimator):
        if isinstance(estimator, TrajectoryEstimator):
            raise NBAValidationError(
                f"estimator: {estimator.label} evaluates trajectories, not one-step decisions"
            )
        raise NBAValidationError(
            f"estimator: expected a name or a BanditEstimator instance, got {spec!r}"
        )
    return estimator


def _split_outside_parentheses(text: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise NBAValidationError(f"estimators: unbalanced parentheses in {text!r}")
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise NBAValidationError(f"estimators: unbalanced parentheses in {text!r}")
    return [*items, "".join(current)]


def _parse_one(item: str) -> Estimator:
    match = re.fullmatch(r"([A-Za-z0-9_]+)\s*(?:\((.*)\))?", item, flags=re.DOTALL)
    if match is None:
        raise NBAValidationError(f"estimators: cannot read {item!r}; write name or name(k=v, ...)")
    name, arguments = match.group(1), match.group(2)
    parameters: dict[str, Any] = {}
    for pair in (arguments or "").split(","):
        if not pair.strip():
            continue
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise NBAValidationError(f"estimators: {item!r}: write parameters as key=value")
        try:
            parameters[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise NBAValidationError(
                f"estimators: {item!r}: {key}={raw.strip()!r} is not a number, string or boolean"
            ) from None
    return make_estimator(name, **parameters)


def _lookup(name: str) -> type[Any]:
    if isinstance(name, str):
        if name in ESTIMATORS:
            return ESTIMATORS[name]
        if name in TRAJECTORY_ESTIMATORS:
            return TRAJECTORY_ESTIMATORS[name]
    raise UnknownNameError(
        f"estimator: unknown {name!r}; expected one of {list(available_estimators())}"
    )


def _table_for(name: str, cls: Any) -> dict[str, Any]:
    if not inspect.isclass(cls):
        raise NBAValidationError(
            f"estimator: {name!r} must be registered with a class, got {cls!r}"
        )
    if issubclass(cls, BanditEstimator):
        table: dict[str, Any] = ESTIMATORS
    elif issubclass(cls, TrajectoryEstimator):
        table = TRAJECTORY_ESTIMATORS
    else:
        raise NBAValidationError(
            f"estimator: {cls.__name__} is not an estimator; subclass "
            "nba.ope.estimators.BanditEstimator or nba.ope.sequential.TrajectoryEstimator"
        )
    if inspect.isabstract(cls):
        raise NBAValidationError(
            f"estimator: {cls.__name__} is abstract (missing {sorted(cls.__abstractmethods__)})"
        )
    return table


def _parameters(cls: type[Any]) -> list[inspect.Parameter]:
    signature = inspect.signature(cls)
    return [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_")
    ]


def _check_types(name: str, cls: type[Any], parameters: dict[str, Any]) -> None:
    """Plain ``float``/``int``/``bool``/``str`` parameters must get values of that type."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # hints a plug-in cannot resolve: its own constructor will judge
        return
    for key, value in parameters.items():
        hint = hints.get(key)
        if hint is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint in (bool, str):
            ok = isinstance(value, hint)
        else:
            continue
        if not ok:
            raise NBAValidationError(
                f"estimator: {name} parameter {key} expects {hint.__name__}, got {value!r}"
            )


for _builtin in (DirectMethod, IPS, SNIPS, DoublyRobust, SwitchDR, DRShrinkage):
    register_estimator(_builtin.name, _builtin)
for _multi_step in (PDIS, WPDIS, SequentialDR):
    register_estimator(_multi_step.name, _multi_step)
