"""``nba cycle`` end to end at test size: runs, decisions, idempotency, resume, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nba.calibration.events import EventLog
from nba.cli.entry import main
from nba.features import FeatureBuilder
from nba.loop import cycle as cycle_module
from nba.loop.cycle import CYCLE_EXPERIMENT, CycleSettings, ExitCode, run_cycle
from nba.policies import RandomPolicy
from nba.store import CustomerStore
from nba.twin import CustomerTwin
from nba.twin_events import day_events
from tests.training.conftest import TINY_RUN, tiny_config_for

N, HISTORY_DAYS, BATCH_DAYS = 300, 10, 4
MONDAY = pd.Timestamp("2026-11-02T00:00:00Z")
MODEL = "nba-retail"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding 10 days of a twin cohort's events, the next 4 days as a batch, and a
    tiny belief policy registered as champion: built once, copied per test."""
    from nba.training import train

    folder = tmp_path_factory.mktemp("world")
    twin = CustomerTwin("retail", seed=3)
    twin.reset(N)
    ids = np.char.add("c-", np.arange(N).astype(str))
    policy, features = RandomPolicy(seed=4), FeatureBuilder(twin.arrays)
    frames = []
    for day in range(HISTORY_DAYS + BATCH_DAYS):
        actions, _ = policy.act(features.build(twin.state, twin.day), twin.action_masks())
        result = twin.step(actions)
        frames.append(day_events(twin.arrays, result, ids, MONDAY + pd.Timedelta(days=day)))
    events = pd.concat(frames, ignore_index=True)
    split = MONDAY + pd.Timedelta(days=HISTORY_DAYS)
    history, batch = events[events["timestamp"] < split], events[events["timestamp"] >= split]
    with CustomerStore.create(
        folder / "customers.db", twin.scenario, consent_required=False
    ) as store:
        store.ingest(EventLog.from_frames(history), now=split)
    batch.to_parquet(folder / "new.parquet", index=False)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    config = tiny_config_for(folder, "ppo")
    result = train(
        scenario="retail",
        observation="belief",
        config=config,
        register_model=True,
        model_name=MODEL,
        tracking_uri=uri,
        output_dir=str(folder / "runs"),
        checkpoint_dir=str(folder / "checkpoints"),
        **{**TINY_RUN, "timesteps": 1_024, "eval_every_steps": 512},
    )
    MlflowClient(uri).set_registered_model_alias(MODEL, "champion", result.model_version)
    _log_first_day(folder, uri, split)
    return {"folder": folder, "config": config}


def _log_first_day(folder: Path, uri: str, day: pd.Timestamp) -> None:
    """The champion's logged decisions for the batch's first day (with a holdout and some
    exploration), as yesterday's `nba decide --log` would have left them."""
    import mlflow

    from nba.holdout import Holdout
    from nba.serving.by_id import decide_timed
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration, PolicyScorer

    mlflow.set_tracking_uri(uri)
    scorer = PolicyScorer.load(
        f"models:/{MODEL}@champion", exploration=Exploration(kind="epsilon", epsilon=0.3, seed=1)
    )
    scorer.holdout = Holdout(0.2, "test", "no_action")
    log = DecisionLog(folder / "decisions.db")
    with CustomerStore.open(folder / "customers.db") as store:
        decide_timed(scorer, store, None, day, log=log, batch_id="yesterday")
    log.close()


@pytest.fixture
def site(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the world (store, batch, MLflow store with its artifacts)."""
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    target = tmp_path / "site"
    shutil.copytree(world["folder"], target)
    # the copied SQLite store names artifact folders by absolute path: point them here
    monkeypatch.chdir(target)
    return target


def _settings(site: Path, world: dict[str, Any], **extra: Any) -> CycleSettings:
    options = {
        "store": site / "customers.db",
        "events": site / "new.parquet",
        "model": MODEL,
        "holdout_share": 0.2,
        "holdout_salt": "test",
        "train_steps": 1_024,
        "train_config": world["config"],
        "train_options": {"eval_every_steps": 512, "eval_customers": 200},
        "decisions": site / "decisions.db",
        "out": site / "next_day.parquet",
        "tracking_uri": f"sqlite:///{site / 'mlflow.db'}",
        "twin_customers": 500,
        "bootstrap": 50,
    }
    options.update(extra)
    return CycleSettings(**options)


def test_one_cycle_end_to_end_then_a_rerun_changes_nothing(
    site: Path, world: dict[str, Any]
) -> None:
    settings = _settings(site, world)
    began = time.perf_counter()
    result = run_cycle(settings)
    seconds = time.perf_counter() - began
    steps = {k: v["seconds"] for k, v in result.steps.items()}
    print(f"one cycle at test size: {seconds:.1f} s; steps {steps}")
    # a tiny challenger on 300 logged decisions: its lower bound cannot clear the champion's
    # estimate, so the gate refuses and the champion still decides the next day
    assert result.exit_code == ExitCode.GATE_REFUSED and result.outcome == "gate refused"
    client = MlflowClient(settings.tracking_uri)
    trained = client.get_run(result.steps["train"]["values"]["training_run_id"])
    assert "champion-v1" in trained.data.tags["nba.init_from"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert result.steps["evaluate"]["values"]["ope_decisions"] == N
    assert result.ran == list(cycle_module.STEPS)
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(CYCLE_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    assert sorted(c.data.tags["nba.cycle.step"] for c in children) == sorted(cycle_module.STEPS)
    assert all("nba.cycle.outcome" in c.data.tags for c in children)
    decisions = pd.read_parquet(settings.out)
    assert len(decisions) == N and "holdout" in decisions
    assert 0 < decisions["holdout"].sum() < N
    assert result.steps["ingest"]["values"]["events_added"] > 0

    logged = _decisions_logged(settings.decisions)
    before = settings.out.read_bytes()
    again = run_cycle(settings)
    assert again.ran == [] and again.exit_code == result.exit_code
    assert again.parent_run_id == result.parent_run_id
    # the command line reads the ledger too: the recorded exit code, nothing new anywhere
    argv = [
        "cycle",
        "--store",
        str(settings.store),
        "--events",
        str(settings.events),
        "--model",
        MODEL,
        "--tracking-uri",
        str(settings.tracking_uri),
        "--decisions",
        str(settings.decisions),
        "--json",
    ]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert (exited.value.code or 0) == result.exit_code
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)
    assert _decisions_logged(settings.decisions) == logged
    assert settings.out.read_bytes() == before


def _decisions_logged(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


def test_a_cycle_killed_after_training_resumes_at_the_evaluation(
    site: Path, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(site, world)

    def killed(context: Any) -> Any:
        raise KeyboardInterrupt("killed after step 3")

    with monkeypatch.context() as patch:
        patch.setitem(cycle_module.STEP_FUNCTIONS, "evaluate", killed)
        with pytest.raises(KeyboardInterrupt):
            run_cycle(settings)
    client = MlflowClient(settings.tracking_uri)
    training = client.get_experiment_by_name("nba").experiment_id
    trained = len(client.search_runs([training]))
    assert not settings.out.exists()

    resumed = run_cycle(settings)
    assert resumed.ran == ["evaluate", "gate", "decide"]
    assert len(client.search_runs([training])) == trained  # no second challenger
    parent = client.get_run(resumed.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert settings.out.exists()


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"--store": "missing.db"}, "--store"),
        ({"--events": "missing.parquet"}, "--events"),
        ({"--holdout-share": "0.1"}, "--holdout-salt"),
        ({"--drift-threshold": "-1"}, "--drift-threshold"),
        ({"--out": "next_day.txt"}, "--out"),
    ],
)
def test_bad_input_exits_2_naming_the_option(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    option: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "customers.db").write_bytes(b"")
    pd.DataFrame({"customer_id": ["a"]}).to_parquet(tmp_path / "new.parquet")
    given = {"--store": "customers.db", "--events": "new.parquet", "--model": MODEL, **change}
    with pytest.raises(SystemExit) as exited:
        main(["cycle", *[part for pair in given.items() for part in pair]])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and option in error and "\n" not in error
    assert not (tmp_path / "mlflow.db").exists()


def test_drift_beyond_the_threshold_writes_a_recalibrated_twin_and_goes_on(
    site: Path, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nba.scenario import Scenario

    settings = _settings(site, world, drift_threshold=0.5)

    def stop(context: Any) -> Any:
        raise KeyboardInterrupt("stopped before training")

    monkeypatch.setitem(cycle_module.STEP_FUNCTIONS, "train", stop)
    with pytest.raises(KeyboardInterrupt):
        run_cycle(settings)
    ledger = json.loads(next((site / "customers.db.cycles").glob("cycle-*.json")).read_text())
    audit = ledger["steps"]["audit"]
    assert abs(audit["values"]["z"]) > 0.5 and audit["stop"] is None
    assert audit["outcome"] == "drift; recalibrated twin written for review"
    twin = Scenario.from_yaml(audit["values"]["recalibrated_twin"])
    assert twin.calibration is not None


def test_drift_that_recalibration_cannot_fix_stops_before_training(
    site: Path, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nba.calibration import fit
    from nba.calibration.events import EventLogError

    def refuses(*args: Any, **kwargs: Any) -> Any:
        raise EventLogError("events: too few purchases to fit")

    monkeypatch.setattr(fit, "calibrate", refuses)
    settings = _settings(site, world, drift_threshold=0.5)
    result = run_cycle(settings)
    assert result.exit_code == ExitCode.AUDIT_FAILED
    assert result.outcome == "audit: drift; recalibration failed"
    assert "too few purchases" in result.steps["audit"]["values"]["recalibration_error"]
    assert result.ran == ["ingest", "audit"] and not settings.out.exists()
    client = MlflowClient(settings.tracking_uri)
    assert len(client.search_runs([client.get_experiment_by_name("nba").experiment_id])) == 1
    assert run_cycle(settings).exit_code == ExitCode.AUDIT_FAILED  # recorded


def test_training_stopped_by_a_signal_is_resumed_not_restarted(
    site: Path, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from stable_baselines3.common.callbacks import BaseCallback

    import nba.training
    from nba.training.callbacks import TrainingInterrupted

    class Sigterm(BaseCallback):
        """SIGTERM as the trainer sees it, half-way through the challenger's training."""

        def _on_step(self) -> bool:
            if self.num_timesteps >= 512:
                raise TrainingInterrupted(signal.SIGTERM)
            return True

    real = nba.training.train
    settings = _settings(site, world)
    with monkeypatch.context() as patch:
        patch.setattr(nba.training, "train", lambda *a, **k: real(*a, callbacks=[Sigterm()], **k))
        with pytest.raises(TrainingInterrupted):
            run_cycle(settings)
    client = MlflowClient(settings.tracking_uri)
    training = client.get_experiment_by_name("nba").experiment_id
    (killed,) = [r for r in client.search_runs([training]) if r.info.status == "KILLED"]

    with monkeypatch.context() as patch:
        patch.setitem(cycle_module.STEP_FUNCTIONS, "evaluate", _stop)
        with pytest.raises(KeyboardInterrupt):
            run_cycle(settings)
    ledger = json.loads(next((site / "customers.db.cycles").glob("cycle-*.json")).read_text())
    assert ledger["steps"]["train"]["values"]["training_run_id"] == killed.info.run_id
    assert len(client.search_runs([training])) == 2  # the champion's and this one, resumed
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"


def _stop(context: Any) -> Any:
    raise KeyboardInterrupt("stopped")
