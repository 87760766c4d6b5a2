"""``python -m studio [--port N] [--host H --token T] [--allow-host NAME] [--folder DIR] [--ray | --address A]``:
start the studio.

Loopback only by default; any other interface needs a token (the page is a remote control for the machine's
compute and files). The socket is bound here, before the server starts, so a name that does not resolve or
a port in use is one ``error:`` line; the names the server answers to (its Host check, :mod:`studio.guard`)
follow from the address it is bound to. Ctrl-C (or kill) cancels the running job, which records its folder
as the CLI would. ``--ray`` / ``--address`` (:mod:`nst.cluster`, the CLIs' flags) send a print's tiles to Ray
workers; the address is checked here, so a studio never starts pointing at a cluster that is not there.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import secrets
import socket

from nst import cluster
from nst.cli import run_main, say
from nst.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio", description="The style-transfer and doodle studio.")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default loopback; others need --token)")
    p.add_argument("--token", help="access token, required with a non-loopback --host ('random' makes one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="another name the page may be opened by (a DNS name of this machine, a proxy's), with "
                        "PORT when it is not the studio's own (an SSH tunnel: localhost:9000); the address of "
                        "--host, localhost, 127.0.0.1 and [::1] always work")
    p.add_argument("--folder", default="runs/studio", help="the studio folder: uploads/ and runs/ (default runs/studio)")
    cluster.add_flags(p, "a print's tiles (runs whose scales are over tiles.max_pixels)")
    return p.parse_args(argv)


def check_where(where: cluster.Where) -> None:
    """Ray installed and the cluster reachable now (one ``error:`` line), not at the first print's start."""
    if not where.parallel:
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("Ray is not installed: pip install -e '.[cluster]' (or start the studio without "
                        "--ray/--address)") from None
    if where.address is not None:
        target = cluster.auto_address() if where.address.strip() == "auto" else where.address.strip()
        if target != "auto":
            cluster.reachable(target, where.timeout)


WILDCARDS = ("0.0.0.0", "::", "")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``, or a UserError saying why not (unknown name, port in use)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host {host}: no such address or name on this machine "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (another studio?): choose another --port "
                            f"(0 = any free port)") from None
        raise UserError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def answer_names(host: str, allowed: list[str]) -> tuple[list[str], bool]:
    """(the names a request's Host may carry, whether any IP literal may) for a server bound to ``host``."""
    from studio.guard import LOOPBACK_NAMES

    names = [*LOOPBACK_NAMES, host, *allowed]
    if host in WILDCARDS:  # every interface: this machine's names, and any of its addresses
        names += [socket.gethostname(), socket.getfqdn()]
        return names, True
    try:
        names += [info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]
    except (socket.gaierror, UnicodeError):
        pass
    return names, False


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    where = cluster.where_from_args(args)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    token = secrets.token_urlsafe(16) if args.token == "random" else args.token
    if not is_loopback(args.host) and not token:
        raise UserError(f"--host {args.host} opens the studio to other machines: give --token T (or --token random)")
    try:
        import uvicorn

        from studio.app import create_app
    except ImportError as exc:
        raise UserError(f"the studio needs its extra: pip install -e \".[studio]\" ({exc.name} is missing)") from None

    check_where(where)
    sock = listen(args.host, args.port)
    hosts, any_ip = answer_names(args.host, args.allow_host)
    try:
        app = create_app(args.folder, token, hosts=hosts, any_ip=any_ip, where=where)
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = _Server(config, app.state.studio.manager)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    say(f"studio: folder {app.state.studio.folders.root}; a print's tiles run {where.describe()}")
    server.announce = lambda port: say(f"studio: open http://{shown}:{port}/" + (f"?token={token}" if token else ""))
    server.run(sockets=[sock])
    return 0


try:
    import uvicorn as _uvicorn

    class _Server(_uvicorn.Server):
        """uvicorn's server that, on Ctrl-C, first ends the live event streams and cancels the run."""

        def __init__(self, config, manager):
            super().__init__(config)
            self.manager, self.announce = manager, None

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.announce and self.servers:
                self.announce(self.servers[0].sockets[0].getsockname()[1])

        def handle_exit(self, sig, frame):
            with self.manager.lock:
                self.manager.stopping = True  # event streams end, so the graceful shutdown does not wait on them
                if self.manager.current:
                    self.manager.current.control.cancel()
                self.manager.lock.notify_all()
            super().handle_exit(sig, frame)
except ImportError:  # the extra is missing: main() says so
    _Server = None


def cli() -> int:
    return run_main(main)


if __name__ == "__main__":
    raise SystemExit(cli())
