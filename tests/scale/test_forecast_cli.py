"""``nba forecast --engine ray``: the CLI's table over partitions on a real two-node Ray cluster
is the local engine's file to the bit, and Ray's options are refused where they mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog, save_events
from nba.calibration.synthetic import reference_scenario
from nba.cli import main
from nba.scale import import_ray

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = pd.Timestamp("2026-11-02T00:00:00Z")
CUSTOMERS, DAYS = 40, 60
CUTOFF = (START + pd.Timedelta(days=DAYS)).isoformat()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A twin, 60 days of purchases of 40 customers at their own rates, and e-mails planned
    for every fifth of them in the window."""
    root = tmp_path_factory.mktemp("forecast_cli")
    rng = np.random.default_rng(18)
    rates = rng.uniform(0.01, 0.4, CUSTOMERS)
    bought = rng.random((CUSTOMERS, DAYS)) < rates[:, None]
    bought[np.arange(CUSTOMERS), rng.integers(0, DAYS, CUSTOMERS)] = True  # each one is seen
    who, day = np.nonzero(bought)
    events = pd.DataFrame(
        {
            "customer_id": np.char.add("c-", who.astype(str)),
            "timestamp": START + pd.to_timedelta(day, unit="D") + pd.Timedelta(hours=11),
            "event": "purchased",
        }
    )
    base = reference_scenario()
    personas = [
        p.model_copy(update={"base_purchase_rate": r})
        for p, r in zip(base.personas, (0.03, 0.30, 0.10), strict=True)
    ]
    paths = {name: root / name for name in ("events.parquet", "twin.yaml", "plan.csv")}
    save_events(EventLog.from_frames(events), paths["events.parquet"])
    base.model_copy(update={"personas": personas}).to_yaml(paths["twin.yaml"])
    planned = np.char.add("c-", np.arange(0, CUSTOMERS, 5).astype(str))
    pd.DataFrame(
        {
            "customer_id": planned,
            "timestamp": pd.Timestamp(CUTOFF) + pd.Timedelta(days=3, hours=9),
            "channel": "email",
            "action": "promo",
        }
    ).to_csv(paths["plan.csv"], index=False)
    return paths


def _args(inputs: dict[str, Path], out: Path) -> list[str]:
    return [
        "forecast",
        "-s",
        str(inputs["twin.yaml"]),
        "-e",
        str(inputs["events.parquet"]),
        "--horizon",
        "3w",
        "--cutoff",
        CUTOFF,
        "--plan",
        str(inputs["plan.csv"]),
        "--out",
        str(out),
        "--json",
    ]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    with pytest.raises(SystemExit) as done:
        main(args)
    said = capsys.readouterr()
    assert done.value.code in (0, None), said.err
    return dict(json.loads(said.out.strip().splitlines()[-1]))


def test_ray_engine_writes_the_local_engines_file_to_the_bit(
    ray_cluster: str,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_out, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    local = _run(_args(inputs, local_out), capsys)
    ray = _run(
        [*_args(inputs, ray_out), "--engine", "ray", "--address", ray_cluster, "--partitions", "3"],
        capsys,
    )
    expected, got = pd.read_parquet(local_out), pd.read_parquet(ray_out)
    assert len(expected) == CUSTOMERS
    planned = expected.set_index("customer_id").loc["c-0", "expected_purchases"]
    assert planned > 0
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert ray_out.read_bytes() == local_out.read_bytes()
    alive = [node for node in import_ray().nodes() if node["Alive"]]
    assert ray.pop("engine") == "ray" and ray.pop("partitions") == 3
    assert ray.pop("nodes") == len(alive) == 2  # SPREAD puts 3 tasks on both nodes
    assert set(ray) == set(local)  # otherwise the local engine's summary, key for key
    for key in set(local) - {"out", "seconds"}:  # the same table sums alike
        assert ray[key] == local[key], key


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--engine", "spark"], "--engine"),
        (["--address", "127.0.0.1:6379"], "--address"),
        (["--engine", "local", "--workers", "2"], "--workers"),
        (["--partitions", "8"], "--partitions"),
        (["--engine", "ray", "--address", "127.0.0.1:6379", "--workers", "2"], "--workers"),
        (["--engine", "ray", "--address", "head-without-port"], "--address"),
    ],
)
def test_ray_options_are_refused_where_they_mean_nothing(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    named: str,
) -> None:
    out = tmp_path / "forecast.parquet"
    with pytest.raises(SystemExit) as done:
        main([*_args(inputs, out), *extra])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"{named}:" in err, err
    assert not out.exists()
