"""Built-in scenarios shipped with the package, and the one loader for names and paths."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from nba.errors import UnknownNameError
from nba.scenario import Scenario

BUILTIN_SCENARIOS: dict[str, str] = {
    "retail": "retail.yaml",
    "retail_levels": "retail_levels.yaml",
    "subscription": "subscription.yaml",
}


@cache
def _builtin(name: str) -> Scenario:
    """Parsed once per process: scenarios are frozen, so sharing one instance is safe."""
    text = resources.files(__name__).joinpath(BUILTIN_SCENARIOS[name]).read_text("utf-8")
    return Scenario.from_yaml(text)


def builtin_scenario_names() -> list[str]:
    return sorted(BUILTIN_SCENARIOS)


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """Return a built-in scenario by name, or load a YAML file by path."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    key = str(name_or_path)
    if key in BUILTIN_SCENARIOS:
        return _builtin(key)
    path = Path(key)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return Scenario.from_yaml(path)
    raise UnknownNameError(
        f"scenario: unknown name {key!r}; built-in scenarios are {builtin_scenario_names()}, "
        "or pass a path to a .yaml file"
    )
