"""The simulator's HTTP side and keep-alive, over loopback sockets, against independent peers.

Real clients broke on these: python-kis asks for an approval key per subscribe over one kept-alive
``requests`` connection, and the official client answers PINGPONG with a PONG frame. The peers are
the standard library's ``http.client`` (keep-alive as ``requests`` does it), a raw h11 client, and
the ``websockets`` library.
"""

from __future__ import annotations

import http.client
import json
import ssl
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
import anyio.abc
import h11
import kis_sim
import pytest
import trustme
from kis_sim import ServerSession
from kis_sim._serve import HTTP_MAX_BODY, HTTP_MAX_REQUESTS
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from kis_proto import ConnectionClosed
from kis_proto.server import KeepAliveAnswered, KISServerConfig

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

pytestmark = pytest.mark.anyio

APP_KEYS = {"PSapp": "secret-value"}
APPROVAL = {"grant_type": "client_credentials", "appkey": "PSapp", "secretkey": "secret-value"}
TOKEN = {"grant_type": "client_credentials", "appkey": "PSapp", "appsecret": "secret-value"}
BAD_APPKEY = {"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}
KST = timezone(timedelta(hours=9))
STRICT = KISServerConfig(pingpong_interval=0.2, strict_pingpong=True)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts from a throwaway CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


Reply = tuple[int, dict[str, str], Any]


def call(
    conn: http.client.HTTPConnection,
    path: str,
    body: object = None,
    *,
    method: str = "POST",
) -> Reply:
    """One request on `conn` (kept alive unless the server says otherwise): status, headers, JSON."""
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(payload)


async def in_thread(work: Callable[[], Any]) -> Any:
    """Run a blocking ``http.client`` peer in a worker thread while the server runs here."""
    return await anyio.to_thread.run_sync(work)


class H11Client:
    """A raw h11 client on an anyio socket: one request at a time, the connection reused."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self,
        target: str,
        body: object = None,
        *,
        method: str = "POST",
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[h11.Response, bytes]:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        data = b"" if body is None else json.dumps(body).encode()
        head = [("Host", "127.0.0.1"), ("Content-Length", str(len(data))), *headers]
        out = self.conn.send(h11.Request(method=method, target=target, headers=head)) or b""
        out += (self.conn.send(h11.Data(data=data)) or b"") if data else b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send(out)
        return await self.response()

    async def response(self) -> tuple[h11.Response, bytes]:
        response, body = None, b""
        with anyio.fail_after(5):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        self.conn.receive_data(await self.stream.receive())
                    except anyio.EndOfStream:
                        self.conn.receive_data(b"")
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert response is not None
                    return response, body
                else:
                    raise AssertionError(f"no response: {event!r}")


async def closed_by_server(stream: anyio.abc.ByteStream, within: float = 5.0) -> bool:
    """Whether the server ends the stream (reading and discarding anything before) within `within`."""
    with anyio.move_on_after(within):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
    return False


# -- keep-alive: several requests, one connection ----------------------------------------------------


@pytest.mark.parametrize("where", ["websocket port", "approval port", "approval port over TLS"])
async def test_approval_keys_over_one_kept_alive_connection(
    where: str, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, client_tls = tls_pair
    tls = "TLS" in where
    async with kis_sim.serve(app_keys=APP_KEYS, approval_tls=server_tls if tls else None) as server:
        port = server.port if where == "websocket port" else server.approval_port
        assert port is not None

        def like_python_kis() -> tuple[list[object], list[str]]:
            conn = (
                http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=client_tls)
                if tls
                else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            )
            sockets, keys = [], []
            for _ in range(5):  # one key per subscribe, as python-kis does
                status, headers, body = call(conn, "/oauth2/Approval", APPROVAL)
                assert status == 200
                assert "connection" not in headers  # nothing says close: the client keeps it
                sockets.append(conn.sock)
                keys.append(body["approval_key"])
            conn.close()
            return sockets, keys

        sockets, keys = await in_thread(like_python_kis)
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets)
        assert len(set(keys)) == 5
        assert server.issued == keys
        assert (server.http_connections, server.http_requests) == (1, 5)
        assert "issued" not in repr(server)
        assert keys[0] not in repr(server)


async def test_every_rest_path_on_one_connection() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        assert server.approval_port is not None
        port = server.approval_port

        def session() -> list[Reply]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            replies = [
                call(conn, "/oauth2/tokenP?ignored=1", TOKEN),  # the path decides, not the query
                call(conn, "/oauth2/tokenP", TOKEN),
                call(conn, "/oauth2/tokenP", TOKEN | {"appsecret": "wrong"}),
                call(conn, "/oauth2/tokenP", APPROVAL),  # tokenP names the secret appsecret...
                call(conn, "/oauth2/Approval", TOKEN),  # ... and Approval names it secretkey
                call(conn, "/oauth2/Approval", APPROVAL | {"grant_type": "password"}),
                call(conn, "/oauth2/Approval", "not an object"),
                call(conn, "/uapi/domestic-stock/v1/quotations/inquire-price", TOKEN),
                call(conn, "/oauth2/Approval", method="GET"),
                call(conn, "/oauth2/Approval", APPROVAL),
            ]
            sock = conn.sock
            revoke = {"appkey": "PSapp", "appsecret": "secret-value", "token": replies[0][2]["access_token"]}
            replies.append(call(conn, "/oauth2/revokeP", revoke | {"appsecret": "wrong"}))
            replies.append(call(conn, "/oauth2/revokeP", revoke))
            assert conn.sock is sock
            conn.close()
            return replies

        replies = await in_thread(session)
        now = datetime.now(KST).replace(tzinfo=None)
        [token, other, wrong, swapped, swapped2, grant, garbage, unknown, get, approval, refused, revoked] = (
            replies
        )
        status, _, body = token
        assert status == 200
        assert set(body) == {"access_token", "access_token_token_expired", "token_type", "expires_in"}
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 86400)
        assert len(body["access_token"]) >= 32
        assert body["access_token"] != other[2]["access_token"]
        expires = datetime.strptime(body["access_token_token_expired"], "%Y-%m-%d %H:%M:%S")
        assert abs(expires - (now + timedelta(hours=24))) < timedelta(seconds=30)  # KST, 24 h on
        for reply in (wrong, swapped, swapped2, refused):
            assert reply[::2] == (403, BAD_APPKEY)
        assert grant[0] == garbage[0] == 400
        assert unknown[0] == get[0] == 404
        assert unknown[2] == {"error_description": "Not Found", "error_code": "404"}
        assert approval[0] == 200
        assert server.issued == [approval[2]["approval_key"]]
        assert revoked[::2] == (200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"})
        assert server.tokens == [other[2]["access_token"]]  # the first one is revoked
        assert (server.http_connections, server.http_requests) == (1, 12)


# -- when the connection ends -------------------------------------------------------------------------


@pytest.mark.parametrize("port_of", ["websocket", "approval"])
async def test_a_client_connection_close_is_honoured(port_of: str) -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        port = server.port if port_of == "websocket" else server.approval_port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            client = H11Client(stream)
            response, body = await client.request(
                "/oauth2/Approval", APPROVAL, headers=[("Connection", "close")]
            )
            assert response.status_code == 200
            assert json.loads(body)["approval_key"] in server.issued
            assert (b"connection", b"close") in response.headers
            assert await closed_by_server(stream)


async def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS, http_idle_timeout=1.0) as server:
        assert server.approval_port is not None
        async with await anyio.connect_tcp("127.0.0.1", server.approval_port) as stream:
            client = H11Client(stream)
            for pause in (0.3, 0.3, 0.0):  # pauses shorter than the timeout keep the connection
                await anyio.sleep(pause)
                response, _ = await client.request("/oauth2/Approval", APPROVAL)
                assert response.status_code == 200
            started = anyio.current_time()
            assert await closed_by_server(stream, within=5.0)
            assert anyio.current_time() - started >= 0.5  # after the timeout, not at once
        # A request begun and never finished is cut at the same timeout.
        async with await anyio.connect_tcp("127.0.0.1", server.approval_port) as stream:
            await stream.send(b"POST /oauth2/Approval HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
            assert await closed_by_server(stream, within=5.0)
        assert (server.http_connections, server.http_requests) == (2, 3)


async def test_requests_per_connection_are_bounded() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        port = server.approval_port
        assert port is not None

        def many() -> tuple[list[object], dict[str, str]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            sockets: list[object] = []
            last: dict[str, str] = {}
            for _ in range(HTTP_MAX_REQUESTS):
                sockets.append(conn.sock)
                status, last, _ = call(conn, "/oauth2/Approval", APPROVAL)
                assert status == 200
            status, _, _ = call(conn, "/oauth2/Approval", APPROVAL)  # http.client reconnects
            assert status == 200
            sockets.append(conn.sock)
            conn.close()
            return sockets, last

        sockets, last = await in_thread(many)
        assert last.get("connection") == "close"
        assert len({id(sock) for sock in sockets[1:HTTP_MAX_REQUESTS]}) == 1  # [0]: not yet connected
        assert sockets[-1] is not sockets[1]
        assert (server.http_connections, server.http_requests) == (2, HTTP_MAX_REQUESTS + 1)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_limit_gets_413_and_the_connection_closes(chunked: bool) -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        assert server.approval_port is not None
        async with await anyio.connect_tcp("127.0.0.1", server.approval_port) as stream:
            client = H11Client(stream)
            size = HTTP_MAX_BODY + 1
            framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size))
            head = h11.Request(method="POST", target="/oauth2/Approval", headers=[("Host", "x"), framing])
            out = client.conn.send(head) or b""
            if chunked:  # the body itself: no length up front
                out += client.conn.send(h11.Data(data=b" " * size)) or b""
            await stream.send(out)
            response, body = await client.response()
            assert response.status_code == 413
            assert (b"connection", b"close") in response.headers
            assert json.loads(body)["error_code"] == "413"
            assert await closed_by_server(stream)
        assert server.issued == []


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        assert server.approval_port is not None
        async with await anyio.connect_tcp("127.0.0.1", server.approval_port) as stream:
            data = [json.dumps(b).encode() for b in (APPROVAL, TOKEN)]
            await stream.send(
                b"".join(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(d)}\r\n\r\n".encode() + d
                    for path, d in zip(("/oauth2/Approval", "/oauth2/tokenP"), data, strict=True)
                )
            )
            client = H11Client(stream)
            for path in ("/oauth2/Approval", "/oauth2/tokenP"):  # h11 needs to have "sent" each one
                if client.conn.our_state is h11.DONE:
                    client.conn.start_next_cycle()
                client.conn.send(
                    h11.Request(method="POST", target=path, headers=[("Host", "x"), ("Content-Length", "0")])
                )
                client.conn.send(h11.EndOfMessage())
                response, body = await client.response()
                assert response.status_code == 200
                assert ("approval_key" if path.endswith("Approval") else "access_token") in json.loads(body)
        assert (server.http_connections, server.http_requests) == (1, 2)


async def test_broken_http_gets_400_then_close() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        for port in (server.approval_port, server.port):
            assert port is not None
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                first = (
                    b"POST /oauth2/Approval HTTP/1.1\r\nBad Header\r\n\r\n"
                    if port != server.port
                    else b"garbage\r\n\r\n"
                )
                await stream.send(first)
                with anyio.fail_after(5):
                    answer = await stream.receive()
                assert answer.startswith(b"HTTP/1.1 400 ")
                assert await closed_by_server(stream)


# -- the WebSocket port: what is not an upgrade gets an HTTP answer ---------------------------------------


@pytest.mark.parametrize("app_keys", [APP_KEYS, None])
async def test_http_on_the_websocket_port_gets_json_404(app_keys: dict[str, str] | None) -> None:
    async with kis_sim.serve(app_keys=app_keys) as server:
        port = server.port

        def requests() -> list[Reply]:
            replies = []
            for method, path in [
                ("GET", "/foo"),
                ("PUT", "/oauth2/Approval"),
                ("DELETE", "/"),
                ("POST", "/foo"),
            ]:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                replies.append(call(conn, path, {} if method in ("PUT", "POST") else None, method=method))
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            replies.append(call(conn, "/oauth2/Approval", APPROVAL))  # REST only when it has keys
            conn.close()
            return replies

        *others, approval = await in_thread(requests)
        for status, headers, body in others:
            assert status == 404
            assert headers["content-type"] == "application/json; charset=UTF-8"
            assert body == {"error_description": "Not Found", "error_code": "404"}
        get, put, delete, _ = others
        assert get[1]["connection"] == put[1]["connection"] == delete[1]["connection"] == "close"
        assert approval[0] == (200 if app_keys else 404)
        assert len(server.issued) == (1 if app_keys else 0)


# -- PINGPONG against the websockets library ---------------------------------------------------------------

Answer: TypeAlias = "Callable[[ClientConnection, str], Awaitable[object]]"


async def pong_frame(ws: ClientConnection, text: str) -> None:
    await ws.pong(text)  # the official client: ``await websocket.pong(data)``


async def respaced_echo(ws: ClientConnection, text: str) -> None:
    await ws.send(json.dumps(json.loads(text)))  # python-kis: parsed and dumped again, with spaces


async def ping_frame(ws: ClientConnection, text: str) -> None:
    await ws.ping(text)  # an older official sample: a PING frame carrying the text


async def empty_pong(ws: ClientConnection, text: str) -> None:
    await ws.pong()  # an unsolicited heartbeat: no answer


async def nothing(ws: ClientConnection, text: str) -> None:
    pass


async def run_client(url: str, answer: Answer, pingpongs: list[str]) -> None:
    """Answer every PINGPONG the way `answer` does, until cancelled or dropped."""
    async with connect(url + "/tryitout", ping_interval=None, close_timeout=1) as ws:
        async for message in ws:
            assert isinstance(message, str)
            if json.loads(message)["header"]["tr_id"] == "PINGPONG":
                pingpongs.append(message)
                await answer(ws, message)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # websockets runs on asyncio
@pytest.mark.parametrize(
    ("answer", "how"), [(pong_frame, "pong"), (respaced_echo, "json"), (ping_frame, "ping")]
)
async def test_a_strict_server_keeps_a_client_that_answers(answer: Answer, how: str) -> None:
    pingpongs: list[str] = []
    async with kis_sim.serve(config=STRICT) as server:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_client, server.url, answer, pingpongs)
            await server.wait_for(lambda: bool(server.sessions))
            [session] = server.sessions
            await anyio.sleep(1.3)  # six intervals of 0.2 s
            assert server.sessions == [session]  # never dropped
            assert server.accepted == 1
            tg.cancel_scope.cancel()
    answered = [e for e in session.events if isinstance(e, KeepAliveAnswered)]
    assert len(pingpongs) >= 4
    assert len(answered) >= 4
    assert {e.how for e in answered} == {how}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("answer", [nothing, empty_pong])
async def test_a_strict_server_drops_a_client_that_does_not_answer(answer: Answer) -> None:
    pingpongs: list[str] = []
    sessions: list[ServerSession] = []
    async with kis_sim.serve(config=STRICT) as server:

        async def watch() -> None:
            await server.wait_for(lambda: bool(server.sessions))
            sessions.extend(server.sessions)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                with pytest.raises(ConnectionClosedError):
                    await run_client(server.url, answer, pingpongs)
        await server.wait_for(lambda: not server.sessions)
    assert len(pingpongs) == 1  # dropped when the second was due
    [session] = sessions
    closed = session.events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert "did not answer PINGPONG" in closed.reason
    assert not any(isinstance(e, KeepAliveAnswered) for e in session.events)


async def first_pingpong(url: str) -> dict[str, Any]:
    pingpongs: list[str] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_client, url, pong_frame, pingpongs)
            while not pingpongs:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    message: dict[str, Any] = json.loads(pingpongs[0])
    return message


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pingpong_datetime_is_the_kst_wall_clock() -> None:
    async with kis_sim.serve(config=KISServerConfig(pingpong_interval=0.1)) as server:
        message = await first_pingpong(server.url)
    assert set(message) == {"header"}
    label = datetime.strptime(message["header"]["datetime"], "%Y%m%d%H%M%S")
    assert abs(label - datetime.now(KST).replace(tzinfo=None)) < timedelta(seconds=10)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pingpong_datetime_clock_can_be_injected() -> None:
    config = KISServerConfig(pingpong_interval=0.1)
    async with kis_sim.serve(config=config, datetime_text=lambda now: "20250102030405") as server:
        message = await first_pingpong(server.url)
    assert message == {"header": {"tr_id": "PINGPONG", "datetime": "20250102030405"}}


async def test_hostile_requests_leave_the_server_serving() -> None:
    async with kis_sim.serve(app_keys=APP_KEYS) as server:
        assert server.approval_port is not None
        hostile = [
            (
                server.approval_port,
                b"POST http://[x/oauth2/Approval HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                404,
            ),
            (server.port, b"POST http://[x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404),
            (
                server.port,
                b"GET / HTTP/1.1\r\nHost: xn--zz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                400,
            ),
        ]
        for port, request, status in hostile:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(request)
                with anyio.fail_after(5):
                    answer = await stream.receive()
                assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            response, _ = await H11Client(stream).request("/oauth2/Approval", APPROVAL)
            assert response.status_code == 200  # still serving
