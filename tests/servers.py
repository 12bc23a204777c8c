"""Servers the tests run: a subprocess on a free loopback port, waited for, stopped with its group.

One way to start and wait (``nba serve``, ``mlflow server``, ``nba ui``, ``mlflow models serve``
all go through :func:`wait_until_answers`), and a static file server in a thread for download
tests (:func:`serve_folder`).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A loopback port free right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answers(
    process: subprocess.Popen, url: str, seconds: float, what: str, output: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it dies or is late.

    The output is ``output`` (a file the server writes) or else the process's stdout pipe.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                assert response.status == 200
                return
        except OSError:
            died = process.poll() is not None
            if died or time.monotonic() > deadline:
                if output is not None:
                    said = output.read_text()
                else:
                    said = process.stdout.read() if died and process.stdout else ""
                raise AssertionError(
                    f"{what} {'exited' if died else 'did not answer in time'}: {said!r}"
                ) from None
            time.sleep(0.2)


@dataclass
class Background:
    """A server running as a subprocess in its own session, writing to ``output``."""

    process: subprocess.Popen
    url: str
    output: Path

    def stop(self, timeout: float = 60) -> str:
        """SIGTERM to the server's whole process group; its output. A server that lingers is
        killed and fails the test: shutting down on SIGTERM is part of what is tested."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
                raise AssertionError(
                    f"server at {self.url} ignored SIGTERM for {timeout} s (killed); output:\n"
                    + self.output.read_text()[-2000:]
                ) from None
        return self.output.read_text()


def start_server(
    command: Sequence[str],
    *,
    port: int,
    health: str,
    what: str,
    output: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    seconds: float = 90,
) -> Background:
    """Run ``command`` (which serves on ``port``) and return once ``health`` answers 200."""
    with output.open("w") as sink:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Background(process, f"http://127.0.0.1:{port}", output)
    try:
        wait_until_answers(process, server.url + health, seconds, what, output)
    except BaseException:
        server.stop()
        raise
    return server


def mlflow_server(folder: Path) -> Background:
    """A real ``mlflow server`` on loopback with its own SQLite store and artifact folder."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "server-artifacts"),
    ]  # fmt: skip
    return start_server(
        command, port=port, health="/health", what="mlflow server",
        output=folder / "server.log", env=env,
    )  # fmt: skip


@dataclass
class FolderServer:
    """A folder served over HTTP on loopback; ``requests`` lists every path asked for."""

    url: str
    requests: list[str]


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[FolderServer]:
    """Serve ``folder`` read-only from a thread on 127.0.0.1 (for download tests)."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            asked.append(self.path)

    handler = functools.partial(Handler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield FolderServer(f"http://127.0.0.1:{httpd.server_address[1]}", asked)
        finally:
            httpd.shutdown()
            thread.join(timeout=10)
