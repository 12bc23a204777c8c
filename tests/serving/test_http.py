"""``nba serve``: every route over real HTTP on loopback, its refusals, its decision log under
``kill -9``, its reload when the registry alias moves, and its OpenAPI contract (schemathesis).

Servers run as subprocesses (``python -m nba.cli serve``) on a free loopback port; decisions are
compared with an in-process :class:`PolicyScorer` on the same export.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from nba.serving.decision_log import DecisionLog
from nba.serving.http import _decision_json, _frame_records
from nba.serving.scorer import PolicyScorer
from tests.servers import Background, free_port, start_server
from tests.serving.conftest import customer, population

AS_OF = "2026-11-25T10:00:00Z"  # a Wednesday
TOKEN = "s3cret-token"


@dataclass
class Server(Background):
    """``nba serve`` (tests/servers.py starts and stops it), with the test token."""

    log: Path | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **extra}

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            self.url + path, data=data, headers=self.headers(**headers), timeout=30
        )


def start(folder: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """``nba serve`` with ``args`` and the test token; returns once /healthz answers.

    One worker unless ``args`` say otherwise: it starts faster and answers the same.
    """
    port = free_port()
    if "--workers" not in args:
        args = (*args, "--workers", "1")
    command = [sys.executable, "-m", "nba.cli", "serve", "--port", str(port), "--token", TOKEN,
               *args]  # fmt: skip
    started = start_server(
        command, port=port, health="/healthz", what="nba serve",
        output=folder / f"server-{port}.out", cwd=folder, env=env,
    )  # fmt: skip
    return Server(started.process, started.url, started.output)


@pytest.fixture(scope="module")
def served(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with a token, a log and small limits, shared by the route tests."""
    folder = tmp_path_factory.mktemp("served")
    log = folder / "decisions.db"
    server = start(
        folder, "-m", str(export_dir), "--log", str(log),
        "--max-body-bytes", "4096", "--max-batch-rows", "50", "--reload-every", "0",
    )  # fmt: skip
    server.log = log
    yield server
    output = server.stop()
    assert "Traceback" not in output  # nothing the route tests send is a server error


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir)


def _roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


# ----------------------------------------------------------------------------------- routes
@pytest.mark.integration
def test_healthz_is_open_and_every_other_route_needs_the_token(served: Server) -> None:
    assert requests.get(served.url + "/healthz", timeout=5).json() == {"status": "ok"}
    for path in ("/version", "/openapi.json"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = requests.get(served.url + path, headers=headers, timeout=5)
            assert answer.status_code == 401, (path, headers)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.json() == {"error": "authorization: missing or wrong bearer token"}
    answer = requests.post(
        served.url + "/decide", data=json.dumps(customer()), timeout=5,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 401
    version = requests.get(served.url + "/version", headers=served.headers(), timeout=5).json()
    assert version["model_version"] == "local" and version["scenario"] == "retail"
    assert {"name", "version", "run_id", "model", "loaded_at"} <= version.keys()


@pytest.mark.integration
def test_decide_answers_as_policy_scorer_for_every_request_form(
    served: Server, scorer: PolicyScorer
) -> None:
    rows = population(12, seed=3, consent=True).to_dict(orient="records")
    forms = []
    for i, row in enumerate(rows):
        plain = {k: v for k, v in row.items() if not k.startswith("consent_")}
        stamped = {k: v for k, v in plain.items() if not k.startswith("days_since_")}
        stamped |= {
            "last_contact_email": "2026-11-24T08:00:00Z",
            "last_contact_sms": None,
            "last_contact_direct_mail": "2026-11-20T08:00:00+01:00",
            "last_contact_call_centre": None,
        }
        forms += [plain, row, stamped, {**plain, "as_of": AS_OF}]
        forms[-4:] = [{**f, "customer_id": f"{f['customer_id']}-{k}"} for k, f in
                      enumerate(forms[-4:])]  # fmt: skip
        if i % 3 == 0:
            forms.append({**plain, "customer_id": 1000 + i, "day": 5})  # integer ids, other day
    for request in forms:
        request = _roundtrip({"as_of": AS_OF, **request})
        answer = served.post(
            "/decide", request, **{"X-Request-ID": f"form-{request['customer_id']}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Request-ID"] == f"form-{request['customer_id']}"
        assert answer.json() == _roundtrip(_decision_json(scorer.score(request)))


@pytest.mark.integration
def test_batch_answers_as_score_batch_with_capacity_and_as_of(
    served: Server, scorer: PolicyScorer
) -> None:
    rows = _roundtrip(population(40, seed=5, consent=True).to_dict(orient="records"))
    for options in (
        {},
        {"capacity": {"call_centre": 2, "sms": 3}},
        {"capacity": {"call_centre": None}},
        {"top_k": 5},
    ):
        answer = served.post("/decide/batch", {"customers": rows, "as_of": AS_OF, **options})
        assert answer.status_code == 200, answer.text
        expected = scorer.score_batch(
            pd.DataFrame(rows), as_of=pd.Timestamp(AS_OF).to_pydatetime(), **options
        )
        body = answer.json()
        assert body["model_version"] == "local"
        assert body["decisions"] == _roundtrip(_frame_records(expected))


@pytest.mark.integration
def test_a_contact_at_the_decision_time_to_the_nanosecond_is_not_in_the_future(
    served: Server, scorer: PolicyScorer
) -> None:
    """The batch's as_of is read to the nanosecond like the rows' timestamps (found by
    schemathesis: ``...01.5001993Z`` as both was refused as a contact in the future)."""
    moment = "2000-02-29T23:54:01.5001993Z"
    row = customer()
    for column in scorer.schema.days_columns:
        row.pop(column, None)
    row.update({column: moment for column in scorer.schema.last_contact_columns})
    answer = served.post("/decide/batch", {"customers": [row], "as_of": moment})
    assert answer.status_code == 200, answer.text
    expected = scorer.score_batch(pd.DataFrame([row]), as_of=pd.Timestamp(moment))
    assert answer.json()["decisions"] == _roundtrip(_frame_records(expected))
    later = served.post("/decide/batch", {"customers": [row], "as_of": "2000-02-29T23:54:01.5Z"})
    assert later.status_code == 422 and "in the future" in later.text  # 199.3 us before it


# --------------------------------------------------------------------------------- refusals
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "says"),
    [
        ("/decide", b'{"customer_id": NaN}', "application/json", 400, "NaN is not JSON"),
        ("/decide", b'{"pressure": -Infinity}', "application/json", 400, "-Infinity is not"),
        ("/decide", b'{"pressure": 1e999}', "application/json", 400, "out of range"),
        ("/decide", b'{"a": 1, "a": 2}', "application/json", 400, "duplicate key 'a'"),
        ("/decide", b"[1, 2]", "application/json", 400, "expected a JSON object, got an array"),
        ("/decide", b'"c-1"', "application/json", 400, "got a string"),
        ("/decide", b"{", "application/json", 400, "invalid JSON"),
        ("/decide", b'{"a": 1} {"b": 2}', "application/json", 400, "Extra data"),
        ("/decide", b'{"customer_id": "\xff"}', "application/json", 400, "not UTF-8"),
        ("/decide", b'{"customer_id": "\\ud800"}', "application/json", 400, "surrogate"),
        ("/decide", b"{}", "text/plain", 415, "expected application/json"),
        ("/decide", b"{}", "application/json; charset=latin-1", 415, "application/json"),
        ("/decide", b"{}", "", 415, "Content-Type"),
        ("/decide", b'{"x": "' + b"a" * 5000 + b'"}', "application/json", 413, "4,096"),
        ("/decide", b"{}", "application/json", 422, "missing field(s)"),
        ("/decide", json.dumps(customer(consent_fax=True)).encode(), "application/json", 422,
         "consent_fax"),
        ("/decide", json.dumps(customer(pressure=99)).encode(), "application/json", 422,
         "pressure"),
        ("/decide/batch", DEEP, "application/json", 400, "invalid JSON"),
        ("/decide/batch", b"[]", "application/json", 400, "expected a JSON object"),
        ("/decide/batch", b'{"customers": []}', "application/json", 422, "no customers"),
        ("/decide/batch", b'{"rows": []}', "application/json", 422, "unknown field 'rows'"),
        ("/decide/batch", json.dumps({"customers": [customer()] * 51}).encode(),
         "application/json", 413, "limit of 50"),
        ("/decide/batch", json.dumps({"customers": [customer(), {"customer_id": "b"}]}).encode(),
         "application/json", 422, "customers[1]: every customer needs the same fields"),
        ("/decide/batch", json.dumps({"customers": [customer()], "capacity": {"sms": -1}}).encode(),
         "application/json", 422, "capacity.sms"),
        ("/decide/batch", json.dumps({"customers": [customer()], "as_of": "soon"}).encode(),
         "application/json", 422, "as_of: cannot parse"),
        ("/nowhere", b"{}", "application/json", 404, "not found"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_of_json(
    served: Server, path: str, body: bytes, content_type: str, status: int, says: str
) -> None:
    headers = served.headers()
    headers["Content-Type"] = content_type
    answer = requests.post(served.url + path, data=body, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    payload = answer.json()
    assert list(payload) == ["error"] and says in payload["error"], payload
    assert "\n" not in payload["error"] and "Traceback" not in payload["error"]


@pytest.mark.integration
def test_size_limits_hold_without_a_content_length_and_request_ids_are_checked(
    served: Server,
) -> None:
    chunks = (b'{"x": "' + b"a" * 1000 + b'"' if i == 0 else b"a" * 1000 for i in range(10))
    answer = requests.post(
        served.url + "/decide", data=chunks, headers=served.headers(), timeout=30
    )
    assert answer.status_code == 413 and "limit of 4,096" in answer.json()["error"]
    answer = requests.get(served.url + "/decide", headers=served.headers(), timeout=5)
    assert answer.status_code == 405 and answer.json() == {"error": "method not allowed"}
    answer = served.post("/decide", customer(), **{"X-Request-ID": "has spaces"})
    assert answer.status_code == 400 and "X-Request-ID" in answer.json()["error"]
    generated = served.post("/decide", customer()).headers["X-Request-ID"]
    assert (
        len(generated) == 32
        and generated != served.post("/decide", customer()).headers["X-Request-ID"]
    )


# ------------------------------------------------------------------------------- the log
def _logged(log: Path) -> pd.DataFrame:
    with DecisionLog(log) as opened:
        return opened.read()


@pytest.mark.integration
def test_the_log_keeps_each_decision_once_as_score_batch_logs_it(
    served: Server, scorer: PolicyScorer, tmp_path: Path
) -> None:
    assert served.log is not None
    rows = _roundtrip(population(6, seed=11, consent=True).to_dict(orient="records"))
    rows = [{**row, "customer_id": f"logged-{i}", "as_of": AS_OF} for i, row in enumerate(rows)]
    for row in rows:
        answer = served.post("/decide", row, **{"X-Request-ID": f"once-{row['customer_id']}"})
        assert answer.status_code == 200
    retry = served.post("/decide", rows[0], **{"X-Request-ID": f"once-{rows[0]['customer_id']}"})
    assert retry.status_code == 200 and retry.json()["customer_id"] == "logged-0"
    reused = served.post("/decide", rows[1], **{"X-Request-ID": f"once-{rows[0]['customer_id']}"})
    assert reused.status_code == 409 and "already logged" in reused.json()["error"]
    batch = {"customers": [{**row, "customer_id": f"b-{row['customer_id']}"} for row in rows]}
    assert served.post("/decide/batch", batch, **{"X-Request-ID": "the-batch"}).status_code == 200
    assert served.post("/decide/batch", batch, **{"X-Request-ID": "the-batch"}).status_code == 200

    logged = _logged(served.log)
    mine = logged[logged["customer_id"].str.contains("logged-")]
    assert sorted(mine["customer_id"]) == sorted(
        [r["customer_id"] for r in rows] + [f"b-{r['customer_id']}" for r in rows]
    )  # the retries added nothing
    with DecisionLog(tmp_path / "reference.db") as reference:
        scorer.score_batch(pd.DataFrame(rows), log=reference)
        expected = reference.read().set_index("customer_id")
    for _, row in mine.iterrows():
        want = expected.loc[row["customer_id"].removeprefix("b-")]
        assert row["action_name"] == want["action_name"]
        assert row["decided_at"] == want["decided_at"]
        np.testing.assert_array_equal(row["features"], want["features"])
        np.testing.assert_allclose(row["probabilities"], want["probabilities"], rtol=1e-6)
        assert row["propensity"] == want["propensity"] == 1.0


def test_group_commit_writes_concurrent_requests_together_and_each_once(tmp_path: Path) -> None:
    """In process: 64 requests awaiting at once share a few transactions, a retry in the same
    group is logged once, and a reused id fails its own request only (409)."""
    import asyncio

    from nba.serving.decision_log import LoggedBatch
    from nba.serving.http import GroupCommitLog, ServiceError

    def one(i: int, batch_id: str) -> LoggedBatch:
        return LoggedBatch(
            customer_id=[f"c{i}"],
            decided_at=pd.Timestamp(AS_OF),
            model_version="v1",
            actions=[1],
            action_names=["email"],
            propensities=[1.0],
            explored=[False],
            features=np.full((1, 4), i, dtype=np.float32),
            probabilities=np.array([[0.0, 1.0, 0.0]]),
            batch_id=batch_id,
        )

    async def requests_() -> tuple[list[Any], list[Any]]:
        log = GroupCommitLog(str(tmp_path / "d.db"))
        try:
            first = await asyncio.gather(
                *(log.commit(one(i, f"r{i}")) for i in range(64)),
                log.commit(one(0, "r0")),  # a retry racing its original
                return_exceptions=True,
            )
            second = await asyncio.gather(
                log.commit(one(999, "r1")),  # r1's id with other decisions
                log.commit(one(64, "r64")),
                return_exceptions=True,
            )
        finally:
            await asyncio.to_thread(log.close)
        return first, second

    first, second = asyncio.run(requests_())
    assert first == [None] * 65
    assert isinstance(second[0], ServiceError) and second[0].status == 409
    assert second[1] is None
    with sqlite3.connect(tmp_path / "d.db") as connection:
        rows = connection.execute("SELECT customer_id FROM decisions ORDER BY id").fetchall()
        commits = connection.execute("SELECT COUNT(DISTINCT logged_at) FROM batches").fetchone()
    assert sorted(row[0] for row in rows) == sorted(f"c{i}" for i in range(65))
    assert commits[0] <= 8  # one transaction per group, not per request

    def broken(*args: object) -> None:
        raise OSError("no locks here")

    async def locked_out() -> list[Any]:
        log = GroupCommitLog(str(tmp_path / "d.db"), shared=True)
        try:
            return await asyncio.wait_for(
                asyncio.gather(log.commit(one(70, "r70")), return_exceptions=True), 10
            )
        finally:
            await asyncio.to_thread(log.close)

    with pytest.MonkeyPatch.context() as patch:  # workers' lock failing: refused, never hung
        patch.setattr("nba.serving.http.fcntl.flock", broken)
        (refused,) = asyncio.run(locked_out())
    assert isinstance(refused, ServiceError) and refused.status == 503


# ------------------------------------------------------------------------------- OpenAPI
@pytest.mark.integration
def test_openapi_request_bodies_are_the_validator_schema(
    served: Server, scorer: PolicyScorer
) -> None:
    document = requests.get(
        served.url + "/openapi.json", headers=served.headers(), timeout=5
    ).json()
    schemas = document["components"]["schemas"]
    assert schemas["Customer"] == {k: v for k, v in scorer.input_schema().items() if k != "$schema"}
    decide = document["paths"]["/decide"]["post"]
    assert decide["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Customer"
    }
    assert schemas["Batch"]["properties"]["customers"]["items"] == {
        "$ref": "#/components/schemas/Customer"
    }
    assert schemas["Batch"]["properties"]["customers"]["maxItems"] == 50
    assert decide["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


# What JSON Schema cannot state, and the service refuses with 422 in the validator's words: a
# contact after the decision time (two fields compared), and an integer id written as a float
# (JSON Schema reads 7.0 as the integer 7; the validator refuses float ids). The batch schema
# says in words that customers share one set of fields and each id comes once: generated
# batches are cut to that (_one_shape) before they are sent.
LATER_CONTACT = re.compile(r"^row \S+, last_contact_\w+: .* is in the future")
FLOAT_ID = re.compile(r"^row \S+, customer_id: expected a string or an integer")


def _one_shape(case: Any) -> Any:
    """A batch as its schema's description asks: customers[0]'s fields throughout, ids once."""
    customers = case.body.get("customers") if isinstance(case.body, dict) else None
    if customers:
        first, seen, kept = customers[0].keys(), set(), []
        for row in customers:
            if row.keys() == first and str(row.get("customer_id")) not in seen:
                seen.add(str(row.get("customer_id")))
                kept.append(row)
        case.body["customers"] = kept
    return case


def _refusal(body: Any, batch: bool, now: pd.Timestamp) -> re.Pattern[str] | None:
    """The refusal a schema-valid body earns for what JSON Schema cannot state, or None.

    ``now`` stands for the server's clock; a contact within a day of it is not judged.
    """
    from hypothesis import assume

    rows = body["customers"] if batch else [body]
    if any(isinstance(row.get("customer_id"), float) for row in rows):
        return FLOAT_ID  # the validator reads ids before timestamps
    envelope = body.get("as_of") if batch else None
    later = False
    for row in rows:
        decision = row.get("as_of", envelope)
        when = now if decision is None else pd.Timestamp(decision)
        for name, value in row.items():
            if name.startswith("last_contact_") and value is not None:
                stamp = pd.Timestamp(value)
                apart = abs(stamp.to_pydatetime(warn=False) - now.to_pydatetime())  # > 292 years
                assume(decision is not None or apart > timedelta(days=1))
                later = later or stamp > when
    return LATER_CONTACT if later else None


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_contract(served: Server, mode: str) -> None:
    """Requests generated from the document (schemathesis): every answer is one the document
    describes and none is a 5xx; every valid request is decided (200), but for what JSON
    Schema cannot state, refused with 422 naming it (or 413 past the size limit); every invalid
    one is refused with a 4xx and our one-line error."""
    import schemathesis
    from schemathesis import checks
    from schemathesis.config import SchemathesisConfig

    document = requests.get(served.url + "/openapi.json", headers=served.headers(), timeout=5)
    config = SchemathesisConfig.from_dict(
        {
            "checks": {
                "negative_data_rejection": {"expected-statuses": [400, 401, 409, 413, 415, 422]},
                "positive_data_acceptance": {"expected-statuses": [200]},
            }
        }
    )
    schema = schemathesis.openapi.from_dict(document.json(), config=config)
    chosen = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/decide", "/decide/batch", "/healthz", "/version"}
    for operation in operations:
        if mode == "negative" and operation.method.upper() == "GET":
            continue  # nothing to get wrong in a request without parameters
        _exercise(served, operation, mode, chosen)


def _exercise(served: Server, operation: Any, mode: str, chosen: list[Any]) -> None:
    """One operation of the contract test: its generated requests and what each must earn."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks

    posts = operation.method.upper() == "POST"
    batch = operation.path == "/decide/batch"
    body_limit = 16 << 20 if batch else 4096  # the served fixture's limits
    strategy = operation.as_strategy(schemathesis.GenerationMode(mode))
    if mode == "positive" and batch:
        strategy = strategy.map(_one_shape)

    @given(case=strategy)
    @settings(max_examples=100 if posts else 5, deadline=None, database=None,  # ~25 s in all
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def call(case: Any) -> None:
        expected = None
        if mode == "positive" and posts:
            expected = _refusal(case.body, batch, pd.Timestamp.now(tz="UTC"))
        response = case.call(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"})
        if mode == "negative":
            case.validate_response(response, checks=[*chosen, checks.negative_data_rejection])
            assert set(response.json()) == {"error"} or response.status_code == 200
            return
        case.validate_response(response, checks=chosen)
        if posts and len(response.request.body or b"") > body_limit:
            assert response.status_code == 413, response.text
        elif expected is None:
            case.validate_response(response, checks=[checks.positive_data_acceptance])
        else:
            assert response.status_code == 422, response.text
            assert expected.search(response.json()["error"]), response.text

    call()


def _asgi(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST straight through the ASGI app (no server): the status and the body sent."""
    import asyncio

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    with contextlib.suppress(RuntimeError):  # Starlette re-raises after answering, for the log
        asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_bug_answers_internal_error_and_logs_the_trace_server_side(
    export_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from nba.serving.http import ServeSettings, create_app

    scorer = PolicyScorer.load(export_dir)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail at /srv/x.py")

    scorer.score = broken  # type: ignore[method-assign]
    app = create_app(ServeSettings(model=str(export_dir), reload_every=0), scorer)
    with caplog.at_level("ERROR", logger="nba.serve"):
        status, body = _asgi(app, "/decide", json.dumps(customer()).encode())
    assert (status, json.loads(body)) == (500, {"error": "internal error"})
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


# --------------------------------------------------------------------------- kill -9, workers
@pytest.mark.integration
def test_kill_9_under_load_keeps_every_acknowledged_decision_exactly_once(
    export_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.db"
    server = start(tmp_path, "-m", str(export_dir), "--log", str(log), "--workers", "2")
    acknowledged: list[str] = []
    stop = threading.Event()

    def client(number: int) -> None:
        session = requests.Session()
        for i in range(100_000):
            if stop.is_set():
                return
            key = f"k{number}-{i}"
            batch = i % 7 == 0
            body: Any = (
                {"customers": [customer(customer_id=f"{key}-{j}") for j in range(5)]}
                if batch
                else customer(customer_id=key)
            )
            try:
                answer = session.post(
                    server.url + ("/decide/batch" if batch else "/decide"),
                    data=json.dumps(body), headers=server.headers(**{"X-Request-ID": key}),
                    timeout=10,
                )  # fmt: skip
            except requests.RequestException:
                return  # the server is gone
            if answer.status_code == 200:
                acknowledged.extend(
                    [f"{key}-{j}" for j in range(5)] if batch else [key]
                )  # fmt: skip

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(server.process.pid, signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    server.process.wait(timeout=30)
    assert len(acknowledged) >= 300

    with sqlite3.connect(f"{log.resolve().as_uri()}?mode=ro", uri=True) as connection:
        counts = dict(
            connection.execute("SELECT customer_id, COUNT(*) FROM decisions GROUP BY customer_id")
        )
        partial = connection.execute(
            "SELECT COUNT(*) FROM batches b WHERE b.row_count != "
            "(SELECT COUNT(*) FROM decisions d WHERE d.batch = b.id)"
        ).fetchone()[0]
    assert [key for key in acknowledged if counts.get(key) != 1] == []
    assert max(counts.values()) == 1  # nothing logged twice, acknowledged or not
    assert partial == 0


# ------------------------------------------------------------------------------- reloads
@pytest.mark.integration
def test_moving_the_alias_swaps_the_model_without_a_failed_request(
    export_dir: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("m", artifact_location=(tmp_path / "a").as_uri())
    client.create_registered_model("nba-http")
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(export_dir), "policy")
        client.create_model_version("nba-http", f"{run.info.artifact_uri}/policy", run.info.run_id)
    client.set_registered_model_alias("nba-http", "champion", "1")
    server = start(
        tmp_path, "-m", "models:/nba-http@champion", "--tracking-uri", uri,
        "--reload-every", "0.5", "--log", str(tmp_path / "decisions.db"), "--workers", "2",
    )  # fmt: skip
    versions: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def client_loop(number: int) -> None:
        session = requests.Session()
        i = 0
        while not done.is_set():
            i += 1
            answer = session.post(
                server.url + "/decide", data=json.dumps(customer(customer_id=f"r{number}-{i}")),
                headers=server.headers(), timeout=30,
            )  # fmt: skip
            if answer.status_code != 200:
                failures.append(answer.text)
                continue
            versions.append(answer.json()["model_version"])

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        client.set_registered_model_alias("nba-http", "champion", "2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until both workers answer from version 2
            if len(versions) > 40 and set(versions[-40:]) == {"nba-http/2"}:
                break
            time.sleep(0.1)
        done.set()
        for thread in threads:
            thread.join(timeout=30)
        version = requests.get(server.url + "/version", headers=server.headers(), timeout=5)
    finally:
        output = server.stop()
    assert failures == []
    assert versions[0] == "nba-http/1" and set(versions[-40:]) == {"nba-http/2"}, output
    assert version.json()["version"] == "2" and version.json()["name"] == "nba-http"
    logged = _logged(tmp_path / "decisions.db")
    assert set(logged["model_number"]) == {"1", "2"} and len(logged) == len(versions)


# ---------------------------------------------------------------------------------- the CLI
def test_serve_refuses_a_taken_port_and_an_empty_token_in_one_line(
    export_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "nba.cli", "serve", "-m", str(export_dir), "--port", str(port)],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --port: {port} is already in use on 127.0.0.1"
    result = subprocess.run(
        [sys.executable, "-m", "nba.cli", "serve", "-m", str(export_dir), "--port",
         str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "NBA_SERVE_TOKEN": "  "},
    )  # fmt: skip
    assert result.returncode == 2 and "--token: empty" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "nba.cli", "serve", "-m", str(tmp_path / "missing"), "--port",
         str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--model: no export directory" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "nba.cli", "serve", "-m", str(export_dir), "--port",
         str(free_port()), "--trusted-scenario", "no_such_scenario"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--trusted-scenario:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


# ------------------------------------------------------------------ the fuzz oracle over HTTP
def http_path(server: Server) -> Any:
    """The fuzz oracle's path through this server (see :func:`fuzz_oracle.http_path`)."""
    from tests.serving.fuzz_oracle import http_path as oracle_http_path

    return oracle_http_path(server.url, server.headers())


def _outcome(path: Any, case: Any) -> tuple[Any, ...] | None:
    from nba.serving.schema import ScoringInputError
    from tests.serving.fuzz_oracle import _Skip

    try:
        return ("decided", *path(case))
    except _Skip:
        return None
    except ScoringInputError:
        return ("refused",)
    except Exception as exc:
        return ("foreign", type(exc).__name__)


@pytest.mark.integration
def test_fuzzed_requests_over_http_are_honoured_or_refused_as_in_process(
    served: Server, scorer: PolicyScorer
) -> None:
    """The fuzz oracle's requests through HTTP: each honoured or refused with our error, never
    a 500, and each answered exactly as the in-process DataFrame path answers it."""
    from nba.scenarios import load_scenario
    from tests.serving import fuzz_oracle

    scenario = load_scenario("retail")
    cases = list(fuzz_oracle.RequestFuzzer(scenario, seed=13).cases(400))
    over_http, in_process = http_path(served), fuzz_oracle.frame_path(scorer)
    seen: dict[int, tuple[Any, ...] | None] = {}

    def recorded(case: Any) -> list[str | None]:
        outcome = seen[id(case)] = _outcome(over_http, case)
        return over_http(case) if outcome and outcome[0] == "foreign" else _replay(outcome)

    tally = fuzz_oracle.Tally()
    for case in cases:
        fuzz_oracle.judge(scenario, case, recorded, tally)
    assert tally.requests > 300 and tally.accepted > 100 and tally.refused > 100
    assert not tally.foreign_exceptions, tally.examples
    assert not tally.silently_not_honoured, tally.examples
    assert not tally.refused_valid, tally.examples
    differ = [
        (case.kind, seen[id(case)], _outcome(in_process, case))
        for case in cases
        if seen.get(id(case)) is not None and seen[id(case)] != _outcome(in_process, case)
    ]
    assert differ == []


def _replay(outcome: tuple[Any, ...] | None) -> list[str | None]:
    """What the path returned or raised, again, for the oracle's judge."""
    from nba.serving.schema import ScoringInputError
    from tests.serving.fuzz_oracle import _Skip

    if outcome is None:
        raise _Skip
    if outcome[0] == "refused":
        raise ScoringInputError("refused")
    return list(outcome[1:])
