"""Who may talk to the studio: the Host it answers to, where state-changing requests come from, the token,
and the headers every response carries (an ASGI middleware around the whole app).

Loopback is no boundary against the browser on the same machine: any page it shows can send requests to
127.0.0.1. So, before any route runs:

- ``Host`` must name the server as it listens (its address, ``localhost``/``127.0.0.1``/``[::1]``, names
  given with ``--allow-host``) with its port (or the port an ``--allow-host NAME:PORT`` entry gives, for an
  SSH tunnel or a proxy on another port): a DNS-rebinding page (evil.example resolved to 127.0.0.1) sends
  ``Host: evil.example`` and gets 400, never an answer it could read.
- A POST (PUT, PATCH, DELETE) must come from the studio's own page: an ``Origin`` equal to the server's own
  (scheme, host, port) or, without one, ``Sec-Fetch-Site: same-origin``/``none``. Any other value is a
  cross-origin request (CSRF: a form or a ``text/plain`` fetch from another site): 403. A request with
  neither header comes from no browser (curl, a script on this machine, which could as well open the files
  itself) and is let through; with a token it must carry the token anyway.
- A GET the browser marks ``cross-site``/``same-site`` is refused unless it is a navigation: another page's
  ``<img src>`` or ``<script src>`` of the API gets 403 (it could not read the answer, but could time it or
  measure an image).
- With ``--token`` every request carries it (header ``X-Studio-Token``, the cookie the page gets from
  ``/?token=``, or ``?token=``).

Every response, refusals and errors included, says: never framed (``X-Frame-Options: DENY``, CSP
``frame-ancestors 'none'``), never sniffed (``nosniff``), scripts only from ``/static`` (CSP
``script-src 'self'``: HTML that slipped into the page cannot run, no inline script or ``on*=`` handler;
``'unsafe-eval'`` stays because the page never evals text and browser automation — Playwright's
``wait_for_function`` — does), no referrer, not loadable by other origins (``Cross-Origin-Resource-Policy``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import sys
import traceback
from urllib.parse import urlsplit

from starlette.requests import Request

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_COOKIE = "studio_token"
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` / ``[v6][:port]`` -> (lower-case name, port or None); None if it is not a host."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, _, port = value.partition(":")
        port = port if ":" in value else None
    if not name or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    return name, int(port) if port is not None else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _refusal(status: int, message: str):
    body = json.dumps({"error": f"error: {message}"}, separators=(",", ":")).encode()

    async def respond(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return respond


class Guard:
    """The ASGI middleware: Host, origin and token checks before the app, security headers after it.

    ``hosts``: the names the server answers to, each ``NAME`` (on the server's own port) or ``NAME:PORT``;
    ``any_ip``: also any IP literal (a server bound to every interface: a DNS-rebinding page can only send a
    name, never one of our addresses).
    """

    def __init__(self, app, token: str | None = None, hosts=LOOPBACK_NAMES, any_ip: bool = False):
        self.app, self.token, self.any_ip = app, token, any_ip
        self.hosts: set[tuple[str, int | None]] = set()  # (name, port); None: the server's own port
        for h in hosts:
            h = (h or "").strip()
            parsed = split_host(h if h.startswith("[") or h.count(":") <= 1 else f"[{h}]")  # a bare IPv6 address
            if parsed:
                self.hosts.add(parsed)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                have = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k, v) for k, v in HEADERS if k not in have)]}
            await send(message)

        refused = self.check(scope)
        if refused is not None:
            await refused(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - a bug: logged here, one line (with the headers) to the page
            traceback.print_exception(exc, file=sys.stderr)
            if not started:
                await _refusal(500, f"internal error ({type(exc).__name__}); see the server log")(
                    scope, receive, send_with_headers)

    def check(self, scope):
        """None when the request may go on, else the refusal to send."""
        request = Request(scope)
        headers = request.headers
        host = headers.get("host", "")
        parsed = split_host(host)
        server_port = (scope.get("server") or (None, None))[1]
        scheme = scope.get("scheme", "http")
        default_port = 443 if scheme == "https" else 80
        if parsed is None or not self.known(parsed[0], parsed[1] or default_port, server_port):
            shown = host[:80] or "(none)"
            return _refusal(400, f"refused a request for host {shown!r}: this studio answers only to "
                                 f"{self.describe_hosts(server_port)} (a page that renamed it, as DNS rebinding "
                                 f"does, gets nothing)")
        site = headers.get("sec-fetch-site")
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and not self.same_origin(origin, scheme, parsed, default_port):
                return _refusal(403, f"refused a cross-origin {scope['method']} from {origin[:80]!r}: the studio "
                                     f"takes changes only from its own page")
            if site is not None and site not in ("same-origin", "none"):
                return _refusal(403, f"refused a cross-origin {scope['method']} (Sec-Fetch-Site: {site[:20]}): the "
                                     f"studio takes changes only from its own page")
        elif site in ("cross-site", "same-site") and headers.get("sec-fetch-mode") != "navigate":
            return _refusal(403, f"refused a {site} request for {scope['path'][:80]}: the studio's files and runs "
                                 f"are for its own page only")
        if self.token:
            given = (headers.get("x-studio-token") or request.cookies.get(TOKEN_COOKIE)
                     or request.query_params.get("token") or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _refusal(403, "this studio needs its token: open the URL printed at its start (…/?token=…)")
        return None

    @staticmethod
    def same_origin(origin: str, scheme: str, host: tuple[str, int | None], default_port: int) -> bool:
        try:
            o = urlsplit(origin)
            port = o.port or (443 if o.scheme == "https" else 80)
        except ValueError:
            return False
        return (o.scheme == scheme and (o.hostname or "") == host[0].strip("[]")
                and port == (host[1] or default_port))

    def known(self, name: str, port: int, server_port: int | None) -> bool:
        """Whether ``name:port`` is one of the server's names (an IP literal too, with ``any_ip``)."""
        if (name, port) in self.hosts:
            return True
        own_port = server_port is None or port == server_port
        return own_port and ((name, None) in self.hosts or (self.any_ip and _is_ip(name)))

    def describe_hosts(self, port: int | None) -> str:
        entries = sorted(self.hosts, key=lambda h: (h[0] not in LOOPBACK_NAMES, h[0], h[1] or 0))
        shown = [(f"[{n}]" if ":" in n else n) + (f":{p or port}" if (p or port) else "") for n, p in entries]
        tail = " or any of its IP addresses" if self.any_ip else ""
        return ", ".join(shown) + tail
