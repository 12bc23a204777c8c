"""The persistent holdout: sticky salted-hash membership, its share, control decisions, and the
decision log's ``holdout`` column (written, read back, migrated from older logs)."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pandas as pd
import pytest

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.holdout import Holdout, HoldoutError, apply_holdout, control_actions
from nba.policies import JourneyMapPolicy
from nba.serving.decision_log import DecisionLog, read_decision_log
from nba.twin import CustomerTwin


def test_membership_is_the_documented_hash_and_sticky() -> None:
    holdout = Holdout(0.3, "winter-2026")
    ids = [f"c{i}" for i in range(200)]
    expected = [
        int.from_bytes(hashlib.blake2b(f"winter-2026\x00{i}".encode()).digest()[:8], "big") / 2**64
        < 0.3
        for i in ids
    ]
    assert holdout.assign(ids).tolist() == expected
    # another object, another order, another model version: the same customers
    again = Holdout(0.3, "winter-2026", "business_as_usual")
    assert again.assign(ids[::-1]).tolist() == expected[::-1]


def test_integer_and_text_ids_are_one_customer() -> None:
    holdout = Holdout(0.5, "s")
    numbers = np.arange(1000)
    assert (holdout.assign(numbers) == holdout.assign(numbers.astype(str))).all()
    assert (holdout.assign(numbers.tolist()) == holdout.assign(numbers.astype(float))).all()


def test_share_within_three_standard_errors() -> None:
    ids = np.arange(100_000)
    for share in (0.05, 0.1, 0.5):
        observed = Holdout(share, "share-test").assign(ids).mean()
        se = np.sqrt(share * (1 - share) / len(ids))
        assert abs(observed - share) < 3 * se, (share, observed)


def test_raising_the_share_keeps_the_old_group() -> None:
    ids = np.arange(20_000)
    small, large = Holdout(0.1, "s").assign(ids), Holdout(0.2, "s").assign(ids)
    assert (large[small]).all() and large.sum() > small.sum()


def test_different_salts_are_independent() -> None:
    ids = np.arange(100_000)
    share = 0.2
    a, b = Holdout(share, "a").assign(ids), Holdout(share, "b").assign(ids)
    overlap = (a & b).mean()
    se = np.sqrt(share**2 * (1 - share**2) / len(ids))
    assert abs(overlap - share**2) < 3 * se


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"share": 0.0, "salt": "s"}, "share"),
        ({"share": 0.6, "salt": "s"}, "share"),
        ({"share": True, "salt": "s"}, "share"),
        ({"share": "0.1", "salt": "s"}, "share"),
        ({"share": 0.1, "salt": " "}, "salt"),
        ({"share": 0.1, "salt": 3}, "salt"),
        ({"share": 0.1, "salt": "s", "control": "random"}, "control"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(HoldoutError, match=f"^{field}:"):
        Holdout(**kwargs)  # type: ignore[arg-type]
    assert issubclass(HoldoutError, NBAValidationError)


def test_bad_ids_name_the_field() -> None:
    holdout = Holdout(0.1, "s")
    with pytest.raises(HoldoutError, match="customer_ids"):
        holdout.assign("c1")
    with pytest.raises(HoldoutError, match=r"customer_ids\[1\]"):
        holdout.assign([1.0, 1.5])
    with pytest.raises(HoldoutError, match="customer_ids"):
        holdout.assign(np.zeros((2, 2)))


@pytest.fixture(scope="module")
def retail_twin() -> CustomerTwin:
    twin = CustomerTwin("retail", seed=3)
    twin.reset(3000)
    for _ in range(5):  # some contact history, some days into the map
        twin.step(np.zeros(twin.n, dtype=np.int64))
    return twin


def test_control_actions_follow_the_journey_map(retail_twin: CustomerTwin) -> None:
    twin = retail_twin
    mask = twin.action_masks()
    obs = FeatureBuilder(twin.arrays).build(twin.state, twin.day)
    expected, _ = JourneyMapPolicy(twin).act(obs, mask)
    assert expected.any()  # the map does something on this day
    got = control_actions("retail", "business_as_usual", twin.state, twin.day, mask)
    assert (got == expected).all()
    none = control_actions(twin, "no_action", twin.state, twin.day, mask)
    assert (none == 0).all()


def test_apply_holdout_replaces_only_control_rows(retail_twin: CustomerTwin) -> None:
    twin = retail_twin
    n = twin.n
    ids = np.array([f"c{i}" for i in range(n)])
    mask = twin.action_masks()
    model = np.argmax(mask[:, ::-1], axis=1)  # some allowed, mostly non-zero action
    model = mask.shape[1] - 1 - model
    holdout = Holdout(0.25, "apply")
    result = apply_holdout(
        holdout, twin, ids, twin.state, twin.day, mask, model, np.full(n, 0.9), np.ones(n, bool)
    )
    member = holdout.assign(ids)
    assert (result.holdout == member).all()
    assert (result.actions[~member] == model[~member]).all()
    assert (result.actions[member] == 0).all()
    assert (result.propensities[member] == 1.0).all()
    assert (result.propensities[~member] == 0.9).all()
    assert not result.explored[member].any() and result.explored[~member].all()
    with pytest.raises(HoldoutError, match="actions"):
        apply_holdout(holdout, twin, ids, twin.state, twin.day, mask, model[:3], 1.0, False)


# ---------------------------------------------------------------------- the decision log
def _batch(n: int, holdout: object = None, batch_id: str | None = None) -> dict[str, object]:
    return {
        "customer_id": [f"c{i}" for i in range(n)],
        "decided_at": pd.Timestamp("2026-12-01T08:00:00Z"),
        "model_version": "v1",
        "actions": np.ones(n, dtype=np.int64),
        "action_names": ["email"] * n,
        "propensities": np.ones(n),
        "explored": np.zeros(n, dtype=bool),
        "features": np.zeros((n, 3)),
        "probabilities": np.tile([0.0, 1.0], (n, 1)),
        "batch_id": batch_id,
        "holdout": holdout,
    }


def test_log_records_and_returns_holdout(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "log.db"  # type: ignore[operator]
    flags = np.array([True, False, False, True])
    with DecisionLog(path) as log:
        assert log.append(**_batch(4, flags, "b1")) == 4
        assert log.append(**_batch(1, None, "b2")) == 1  # the one-row path: not held out
        assert log.append(**_batch(1, [True], "b3")) == 1  # a held-out row: the general path
        assert log.append(**_batch(4, flags, "b1")) == 0  # a retry is recognised
        assert log.read()["holdout"].tolist() == [1, 0, 0, 1, 0, 1]
    records = read_decision_log(path)
    assert records.holdout is not None
    assert records.holdout.tolist() == [True, False, False, True, False, True]


def test_holdout_is_part_of_a_batch_content(tmp_path: pytest.TempPathFactory) -> None:
    from nba.serving.decision_log import BatchConflictError

    with DecisionLog(tmp_path / "log.db") as log:  # type: ignore[operator]
        log.append(**_batch(3, [False, True, False], "b"))
        with pytest.raises(BatchConflictError):
            log.append(**_batch(3, [False, False, False], "b"))
        with pytest.raises(ValueError, match="holdout"):
            log.append(**_batch(3, [True], "c"))


def test_batch_without_holdout_keeps_its_hash(tmp_path: pytest.TempPathFactory) -> None:
    """A retry from before holdouts (no flag) and one with all False are the same batch."""
    with DecisionLog(tmp_path / "log.db") as log:  # type: ignore[operator]
        log.append(**_batch(3, None, "b"))
        assert log.append(**_batch(3, [False, False, False], "b")) == 0
        log.append(**_batch(1, None, "one"))
        assert log.append(**_batch(1, np.array([False]), "one")) == 0


def test_an_older_log_migrates_with_nobody_held_out(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "old.db"  # type: ignore[operator]
    with DecisionLog(path) as log:
        log.append(**_batch(2, None, "old"))
    connection = sqlite3.connect(path)  # make it a version-3 log: no holdout column
    connection.execute("ALTER TABLE decisions DROP COLUMN holdout")
    connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    assert read_decision_log(path).holdout.tolist() == [False, False]  # type: ignore[union-attr]
    with DecisionLog(path) as log:  # opening for writing migrates
        log.append(**_batch(2, [True, False], "new"))
        assert log.read()["holdout"].tolist() == [0, 0, 1, 0]
