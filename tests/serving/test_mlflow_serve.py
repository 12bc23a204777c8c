"""The pyfunc model decides as :class:`PolicyScorer` does: through ``mlflow.pyfunc.load_model``
and under ``mlflow models serve`` on loopback, consent, offsets and timestamps included."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from nba.scenarios import load_scenario
from nba.serving import pyfunc
from nba.serving.pyfunc import ARTIFACT_KEY, ServedInputError, logged_model_fields
from nba.serving.scorer import PolicyScorer, ScoringInputError
from nba.training import train
from nba.training.tracking import resolve_tracking_uri
from tests.servers import wait_until_answers
from tests.serving import fuzz_oracle
from tests.serving.conftest import customer, population
from tests.training.conftest import TINY_RUN, tiny_config_for

SCENARIO = load_scenario("retail")
SUNDAY_IN_NEW_YORK = "2026-11-29T19:00:00-05:00"  # Monday 00:00 in UTC
COMPARED = [  # every column the two paths report but the version label (set per model)
    "customer_id",
    "action",
    "action_name",
    "channel",
    "offer",
    "propensity",
    "explored",
    "value_estimate",
    "suppressed_action",
    "suppressed_reason",
    *[f"rank_{k}_{what}" for k in (1, 2, 3) for what in ("action", "probability")],
]


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir)


@pytest.fixture(scope="module")
def model(export_dir: Path, scorer: PolicyScorer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The export saved as the trainer logs it (from code, with the request signature)."""
    folder = tmp_path_factory.mktemp("pyfunc") / "model"
    mlflow.pyfunc.save_model(
        str(folder),
        python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),
        artifacts={ARTIFACT_KEY: str(export_dir)},
        **logged_model_fields(scorer),
    )
    return mlflow.pyfunc.load_model(str(folder))


def told(n: int, seed: int) -> pd.DataFrame:
    """Customers whose requests say something: consent all off for some, a Sunday evening in
    New York, last contacts as timestamps in several offsets (some never)."""
    rows = population(n, seed=seed, consent=True).drop(
        columns=["days_since_direct", "days_since_messaging"]
    )
    rng = np.random.default_rng(seed)
    rows.loc[: n // 3, [f"consent_{c}" for c in SCENARIO.channel_names]] = False
    rows["as_of"] = SUNDAY_IN_NEW_YORK
    for channel, offset in (("email", "+01:00"), ("sms", "Z"), ("direct_mail", "-08:00")):
        hours = rng.integers(1, 24 * 10, n)
        stamps = pd.Timestamp("2026-11-30T00:00:00Z") - pd.to_timedelta(hours, unit="h")
        texts = stamps.tz_convert(f"UTC{offset}" if offset != "Z" else "UTC").strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
        rows[f"last_contact_{channel}"] = [
            None if h % 4 == 0 else f"{t}{offset}" for h, t in zip(hours, texts, strict=True)
        ]
    rows["last_contact_call_centre"] = None
    return rows


def same_decisions(served: list[dict[str, Any]] | pd.DataFrame, expected: pd.DataFrame) -> None:
    """Field by field equal (floats to float32 precision; JSON nulls and NaN alike)."""
    if isinstance(served, pd.DataFrame):
        served = served.astype(object).to_dict(orient="records")
    wanted = expected.astype(object).to_dict(orient="records")
    assert len(served) == len(wanted)
    for got, want in zip(served, wanted, strict=True):
        for column in COMPARED:
            a, b = got[column], want[column]
            if _missing(a) or _missing(b):
                assert _missing(a) and _missing(b), (column, a, b)
            elif isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-6, abs=1e-9), (column, a, b)
            else:
                assert a == b, (column, a, b)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------ mlflow.pyfunc
def test_mlflow_enforces_no_input_schema_and_the_metadata_carries_ours(
    model: Any, scorer: PolicyScorer
) -> None:
    """MLflow would drop undeclared columns before ``predict``: it must have nothing to drop."""
    assert model.metadata.get_input_schema() is None
    assert model.metadata.get_output_schema() is not None
    documented = model.metadata.metadata["request_json_schema"]
    assert documented == scorer.input_schema()
    assert {"consent_email", "as_of", "last_contact_sms", "days_since_direct", "day"} <= set(
        documented["properties"]
    )


def test_pyfunc_decides_as_the_scorer_on_consent_offsets_and_timestamps(
    model: Any, scorer: PolicyScorer
) -> None:
    requests = told(120, seed=1)
    expected = scorer.score_batch(requests)
    same_decisions(model.predict(requests), expected)
    off = expected.iloc[: 120 // 3 + 1]
    assert (off["action"] == 0).all()  # consent all off: nobody contacted, on every path
    assert not (expected["channel"] == "sms").any()  # Sunday where the customer is
    assert expected["suppressed_reason"].astype(str).str.startswith("quiet_day").any()


def test_pyfunc_hands_values_over_as_given(model: Any, scorer: PolicyScorer) -> None:
    """No MLflow cast changes a meaning: booleans stay booleans, ids stay integers, a zone
    stays on its column, a missing consent is refused rather than read as true."""
    requests = told(8, seed=2).assign(
        customer_id=np.arange(8),
        persona=lambda f: pd.Categorical(f["persona"]),
        opted_out=lambda f: f["opted_out"].astype(int),  # 0/1 integers read as booleans
        as_of=pd.Timestamp("2026-11-29T19:00", tz="America/New_York"),
    )
    served = model.predict(requests)
    assert served["customer_id"].tolist() == list(range(8))
    same_decisions(served, scorer.score_batch(requests))
    gap = requests.astype({"consent_sms": object})
    gap.loc[3, "consent_sms"] = None
    with pytest.raises(ScoringInputError, match=r"row 3, consent_sms: expected true or false"):
        model.predict(gap)


def test_pyfunc_refuses_with_our_error_and_words(model: Any, scorer: PolicyScorer) -> None:
    requests = told(3, seed=3)
    requests.loc[1, "last_contact_email"] = "2026-12-01T00:00:00Z"  # after the decision time
    with pytest.raises(ScoringInputError) as ours:
        scorer.score_batch(requests)
    with pytest.raises(ServedInputError) as served:
        model.predict(requests)
    assert str(served.value) == str(ours.value)
    assert isinstance(served.value, MlflowException)  # the scoring server answers 400


def test_the_fuzz_oracle_on_the_pyfunc_path(model: Any) -> None:
    """400 fuzzed requests: valid ones honoured, bad ones (misspelt fields, odd or repeated
    labels included) refused with our error, as in process."""
    chosen = {"pyfunc": fuzz_oracle.pyfunc_path(model)}
    tally = fuzz_oracle.run(SCENARIO, chosen, 400, seed=21)["pyfunc"]
    assert tally.accepted > 100 and tally.refused > 100
    assert not tally.refused_valid, tally.examples
    assert not tally.silently_not_honoured, tally.examples
    assert not tally.foreign_exceptions, tally.examples


# ------------------------------------------------------------------ mlflow models serve
@pytest.mark.integration
def test_models_serve_decides_as_the_scorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    uri = "models:/nba-retail@candidate"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            uri,
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
    requests = told(24, seed=4)
    plain = customer(customer_id="c-42", persona="cautious_researcher", stage="lapsed", day=0)
    bad = requests.head(2).assign(pressure=[1, 99])
    try:
        wait_until_answers(server, f"http://127.0.0.1:{port}/ping", 120, "mlflow models serve")
        (decision,) = invoke(port, [plain])[1]["predictions"]
        served = invoke(port, json.loads(requests.to_json(orient="records")))[1]
        status, refusal = invoke(port, json.loads(bad.to_json(orient="records")))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert decision["customer_id"] == "c-42"
    assert decision["action_name"] in SCENARIO.action_names
    assert decision["propensity"] == 1.0
    scorer = PolicyScorer.load(uri)
    expected = scorer.score_batch(requests)
    assert (expected["action"].head(24 // 3 + 1) == 0).all()  # consent all off
    same_decisions(served["predictions"], expected)
    assert status == 400
    assert "row 1, pressure: 99 is out of range" in refusal["message"]


def invoke(port: int, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """POST ``dataframe_records`` to ``/invocations``: the status and the JSON answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
