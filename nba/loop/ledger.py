"""A cycle's ledger: which steps finished, with what outcome, written atomically.

A cycle is keyed by (store, the events' content hash, as_of): the same key is the same cycle.
The ledger is one JSON file per key; every finished step replaces it whole (write to a
temporary file, fsync, rename), so a kill at any moment leaves the previous steps recorded and
none half-written. A rerun reads it and continues at the first unfinished step; a finished
cycle's rerun changes nothing and reports the recorded outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nba.errors import NBAValidationError

LEDGER_VERSION = 1


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the events batch's identity: renaming it changes nothing)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cycle_key(store: Path, events_sha256: str, as_of: str) -> str:
    """The cycle's identity: the store's absolute path, the events' content and ``as_of``."""
    text = json.dumps([str(store.resolve()), events_sha256, as_of])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Ledger:
    """The recorded state of one cycle (a JSON file in ``folder``)."""

    def __init__(self, folder: Path, key: str, identity: dict[str, Any]) -> None:
        self.folder = folder
        self.key = key
        self.path = folder / f"cycle-{key}.json"
        self.data: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "key": key,
            "identity": identity,
            "parent_run_id": None,
            "steps": {},
            "finished": None,
        }
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
            except (OSError, ValueError) as error:
                raise NBAValidationError(
                    f"--state-dir: unreadable cycle ledger {str(self.path)!r}: {error}"
                ) from None
            if stored.get("key") != key or stored.get("version") != LEDGER_VERSION:
                raise NBAValidationError(
                    f"--state-dir: {str(self.path)!r} is not the ledger of cycle {key}"
                )
            self.data = stored

    @property
    def work_dir(self) -> Path:
        """A folder for this cycle's files (snapshots, exports, the scenario YAML)."""
        folder = self.folder / f"cycle-{self.key}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def finished(self) -> dict[str, Any] | None:
        """``{"outcome", "exit_code"}`` once the cycle has ended, else ``None``."""
        return self.data["finished"]

    def step(self, name: str) -> dict[str, Any] | None:
        """A finished step's record (``outcome``, ``values``, ``run_id``), else ``None``."""
        return self.data["steps"].get(name)

    def record_step(self, name: str, record: dict[str, Any]) -> None:
        self.data["steps"][name] = record
        self._write()

    def set_parent(self, run_id: str) -> None:
        self.data["parent_run_id"] = run_id
        self._write()

    def note(self, key: str, value: Any) -> None:
        """Keep something a rerun needs before its step has finished (an interrupted
        training run's id, to resume it)."""
        self.data.setdefault("notes", {})[key] = value
        self._write()

    def noted(self, key: str) -> Any:
        return self.data.get("notes", {}).get(key)

    def finish(self, outcome: str, exit_code: int) -> None:
        self.data["finished"] = {"outcome": outcome, "exit_code": exit_code}
        self._write()

    def _write(self) -> None:
        """Replace the file atomically: a reader sees the old ledger or the whole new one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as handle:
            json.dump(self.data, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
