"""A real two-node Ray cluster for the scale tests: a head and a second node started with
``ray start`` as separate processes, on 127.0.0.1, under a temp dir of their own.

``ray stop`` cannot be scoped (it kills every Ray process of the user, other people's
clusters included), so each node is started in a process group of its own and stopped by
signalling that group, then anything still running under the fixture's temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

NODES = 2
START_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """``HOST:PORT`` of a running two-node cluster (one CPU each); this process is connected."""
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install nba[ray])")
    # short: Ray's AF_UNIX socket paths under the temp dir must stay under ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="nbaray", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Ray 2.60 turns token auth on for a cluster when ~/.ray/auth_token exists, which any
    # earlier local ray.init() writes: the test cluster and this driver say disabled, alike
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = [
        "--head",
        f"--port={port}",
        "--include-dashboard=false",
        f"--dashboard-port={free_port()}",
    ]
    groups: list[int] = []
    try:
        for name, where in (("head", head), ("node", [f"--address={address}"])):
            groups.append(_ray_start([*where, *common, f"--temp-dir={root / name}"], env, name))
        import logging

        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        _wait_for_nodes(ray, NODES)
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop(groups, root)
        shutil.rmtree(root, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _ray_start(arguments: list[str], env: dict[str, str], name: str) -> int:
    """Run ``ray start`` in a new process group; returns the group, which its daemons keep."""
    ray = Path(sys.executable).with_name("ray")
    process = subprocess.Popen(
        [str(ray), "start", *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    said, _ = process.communicate(timeout=START_TIMEOUT_S)
    if process.returncode != 0:
        _stop([process.pid], None)
        raise AssertionError(f"ray start ({name}) exited {process.returncode}: {said[-2000:]}")
    return process.pid


def _wait_for_nodes(ray: object, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]  # type: ignore[attr-defined]
        if len(alive) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(alive)} of {count} Ray nodes alive after start")
        time.sleep(0.2)


def _stop(groups: list[int], root: Path | None) -> None:
    """SIGKILL our process groups (``ray stop --force``'s signal: on SIGTERM the GCS and
    raylets linger for seconds), then any process still naming ``root``."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    if root is not None:  # a daemon that left our groups still names our temp dir
        for pid in _pids_under(root):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _pids_under(root: Path) -> list[int]:
    mine, found = str(root), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mine in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found
