"""The HTTP side of the metrics: ``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``.

A small asyncio server on h11 (already a dependency, through wsproto): three paths, GET only,
kept-alive connections closed when idle. Loopback by default; beyond loopback ``/metrics`` needs
a bearer token (Prometheus's ``authorization: credentials_file``), while the probes stay open:
they tell alive/ready and nothing else, and probes of systemd, Docker or Kubernetes send no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["MetricsServer", "is_loopback", "parse_listen", "serve_metrics"]

logger = logging.getLogger("kis_metrics")

_IDLE = 30.0  # seconds a kept-alive connection may wait for its next request
_MAX_HEAD = 8 * 1024


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str, default_port: int = 9464) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (on 127.0.0.1); ValueError saying what a valid one is."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = -1
    if not 0 <= port < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:9464 (port 0 to 65535)")
    return host, port


@dataclass
class MetricsServer:
    """A running metrics server: where it listens, and how many requests it answered."""

    host: str
    port: int
    requests: int = 0

    @property
    def url(self) -> str:
        """``http://host:port``: add ``/metrics``, ``/healthz`` or ``/readyz``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@asynccontextmanager
async def serve_metrics(
    host: str,
    port: int,
    *,
    registry: CollectorRegistry,
    ready: Callable[[], tuple[bool, str]] | None = None,
    token: str | None = None,
) -> AsyncIterator[MetricsServer]:
    """Serve `registry` on ``/metrics`` and the probes on `host:port` until the block exits.

    ``/healthz``: 200 while the process runs. ``/readyz``: 200 when ``ready()`` says so, else 503,
    with its reason as the body (a standby gateway is alive but not ready). A `token` makes
    ``/metrics`` answer 401 without ``Authorization: Bearer <token>``; binding beyond loopback
    without one raises ValueError (secure by default: nothing unauthenticated leaves the machine).
    """
    if token is None and not is_loopback(host):
        raise ValueError(
            f"metrics on {host} would be readable by anyone on the network: give a token "
            "(a bearer token file), or listen on 127.0.0.1"
        )
    state = MetricsServer(host=host, port=port)
    ready = ready or (lambda: (True, "ready"))

    def answer(target: str, authorization: bytes | None) -> tuple[int, bytes, bytes]:
        path = target.split("?", 1)[0]
        if path == "/healthz":
            return 200, b"text/plain; charset=utf-8", b"alive\n"
        if path == "/readyz":
            ok, why = ready()
            return (200 if ok else 503), b"text/plain; charset=utf-8", why.encode() + b"\n"
        if path == "/metrics":
            if token is not None and not hmac.compare_digest(
                authorization or b"", f"Bearer {token}".encode()
            ):
                return 401, b"text/plain; charset=utf-8", b"a bearer token is needed\n"
            return 200, CONTENT_TYPE_LATEST.encode(), generate_latest(registry)
        return 404, b"text/plain; charset=utf-8", b"/metrics, /healthz or /readyz\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), _IDLE)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    headers = dict(event.headers)
                    if event.method not in (b"GET", b"HEAD"):
                        status, kind, body = 405, b"text/plain; charset=utf-8", b"GET only\n"
                    else:
                        status, kind, body = answer(
                            event.target.decode("ascii", "replace"), headers.get(b"authorization")
                        )
                    state.requests += 1
                    out = conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[(b"content-type", kind), (b"content-length", str(len(body)).encode())],
                        )
                    )
                    writer.write(out or b"")
                    if event.method != b"HEAD":
                        writer.write(conn.send(h11.Data(data=body)) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
        except (h11.RemoteProtocolError, TimeoutError, ConnectionError):
            return  # a bad or idle client costs its own connection, nothing else
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    state.port = server.sockets[0].getsockname()[1]
    logger.info("metrics on %s/metrics (probes /healthz, /readyz)", state.url)
    try:
        yield state
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
