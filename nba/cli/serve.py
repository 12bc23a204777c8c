"""``nba serve`` (decisions over HTTP) and ``nba ui`` (the MLflow UI): the long-running
commands, each stopping its whole process group on Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.inputs import trusted_scenario as load_trusted
from nba.cli.options import (
    EpsilonOption,
    HostOption,
    ModelOption,
    PortOption,
    TrackingUriOption,
    TrustedScenarioOption,
    seed_option,
)
from nba.cli.output import console
from nba.errors import NBAValidationError

REGISTRY_URIS = ("models:/", "runs:/")

WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", min=1, max=64, help="Server processes sharing the port (2: measured best)."
    ),
]
ServeLogOption = Annotated[
    Path | None,
    typer.Option("--log", help="Record every decision here; answers wait for the commit."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="NBA_SERVE_TOKEN",
        show_envvar=True,
        help="Require 'Authorization: Bearer TOKEN' on every route but /healthz "
        "(prefer the environment variable: options show in ps).",
    ),
]
ReloadOption = Annotated[
    float,
    typer.Option(
        "--reload-every", min=0.0, help="Seconds between checks that the alias moved; 0: never."
    ),
]
MaxBodyOption = Annotated[
    int, typer.Option("--max-body-bytes", min=1, help="Largest /decide body.")
]
MaxBatchBytesOption = Annotated[
    int, typer.Option("--max-batch-bytes", min=1, help="Largest /decide/batch body.")
]
MaxBatchRowsOption = Annotated[
    int, typer.Option("--max-batch-rows", min=1, help="Most customers per /decide/batch.")
]


def register(app: typer.Typer) -> None:
    """Add ``ui`` and ``serve`` to the ``nba`` app."""
    app.command()(ui)
    app.command()(serve)


def ui(
    port: PortOption = 5000,
    host: HostOption = "127.0.0.1",
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Start the MLflow UI on the local store (127.0.0.1 unless told otherwise).

    The server runs in its own process group; Ctrl-C, SIGTERM or SIGHUP to this command stops
    the whole group, so no server worker outlives it.
    """
    import os
    import subprocess

    from nba.tracking import DEFAULT_ARTIFACTS, resolve_tracking_uri

    _check_port_free(host, port)
    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl+C to stop)")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        uri,
    ]
    if uri.startswith("sqlite:"):
        command += ["--artifacts-destination", str(Path(DEFAULT_ARTIFACTS).resolve())]
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        with _signals_as_interrupt():
            code = server.wait()
    except KeyboardInterrupt:
        console.print("stopped")
        code = 0
    finally:
        _stop_process_group(server)
    if code:
        raise typer.Exit(code)


def serve(
    model: ModelOption,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    workers: WorkersOption = 2,
    log: ServeLogOption = None,
    token: TokenOption = None,
    reload_every: ReloadOption = 30.0,
    max_body_bytes: MaxBodyOption = 1 << 20,
    max_batch_bytes: MaxBatchBytesOption = 16 << 20,
    max_batch_rows: MaxBatchRowsOption = 10_000,
    epsilon: EpsilonOption = 0.0,
    seed: Annotated[int | None, seed_option("Seed of the exploration.")] = None,
    tracking_uri: TrackingUriOption = None,
    trusted_scenario: TrustedScenarioOption = None,
) -> None:
    """Serve decisions over HTTP: POST /decide, POST /decide/batch, GET /healthz, GET /version.

    Loopback only unless --host says otherwise. For models:/NAME@ALIAS the server follows the
    alias: a new version is loaded in the background and swapped in without dropping requests.
    With --log every answered decision is in the log exactly once (the X-Request-ID header is
    its idempotency key). The OpenAPI document is at /openapi.json.
    """
    from nba.cli.inputs import check_decision_log, load_scorer, tracking_store
    from nba.serving import http
    from nba.serving.scorer import Exploration

    _check_port_free(host, port)
    if token is not None and not token.strip():
        raise NBAValidationError("--token: empty; give a secret or leave the option out")
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
    trusted = load_trusted(trusted_scenario)
    scorer = load_scorer(model, tracking_uri, exploration, trusted_scenario=trusted)
    settings = http.ServeSettings(
        model=model,
        tracking_uri=tracking_store(tracking_uri) if model.startswith(REGISTRY_URIS) else None,
        token=token.strip() if token else None,
        log=str(log) if log is not None else None,
        reload_every=reload_every,
        max_body_bytes=max_body_bytes,
        max_batch_bytes=max_batch_bytes,
        max_batch_rows=max_batch_rows,
        epsilon=epsilon,
        seed=getattr(scorer, "exploration_seed", seed) if epsilon else seed,
        pinned=_pinned_version(model, scorer.model_version),
        trusted_scenario=_for_workers(trusted_scenario),
    )
    if log is not None:  # create the tables once, before workers open the file together
        from nba.serving.decision_log import DecisionLog

        DecisionLog(log).close()
    http.warm(scorer)
    following = " (following the alias)" if settings.follows_registry and reload_every else ""
    logging = f", logging to {log}" if log else ""
    console.print(
        f"serving {scorer.model_version}{following} at http://{host}:{port} with {workers} "
        f"worker(s){logging}  (Ctrl+C to stop)"
    )
    http.run(settings, scorer, host=host, port=port, workers=workers)


def _pinned_version(model: str, version: Any) -> str | None:
    """``models:/NAME/VERSION`` of the version an alias resolved to: what workers load first."""
    if model.startswith("models:/") and getattr(version, "version", None):
        return f"models:/{version.name}/{version.version}"
    return None


def _for_workers(trusted_scenario: str | None) -> str | None:
    """Workers read the trusted scenario again: a file by its absolute path, whatever their
    working directory; a built-in name as it is."""
    if trusted_scenario and Path(trusted_scenario).is_file():
        return str(Path(trusted_scenario).resolve())
    return trusted_scenario


def _check_port_free(host: str, port: int) -> None:
    """Fail at once, naming the port, rather than after the server's own retries."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise NBAValidationError(f"--host: cannot resolve {host!r} ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        # as servers do: a port whose old connections linger in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NBAValidationError(f"--port: {port} is already in use on {host}") from None
            raise NBAValidationError(
                f"--port: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None


def _signals_as_interrupt() -> Any:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, like Ctrl-C, while the server runs."""
    import signal

    from nba.signals import handled

    def interrupt(signal_number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return handled((signal.SIGTERM, signal.SIGHUP), interrupt)


def _stop_process_group(process: Any, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process's group, SIGKILL whatever is left after the grace period."""
    import os
    import signal
    import subprocess

    for name in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, name)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone: take any worker it left behind with it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
