"""Training configuration: validated, flattened into MLflow params, and resolvable on resume.

Hyper-parameters live in YAML files, one per algorithm and scenario
(``training/hyperparams/<algo>_<scenario>.yaml``, falling back to ``<algo>.yaml``); a user's
``--config`` file replaces them. ``algorithm`` keys go to the SB3 constructor and are checked
against its signature, so a typo fails before training starts, naming the key.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nba.errors import NBAValidationError, UnknownNameError
from nba.evaluation import DEFAULT_CUSTOMERS, DEFAULT_SEED
from nba.training.registry import get_algorithm


class TrainingConfigError(NBAValidationError):
    """A training config or hyper-parameter file that cannot be used."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSettings(_Config):
    """How the training env is built."""

    n_envs: int = Field(2048, ge=1, description="Customers stepped together.")
    expected_rewards: bool = Field(
        True, description="Pay expected daily rewards (same objective, less variance)."
    )
    normalize_reward: bool = Field(True, description="Scale rewards with SB3's VecNormalize.")
    stagger: bool = True


class PolicySettings(_Config):
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu"] = "tanh"
    mask_actions: bool = Field(
        True,
        description="Train with the contact rules' masks, as the policy head serves (ppo, a2c, "
        "dqn; maskable_ppo always masks through the env).",
    )


class HyperParameters(_Config):
    env: EnvSettings = Field(default_factory=EnvSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    algorithm: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Config):
    """Everything a training run needs. ``nba train`` has one option per field, generated from
    these declarations (name, default, bounds, help): see :func:`option_name`."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    scenario: str = Field("retail", description="Built-in scenario name or path to a YAML file.")
    algo: str = Field(
        "ppo", description="Algorithm from the registry: ppo, a2c, dqn or maskable_ppo."
    )
    timesteps: int = Field(
        10_000_000, ge=1, description="Env steps to train for (with --resume: the new total)."
    )
    seed: int = Field(0, ge=0, description="Seed of the envs, the network and its exploration.")
    observation: Literal["state", "belief"] = Field(
        "state",
        description="What the policy sees: 'state' (persona and stage as if observed; scored "
        "exactly) or 'belief' (what a company observes, with a belief over persona and stage "
        "kept from events: the policy that can serve real customers; scored by rollouts).",
    )
    hyperparameters: HyperParameters | None = Field(
        None,
        description="Hyper-parameters, a YAML file on the command line (default: the packaged "
        "file for the algorithm and scenario).",
    )
    eval_every_steps: int = Field(
        1_000_000, ge=1, description="Env steps between exact evaluations."
    )
    eval_customers: int = Field(
        DEFAULT_CUSTOMERS, ge=2, description="Cohort of the final comparison table."
    )
    eval_seed: int = Field(
        DEFAULT_SEED, description="Seed of that cohort (the same customers for every policy)."
    )
    checkpoint_every_seconds: float = Field(30.0, gt=0, description="Seconds between checkpoints.")
    checkpoint_dir: str = Field(
        "checkpoints", description="Folder of local checkpoints, one subfolder per run."
    )
    target_share: float | None = Field(
        None, gt=0, le=1, description="Stop early once the exact share of optimum reaches it."
    )
    experiment: str = Field("nba", description="MLflow experiment of the run.")
    register_model: bool = Field(
        False,
        description="Register the policy in the Model Registry and move the 'candidate' alias "
        "to it.",
    )
    model_name: str | None = Field(
        None, description="Registered model name (default: nba-SCENARIO)."
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="torch intra-op threads. One by default: the policy MLPs are small, and "
        "on a machine with other work more threads ran 2.5-16x slower "
        "(benchmarks/torch_threads.py).",
    )
    progress_bar: bool = Field(
        False, description="SB3's progress bar (nba train: shown when stderr is a terminal)."
    )

    @field_validator("torch_threads", mode="before")
    @classmethod
    def _threads_of_older_runs(cls, value: Any) -> Any:
        """Runs recorded before the default became 1 stored ``null`` (torch's default)."""
        return 1 if value is None else value

    def resolved(self) -> TrainConfig:
        """This config with hyper-parameters filled in from the packaged defaults."""
        get_algorithm(self.algo)
        if self.hyperparameters is not None:
            return self
        return self.model_copy(
            update={"hyperparameters": default_hyperparameters(self.algo, self.scenario)}
        )

    @property
    def registered_model_name(self) -> str:
        return self.model_name or f"nba-{Path(self.scenario).stem}"

    def flat_params(self) -> dict[str, str]:
        """Flattened ``a.b.c`` keys for MLflow params."""
        return {key: str(value) for key, value in _flatten(self.resolved().model_dump(mode="json"))}


# ``nba train`` options whose names are not the field's (``--eval-every``, not
# ``--eval-every-steps``), with their short forms; every other field is ``--field-name``.
OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "scenario": ("--scenario", "-s"),
    "algo": ("--algo", "-a"),
    "timesteps": ("--timesteps", "-t"),
    "hyperparameters": ("--config",),
    "eval_every_steps": ("--eval-every",),
    "checkpoint_every_seconds": ("--checkpoint-every",),
    "torch_threads": ("--threads",),
    "register_model": ("--register",),
}


def option_name(field: str) -> str:
    """The ``nba train`` option of a :class:`TrainConfig` field, as error messages name it."""
    return OPTION_NAMES.get(field, (f"--{field.replace('_', '-')}",))[0]


def default_hyperparameters(algo: str, scenario: str) -> HyperParameters:
    folder = resources.files("nba.training").joinpath("hyperparams")
    for name in (f"{algo}_{Path(scenario).stem}.yaml", f"{algo}.yaml"):
        candidate = folder.joinpath(name)
        if candidate.is_file():
            return load_hyperparameters(candidate.read_text("utf-8"), algo, where=name)
    raise UnknownNameError(f"hyperparameters: no file for algorithm {algo!r}")


def load_hyperparameters(
    source: str | Path, algo: str, where: str | None = None
) -> HyperParameters:
    """Parse and validate a hyper-parameter YAML (a path or the text itself)."""
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.is_file():
            raise TrainingConfigError(f"config: no such file {str(path)!r}")
        where, source = where or str(path), path.read_text("utf-8")
    where = where or "config"
    try:
        data = yaml.safe_load(source) or {}
        hyperparameters = HyperParameters.model_validate(data)
    except yaml.YAMLError as exc:
        raise TrainingConfigError(f"{where}: cannot parse YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise TrainingConfigError(f"{where}: {problems}") from None
    get_algorithm(algo).check_parameters(hyperparameters.algorithm, f"{where}: algorithm")
    return hyperparameters


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        items: list[tuple[str, Any]] = []
        for key, value in data.items():
            items += _flatten(value, f"{prefix}{key}.")
        return items
    return [(prefix.rstrip("."), data)]
