"""Waiting for a server the tests started as a subprocess."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_until_answers(process: subprocess.Popen, url: str, seconds: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it dies or is late."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                assert response.status == 200
                return
        except OSError:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"{what} exited: {output!r}") from None
            assert time.monotonic() < deadline, f"{what} did not answer in time"
            time.sleep(0.5)
