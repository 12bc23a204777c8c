"""The registered policy answers ``/invocations`` under ``mlflow models serve`` on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from nba.scenarios import load_scenario
from nba.training import train
from nba.training.tracking import resolve_tracking_uri
from tests.servers import wait_until_answers
from tests.serving.conftest import customer
from tests.training.conftest import TINY_RUN, tiny_config_for


@pytest.mark.integration
def test_models_serve_answers_invocations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(algo="ppo", config=tiny_config_for(tmp_path, "ppo"), register_model=True, **TINY_RUN)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # mlflow execs uvicorn from the environment
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": resolve_tracking_uri(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/nba-retail@candidate",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_answers(server, f"http://127.0.0.1:{port}/ping", 120, "mlflow models serve")
        record = customer(customer_id="c-42", persona="cautious_researcher", stage="lapsed", day=0)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": [record]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    (decision,) = payload["predictions"]
    assert decision["customer_id"] == "c-42"
    assert decision["action_name"] in load_scenario("retail").action_names
    assert decision["propensity"] == 1.0
