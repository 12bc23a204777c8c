"""``nba store export``: one read of the store as Parquet request partitions plus a manifest;
the belief columns read back exactly, and partial or foreign belief columns are refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving.by_id import TwinMismatchError
from nba.serving.schema import RequestSchema
from nba.store import CustomerStore
from nba.store.beliefs import belief_shape
from nba.store.export import (
    BeliefColumnsError,
    ExportError,
    belief_columns,
    export_store,
    split_export,
)
from nba.store.synthetic import START, synthetic_events
from tests.cli_runner import run_cli

AS_OF = "2025-02-02T09:00:00Z"
NOW = START + pd.Timedelta(days=31)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """130 customers of the reference twin."""
    path = tmp_path_factory.mktemp("export") / "customers.db"
    twin = load_scenario("retail")
    with CustomerStore.create(path, twin) as store:
        store.ingest(synthetic_events(twin, 1_300, 130, days=30, seed=5), now=NOW)
    return path


def _parts(folder: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(folder.glob("requests-*.parquet"))],
        ignore_index=True,
    )


def test_round_trip_every_customer_once_with_state_and_belief(
    store_path: Path, retail: Scenario, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    with CustomerStore.open(store_path) as store:
        report = export_store(store, out, partition_rows=50, as_of=AS_OF)
        state, joint = store.read(None, as_of=AS_OF)
        ids = list(store.customer_ids())
    assert [p.rows for p in report.partitions] == [50, 50, 30]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", *(f"requests-{i:05d}.parquet" for i in range(3))]
    got = _parts(out)
    assert list(got["customer_id"]) == ids == sorted(ids)  # each once, in customer-id order
    # the request columns are the scoring fields of the state and parse as a request
    schema = RequestSchema(ScenarioArrays.from_scenario(retail))
    request, belief = split_export(got, retail, "all")
    assert list(request.columns) == [c for c in state.columns if c in schema.fields]
    pd.testing.assert_frame_equal(request, state[request.columns], check_dtype=False)
    assert len(schema.parse(request).customer_id) == len(ids)
    # the belief: the store's joint, renormalised as nba decide --store does, exactly
    flat = joint.astype(np.float64).reshape(len(ids), -1)
    assert belief is not None and belief.shape == (len(ids), 4, 7)
    np.testing.assert_array_equal(
        belief.reshape(len(ids), -1), flat / flat.sum(axis=1, keepdims=True)
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["customers"] == 130 and manifest["as_of"] == "2025-02-02T09:00:00+00:00"
    assert manifest["scenario"] == {"name": "retail", "fingerprint": retail.fingerprint()}
    assert manifest["columns"]["belief"] == belief_columns(retail)
    assert manifest["store"] == str(store_path.resolve())
    for part in manifest["partitions"]:
        data = (out / part["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        assert len(pd.read_parquet(out / part["name"])) == part["rows"]
    assert [p["first_customer_id"] for p in manifest["partitions"]] == [ids[0], ids[50], ids[100]]


def test_belief_columns_partial_foreign_or_not_a_distribution_are_refused(
    store_path: Path, retail: Scenario, tmp_path: Path
) -> None:
    with CustomerStore.open(store_path) as store:
        export_store(store, tmp_path / "e", partition_rows=1_000, as_of=AS_OF)
    frame = pd.read_parquet(tmp_path / "e" / "requests-00000.parquet")
    column = "belief__deal_seeker__active"
    with pytest.raises(BeliefColumnsError, match=f"'p.parquet'.*{column!r} missing"):
        split_export(frame.drop(columns=column), retail, "p.parquet")
    off = frame.copy()
    off.loc[7, column] += 0.01
    customer = frame["customer_id"].iloc[7]
    with pytest.raises(BeliefColumnsError, match=f"customer {customer!r} \\(row 7\\) sum to"):
        split_export(off, retail, "p.parquet")
    off.loc[7, column] = np.nan
    with pytest.raises(BeliefColumnsError, match=f"{column!r} is missing or not finite"):
        split_export(off, retail, "p.parquet")
    stray = frame.rename(columns={column: "belief__deal_seeker__asleep"})
    with pytest.raises(BeliefColumnsError, match="'belief__deal_seeker__asleep' is not one of"):
        split_export(stray, retail, "p.parquet")
    # a partition from another twin's store is refused by name (its fingerprint)
    levels = load_scenario("retail_levels")
    with pytest.raises(TwinMismatchError, match="another twin"):
        split_export(frame, levels, "p.parquet")
    plain = frame.drop(columns=[c for c in frame if c.startswith("belief__")])
    plain.attrs = {}
    assert split_export(plain, retail, "p.parquet")[1] is None  # no belief: as before


def test_level_scenarios_name_every_level_and_clashing_names_are_refused() -> None:
    levels = load_scenario("retail_levels")
    names = belief_columns(levels)
    assert len(names) == len(set(names)) == int(np.prod(belief_shape(levels))) == 4 * 6 * 7
    assert "belief__deal_seeker__rate0__dropout1__active" in names
    twin = load_scenario("retail")
    # "belief__a__b__c": persona "a__b" at stage "c", and persona "a" at stage "b__c"
    renamed = [("a__b", "c"), ("a", "b__c")]
    personas = [
        p.model_copy(update={"name": n}) for p, (n, _) in zip(twin.personas, renamed, strict=False)
    ]
    stages = [
        s.model_copy(update={"name": n}) for s, (_, n) in zip(twin.stages, renamed, strict=False)
    ]
    personas += twin.personas[2:]
    stages += twin.stages[2:]
    with pytest.raises(ExportError, match="'belief__a__b__c' twice"):
        belief_columns(twin.model_copy(update={"personas": personas, "stages": stages}))


def test_cli_exports_and_refuses_in_one_line(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    args = ["store", "export", "--store", str(store_path), "--as-of", AS_OF]
    code, text, err = run_cli(capsys, *args, "--out", str(out), "--partition-rows", "60", "--json")
    assert code == 0, err
    summary = json.loads(text)
    assert (summary["customers"], summary["partitions"]) == (130, 3)
    assert summary["as_of"] == "2025-02-02T09:00:00+00:00" and summary["scenario"] == "retail"
    assert not list(out.glob(".*partial"))
    for bad, field in (
        (["--out", str(out)], "--out"),  # holds an export: leftovers would be decided too
        (["--out", str(store_path)], "--out"),  # a file
        (["--out", str(tmp_path / "x"), "--as-of", "yesterday-ish"], "--as-of"),
    ):
        code, _, err = run_cli(capsys, *args, *bad)
        assert code == 2 and err.strip().splitlines() == [err.strip()], err
        assert err.strip().startswith(f"error: {field}:"), err
    code, _, err = run_cli(capsys, "store", "export", "--store", str(tmp_path / "no.db"), "-o", "y")
    assert code == 2 and "error: --store:" in err
    assert json.loads((out / "manifest.json").read_text())["customers"] == 130  # untouched
