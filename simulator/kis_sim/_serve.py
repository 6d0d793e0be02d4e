"""A loopback KIS server on anyio: `KISServerConnection` for every accepted socket.

For the tests and the simulator. Each session runs the same loop as the client (flush, read or
wait for the deadline, feed); the test or the simulator drives sessions through their commands
(`send_records`, `refuse_in_use`, `drop`). The REST paths a WebSocket client needs (approval key,
access token) are served over kept-alive HTTP/1.1, as KIS's gateway does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import ssl
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSListener

from kis_proto import LocalProtocolError
from kis_proto.server import KISServerConfig, KISServerConnection, ServerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

__all__ = ["KISServer", "ServerSession", "serve"]

logger = logging.getLogger("kis_sim.serve")


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
    #: Approval keys issued by the endpoint and still valid (secrets: not in the repr).
    issued: list[str] = field(default_factory=list, repr=False)
    #: Access tokens issued by ``/oauth2/tokenP`` and not revoked (secrets: not in the repr).
    tokens: list[str] = field(default_factory=list, repr=False)
    #: HTTP connections accepted (either port) and HTTP requests answered on them.
    http_connections: int = 0
    http_requests: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event, repr=False)

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


# The HTTP side (approval key, access token) on a kept-alive connection, as KIS's gateway serves it.
#: A kept-alive connection waiting this long for (the rest of) its next request is closed.
HTTP_IDLE_TIMEOUT = 30.0
#: Requests served on one connection; the last response says ``Connection: close``.
HTTP_MAX_REQUESTS = 100
#: The largest request body read; a larger one gets 413 and the connection closes.
HTTP_MAX_BODY = 64 * 1024
_HTTP_MAX_HEAD = 16 * 1024
_KST = timezone(timedelta(hours=9), "KST")  # Korea has no daylight saving time: no tzdata needed
_TOKEN_LIFETIME = 86400  # seconds; KIS access tokens last 24 h


def kst_datetime_text(now: float) -> str:
    """PINGPONG's ``datetime``: the KST wall clock, ``YYYYMMDDHHMMSS``, as KIS sends it.

    `now` (the loop's monotonic clock) is no date, so it is not used.
    """
    del now
    return datetime.now(_KST).strftime("%Y%m%d%H%M%S")


def _refused(description: str, code: str) -> dict[str, Any]:
    return {"error_description": description, "error_code": code}


_BAD_APPKEY = _refused("유효하지 않은 AppKey입니다.", "EGW00103")


@dataclass(frozen=True, eq=False)
class _RestApi:
    """The REST paths KIS serves that a WebSocket client uses: approval key, access token, revoke.

    `check(app_key, secret)` decides the credentials; without it every path is unknown (404).
    """

    server: KISServer
    check: Callable[[str, str], bool] | None

    def answer(self, method: bytes, target: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one request; the path decides, a query string does not."""
        path = _path(target)
        route = {
            "/oauth2/Approval": self._approval,
            "/oauth2/tokenP": self._token,
            "/oauth2/revokeP": self._revoke,
        }.get(path)
        if method != b"POST" or route is None or self.check is None:
            return 404, _refused("Not Found", "404")
        fields = _json_object(body)
        if fields is None:
            return 400, _refused("the body must be a JSON object", "EGW00002")
        return route(fields, self.check)

    def _approval(
        self, fields: dict[str, Any], check: Callable[[str, str], bool]
    ) -> tuple[int, dict[str, Any]]:
        """``POST /oauth2/Approval``: a fresh WebSocket approval key (the secret field is ``secretkey``)."""
        if fields.get("grant_type") != "client_credentials":
            return 400, _refused("grant_type must be client_credentials", "EGW00002")
        if not _known(fields, "secretkey", check):
            return 403, _BAD_APPKEY
        key = str(uuid.uuid4())
        self.server.issued.append(key)
        logger.debug("issued an approval key")
        return 200, {"approval_key": key}

    def _token(self, fields: dict[str, Any], check: Callable[[str, str], bool]) -> tuple[int, dict[str, Any]]:
        """``POST /oauth2/tokenP``: an access token for 24 h (the secret field is ``appsecret``)."""
        if fields.get("grant_type") != "client_credentials":
            return 400, _refused("grant_type must be client_credentials", "EGW00002")
        if not _known(fields, "appsecret", check):
            return 403, _BAD_APPKEY
        token = secrets.token_urlsafe(48)
        self.server.tokens.append(token)
        expires = datetime.now(_KST) + timedelta(seconds=_TOKEN_LIFETIME)
        logger.debug("issued an access token")
        return 200, {
            "access_token": token,
            "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": _TOKEN_LIFETIME,
        }

    def _revoke(
        self, fields: dict[str, Any], check: Callable[[str, str], bool]
    ) -> tuple[int, dict[str, Any]]:
        """``POST /oauth2/revokeP``: forget an access token (idempotent, as revoking should be)."""
        if not _known(fields, "appsecret", check):
            return 403, _BAD_APPKEY
        token = fields.get("token")
        if token in self.server.tokens:
            self.server.tokens.remove(token)
        return 200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}


def _path(target: bytes) -> str:
    """The path of a request target (origin or absolute form), without its query; "" if unparsable."""
    try:
        return urlsplit(target.decode("ascii", "replace")).path
    except ValueError:  # e.g. "http://[x": a bad IPv6 literal
        return ""


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _known(fields: dict[str, Any], secret_field: str, check: Callable[[str, str], bool]) -> bool:
    appkey, secret = fields.get("appkey"), fields.get(secret_field)
    return isinstance(appkey, str) and isinstance(secret, str) and check(appkey, secret)


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.ByteStream
) -> tuple[h11.Request, bytes] | int | None:
    """The next request and its body; an error status to answer with; None if the client left."""
    request: h11.Request | None = None
    body = bytearray()
    ended = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return None if ended else exc.error_status_hint  # cut off by the client: nobody to tell
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                data, ended = b"", True  # h11 takes b"" as the end of the stream
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
            length = dict(event.headers).get(b"content-length", b"0")
            if int(length) > HTTP_MAX_BODY:  # h11 checked it is digits
                return 413
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > HTTP_MAX_BODY:  # chunked: no length up front
                return 413
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        else:  # ConnectionClosed between requests
            return None


async def _serve_http(
    stream: anyio.abc.ByteStream,
    api: _RestApi,
    initial: bytes = b"",
    *,
    idle_timeout: float = HTTP_IDLE_TIMEOUT,
) -> None:
    """HTTP/1.1 on one connection (h11): requests after one another until one side closes.

    Clients keep the connection alive (python-kis asks for an approval key per subscribe over one
    ``requests`` session), so the connection stays open unless the client says
    ``Connection: close``, sends HTTP/1.0, goes idle for `idle_timeout`, reaches
    `HTTP_MAX_REQUESTS`, or sends what cannot be answered and read past (413, a malformed request);
    the last response then says ``Connection: close``.
    """
    api.server.http_connections += 1
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_HTTP_MAX_HEAD)
    if initial:  # (h11 reads b"" as the end of the stream)
        conn.receive_data(initial)
    async with stream:
        for served in range(1, HTTP_MAX_REQUESTS + 1):
            with anyio.move_on_after(idle_timeout) as scope:
                got = await _read_request(conn, stream)
            if scope.cancelled_caught:
                logger.debug("closing an idle HTTP connection")
                return
            if got is None:
                return
            request, keep = None, False
            if isinstance(got, int):
                status, answer = got, _refused(HTTPStatus(got).phrase, str(got))
            else:
                request, body = got
                status, answer = api.answer(request.method, request.target, body)
                keep = served < HTTP_MAX_REQUESTS
                api.server.http_requests += 1
                method = request.method.decode("ascii", "replace")
                logger.debug("HTTP %s %s: %d", method, _path(request.target), status)
            data = json.dumps(answer, ensure_ascii=False).encode()
            headers = [
                ("Content-Type", "application/json; charset=UTF-8"),
                ("Content-Length", str(len(data))),
            ]
            if not keep:
                headers.append(("Connection", "close"))
            try:
                out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
                if request is None or request.method != b"HEAD":  # HEAD: the head only
                    out += conn.send(h11.Data(data=data)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:
                return  # h11 cannot answer in this state (a broken request): just close
            with anyio.move_on_after(idle_timeout) as scope:
                await stream.send(out)
            if scope.cancelled_caught:
                return  # the client does not read
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close (either side), HTTP/1.0, or a body left unread
            conn.start_next_cycle()


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
    datetime_text: Callable[[float], str] = kst_datetime_text,
    http_idle_timeout: float = HTTP_IDLE_TIMEOUT,
) -> AsyncIterator[KISServer]:
    """Serve the KIS real-time protocol on `host:port` (0: any free port) until the block exits.

    ``POST /oauth2/Approval`` and ``/oauth2/tokenP`` (and ``revokeP``) are answered on the same
    port (plain HTTP, sniffed by a first line ``POST ``) when `app_keys` (app key → app secret) or
    `approve(app_key, secret)` is given, and also on a port of its own (`KISServer.approval_port`;
    TLS when `approval_tls` is given); connections are kept alive, closed after
    `http_idle_timeout` idle seconds. Other paths get 404. With `app_keys` only keys the endpoint
    issued are accepted on the WebSocket; otherwise `approval_ok` decides (default: any non-empty
    key). `slow_accept` delays every WebSocket upgrade answer (a fault to test against).
    `datetime_text(now)` labels PINGPONGs (default: the KST wall clock, as KIS does).
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
    api = _RestApi(server, approve)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            try:
                first = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            # REST on the same port. Only POST is sniffed, so the WebSocket path costs one
            # startswith; any other request that is no upgrade gets its 404 from the core.
            if first.startswith(b"POST "):
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await _serve_http(stream, api, first, idle_timeout=http_idle_timeout)
                return
            if slow_accept:
                await anyio.sleep(slow_accept)
            await session_loop(stream, first)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def session_loop(stream: anyio.abc.SocketStream, first: bytes) -> None:
        now = anyio.current_time()
        conn = KISServerConnection(
            now=now,
            approval_ok=approval_ok,
            random_bytes=random_bytes,
            config=config,
            datetime_text=datetime_text,
        )
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
            http: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(local_host=host, local_port=0)
            server.approval_port = http.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio
            if approval_tls is not None:
                http = TLSListener(http, approval_tls, standard_compatible=False)

            async def approval(stream: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(
                    anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError
                ):
                    await _serve_http(stream, api, idle_timeout=http_idle_timeout)

            async def run_http(listener: anyio.abc.Listener[Any]) -> None:
                async with listener:
                    await listener.serve(approval)

            tg.start_soon(run_http, http)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
