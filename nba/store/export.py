"""A whole store as partitioned Parquet request rows, so a base kept in the store reaches Ray.

``nba decide --store`` decides every stored customer in one process; ``nba decide --requests DIR
--engine ray`` decides partitioned Parquet. :func:`export_store` is the bridge: ONE read of the
store (:meth:`~nba.store.CustomerStore.read`: state and joint belief from one snapshot at one
``as_of``) written as ``requests-NNNNN.parquet`` partitions in customer-id order (the store's
primary key), each atomically (a temporary file renamed), then ``manifest.json`` (written last,
also atomically: a folder with a manifest holds a whole export).

Columns of a partition:

- the request fields of the state (the names :class:`~nba.serving.schema.RequestSchema`
  accepts, exactly what ``nba decide --store`` hands the scorer: most likely persona and stage,
  pressure, habit, opt-out, contact history, consent per channel, ``as_of``);
- the joint belief as plain float64 columns, one per latent type and stage
  (:func:`belief_columns`: ``belief__<persona>__<stage>``, with ``__rate<i>__dropout<j>`` where
  the scenario has levels), renormalised per row exactly as ``nba decide --store`` does, so a
  belief-trained model gets the same numbers either way.

Each partition also says which twin it comes from (the scenario's fingerprint in the Parquet
file's pandas metadata, :data:`FINGERPRINT_ATTR`): :func:`split_export` refuses a model of
another twin, as deciding from the store does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.io import write_with_atomic
from nba.store.database import StoreError

if TYPE_CHECKING:
    from nba.scenario import Scenario
    from nba.store import StateStore
    from nba.types import FloatArray

#: prefix of the belief columns: no request field starts with it
BELIEF_PREFIX = "belief__"
#: rows per partition by default (a few hundred MB of frame per actor at most)
PARTITION_ROWS = 500_000
MANIFEST = "manifest.json"
FORMAT = "nba.store.export/1"
#: the partition's pandas metadata key holding the scenario fingerprint of its store
FINGERPRINT_ATTR = "nba_scenario_fingerprint"
#: how far a row's belief total may stray from 1 (the scorer's own tolerance)
BELIEF_TOLERANCE = 1e-6


class ExportError(StoreError):
    """A store that cannot be exported as asked (the folder, the partition size)."""


class BeliefColumnsError(NBAValidationError):
    """A partition's belief columns are not a whole belief: some missing, unknown, not numbers,
    or a row that is not a probability distribution. Names the partition and the column."""


@dataclass(frozen=True)
class Partition:
    name: str
    rows: int
    sha256: str
    first_customer_id: str
    last_customer_id: str


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_store` wrote (the manifest's content) and how long each part took."""

    out: Path
    customers: int
    as_of: str
    scenario: dict[str, str]
    partitions: list[Partition] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def belief_columns(scenario: Scenario) -> list[str]:
    """The belief's column names in the joint's flat order (persona, rate level, dropout level,
    stage; the stage varies fastest), refused where two names would be one column.

    Without levels: ``belief__<persona>__<stage>``; with them
    ``belief__<persona>__rate<i>__dropout<j>__<stage>``.
    """
    rates, dropouts = _levels(scenario)
    levels = rates * dropouts > 1
    names = [
        BELIEF_PREFIX
        + "__".join([persona, *([f"rate{r}", f"dropout{d}"] if levels else []), stage])
        for persona in scenario.persona_names
        for r in range(rates)
        for d in range(dropouts)
        for stage in scenario.stage_names
    ]
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise ExportError(
            f"scenario {scenario.name!r}: persona and stage names make the belief column "
            f"{clash!r} twice ('__' inside a name); rename them to export the belief"
        )
    return names


def export_store(
    store: StateStore,
    out: str | Path,
    partition_rows: int = PARTITION_ROWS,
    as_of: pd.Timestamp | str | None = None,
) -> ExportReport:
    """Write every customer of ``store`` as of ``as_of`` (default now, fixed once) to ``out``.

    ``out`` is created when absent; one that already holds Parquet files or a manifest is
    refused (``nba decide --requests`` reads every ``.parquet`` of a folder, so leftovers would
    be decided too). See the module docstring for the files and their columns.
    """
    scenario = getattr(store, "scenario", None)
    if scenario is None:
        raise ExportError("store: does not say its scenario; the belief columns need it")
    if isinstance(partition_rows, bool) or not isinstance(partition_rows, int | np.integer):
        raise ExportError(f"--partition-rows: expected a positive integer, got {partition_rows!r}")
    if partition_rows < 1:
        raise ExportError(f"--partition-rows: expected a positive integer, got {partition_rows}")
    folder = _empty_folder(Path(out))
    names = belief_columns(scenario)
    began = time.perf_counter()
    when = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
    state, joint = store.read(None, as_of=when)  # one snapshot: state and belief together
    read = time.perf_counter()
    n = len(state)
    if not n:
        raise ExportError(f"store {str(getattr(store, 'path', ''))!r}: holds no customers")
    request = state[_request_columns(scenario, state)]
    flat = np.asarray(joint, dtype=np.float64).reshape(n, -1)
    flat /= flat.sum(axis=1, keepdims=True)  # as nba decide --store renormalises (by_id)
    attrs = {FINGERPRINT_ATTR: scenario.fingerprint(), "nba_export": FORMAT}
    written = []
    for index, start in enumerate(range(0, n, int(partition_rows))):
        rows = slice(start, min(start + int(partition_rows), n))
        part = request.iloc[rows].reset_index(drop=True)
        beliefs = pd.DataFrame(flat[rows], columns=names)
        frame = pd.concat([part, beliefs], axis=1)
        frame.attrs = dict(attrs)
        name = f"requests-{index:05d}.parquet"
        digest = _write_atomic(folder / name, lambda p, f=frame: f.to_parquet(p, index=False))
        ids = part["customer_id"]
        written.append(Partition(name, len(part), digest, str(ids.iloc[0]), str(ids.iloc[-1])))
    wrote = time.perf_counter()
    stamp = pd.Timestamp(state["as_of"].iloc[0]).isoformat()
    report = ExportReport(
        out=folder,
        customers=n,
        as_of=stamp,
        scenario={"name": scenario.name, "fingerprint": scenario.fingerprint()},
        partitions=written,
        seconds={"read_s": read - began, "write_s": wrote - read},
    )
    manifest = {
        "format": FORMAT,
        "store": str(Path(str(getattr(store, "path", ""))).resolve()),
        "customers": n,
        "as_of": stamp,
        "scenario": report.scenario,
        "partition_rows": int(partition_rows),
        "columns": {"request": list(request.columns), "belief": names},
        "partitions": [asdict(p) for p in written],
    }
    text = json.dumps(manifest, indent=2) + "\n"
    _write_atomic(folder / MANIFEST, lambda p: p.write_text(text, encoding="utf-8"))
    _sync_folder(folder)
    report.seconds["total_s"] = time.perf_counter() - began
    return report


def split_export(
    frame: pd.DataFrame, scenario: Scenario, where: str
) -> tuple[pd.DataFrame, FloatArray | None]:
    """(request rows, (N, T, K) float64 belief or None) of a partition a model decides.

    Without belief columns: the frame as it is and ``None``. With them, all of
    :func:`belief_columns` (``scenario``: the model's) must be there, numbers, each row a
    distribution; a partition exported from another twin's store is refused (its fingerprint,
    :data:`FINGERPRINT_ATTR`). ``where`` names the partition in errors.
    """
    source = frame.attrs.get(FINGERPRINT_ATTR)
    if source is not None and source != scenario.fingerprint():
        from nba.serving.by_id import TwinMismatchError

        raise TwinMismatchError(
            f"--requests: partition {where!r} was exported from a store of another twin "
            f"(fingerprint {str(source)[:12]}) than the model's scenario {scenario.name!r} "
            f"(fingerprint {scenario.fingerprint()[:12]}); deciding it is refused"
        )
    present = [c for c in frame.columns if isinstance(c, str) and c.startswith(BELIEF_PREFIX)]
    if not present:
        return frame, None
    names = belief_columns(scenario)
    known = set(names)
    unknown = [c for c in present if c not in known]
    if unknown:
        raise BeliefColumnsError(
            f"--requests: partition {where!r}: belief column {unknown[0]!r} is not one of "
            f"scenario {scenario.name!r}'s {len(names)} (e.g. {names[0]!r})"
        )
    missing = [c for c in names if c not in set(present)]
    if missing:
        raise BeliefColumnsError(
            f"--requests: partition {where!r}: belief column {missing[0]!r} missing "
            f"({len(present)} of {len(names)} present; give all of them or none)"
        )
    for column in names:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(
            frame[column]
        ):
            raise BeliefColumnsError(
                f"--requests: partition {where!r}: belief column {column!r} holds "
                f"{frame[column].dtype} values, expected probabilities (numbers)"
            )
    flat = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_distribution(flat, names, frame, where)
    stages = len(scenario.stage_names)
    belief = flat.reshape(len(frame), len(names) // stages, stages)
    return frame.drop(columns=present), belief


def _levels(scenario: Scenario) -> tuple[int, int]:
    """(rate levels, dropout levels): one each without a heterogeneity block (the store's
    belief axes, :func:`nba.store.beliefs.belief_shape`)."""
    levels = scenario.heterogeneity
    if levels is None:
        return 1, 1
    return len(levels.rate_levels), len(levels.dropout_levels)


def _check_distribution(
    flat: np.ndarray, names: list[str], frame: pd.DataFrame, where: str
) -> None:
    """Every row finite, non-negative and summing to 1, else the first bad cell or row named."""
    total = flat.sum(axis=1)
    if (
        np.isfinite(total).all()
        and (flat.min(initial=0.0) >= 0)
        and (np.abs(total - 1.0).max(initial=0.0) <= BELIEF_TOLERANCE)
    ):
        return
    ids = frame["customer_id"] if "customer_id" in frame else pd.Series(range(len(frame)))
    for bad, problem in ((~np.isfinite(flat), "is missing or not finite"), (flat < 0, "< 0")):
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise BeliefColumnsError(
                f"--requests: partition {where!r}: belief column {names[column]!r} "
                f"{problem} for customer {ids.iloc[row]!r} (row {row})"
            )
    row = int(np.argmax(np.abs(total - 1.0) > BELIEF_TOLERANCE))
    raise BeliefColumnsError(
        f"--requests: partition {where!r}: the belief columns of customer {ids.iloc[row]!r} "
        f"(row {row}) sum to {total[row]!r}, expected 1 (within {BELIEF_TOLERANCE})"
    )


def _request_columns(scenario: Scenario, state: pd.DataFrame) -> list[str]:
    """The state's columns that are request fields (what ``nba decide --store`` scores)."""
    from nba.parameters import ScenarioArrays
    from nba.serving.schema import RequestSchema

    fields = set(RequestSchema(ScenarioArrays.from_scenario(scenario)).fields)
    return [c for c in state.columns if c in fields]


def _empty_folder(folder: Path) -> Path:
    """``folder``, created when absent; a file there, or a previous export's files, refused."""
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"--out: {str(folder)!r} is a file; the export writes a folder")
    if folder.is_dir():
        old = sorted(
            p.name for p in folder.iterdir() if p.suffix == ".parquet" or p.name == MANIFEST
        )
        if old:
            raise ExportError(
                f"--out: {str(folder)!r} already holds {old[0]!r} ({len(old)} export file(s)); "
                "give a new or empty folder (nba decide --requests would decide leftovers too)"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"--out: cannot create {str(folder)!r} ({error.strerror})") from None
    return folder


def _write_atomic(target: Path, write: Any) -> str:
    """Write ``target`` atomically (:func:`nba.io.write_with_atomic`); its SHA-256."""
    write_with_atomic(target, write)
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync_folder(folder: Path) -> None:
    """Make the renames durable (where the platform lets a folder be fsynced)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
