"""A loopback KIS server on anyio: `KISServerConnection` for every accepted socket.

For the tests now and the simulator later. Each session runs the same loop as the client
(flush, read or wait for the deadline, feed); the test or the simulator drives sessions through
their commands (`send_records`, `refuse_in_use`, `drop`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import ssl
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSListener

from kis_proto import KISServerConfig, KISServerConnection, LocalProtocolError, ServerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

__all__ = ["KISServer", "ServerSession", "serve"]

logger = logging.getLogger("kis_anyio.serve")


@dataclass(eq=False)
class ServerSession:
    """One client connection on the server side."""

    conn: KISServerConnection
    stream: anyio.abc.ByteStream
    events: list[ServerEvent] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def flush(self) -> None:
        async with self.lock:
            data = self.conn.data_to_send()
            if data:
                try:
                    await self.stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    self.conn.abort("the client's socket broke")

    async def send_records(self, tr_id: str, rows: list[list[str]]) -> None:
        """Send one frame of `rows` (encrypted on notice TRs)."""
        self.conn.send_records(tr_id, rows)
        await self.flush()

    async def send_text(self, text: str) -> None:
        self.conn.send_text(text)
        await self.flush()

    async def refuse_in_use(self) -> None:
        """OPSP8996, then drop the socket, as KIS does to a second session of an appkey."""
        self.conn.refuse_in_use()
        await self.flush()
        await self.drop()

    async def drop(self) -> None:
        """Drop the socket without a close frame."""
        self.conn.abort("dropped by the server")
        await self.stream.aclose()


@dataclass(eq=False)
class KISServer:
    """The running server: its port and its live sessions (and the approval endpoint's port)."""

    host: str
    port: int
    sessions: list[ServerSession] = field(default_factory=list)
    accepted: int = 0
    #: The approval endpoint's port, when `serve` was given app keys.
    approval_port: int | None = None
    #: Approval keys issued by the endpoint and still valid.
    issued: list[str] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def revoke_keys(self) -> None:
        """Invalidate every issued approval key (the next requests get OPSP0011)."""
        self.issued.clear()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def subscribed(self, tr_id: str, tr_key: str) -> list[ServerSession]:
        """The live sessions subscribed to (tr_id, tr_key)."""
        return [s for s in self.sessions if (tr_id, tr_key) in s.conn.subscriptions]

    async def broadcast(self, tr_id: str, rows: list[list[str]]) -> int:
        """Send `rows` to every session subscribed to `tr_id` for the first row's key."""
        targets = self.subscribed(tr_id, rows[0][0])
        for session in targets:
            try:
                await session.send_records(tr_id, rows)
            except LocalProtocolError:
                continue  # closing meanwhile
        return len(targets)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked whenever a session changes)."""
        with anyio.fail_after(timeout):
            while not predicate():
                self._changed = anyio.Event()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()


def _json_response(status: int, body: dict[str, str]) -> tuple[h11.Response, bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(data)))]
    return h11.Response(status_code=status, headers=headers), data


def _approve(
    request_body: bytes, check: Callable[[str, str], bool], server: KISServer
) -> tuple[int, dict[str, str]]:
    """KIS's answer to ``POST /oauth2/Approval``: a fresh key for known credentials."""
    try:
        fields = json.loads(request_body)
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict) or fields.get("grant_type") != "client_credentials":
        return 400, {"error_description": "grant_type must be client_credentials", "error_code": "EGW00002"}
    appkey, secret = fields.get("appkey"), fields.get("secretkey")
    if not isinstance(appkey, str) or not isinstance(secret, str) or not check(appkey, secret):
        return 403, {"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}
    key = str(uuid.uuid4())
    server.issued.append(key)
    return 200, {"approval_key": key}


async def _serve_approval(
    stream: anyio.abc.ByteStream, check: Callable[[str, str], bool], server: KISServer, initial: bytes = b""
) -> None:
    """One HTTP/1.1 exchange on the approval endpoint (h11, as the client side uses)."""
    conn = h11.Connection(h11.SERVER)
    if initial:  # (h11 reads b"" as the end of the stream)
        conn.receive_data(initial)
    body = b""
    async with stream:
        with anyio.move_on_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    continue
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif not isinstance(event, h11.Request):
                    return
            status, answer = _approve(body, check, server) if len(body) < 65536 else (413, {})
            response, data = _json_response(status, answer)
            await stream.send(
                conn.send(response) + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage())
            )


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    approval_ok: Callable[[str], bool] | None = None,
    config: KISServerConfig | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    app_keys: Mapping[str, str] | None = None,
    approve: Callable[[str, str], bool] | None = None,
    approval_tls: ssl.SSLContext | None = None,
    slow_accept: float = 0.0,
) -> AsyncIterator[KISServer]:
    """Serve the KIS real-time protocol on `host:port` (0: any free port) until the block exits.

    ``POST /oauth2/Approval`` is answered on the same port (plain HTTP) when `app_keys` (app key →
    app secret) or `approve(app_key, secret)` is given, and also on a port of its own
    (`KISServer.approval_port`; TLS when `approval_tls` is given). With `app_keys` only keys the
    endpoint issued are accepted on the WebSocket; otherwise `approval_ok` decides (default: any
    non-empty key). `slow_accept` delays every WebSocket upgrade answer (a fault to test against).
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    server = KISServer(host=host, port=bound)
    if app_keys is not None:
        keys = dict(app_keys)

        def approve_known(app_key: str, secret: str) -> bool:
            return keys.get(app_key) == secret

        approve = approve or approve_known
    if approval_ok is None:
        approval_ok = (lambda key: key in server.issued) if app_keys is not None else (lambda key: bool(key))

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            try:
                first = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            if first.startswith(b"POST ") and approve is not None:  # the approval endpoint, same port
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await _serve_approval(stream, approve, server, first)
                return
            if slow_accept:
                await anyio.sleep(slow_accept)
            await session_loop(stream, first)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def session_loop(stream: anyio.abc.SocketStream, first: bytes) -> None:
        now = anyio.current_time()
        conn = KISServerConnection(now=now, approval_ok=approval_ok, random_bytes=random_bytes, config=config)
        conn.receive_data(first, now=now)
        session = ServerSession(conn=conn, stream=stream)
        server.sessions.append(session)
        server.accepted += 1
        await session.flush()
        session.events += conn.events()
        try:
            while not conn.closed:
                deadline = conn.timer()
                data = b""
                with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                    try:
                        data = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        data = b""
                now = anyio.current_time()
                if scope.cancelled_caught:
                    conn.handle_timer(now)
                elif data:
                    conn.receive_data(data, now=now)
                else:
                    conn.receive_eof(now=now)
                await session.flush()
                session.events += conn.events()
                server._notify()
        finally:
            server.sessions.remove(session)
            server._notify()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        if approve is not None:
            check = approve
            http: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(local_host=host, local_port=0)
            server.approval_port = http.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio
            if approval_tls is not None:
                http = TLSListener(http, approval_tls, standard_compatible=False)

            async def approval(stream: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(anyio.BrokenResourceError, ssl.SSLError, OSError):
                    await _serve_approval(stream, check, server)

            async def run_http(listener: anyio.abc.Listener[Any]) -> None:
                async with listener:
                    await listener.serve(approval)

            tg.start_soon(run_http, http)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
