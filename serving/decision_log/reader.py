"""The reader: decisions as arrays for off-policy evaluation, opened read-only, with outcomes
(rewards) joined by customer and decision time; and the writer of those outcomes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.serving.decision_log.errors import DecisionLogError
from nba.serving.decision_log.schema import (
    _OUTCOMES,
    OUTCOMES_TABLE,
    _read_only,
    _schema_version,
)
from nba.serving.decision_log.stamps import format_stamp, parse_stamps

if TYPE_CHECKING:
    from nba.ope.data import LoggedBandit
    from nba.types import BoolArray, FloatArray, IntArray

__all__ = ["DecisionRecords", "Missing", "read_decision_log", "write_outcomes"]


Missing = Literal["error", "drop", "zero"]


def _input_error(message: str) -> NBAValidationError:
    """An :class:`~nba.ope.data.OPEInputError` (imported late: :mod:`nba.ope` imports us)."""
    from nba.ope.data import OPEInputError

    return OPEInputError(message)


@dataclass(frozen=True)
class DecisionRecords:
    """Logged decisions as arrays, with rewards once outcomes are joined."""

    customer_id: np.ndarray
    decided_at: pd.DatetimeIndex
    model_version: np.ndarray
    action: IntArray
    action_name: np.ndarray
    propensity: FloatArray
    explored: BoolArray
    features: np.ndarray  # (n, F) float32
    probabilities: np.ndarray  # (n, A) float32: the serving policy's, before exploration
    feature_names: list[str] | None
    reward: FloatArray | None = None
    #: (n,) bool: in the persistent control group (decided by the control policy, propensity 1;
    #: off-policy evaluation treats those rows as logged by it). None: not read.
    holdout: BoolArray | None = None

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.probabilities.shape[1])

    def check_catalogue(
        self, action_names: Sequence[str], feature_names: Sequence[str] | None = None
    ) -> None:
        """The evaluation policy must share the log's actions (index and name) and features.

        ``feature_names=None`` checks the actions only (the features were already brought into
        the policy's layout by :func:`nba.ope.target.model_features`).
        """
        from nba.ope.data import check_catalogue

        if self.n_actions != len(action_names):
            check_catalogue(
                [f"#{i}" for i in range(self.n_actions)],
                [f"#{i}" for i in range(len(action_names))],
            )
        names = np.asarray(list(action_names), dtype=object)[self.action]
        wrong = names != self.action_name.astype(object)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise _input_error(
                f"action catalogue: logged action {int(self.action[row])} is "
                f"{self.action_name[row]!r} in the log but {names[row]!r} in the evaluation policy"
            )
        if feature_names is None:
            return
        if self.feature_names is not None and list(self.feature_names) != list(feature_names):
            raise _input_error(
                "features: the log's feature names differ from the evaluation policy's"
            )
        if self.features.shape[1] != len(feature_names):
            raise _input_error(
                f"features: the log has {self.features.shape[1]}, the policy expects "
                f"{len(feature_names)}"
            )

    def bandit(self, target: FloatArray, action_names: Sequence[str] | None = None) -> LoggedBandit:
        """A validated :class:`LoggedBandit` under an evaluation policy's probabilities."""
        from nba.ope.data import LoggedBandit

        if self.reward is None:
            raise _input_error(
                "reward: the log has no rewards; join outcomes (customer_id, decided_at, reward)"
            )
        return LoggedBandit(
            context=self.features,
            action=self.action,
            reward=self.reward,
            propensity=self.propensity,
            target=target,
            action_names=tuple(action_names) if action_names is not None else None,
            groups=self.customer_id,
        )


def read_decision_log(
    path: str | Path,
    outcomes: pd.DataFrame | str | Path | None = None,
    *,
    since: str | pd.Timestamp | None = None,
    until: str | pd.Timestamp | None = None,
    model_version: str | None = None,
    missing: Missing = "error",
) -> DecisionRecords:
    """Decisions from a log file, optionally in [since, until), with rewards joined.

    Opened read-only, so evaluating a log can never change what serving wrote; a batch being
    written meanwhile is not seen until it commits, and then whole.

    :param outcomes: DataFrame or CSV/Parquet path with ``customer_id``, ``decided_at`` and
        ``reward``; default: the log's own ``outcomes`` table when it has one. Decisions
        without an outcome are an error by default (``missing="drop"`` drops them,
        ``missing="zero"`` scores them 0, for rewards recorded only when something happened).
    """
    file = Path(path)
    if not file.is_file():
        raise _input_error(f"--log: no such decision log {str(file)!r}")
    query, params = "SELECT * FROM decisions", []
    clauses = []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            clauses.append(f"decided_at {op} ?")
            params.append(format_stamp(_timestamp(bound, "since" if op == ">=" else "until")))
    if model_version is not None:
        clauses.append("model_version = ?")
        params.append(model_version)
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    with closing(_read_only(file)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "decisions" not in tables:
            raise _input_error(f"--log: {str(file)!r} is not a decision log (no decisions table)")
        try:
            _schema_version(connection, file)
        except DecisionLogError as exc:
            raise _input_error(f"--log: {exc}") from None
        connection.execute("BEGIN")  # one snapshot for decisions, meta and outcomes
        frame = pd.read_sql_query(query + " ORDER BY id", connection, params=params)
        meta = (
            dict(connection.execute("SELECT key, value FROM meta").fetchall())
            if "meta" in tables
            else {}
        )
        stored = (
            pd.read_sql_query(f"SELECT * FROM {OUTCOMES_TABLE}", connection)
            if OUTCOMES_TABLE in tables and outcomes is None
            else None
        )
        connection.execute("COMMIT")
    records = _records(frame, meta)
    joined = _load_outcomes(outcomes) if outcomes is not None else stored
    if joined is None:
        return records
    return _with_rewards(records, joined, missing)


def write_outcomes(path: str | Path, outcomes: pd.DataFrame, timeout: float = 60.0) -> int:
    """Store outcomes beside the decisions (upsert by customer and decision time)."""
    frame = _normalise_outcomes(outcomes)
    connection = sqlite3.connect(Path(path), timeout=timeout, isolation_level=None)
    try:
        connection.execute(_OUTCOMES)
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO {OUTCOMES_TABLE} (customer_id, decided_at, reward) VALUES (?, ?, ?) "
            "ON CONFLICT(customer_id, decided_at) DO UPDATE SET reward = excluded.reward",
            zip(
                frame["customer_id"].tolist(),
                format_stamp(frame["decided_at"]).tolist(),
                frame["reward"].astype(float).tolist(),
                strict=True,
            ),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return len(frame)


def _records(frame: pd.DataFrame, meta: dict[str, str]) -> DecisionRecords:
    n = len(frame)
    feature_names = json.loads(meta["feature_names"]) if "feature_names" in meta else None
    features = _matrix(frame["features"], n, "features")
    probabilities = _matrix(frame["probabilities"], n, "probabilities")
    return DecisionRecords(
        customer_id=frame["customer_id"].astype(str).to_numpy(),
        decided_at=parse_stamps(frame["decided_at"]),
        model_version=frame["model_version"].astype(str).to_numpy(),
        action=frame["action"].to_numpy(np.int64),
        action_name=frame["action_name"].astype(str).to_numpy(),
        propensity=frame["propensity"].to_numpy(np.float64),
        explored=frame["explored"].to_numpy().astype(bool),
        features=features,
        probabilities=probabilities,
        feature_names=feature_names,
        holdout=(
            frame["holdout"].fillna(0).to_numpy().astype(bool)
            if "holdout" in frame.columns  # a log from before holdouts: nobody
            else np.zeros(n, dtype=bool)
        ),
    )


def _matrix(blobs: pd.Series, n: int, name: str) -> np.ndarray:
    """Concatenate per-row float32 blobs into one (n, width) array without a Python loop."""
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs.tolist()), dtype=np.float32)
    if flat.size % n:
        raise _input_error(f"{name}: rows of the log have different lengths")
    return flat.reshape(n, flat.size // n)


def _with_rewards(
    records: DecisionRecords, outcomes: pd.DataFrame, missing: Missing
) -> DecisionRecords:
    outcomes = _normalise_outcomes(outcomes)
    keys = pd.DataFrame(
        {"customer_id": records.customer_id, "decided_at": records.decided_at.as_unit("us")}
    )
    outcomes["decided_at"] = outcomes["decided_at"].dt.as_unit("us")
    merged = keys.merge(outcomes, on=["customer_id", "decided_at"], how="left", validate="m:1")
    reward = merged["reward"].to_numpy(np.float64)
    absent = np.isnan(reward)
    if absent.any() and missing == "error":
        row = int(np.flatnonzero(absent)[0])
        raise _input_error(
            f"reward: {int(absent.sum()):,} of {len(reward):,} decisions have no outcome (first: "
            f"customer {records.customer_id[row]!r} at {records.decided_at[row].isoformat()}); "
            "pass missing='drop' or 'zero'"
        )
    if missing == "zero":
        return _replace(records, np.ones(len(reward), dtype=bool), np.nan_to_num(reward))
    return _replace(records, ~absent, reward)


def _replace(records: DecisionRecords, keep: BoolArray, reward: FloatArray) -> DecisionRecords:
    return DecisionRecords(
        customer_id=records.customer_id[keep],
        decided_at=records.decided_at[keep],
        model_version=records.model_version[keep],
        action=records.action[keep],
        action_name=records.action_name[keep],
        propensity=records.propensity[keep],
        explored=records.explored[keep],
        features=records.features[keep],
        probabilities=records.probabilities[keep],
        feature_names=records.feature_names,
        reward=reward[keep],
        holdout=None if records.holdout is None else records.holdout[keep],
    )


def _load_outcomes(outcomes: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(outcomes, pd.DataFrame):
        return outcomes
    path = Path(outcomes)
    if not path.is_file():
        raise _input_error(f"--outcomes: no such file {str(path)!r}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise _input_error(f"--outcomes: expected a .csv or .parquet file, got {str(path)!r}")


def _normalise_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "decided_at", "reward") if c not in outcomes.columns]
    if missing:
        raise _input_error(f"outcomes.{missing[0]}: missing column")
    frame = pd.DataFrame(
        {
            "customer_id": outcomes["customer_id"].astype(str).to_numpy(),
            "decided_at": pd.to_datetime(outcomes["decided_at"], utc=True).to_numpy(),
            "reward": pd.to_numeric(outcomes["reward"], errors="coerce").to_numpy(np.float64),
        }
    )
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    bad = ~np.isfinite(frame["reward"].to_numpy())
    if bad.any():
        raise _input_error(f"outcomes.reward[{int(np.flatnonzero(bad)[0])}]: NaN or not a number")
    duplicated = frame.duplicated(["customer_id", "decided_at"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise _input_error(f"outcomes[{row}]: a second outcome for the same decision")
    return frame


def _timestamp(value: str | pd.Timestamp | datetime, name: str) -> pd.Timestamp:
    """A user's time bound (any format pandas reads) as UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise _input_error(f"{name}: not a timestamp: {value!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
