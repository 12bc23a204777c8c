"""Connect this process to a Ray cluster: a local one started on demand, or one by address.

``address=None`` reuses the Ray this process is already connected to, else starts a local one
(``num_cpus`` of this machine's cores, no dashboard, quiet logs, usage stats off) that lives as
long as the process. An address (``HOST:PORT`` of a head started with ``ray start --head``)
connects to that cluster; nothing answering there is refused in a few seconds, naming the
option, rather than after Ray's own minute of retries. Every node of a cluster must have nba
installed (the tasks import it).

Ray 2.x rewrites ``127.0.0.1`` to the machine's own address and its servers listen on every
interface (ray-project/ray#59110); a local cluster is asked for ``127.0.0.1`` all the same.
"""

from __future__ import annotations

import logging
import os
import re
import socket

from nba.scale import ScaleError, import_ray

__all__ = ["LOCALHOST", "connect", "parse_address"]

LOCALHOST = "127.0.0.1"
#: seconds to wait for a head's port to answer before refusing the address
CONNECT_TIMEOUT_S = 3.0
_PASS_THROUGH = ("auto",)


def parse_address(address: str, name: str = "address") -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` address, or :class:`ScaleError` naming ``name``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})\s*", str(address))
    port = int(match.group(2)) if match else 0
    if match is None or not 0 < port < 65_536:
        raise ScaleError(f"{name}: expected HOST:PORT of a Ray head, got {str(address)[:60]!r}")
    return match.group(1).strip("[]"), port


def connect(
    address: str | None = None, *, num_cpus: int | None = None, name: str = "address"
) -> str:
    """Connect to Ray and return the cluster's address (``HOST:PORT`` of its head).

    :param address: ``None``: the Ray this process already uses, else a new local cluster;
        ``HOST:PORT`` (or ``"auto"``): a running cluster.
    :param num_cpus: CPUs of a local cluster we start (default: every core); a running
        cluster has its own, so giving both is refused.
    :param name: the option named in errors (``--address`` on the command line).
    """
    ray = import_ray()
    _check_cpus(num_cpus, address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no calls home from tests or jobs
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        if not ray.is_initialized():
            ray.init(
                address="local",  # never attach to whatever cluster this machine runs
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address=LOCALHOST,
                **quiet,
            )
        return str(ray.get_runtime_context().gcs_address)
    if address not in _PASS_THROUGH:
        host, port = parse_address(address, name)
        _check_answers(host, port, name)
        if ray.is_initialized():
            current = str(ray.get_runtime_context().gcs_address)
            if current.rsplit(":", 1)[-1] == str(port) and _same_host(host, current):
                return current
            ray.shutdown()  # asked for another cluster than the one this process uses
    elif ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, TimeoutError, RuntimeError) as error:
        raise ScaleError(f"{name}: cannot join the Ray cluster at {address!r}: {error}") from error
    return str(ray.get_runtime_context().gcs_address)


def _check_cpus(num_cpus: int | None, address: str | None) -> None:
    if num_cpus is None:
        return
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
        raise ScaleError(f"num_cpus: expected a positive whole number, got {num_cpus!r}")
    if address is not None:
        raise ScaleError(
            "num_cpus: only sizes a local cluster this process starts; a running cluster "
            f"at {address!r} has the CPUs its nodes were started with"
        )


def _check_answers(host: str, port: int, name: str) -> None:
    """Refuse an address where nothing listens, in seconds instead of Ray's minute."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise ScaleError(
            f"{name}: no Ray head answers at {host}:{port} ({error.strerror or error}); start "
            "one with `ray start --head`, or leave the address out for a local cluster"
        ) from error


def _same_host(host: str, current: str) -> bool:
    """Whether ``host`` names the head of ``current`` (Ray reports loopback as the node IP)."""
    theirs = current.rsplit(":", 1)[0]
    if host == theirs:
        return True
    try:
        return socket.gethostbyname(host) in {theirs, LOCALHOST} and _is_local(theirs)
    except OSError:
        return False


def _is_local(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
        return True
    except OSError:
        return False
