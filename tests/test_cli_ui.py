"""``nba ui`` serves the MLflow UI on loopback and says where."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port, wait_until_answers


@pytest.mark.integration
def test_ui_binds_to_loopback_and_prints_the_address(tmp_path: Path) -> None:
    port = free_port()
    process = _start_ui(port, tmp_path, start_new_session=True)
    try:
        wait_until_answers(process, f"http://127.0.0.1:{port}/health", 90, "the UI")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in output


def _start_ui(port: int, folder: Path, start_new_session: bool = False) -> subprocess.Popen:
    """``nba ui`` on the default store of ``folder`` (never a tracking URI from outside)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-m", "nba.cli", "ui", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=start_new_session,
    )


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc (parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(30, func_only=True)  # the CLI's start-up only: no server was launched
def test_ui_fails_at_once_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "nba.cli", "ui", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"--port: {port} is already in use on 127.0.0.1" in result.stderr


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_sigterm_to_ui_stops_the_server_and_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    process = _start_ui(port, tmp_path)
    try:
        wait_until_answers(process, f"http://127.0.0.1:{port}/health", 90, "the UI")
        server = _descendants(process.pid)
        assert server, "the UI runs the server as a child process"
        process.send_signal(signal.SIGTERM)  # to the CLI alone, as a supervisor would
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in server if _alive(pid)], "a server process outlived the CLI"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # free again
