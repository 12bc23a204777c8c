"""OPE fixtures: synthetic bandits with known value, registered policies, and logged decisions.

The exported policy is the shared ``export_dir`` fixture of tests/conftest.py (an untrained,
seeded PPO); variants with a fixed preference order are made by rewriting its output layer, so tests
can register a clearly bad champion and a clearly better challenger without training.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nba.features import FeatureBuilder
from nba.ope.data import LoggedBandit
from nba.ope.decision_log import write_outcomes
from nba.serving.decision_log import DecisionLog
from nba.serving.scorer import Exploration, PolicyScorer
from nba.serving.spec import WEIGHTS_FILE, load_exported
from nba.twin import CustomerTwin
from tests.serving.conftest import population

MODEL = "nba-retail"
#: direct mail first: it loses money on most customers (see the twin's expected rewards)
BAD_PREFERENCES = ("direct_mail_catalogue", "no_action")
#: an SMS reminder, else a 10% e-mail discount: both pay on most customers
GOOD_PREFERENCES = ("sms_reminder", "email_discount_10")


@dataclass(frozen=True)
class SyntheticBandit:
    """A contextual bandit whose true reward function (and so every policy's value) is known."""

    data: LoggedBandit
    mean_reward: np.ndarray  # (n, A) true E[r | x, a]
    true_value: float  # E_x sum_a pi_e(a|x) mean_reward(x, a) on these contexts


def synthetic_bandit(n: int = 20_000, n_actions: int = 4, seed: int = 0) -> SyntheticBandit:
    """Linear rewards plus noise; a softmax logging policy and a different softmax target."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 3))
    coef = np.array([[0.5, -0.2, 0.1], [0.1, 0.4, -0.3], [-0.3, 0.2, 0.5], [0.2, 0.1, 0.2]])
    coef = coef[:n_actions]
    mean_reward = 1.0 + context @ coef.T
    logging = _softmax(context @ rng.normal(size=(3, n_actions)) * 0.5)
    target = _softmax(mean_reward * 2.0)
    cumulative = np.cumsum(logging, axis=1)
    action = np.minimum((rng.random(n)[:, None] >= cumulative).sum(axis=1), n_actions - 1)
    rows = np.arange(n)
    reward = mean_reward[rows, action] + rng.normal(scale=0.5, size=n)
    data = LoggedBandit(context, action, reward, logging[rows, action], target)
    truth = float((target * mean_reward).sum(axis=1).mean())
    return SyntheticBandit(data, mean_reward, truth)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def preference_export(source: Path, folder: Path, order: tuple[str, ...]) -> Path:
    """A copy of an export whose network prefers actions in ``order`` (constant logits)."""
    shutil.copytree(source, folder)
    policy = load_exported(folder)
    names = policy.action_names
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as archive:
        weights = {key: archive[key] for key in archive.files}
    last = f"policy.{len(policy.policy.layers) - 1}"
    weights[f"{last}.weight"] = np.zeros_like(weights[f"{last}.weight"])
    bias = np.zeros_like(weights[f"{last}.bias"])
    for rank, name in enumerate(order):
        bias[names.index(name)] = 10.0 - 5.0 * rank
    weights[f"{last}.bias"] = bias
    np.savez(folder / WEIGHTS_FILE, **weights)
    return folder


@pytest.fixture(scope="session")
def bad_export(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preference_export(export_dir, tmp_path_factory.mktemp("bad") / "p", BAD_PREFERENCES)


@pytest.fixture(scope="session")
def good_export(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preference_export(export_dir, tmp_path_factory.mktemp("good") / "p", GOOD_PREFERENCES)


def twin_outcomes(log_path: Path, seed: int = 0) -> pd.DataFrame:
    """Outcomes of logged decisions drawn from the twin's response model (mean + noise)."""
    from nba.ope.decision_log import read_decision_log

    records = read_decision_log(log_path)
    twin = CustomerTwin("retail")
    state, _ = FeatureBuilder(twin.arrays).decode(records.features)
    table = twin.tables.expected_reward.reshape(-1, twin.n_actions)
    mean = table[twin.space.response_key(twin.space.encode(state)), records.action]
    noise = np.random.default_rng(seed).normal(scale=0.5, size=len(records))
    return pd.DataFrame(
        {
            "customer_id": records.customer_id,
            "decided_at": records.decided_at,
            "reward": mean + noise,
        }
    )


@pytest.fixture(scope="session")
def decision_log(bad_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 decisions by the bad policy with 50% exploration, outcomes stored beside them."""
    path = tmp_path_factory.mktemp("log") / "decisions.db"
    scorer = PolicyScorer(
        load_exported(bad_export), "1", Exploration(kind="epsilon", epsilon=0.5, seed=3)
    )
    with DecisionLog(path) as log:
        scorer.score_batch(population(6_000, seed=1), as_of=pd.Timestamp("2026-11-02"), log=log)
    write_outcomes(path, twin_outcomes(path))
    return path


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], str]:
    """A private SQLite model registry; the returned function registers an export directory."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the process-wide URI wins over the environment variable
    client = MlflowClient(uri)
    experiment = client.create_experiment("models", artifact_location=(tmp_path / "art").as_uri())

    def register(folder: Path) -> str:
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "policy")
        if not client.search_registered_models(f"name = '{MODEL}'"):
            client.create_registered_model(MODEL)
        version = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/policy", run.info.run_id
        )
        return str(version.version)

    return register
