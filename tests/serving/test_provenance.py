"""Decisions record the model version they were made with, even after its alias moves."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nba.ope.decision_log import read_decision_log
from nba.serving.decision_log import DecisionLog
from nba.serving.provenance import ModelVersion
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import customer, frame

MODEL = "nba-provenance"
AS_OF = pd.Timestamp("2026-11-23T10:00:00Z")


@pytest.fixture
def two_versions(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[MlflowClient, list[str]]:
    """A private registry holding the export twice (versions 1 and 2); returns their run ids."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the process-wide URI wins over the environment variable
    client = MlflowClient(uri)
    experiment = client.create_experiment("models", artifact_location=(tmp_path / "a").as_uri())
    client.create_registered_model(MODEL)
    runs = []
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(export_dir), "policy")
        client.create_model_version(MODEL, f"{run.info.artifact_uri}/policy", run.info.run_id)
        runs.append(run.info.run_id)
    return client, runs


def test_alias_moved_after_loading_leaves_the_recorded_version(
    two_versions: tuple[MlflowClient, list[str]], tmp_path: Path
) -> None:
    client, runs = two_versions
    client.set_registered_model_alias(MODEL, "candidate", "1")
    scorer = PolicyScorer.load(f"models:/{MODEL}@candidate")
    client.set_registered_model_alias(MODEL, "candidate", "2")  # promoted meanwhile

    assert scorer.model_version == f"{MODEL}/1" and scorer.run_id == runs[0]
    assert scorer.score(customer()).model_version == f"{MODEL}/1"
    with DecisionLog(tmp_path / "decisions.db") as log:
        decisions = scorer.score_batch(frame(customer(), customer(customer_id="c-2")), log=log)
        logged = log.read()
    assert set(decisions["model_version"]) == {f"{MODEL}/1"}
    assert set(logged["model_version"]) == {f"{MODEL}/1"}
    assert set(logged["model_name"]) == {MODEL}
    assert set(logged["model_number"]) == {"1"}
    assert set(logged["run_id"]) == {runs[0]}

    reloaded = PolicyScorer.load(f"models:/{MODEL}@candidate")
    assert reloaded.model_version == f"{MODEL}/2" and reloaded.run_id == runs[1]


def test_versions_and_runs_resolve_to_their_run(
    two_versions: tuple[MlflowClient, list[str]],
) -> None:
    _, runs = two_versions
    pinned = PolicyScorer.load(f"models:/{MODEL}/2")
    assert pinned.model_version == f"{MODEL}/2" and pinned.run_id == runs[1]
    from_run = PolicyScorer.load(f"runs:/{runs[0]}/policy")
    assert from_run.model_version == f"run:{runs[0]}" and from_run.run_id == runs[0]
    labelled = PolicyScorer.load(f"models:/{MODEL}/1", model_version="champion-2026-11")
    assert labelled.model_version == "champion-2026-11" and labelled.run_id == runs[0]


def test_an_export_directory_reports_the_run_that_made_it(export_dir: Path, tmp_path: Path) -> None:
    assert PolicyScorer.load(export_dir).model_version == "local"  # exported outside a run
    folder = tmp_path / "policy"
    folder.mkdir()
    for path in export_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    spec = (folder / "policy.json").read_text()
    assert '"metadata": {}' in spec
    (folder / "policy.json").write_text(
        spec.replace('"metadata": {}', '"metadata": {"mlflow_run_id": "abc123"}')
    )
    scorer = PolicyScorer.load(folder)
    assert scorer.model_version == "run:abc123" and scorer.run_id == "abc123"


def test_model_version_text_survives_copying_with_its_parts() -> None:
    version = ModelVersion(f"{MODEL}/3", MODEL, "3", "run-9")
    copied = pickle.loads(pickle.dumps(version))  # in-memory round trip, as multiprocessing does
    assert copied == f"{MODEL}/3"
    assert (copied.name, copied.version, copied.run_id) == (MODEL, "3", "run-9")


def test_logs_written_before_provenance_columns_still_open_and_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the schema before the provenance columns
        old.executescript(
            """
            CREATE TABLE decisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL,
                decided_at TEXT NOT NULL, model_version TEXT NOT NULL, action INTEGER NOT NULL,
                action_name TEXT NOT NULL, propensity REAL NOT NULL, explored INTEGER NOT NULL,
                features BLOB NOT NULL, probabilities BLOB NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO decisions (customer_id, decided_at, model_version, action, action_name,
                propensity, explored, features, probabilities)
            VALUES ('c0', '2026-11-01T00:00:00.000000Z', 'v1', 0, 'no_action', 1.0, 0,
                x'0000803f', x'0000803f');
            """
        )
    assert list(read_decision_log(path).model_version) == ["v1"]
    with DecisionLog(path) as log:
        frame_ = log.read()
    assert frame_["run_id"].isna().all() and frame_["model_version"].tolist() == ["v1"]
    assert list(read_decision_log(path).model_version) == ["v1"]
