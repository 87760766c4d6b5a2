"""Where a job runs: here, one step after another (no Ray), or on Ray — a Ray of our own on this machine, or
a running cluster (``auto``, ``HOST:PORT``) — with how many workers, each asking for how many CPUs.

One vocabulary for every command that can spread its work (prints' tiles: ``nst.run``, ``doodle.run``):
``--ray``, ``--address HOST:PORT|auto``, ``--local``, ``--max-parallel N``, ``--cpus-per-worker C``,
``--connect-timeout S``, read into a :class:`Where`. :func:`connect` starts or joins Ray and turns every way of
not getting there (Ray missing, nobody listening at the address, no cluster for ``auto``) into one
:class:`nst.errors.UserError` line, within the timeout: Ray itself retries an unreachable address for minutes,
so the address is tried with a plain TCP connection first. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from dataclasses import dataclass

from nst.errors import UserError


@dataclass(frozen=True)
class Where:
    ray: bool = False  # a Ray of our own on this machine
    address: str | None = None  # join this cluster (auto, HOST:PORT, ray://HOST:PORT)
    max_parallel: int | None = None  # at most this many workers (None: as many as the cluster's CPUs allow)
    cpus: float = 1.0  # CPUs each worker asks for (TensorFlow is held to that many threads)
    timeout: float = 10.0  # seconds to reach the address

    @property
    def parallel(self) -> bool:
        return self.ray or self.address is not None

    def describe(self) -> str:
        if not self.parallel:
            return "here, serially"
        return f"ray at {self.address}" if self.address else "a Ray of our own on this machine"


def add_flags(parser: argparse.ArgumentParser, what: str = "a print's tiles") -> None:
    g = parser.add_argument_group("where it runs", f"Ray spreads {what} over workers; without --ray or --address "
                                                   "everything runs here, one step after another")
    g.add_argument("--ray", action="store_true", help="start a Ray of our own on this machine and use its CPUs")
    g.add_argument("--address", metavar="HOST:PORT|auto", help="join a running Ray cluster (auto: the one "
                                                              "`ray start` left on this machine, or RAY_ADDRESS)")
    g.add_argument("--local", action="store_true", help="run here without Ray (the default)")
    g.add_argument("--max-parallel", type=int, metavar="N", help="at most N workers")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="CPUs each worker asks Ray for; TensorFlow uses that many threads (default 1)")
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to reach --address before giving up (default 10)")


def where_from_args(args: argparse.Namespace) -> Where:
    """The flags as a :class:`Where`; contradictions and impossible values are one-line errors."""
    if args.local and (args.address is not None or args.ray):
        raise UserError(f"--local runs here without Ray; it contradicts {'--address' if args.address else '--ray'}")
    if args.ray and args.address is not None:
        raise UserError("--ray starts a Ray of our own; --address joins a running one: give one of them")
    if args.address is not None and not args.address.strip():
        raise UserError("--address is empty: give HOST:PORT or auto")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {args.max_parallel}")
    if not args.cpus_per_worker > 0:
        raise UserError(f"--cpus-per-worker must be more than 0, got {args.cpus_per_worker:g}")
    if not args.connect_timeout > 0:
        raise UserError(f"--connect-timeout must be more than 0 s, got {args.connect_timeout:g}")
    parallel = args.ray or args.address is not None
    if not parallel and (args.max_parallel is not None or args.cpus_per_worker != 1.0):
        flag = "--max-parallel" if args.max_parallel is not None else "--cpus-per-worker"
        raise UserError(f"{flag} applies to Ray workers: add --ray or --address")
    return Where(args.ray, args.address, args.max_parallel, args.cpus_per_worker, args.connect_timeout)


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST:PORT`` -> (host, port), or a UserError saying what is wrong."""
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address}: give HOST:PORT (e.g. 127.0.0.1:6379) or auto")
    return host.strip("[]"), int(port)


def reachable(address: str, timeout: float) -> None:
    """A TCP connection to ``address`` within ``timeout`` s, or a UserError (Ray would retry for minutes)."""
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise UserError(f"cannot reach a Ray cluster at {address}: unknown host {host} ({exc.strerror})") from None
    except socket.timeout:
        raise UserError(f"cannot reach a Ray cluster at {address}: no answer within {timeout:g} s "
                        f"(--connect-timeout)") from None
    except OSError as exc:
        raise UserError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc} (is `ray start --head "
                        f"--port {port}` running there?)") from None


def auto_address() -> str:
    """The cluster ``auto`` means (RAY_ADDRESS, else the last `ray start` on this machine), or a UserError."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        from ray._private.utils import read_ray_address
    except ImportError:  # a Ray without the helper: let ray.init find it
        return "auto"
    found = read_ray_address(None)
    if not found:
        raise UserError("--address auto: no Ray cluster was started on this machine (`ray start --head`) and "
                        "RAY_ADDRESS is not set")
    return found


def connect(address: str | None, local: bool = False, timeout: float = 10.0, modules: list[str] | None = None,
            env: dict[str, str] | None = None, init_timeout: float | None = None) -> bool:
    """Start or join Ray; True when Ray is up (now or already), False for ``local`` (run here, no Ray).

    ``address`` None: a new Ray of our own on this machine (not a `ray start` cluster that happens to run
    here: that takes ``auto``). ``modules``: package folders shipped to every worker (Ray ``py_modules``;
    on one machine the workers import this checkout anyway). ``env``: environment of every worker.
    ``timeout``: seconds for the TCP check of the address; ``init_timeout`` (default: 60 s, or ``timeout`` if
    longer): seconds for joining the cluster once it answers (a port that is no Ray head hangs there).
    """
    if local:
        if address is not None:
            raise UserError("--local runs here without Ray; it contradicts --address")
        return False
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed: pip install -e '.[cluster]' (or run without --ray/--address)") from None
    if ray.is_initialized():
        return True
    target = "local"
    if address is not None:
        target = auto_address() if address.strip() == "auto" else address.strip()
        if target != "auto":
            reachable(target, timeout)
        send_token_if_present()
    if target == "local":
        # Ray starts its workers 15 nice levels down (RAY_worker_niceness); on a machine shared with other jobs that
        # leaves a print's workers the leftovers, slower than the serial loop it replaces: ours run at our niceness
        os.environ.setdefault("RAY_worker_niceness", "0")
    runtime_env = {"env_vars": {"PYTHONWARNINGS": "ignore", **(env or {})}}
    if modules:
        runtime_env["py_modules"] = list(modules)
    kwargs = dict(address=target, runtime_env=runtime_env, log_to_driver=False, include_dashboard=False,
                  logging_level="ERROR")
    try:
        if target == "local":
            ray.init(**kwargs)
        else:
            _init_within(ray, kwargs, init_timeout or max(60.0, timeout), address)
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when its node does not start in time
        if isinstance(exc, UserError):
            raise
        hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" or not isinstance(exc, ConnectionError) else \
            " (a cluster with token auth also needs RAY_AUTH_MODE=token and its token here: docs/SWEEPS.md)"
        raise UserError(f"cannot start or join Ray at {address or 'this machine'}: "
                        f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}{hint}") from None
    return True


def _init_within(ray, kwargs: dict, timeout: float, address: str) -> None:
    """``ray.init(**kwargs)`` in a helper thread, given up after ``timeout`` s: a port that takes the connection
    but is no Ray head makes Ray wait for minutes (the process ends soon after the one-line error, the thread
    with it)."""
    result: dict = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=init, name="ray-init", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise UserError(f"the Ray cluster at {address} did not answer within {timeout:g} s: is it a Ray "
                        f"head's address (usually port 6379; ray://HOST:10001 for Ray Client)? --connect-timeout S "
                        f"waits longer")
    if "error" in result:
        raise result["error"]


def send_token_if_present() -> None:
    """Ray >= 2.59's ``ray start --head`` turns token auth on when a token exists on the machine, but a driver
    given HOST:PORT leaves it off unless RAY_AUTH_MODE says so: send the token when one is there (a cluster
    without auth ignores it). The user's RAY_AUTH_MODE wins; an older Ray has nothing to set up."""
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user's choice
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable)
    except ImportError:
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        enable(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def shutdown() -> None:
    """Leave Ray if this process started or joined it (a `ray start` cluster keeps running)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def worker_slots(cpus: float, max_parallel: int | None, what: str) -> tuple[int, int]:
    """(workers to start, live nodes) on the joined Ray for workers of ``cpus`` CPUs each, at most
    ``max_parallel``; a cluster too small for one is a UserError naming ``what`` (a tile / a chunk worker)."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    fit = int(total // cpus)
    if fit < 1:
        raise UserError(f"the Ray cluster has {total:g} CPUs; a {what} worker asks for {cpus:g} (--cpus-per-worker)")
    return min(fit, max_parallel or fit), len([n for n in ray.nodes() if n.get("Alive")])
