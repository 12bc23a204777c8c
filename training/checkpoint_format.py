"""The checkpoint format, written and read here only: plain tensors, JSON and hashes.

SB3's ``model.zip`` is a pickle: loading a tampered one runs its code. A checkpoint is plain
data instead, and nothing in it is executed:

``checkpoints/<run_id>/``
    ``manifest.json``             the commit point: format, step, each file's sha256 and size
    ``state-<g>.json``            counters, RNG states, evaluation history, optimizer layout
    ``tensors-<g>.safetensors``   policy and optimizer tensors, the torch RNG, the env's
                                  customers and last observations, the replay buffer (DQN)

:func:`write_checkpoint` writes generation ``g``'s files, lets the caller record the new
manifest's sha256 (``before_commit``), then replaces ``manifest.json`` atomically, so a kill at
any point leaves a checkpoint that verifies. :func:`read_checkpoint` checks the manifest's hash
against the trusted ones and every file against the manifest before parsing anything else.
What goes into the state and tensors (and back into a model) is :mod:`nba.training.checkpoint`'s
business; nested structures travel through :func:`encode` and :func:`decode`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from nba.errors import NBAValidationError
from nba.io import write_bytes_atomic

FORMAT = "nba-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LEGACY_MODEL = "model.zip"  # SB3's pickle-based format: refused, never opened
#: The tag where a run records the hash of the manifest it saved last: what a message about an
#: untrusted manifest points at.
MANIFEST_TAG = "nba.checkpoint.manifest_sha256"
_MANIFEST_LIMIT = 1 << 20  # a manifest is a few hundred bytes; never read a huge one
_FILE_NAME = re.compile(r"(state-(\d{6,})\.json|tensors-(\d{6,})\.safetensors)")
_LEFTOVER = re.compile(r"\.(manifest\.json|state-\d+\.json|tensors-\d+\.safetensors)\..+\.tmp")
#: What every checkpoint's state holds; anything less is a malformed checkpoint.
STATE_KEYS = frozenset(
    {
        "num_timesteps",
        "elapsed_seconds",
        "history",
        "parameters",
        "observation_shape",
        "n_actions",
        "counters",
        "rng",
        "variables",
    }
)


def write_checkpoint(
    directory: Path,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    *,
    run_id: str | None = None,
    before_commit: Callable[[str, str | None], None] | None = None,
) -> str:
    """Write ``state`` and ``tensors`` as the next generation in ``directory``; return the new
    manifest's sha256.

    ``before_commit(new_sha256, previous_sha256)`` runs once the files are written and before
    the manifest replaces the previous one (the run records the hash there). Earlier
    generations and the leftovers of interrupted saves are removed afterwards.
    """
    directory.mkdir(parents=True, exist_ok=True)
    generation = 1 + max((_generation(p.name) for p in directory.iterdir()), default=0)
    state_name = f"state-{generation:06d}.json"
    tensors_name = f"tensors-{generation:06d}.safetensors"
    files: dict[str, dict[str, Any]] = {}
    for name, data in (
        (tensors_name, safetensors.torch.save(tensors)),
        (state_name, json.dumps(state, allow_nan=True).encode("utf-8")),
    ):
        write_bytes_atomic(directory / name, data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "run_id": run_id,
        "generation": generation,
        "num_timesteps": int(state["num_timesteps"]),
        "state": state_name,
        "tensors": tensors_name,
        "files": files,
    }
    data = json.dumps(manifest, indent=2).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    path = directory / MANIFEST
    previous = file_sha256(path) if path.is_file() else None
    if before_commit is not None:
        before_commit(digest, previous)
    write_bytes_atomic(path, data)
    for stale in directory.iterdir():  # earlier generations and files of interrupted saves
        if (_FILE_NAME.fullmatch(stale.name) and stale.name not in files) or _LEFTOVER.fullmatch(
            stale.name
        ):
            stale.unlink(missing_ok=True)
    return digest


def read_checkpoint(
    directory: Path, trusted: Collection[str], where: str | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], str, str] | None:
    """The verified checkpoint in ``directory`` as (manifest sha256, state, tensors, state
    file name, tensors file name), or None when there is none.

    ``trusted`` holds the manifest hashes the run recorded; a manifest with another hash, a
    file that does not match the manifest, or an old pickle-based ``model.zip`` is refused
    with one :class:`NBAValidationError` naming the file, before anything is parsed.
    """
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        if (directory / LEGACY_MODEL).exists():
            raise legacy_error(directory / LEGACY_MODEL)
        return None
    digest, manifest = read_manifest(manifest_path, trusted, where)
    check_files(directory, manifest)
    state_name, tensors_name = manifest["state"], manifest["tensors"]
    try:
        state = json.loads((directory / state_name).read_bytes())
        tensors = safetensors.torch.load_file(str(directory / tensors_name), device="cpu")
    except (ValueError, OSError, safetensors.SafetensorError) as exc:
        raise NBAValidationError(
            f"--resume: {directory}: malformed checkpoint ({type(exc).__name__}: {str(exc)[:300]})"
        ) from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        raise NBAValidationError(f"--resume: {directory / state_name}: malformed checkpoint state")
    return digest, state, tensors, state_name, tensors_name


def read_manifest(
    path: Path, trusted: Collection[str], where: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Hash-checked manifest: its sha256 must be one the run recorded."""
    if path.stat().st_size > _MANIFEST_LIMIT:
        raise NBAValidationError(f"--resume: {path}: not a checkpoint manifest (too large)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not trusted:
        raise NBAValidationError(
            f"--resume: {path}: the run records no checkpoint hash (tag {MANIFEST_TAG}), so "
            "the checkpoint cannot be verified; refusing to load it"
        )
    if digest not in trusted:
        raise NBAValidationError(
            f"--resume: {path}: sha256 {digest[:16]}... is not a checkpoint this run recorded "
            f"({where or 'tag ' + MANIFEST_TAG}); the checkpoint was changed after it was "
            "written, refusing to load it"
        )
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        valid = (
            manifest["format"] == FORMAT
            and manifest["version"] == FORMAT_VERSION
            and isinstance(files, dict)
            and all(isinstance(n, str) and _FILE_NAME.fullmatch(n) for n in files)
            and {manifest["state"], manifest["tensors"]} <= set(files)
            and all(
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)
                for entry in files.values()
            )
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise NBAValidationError(f"--resume: {path}: malformed checkpoint manifest")
    return digest, manifest


def check_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its size and sha256."""
    for name, entry in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise NBAValidationError(f"--resume: {path}: missing (listed in {MANIFEST})")
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise NBAValidationError(
                f"--resume: {path}: sha256 does not match the checkpoint manifest; the file "
                "was changed after it was written, refusing to load it"
            )


def legacy_error(path: Path | str) -> NBAValidationError:
    """The refusal of an SB3 ``model.zip``: never opened, since loading it runs its code."""
    return NBAValidationError(
        f"--resume: {path} is a checkpoint in the old pickle-based format (SB3 model.zip), "
        "which cannot be resumed safely: loading it would run code stored in the file; "
        "start a new run instead"
    )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _generation(name: str) -> int:
    match = _FILE_NAME.fullmatch(name)
    return int(match.group(2) or match.group(3)) if match else 0


# ------------------------------------------------------------------ nested state <-> JSON
def encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for a nested structure of dicts, lists, tuples, scalars and tensors.

    Tensors go to ``tensors`` under ``key``; the JSON names them. Tags keep dict keys that
    are integers (optimizer state) and tuples (Adam's betas) exactly.
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"tensor": key}
    if isinstance(value, dict):
        pairs = []
        for name, item in value.items():
            if not isinstance(name, str | int) or isinstance(name, bool):
                raise TypeError(f"checkpoint: unsupported key {name!r} at {key}")
            pairs.append([name, encode(item, f"{key}/{name}", tensors)])
        return {"dict": pairs}
    if isinstance(value, list | tuple):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [encode(item, f"{key}/{i}", tensors) for i, item in enumerate(value)]}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    raise TypeError(f"checkpoint: cannot store {type(value).__name__} at {key}")


def decode(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`; builds only dicts, lists, tuples, scalars and tensors."""
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("expected one tagged value")
    ((kind, payload),) = data.items()
    if kind == "tensor":
        if not isinstance(payload, str) or payload not in tensors:
            raise ValueError(f"unknown tensor {str(payload)[:80]!r}")
        return tensors[payload]
    if kind == "dict":
        result = {}
        for pair in payload:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("a dict entry is not a [key, value] pair")
            name, item = pair
            if not isinstance(name, str | int) or isinstance(name, bool):
                raise ValueError("a dict key is not a string or an integer")
            result[name] = decode(item, tensors)
        return result
    if kind in ("list", "tuple"):
        if not isinstance(payload, list):
            raise ValueError(f"a {kind} is not a JSON list")
        items = [decode(item, tensors) for item in payload]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        if payload is not None and not isinstance(payload, bool | int | float | str):
            raise ValueError("a value is not a scalar")
        return payload
    raise ValueError(f"unknown tag {kind[:40]!r}")
