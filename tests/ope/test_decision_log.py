from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.ope import OPEInputError, read_decision_log, write_outcomes
from nba.serving.spec import load_exported


def test_reads_every_decision_with_its_stored_outcome(decision_log: Path, bad_export: Path) -> None:
    records = read_decision_log(decision_log)
    policy = load_exported(bad_export)
    assert len(records) == 6_000 and records.reward is not None
    assert records.features.shape == (6_000, len(policy.feature_names))
    assert records.probabilities.shape == (6_000, len(policy.action_names))
    assert records.feature_names == policy.feature_names
    assert (records.propensity > 0).all() and records.explored.any()
    records.check_catalogue(policy.action_names, policy.feature_names)
    data = records.bandit(np.asarray(records.probabilities, dtype=float), policy.action_names)
    assert data.groups is not None and data.n == 6_000


def test_outcomes_from_a_file_and_what_happens_to_decisions_without_one(
    decision_log: Path, tmp_path: Path
) -> None:
    records = read_decision_log(decision_log)
    outcomes = pd.DataFrame(
        {
            "customer_id": records.customer_id[:100],
            "decided_at": records.decided_at[:100].strftime("%Y-%m-%dT%H:%M:%S%z"),
            "reward": np.arange(100.0),
        }
    )
    path = tmp_path / "outcomes.csv"
    outcomes.to_csv(path, index=False)
    with pytest.raises(OPEInputError, match="reward: 5,900 of 6,000 decisions have no outcome"):
        read_decision_log(decision_log, path)
    dropped = read_decision_log(decision_log, path, missing="drop")
    assert len(dropped) == 100 and dropped.reward is not None
    np.testing.assert_array_equal(dropped.reward, np.arange(100.0))
    zero = read_decision_log(decision_log, outcomes, missing="zero")
    assert len(zero) == 6_000 and zero.reward is not None and zero.reward[100:].sum() == 0.0
    twice = pd.concat([outcomes, outcomes.head(1)])
    with pytest.raises(OPEInputError, match=r"outcomes\[100\]: a second outcome"):
        read_decision_log(decision_log, twice)
    with pytest.raises(OPEInputError, match=r"outcomes\.reward: missing column"):
        read_decision_log(decision_log, outcomes.drop(columns="reward"))


def test_time_window_and_missing_files(decision_log: Path, tmp_path: Path) -> None:
    assert len(read_decision_log(decision_log, since="2026-11-01")) == 6_000
    assert len(read_decision_log(decision_log, since="2026-11-03")) == 0
    assert len(read_decision_log(decision_log, until="2026-11-02")) == 0
    with pytest.raises(OPEInputError, match="--log: no such decision log"):
        read_decision_log(tmp_path / "nowhere.db")
    with pytest.raises(OPEInputError, match="since: not a timestamp"):
        read_decision_log(decision_log, since="yesterday-ish")
    assert not (tmp_path / "nowhere.db").exists()  # reading never creates a log


def test_write_outcomes_upserts(tmp_path: Path, decision_log: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(decision_log.read_bytes())
    records = read_decision_log(copy)
    first = pd.DataFrame(
        {
            "customer_id": records.customer_id[:1],
            "decided_at": records.decided_at[:1],
            "reward": [42.0],
        }
    )
    assert write_outcomes(copy, first) == 1
    assert read_decision_log(copy).reward[0] == 42.0


def test_catalogue_and_feature_mismatches_are_named(decision_log: Path, bad_export: Path) -> None:
    records = read_decision_log(decision_log)
    policy = load_exported(bad_export)
    renamed = list(policy.action_names)
    renamed[records.action[0]] = "something_else"
    with pytest.raises(OPEInputError, match="action catalogue: logged action"):
        records.check_catalogue(renamed, policy.feature_names)
    with pytest.raises(OPEInputError, match="the log has 13 actions, the evaluation policy 12"):
        records.check_catalogue(policy.action_names[:-1], policy.feature_names)
    with pytest.raises(OPEInputError, match="features: the log's feature names differ"):
        records.check_catalogue(policy.action_names, policy.feature_names[::-1])


def test_one_reader_for_serving_and_ope() -> None:
    import nba.ope.decision_log
    import nba.serving.decision_log

    assert read_decision_log is nba.serving.decision_log.read_decision_log
    assert nba.ope.decision_log.DecisionRecords is nba.serving.decision_log.DecisionRecords


def test_a_batch_being_written_is_not_read_until_it_commits(
    decision_log: Path, tmp_path: Path
) -> None:
    """The reader sees whole batches: rows of an open transaction stay invisible."""
    import sqlite3

    copy = tmp_path / "copy.db"
    copy.write_bytes(decision_log.read_bytes())
    writer = sqlite3.connect(copy, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO decisions (customer_id, decided_at, model_version, action, action_name, "
        "propensity, explored, features, probabilities) SELECT 'new-' || customer_id, "
        "decided_at, model_version, action, action_name, propensity, explored, features, "
        "probabilities FROM decisions"
    )
    assert len(read_decision_log(copy, missing="drop")) == 6_000
    writer.execute("COMMIT")
    writer.close()
    assert len(read_decision_log(copy, missing="zero")) == 12_000
