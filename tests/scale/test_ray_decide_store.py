"""A base kept in the customer-state store, decided on Ray: ``nba store export`` then
``nba decide --requests --engine local|ray`` gives every customer the decision of ``nba decide
--store``, for a belief-trained model (it reads the exported belief) and a state model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from nba.cli import main
from nba.scenarios import load_scenario
from nba.store import CustomerStore
from nba.store.synthetic import START, synthetic_events
from tests.serving.test_capacity_plan import assert_same_decisions

pytestmark = pytest.mark.integration
AS_OF = "2025-02-02T09:00:00Z"
#: limits that bind (unlimited, both models send direct mail to over 40 of the 300 customers)
CAPACITY = ["--capacity", "direct_mail=20", "--capacity", "paid_social=20", "--capacity", "push=40"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a store of 300 customers, its export in three partitions)."""
    folder = tmp_path_factory.mktemp("store_base")
    twin = load_scenario("retail")
    with CustomerStore.create(folder / "customers.db", twin) as store:
        store.ingest(
            synthetic_events(twin, 3_000, 300, days=30, seed=5), now=START + pd.Timedelta(days=31)
        )
    export = folder / "export"
    store = ["--store", str(folder / "customers.db"), "--as-of", AS_OF]
    _cli("store", "export", *store, "--out", str(export), "--partition-rows", "100")
    return folder / "customers.db", export


@pytest.fixture(scope="module")
def belief_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded PPO on belief observations, exported."""
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.serving.export import export_policy

    scenario = load_scenario("retail")
    env = TwinVecEnv(scenario, n_envs=2, seed=0, observation="belief")
    folder = tmp_path_factory.mktemp("belief_policy")
    export_policy(PPO("MlpPolicy", env, seed=0, device="cpu"), scenario, folder, algo="ppo")
    return folder


def _cli(*args: str) -> None:
    """Run ``nba``; anything but success fails the test with what it said."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test exports
        try:
            main(list(args))
        except SystemExit as exc:
            assert not exc.code, f"nba {' '.join(args)} exited {exc.code}"


def _parts(folder: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))], ignore_index=True
    )


@pytest.mark.parametrize("kind", ["belief", "state"])
def test_export_decided_locally_and_on_ray_equals_deciding_from_the_store(
    kind: str,
    base: tuple[Path, Path],
    belief_model: Path,
    export_dir: Path,
    ray_cluster: str,
    tmp_path: Path,
) -> None:
    store, export = base
    model = str(belief_model if kind == "belief" else export_dir)
    common = ["decide", "-m", model, "--as-of", AS_OF, *CAPACITY]
    _cli(*common, "--store", str(store), "--out", str(tmp_path / "store.parquet"))
    want = pd.read_parquet(tmp_path / "store.parquet")
    _cli(*common, "--requests", str(export), "--out", str(tmp_path / "local"))
    ray_args = ["--engine", "ray", "--address", ray_cluster, "--workers", "2"]
    _cli(*common, "--requests", str(export), "--out", str(tmp_path / "ray"), *ray_args)
    for engine in ("local", "ray"):
        got = _parts(tmp_path / engine)
        assert list(got["customer_id"]) == list(want["customer_id"])  # each customer once
        assert_same_decisions(got, want[got.columns])
    for channel, limit in (("direct_mail", 20), ("paid_social", 20), ("push", 40)):
        assert (want["channel"] == channel).sum() <= limit
    assert (want["channel"] == "direct_mail").sum() == 20  # it binds, across partitions
    if kind == "belief":  # the belief columns decide: without them the decisions differ
        plain = tmp_path / "plain"
        plain.mkdir()
        for part in sorted(export.glob("requests-*.parquet")):
            frame = pd.read_parquet(part)
            frame.drop(columns=[c for c in frame if c.startswith("belief__")]).to_parquet(
                plain / part.name, index=False
            )
        _cli(*common, "--requests", str(plain), "--out", str(tmp_path / "no_belief"))
        other = _parts(tmp_path / "no_belief")
        assert (other["action_name"] != want["action_name"]).sum() > 10


def _drop_a_belief_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="belief__passive_browser__loyal")


def _beliefs_above_one(frame: pd.DataFrame) -> pd.DataFrame:
    column = "belief__passive_browser__loyal"
    return frame.assign(**{column: frame[column] + 0.5})


@pytest.mark.parametrize(
    ("engine", "damage", "problem"),
    [
        # found by the driver's schema check, before any actor starts
        ("local", _drop_a_belief_column, "belief column 'belief__passive_browser__loyal' missing"),
        ("ray", _drop_a_belief_column, "belief column 'belief__passive_browser__loyal' missing"),
        # found inside a scoring actor: still our one line, not Ray's wrapped traceback
        ("ray", _beliefs_above_one, ""),
    ],
)
def test_a_damaged_partition_is_refused_in_one_line_naming_it(
    engine: str,
    damage: Any,
    problem: str,
    base: tuple[Path, Path],
    belief_model: Path,
    ray_cluster: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, export = base
    broken = tmp_path / "broken"
    broken.mkdir()
    for part in sorted(export.glob("requests-*.parquet")):
        frame = pd.read_parquet(part)
        if part.name.endswith("01.parquet"):
            frame = damage(frame)
        frame.to_parquet(broken / part.name, index=False)
    args = ["decide", "-m", str(belief_model), "--as-of", AS_OF, "--requests", str(broken)]
    args += ["--engine", engine, *(["--address", ray_cluster] if engine == "ray" else [])]
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_:
        warnings.simplefilter("ignore")
        main([*args, "--out", str(tmp_path / "out"), "--json"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --requests: partition 'requests-00001.parquet': {problem}"), err
    assert "ray::" not in err and "File " not in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))
