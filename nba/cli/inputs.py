"""Checks the CLI runs before any work: every unreadable file, unwritable output or unknown
model becomes one :class:`~nba.errors.NBAValidationError` naming the option and the file.

Read-only commands must never create anything: a model URI is resolved against an MLflow store
only when that store already exists (MLflow would otherwise create ``./mlflow.db``), a decision
log is opened read-only, and outputs are checked (suffix, folder, permission) up front.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pandas as pd

from nba.errors import NBAError, NBAValidationError

if TYPE_CHECKING:
    from nba.serving.scorer import Exploration, PolicyScorer

TABLE_SUFFIXES = (".csv", ".parquet")
MODEL_URI_PREFIXES = ("models:/", "runs:/")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one short line (library messages can run to pages)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the file is empty"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return first_line(exc)


@contextmanager
def reading(option: str, path: Path | str) -> Iterator[None]:
    """Turn a library's failure to read ``path`` into one line naming ``option`` and the file.

    Only reading failures are translated (I/O, decoding, CSV tokenising, parquet/Arrow): our own
    errors pass through unchanged and anything else stays a bug with its traceback.
    """
    from pyarrow import ArrowException

    try:
        yield
    except NBAError:
        raise
    except (
        OSError,
        UnicodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        ArrowException,
    ) as exc:
        raise NBAValidationError(f"{option}: cannot read {str(path)!r}: {_reason(exc)}") from None


def read_table(
    path: Path, option: str, first_row: int = 0, text_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """A CSV or parquet file as a DataFrame; every failure names ``option`` and the file.

    ``first_row`` numbers the data rows (the frame's index) so that errors about a row name the
    row the user sees: the CLI passes 1, the first data row below the header is "row 1".
    ``text_columns`` of a CSV are read as written: identifiers such as "007" or "+1" must not
    turn into the numbers 7 and 1 (two customers would become one).
    """
    check_input(path, option, TABLE_SUFFIXES)
    with reading(option, path):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={name: str for name in text_columns})
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    return frame


def sniff_table(path: Path, option: str) -> None:
    """Cheaply refuse a table file a library cannot open, before a long run reads it whole.

    Parquet: its footer (a truncated or corrupt file has none). CSV: the header and first rows,
    and the whole file decodes as UTF-8 (streamed). Ragged rows further down are caught when the
    file is read, by :func:`reading`.
    """
    check_input(path, option)
    with reading(option, path):
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
            return
        pd.read_csv(path, nrows=5)
        if path.suffix == ".csv":
            with path.open(encoding="utf-8") as handle:
                while handle.read(1 << 20):
                    pass


def check_input(path: Path, option: str, suffixes: Iterable[str] | None = None) -> None:
    """An existing, readable file with one of ``suffixes``."""
    if suffixes is not None and path.suffix not in set(suffixes):
        expected = " or ".join(sorted(suffixes))
        raise NBAValidationError(f"{option}: expected a {expected} path, got {str(path)!r}")
    if not path.exists():
        raise NBAValidationError(f"{option}: no such file {str(path)!r}")
    if not path.is_file():
        raise NBAValidationError(f"{option}: {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise NBAValidationError(f"{option}: cannot read {str(path)!r}: permission denied")


def check_output(path: Path, option: str, suffixes: Iterable[str] | None = None) -> None:
    """A path we can write: the right suffix, an existing folder, permission to write there.

    Checked before any work so that a long run never ends on a path it cannot write.
    """
    if suffixes is not None and path.suffix not in set(suffixes):
        expected = " or ".join(sorted(suffixes))
        raise NBAValidationError(f"{option}: expected a {expected} path, got {str(path)!r}")
    if path.is_dir():
        raise NBAValidationError(f"{option}: {str(path)!r} is a folder, expected a file")
    folder = path.parent
    if not folder.is_dir():
        raise NBAValidationError(f"{option}: no folder {str(folder)!r} to write {path.name!r} in")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise NBAValidationError(f"{option}: cannot write {str(path)!r}: permission denied")


def check_decision_log(path: Path, option: str = "--log", must_exist: bool = True) -> None:
    """``path`` is a decision log (SQLite with a ``decisions`` table), or may become one."""
    from nba.serving.decision_log import check_decision_log as check_file

    if not path.exists() or (not must_exist and path.is_file() and path.stat().st_size == 0):
        if must_exist:
            raise NBAValidationError(f"{option}: no such decision log {str(path)!r}")
        check_output(path, option)  # a new (or empty) log: DecisionLog creates its tables
        return
    if not path.is_file():
        raise NBAValidationError(f"{option}: {str(path)!r} is not a file")
    try:
        check_file(path)
    except NBAValidationError as exc:
        raise NBAValidationError(f"{option}: {exc}") from None
    except (OSError, sqlite3.Error) as exc:
        raise NBAValidationError(f"{option}: cannot read {str(path)!r}: {_reason(exc)}") from None


@dataclass(frozen=True)
class ScoreRun:
    """What determines the decisions of one ``nba score --log`` run, and so its batch id.

    A retry of the same run (same input bytes, model, exploration, capacity and decision time)
    has the same batch id, which the decision log stores once. ``as_of`` is ``"column"`` when
    the input carries its own decision times, the ``--as-of`` given, or ``"now"``: then the
    moment is pinned in the log until the run finishes (:meth:`DecisionLog.start_run`).
    """

    input_sha256: str
    model: str
    epsilon: float
    seed: int | None
    capacity: tuple[tuple[str, int | None], ...]  # None: the scenario's limit lifted
    as_of: str

    @property
    def key(self) -> str:
        """The run without its decision time: how a retry finds the time it pinned."""
        fields = {
            "input_sha256": self.input_sha256,
            "model": self.model,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "capacity": self.capacity,
            "as_of": self.as_of,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def batch_id(self, decided: pd.Timestamp | None) -> str:
        """``score-`` and a SHA-256 of the run and its decision time (``None``: the column)."""
        from nba.serving.decision_log import format_stamp

        moment = "column" if decided is None else format_stamp(decided)
        return "score-" + hashlib.sha256(f"{self.key}|{moment}".encode()).hexdigest()


def derived_seed(batch_id: str) -> int:
    """An exploration seed from a batch id, so that a retry without ``--seed`` draws the same."""
    return int(hashlib.sha256(f"seed|{batch_id}".encode()).hexdigest()[:16], 16)


def file_sha256(path: Path, option: str) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with reading(option, path), path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: str, scorer: PolicyScorer) -> str:
    """What a scorer's decisions depend on in its model: the resolved version and run (a
    registry version is immutable) and, for an export directory, its files' bytes."""
    from nba.serving.spec import SPEC_FILE, WEIGHTS_FILE

    version = scorer.model_version
    parts = [str(version)] + [
        str(getattr(version, part, None)) for part in ("name", "version", "run_id")
    ]
    if not model.startswith(MODEL_URI_PREFIXES):
        parts += [file_sha256(Path(model) / name, "--model") for name in (SPEC_FILE, WEIGHTS_FILE)]
    return "|".join(parts)


def with_exploration(scorer: PolicyScorer, exploration: Exploration) -> PolicyScorer:
    """The same loaded model under another exploration (no second download or alias lookup)."""
    explored = dataclasses.replace(scorer, exploration=exploration)
    if hasattr(scorer, "run_id"):
        explored.run_id = scorer.run_id
    return explored


def parse_as_of(text: str | None, option: str = "--as-of") -> pd.Timestamp | None:
    """A decision time given on the command line, as UTC (naive times are UTC)."""
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise NBAValidationError(f"{option}: not a timestamp: {text!r:.60}") from None
    if stamp is pd.NaT:
        raise NBAValidationError(f"{option}: not a timestamp: {text!r:.60}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def remove_new_log(path: Path) -> None:
    """Delete a decision log this run created (and SQLite's WAL/SHM siblings) after a failure."""
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        path.with_name(name).unlink(missing_ok=True)


def tracking_store(tracking_uri: str | None, option: str = "--tracking-uri") -> str:
    """The MLflow tracking URI to use, refusing a local store that does not exist yet.

    MLflow creates a SQLite file (or an ``mlruns`` folder) on first contact; a read-only command
    that did so would leave an empty ``mlflow.db`` behind a typo.
    """
    from nba.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    local = _local_store(uri)
    if local is not None and not local.exists():
        raise NBAValidationError(
            f"{option}: no MLflow store at {str(local)!r}; pass --tracking-uri "
            "(or set MLFLOW_TRACKING_URI)"
        )
    return uri


def _local_store(uri: str) -> Path | None:
    """The file or folder behind a local tracking URI; ``None`` for servers and in-memory."""
    if uri.startswith("sqlite:"):
        rest = uri[len("sqlite:") :]
        if not rest.startswith("///"):
            return None
        path = rest[3:].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(unquote(path))
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or a Windows drive)
        return Path(uri)
    return None


def load_scorer(
    model: str,
    tracking_uri: str | None = None,
    exploration: Exploration | None = None,
    option: str = "--model",
    trusted_scenario: Any = None,
) -> PolicyScorer:
    """``PolicyScorer.load`` with every way of not finding the model as one line on ``option``.

    ``trusted_scenario`` (a loaded scenario) is what the export must have been trained on.
    """
    from nba.serving.scorer import PolicyScorer

    if model.startswith(MODEL_URI_PREFIXES):
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = tracking_store(tracking_uri, option)
        mlflow.set_tracking_uri(uri)
        try:
            return PolicyScorer.load(
                model, exploration=exploration, trusted_scenario=trusted_scenario
            )
        except NBAError:
            raise
        except (MlflowException, OSError) as exc:
            raise NBAValidationError(
                f"{option}: cannot load {model!r} from {uri}: {first_line(exc)}"
            ) from None
    if model.startswith(("models:", "runs:")):
        raise NBAValidationError(
            f"{option}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH, "
            f"got {model!r}"
        )
    folder = Path(model)
    if not folder.is_dir():
        raise NBAValidationError(
            f"{option}: no export directory {model!r} (or pass models:/NAME@ALIAS or runs:/...)"
        )
    with reading(option, folder):
        return PolicyScorer.load(folder, exploration=exploration, trusted_scenario=trusted_scenario)


def trusted_scenario(source: str | None) -> Any:
    """The ``--trusted-scenario`` as a loaded scenario (refused early, naming the option)."""
    if source is None:
        return None
    from nba.scenarios import load_scenario

    try:
        return load_scenario(source)
    except NBAValidationError as exc:
        raise NBAValidationError(f"--trusted-scenario: {exc}") from None
