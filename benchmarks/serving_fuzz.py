"""Fuzzed scoring requests per serving path: is every one honoured or refused with our error?

The same requests (``tests/serving/fuzz_oracle.py``: valid ones with consent given or all off,
decision times in the customer's own offset, history as counts or timestamps; mutated ones with
misspelt fields, wrong types, part of a history, repeated ids, odd column labels) go through
each path; an oracle with its own rule code judges every answer from the raw request.

Paths: ``dict`` (``PolicyScorer.score``, one customer; batches are skipped), ``dataframe``
(``score_batch``), ``pyfunc`` (``mlflow.pyfunc.load_model(...).predict`` of the model saved as
training logs it), ``http`` (``nba serve`` in its own process on loopback: one customer to
``/decide``, several to ``/decide/batch``). Add a path to :func:`build_paths`' dict to fuzz it.

Run: ``python benchmarks/serving_fuzz.py [--requests 40000]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serving.fuzz_oracle

from nba.envs import TwinVecEnv
from nba.scenarios import load_scenario
from nba.serving import pyfunc
from nba.serving.export import export_policy
from nba.serving.scorer import PolicyScorer
from tests.serving import fuzz_oracle


def build_paths(folder: Path, workdir: Path) -> dict[str, fuzz_oracle.Path]:
    """The paths to fuzz, by name: add one here (or to the returned dict) to fuzz it too."""
    scorer = PolicyScorer.load(folder)
    saved = workdir / "pyfunc"
    mlflow.pyfunc.save_model(
        str(saved),
        python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),
        artifacts={pyfunc.ARTIFACT_KEY: str(folder)},
        **pyfunc.logged_model_fields(scorer),
    )
    paths = fuzz_oracle.paths(scorer, mlflow.pyfunc.load_model(str(saved)))
    return paths


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """``nba serve`` on the export, on a free loopback port; its base URL."""
    from tests.servers import wait_until_answers

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "nba.cli", "serve", "--model", str(folder)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(process, url + "/healthz", 120, "nba serve")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def single_customer_cases(scenario: Any, seed: int, n: int) -> list[fuzz_oracle.Case]:
    """``n`` requests of one customer each (what the dict path takes), from the same fuzzer."""
    fuzzer, cases = fuzz_oracle.RequestFuzzer(scenario, seed), []
    while len(cases) < n:
        cases.extend(c for c in fuzzer.cases(n - len(cases)) if not c.batch_only)
    return cases


def main(extra: Callable[[Path], dict[str, fuzz_oracle.Path]] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40_000, help="fuzzed requests per path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-http", dest="http", action="store_false", help="skip the nba serve path"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # "extra inputs" per dropped column

    scenario = load_scenario("retail")
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir) / "policy"
        model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4), seed=0, device="cpu")
        export_policy(model, scenario, folder, algo="ppo")
        paths = build_paths(folder, Path(workdir))
        if extra is not None:
            paths.update(extra(folder))
        server = contextlib.ExitStack()
        if args.http:
            paths["http"] = fuzz_oracle.http_path(server.enter_context(served(folder)))
        cases = list(fuzz_oracle.RequestFuzzer(scenario, args.seed).cases(args.requests))
        singles = single_customer_cases(scenario, args.seed, args.requests)
        tallies, seconds = {}, {}
        for name, path in paths.items():
            started = time.perf_counter()
            tally = tallies[name] = fuzz_oracle.Tally()
            for case in singles if name == "dict" else cases:
                fuzz_oracle.judge(scenario, case, path, tally)
            seconds[name] = time.perf_counter() - started
        server.close()

    print(f"{'path':>10} {'sent':>7} {'accepted':>9} {'refused':>8} {'skipped':>8} {'seconds':>8}")
    for name, tally in tallies.items():
        print(
            f"{name:>10} {tally.requests:>7} {tally.accepted:>9} {tally.refused:>8} "
            f"{tally.skipped:>8} {seconds[name]:>8.1f}"
        )
        for label, counts in (
            ("silently not honoured", tally.silently_not_honoured),
            ("foreign exceptions", tally.foreign_exceptions),
            ("foreign, by request kind", tally.foreign_kinds),
            ("valid but refused", tally.refused_valid),
        ):
            if counts:
                print(f"{'':>10} {label}: {dict(counts)}")
        for example in tally.examples[:3]:
            print(f"{'':>10}   e.g. {example[:200]}")
    result = {
        "benchmark": "serving_fuzz",
        "requests_per_path": args.requests,
        "sent": {name: t.requests for name, t in tallies.items()},
        "accepted": {name: t.accepted for name, t in tallies.items()},
        "refused": {name: t.refused for name, t in tallies.items()},
        "silently_not_honoured": {
            name: sum(t.silently_not_honoured.values()) for name, t in tallies.items()
        },
        "silently_not_honoured_by_kind": {
            name: dict(t.silently_not_honoured) for name, t in tallies.items()
        },
        "foreign_exceptions": {
            name: sum(t.foreign_exceptions.values()) for name, t in tallies.items()
        },
        "foreign_exceptions_by_type": {
            name: dict(t.foreign_exceptions) for name, t in tallies.items()
        },
        "refused_valid": {name: sum(t.refused_valid.values()) for name, t in tallies.items()},
        "seconds": {name: round(s, 1) for name, s in seconds.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
