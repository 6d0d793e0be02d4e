"""KISServerConnection: against kis_proto's client (piped, no sockets) and against a raw wsproto client."""

from __future__ import annotations

import base64
import json
import random
from typing import TYPE_CHECKING, Any

import h11
import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import unpad
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Pong, Request, TextMessage

from kis_proto import (
    ConnectionClosed,
    KISConnection,
    LocalProtocolError,
    MsgCode,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    decode_message,
    records,
)
from kis_proto.server import (
    KeepAliveAnswered,
    KISServerConfig,
    KISServerConnection,
    RequestRefused,
    SessionOpened,
    SubscriptionAdded,
    SubscriptionRemoved,
)

from .helpers import VECTOR_PLAINTEXT, fields_of, sample

if TYPE_CHECKING:
    from collections.abc import Callable

    from kis_proto._server import KeepAliveHow

APPROVAL = "3daa450a-0685-4c31-b015-99c5e5f4b11d"


def make_server(now: float = 0.0, **config: Any) -> KISServerConnection:
    return KISServerConnection(
        now=now,
        approval_ok=lambda key: key == APPROVAL,
        random_bytes=random.Random(7).randbytes,
        config=KISServerConfig(**config),
    )


def settle(client: KISConnection, server: KISServerConnection, *, now: float) -> None:
    """Move bytes both ways until neither side has anything to say (with a round cap)."""
    for _ in range(50):
        a, b = client.data_to_send(), server.data_to_send()
        if not a and not b:
            if server.closed and not client.closed:
                client.receive_eof(now=now)  # the server's transport drops the socket
                continue
            return
        if a and not server.closed:
            server.receive_data(a, now=now)
        if b and not client.closed:
            client.receive_data(b, now=now)
    raise AssertionError("too many round trips")


def pair(now: float = 0.0, **config: Any) -> tuple[KISConnection, KISServerConnection]:
    client = KISConnection(approval_key=APPROVAL, host="127.0.0.1", port=21000, now=now)
    server = make_server(now, **config)
    settle(client, server, now=now)
    assert [type(e).__name__ for e in client.events()] == ["Connected"]
    assert server.events() == [SessionOpened(path="/tryitout")]
    return client, server


class RawClient:
    """A bare wsproto client that sends whatever JSON a test writes."""

    def __init__(self, server: KISServerConnection, path: str = "/any/path") -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.server = server
        self.texts: list[str] = []
        self.closed: CloseConnection | None = None
        self.pongs: list[bytes] = []
        self.deliver(self.ws.send(Request(host="sim", target=path)))

    def deliver(self, data: bytes, now: float = 0.0) -> None:
        self.server.receive_data(data, now=now)
        self.take()

    def take(self) -> None:
        self.ws.receive_data(self.server.data_to_send())
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self.texts.append(event.data)
            elif isinstance(event, CloseConnection):
                self.closed = event
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            else:
                assert isinstance(event, AcceptConnection)

    def send(self, message: object) -> dict[str, Any]:
        text = message if isinstance(message, str) else json.dumps(message)
        self.deliver(self.ws.send(Message(data=text)))
        reply: dict[str, Any] = json.loads(self.texts[-1])
        return reply


def request(
    tr_id: str = "H0STCNT0", tr_key: str = "005930", *, tr_type: str = "1", **header: Any
) -> dict[str, Any]:
    head = {"approval_key": APPROVAL, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"} | header
    return {"header": head, "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}}}


# -- with kis_proto's client ---------------------------------------------------------------------------


def test_subscribe_and_records_end_to_end() -> None:
    client, server = pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    settle(client, server, now=1.0)
    [added] = server.events()
    assert isinstance(added, SubscriptionAdded)
    [subscribed] = client.events()
    assert isinstance(subscribed, Subscribed)
    assert (subscribed.key, subscribed.iv) == (added.key, added.iv)
    assert len(added.key) == 32
    assert added.key.isalpha()
    assert added.key.islower()
    assert len(added.iv) == 16
    assert int(added.iv, 16) >= 0
    rows = [fields_of(sample("0|H0STCNT0", 0)), fields_of(sample("0|H0STCNT0", 1))]
    server.send_records("H0STCNT0", rows)
    settle(client, server, now=2.0)
    assert [r.price for r in client.events() if isinstance(r, records.H0STCNT0)] == [62700, 250500]


def test_encrypted_notices_end_to_end() -> None:
    client, server = pair()
    client.subscribe("H0STCNI9", "myhtsid", now=1.0)
    settle(client, server, now=1.0)
    [subscribed] = client.events()
    assert isinstance(subscribed, Subscribed)
    assert subscribed.encrypted
    server.send_records("H0STCNI9", [VECTOR_PLAINTEXT.split("^")] * 2)
    frame = server.data_to_send()
    client.receive_data(frame, now=2.0)
    recs = client.events()
    assert [type(r) for r in recs] == [records.H0STCNI0] * 2
    assert all(
        isinstance(r, records.H0STCNI0) and r.tr_id == "H0STCNI9" and r.acnt_name == "홍길동" for r in recs
    )


def test_encrypted_tr_needs_a_subscription_for_its_key() -> None:
    _, server = pair()
    with pytest.raises(LocalProtocolError, match="no key"):
        server.send_records("H0STCNI0", [VECTOR_PLAINTEXT.split("^")])


def test_pingpong_on_a_timer_and_the_echo() -> None:
    client, server = pair(now=0.0, pingpong_interval=100.0)
    assert server.timer() == 100.0
    server.handle_timer(99.0)
    assert server.data_to_send() == b""
    server.handle_timer(100.0)
    settle(client, server, now=100.0)
    [ping] = client.events()
    assert isinstance(ping, PingPong)
    assert json.loads(ping.text) == {"header": {"tr_id": "PINGPONG", "datetime": "20260101000140"}}
    assert server.events() == [KeepAliveAnswered(text=ping.text)]
    assert server.timer() == 200.0


def test_strict_mode_drops_a_client_that_never_echoes() -> None:
    server = make_server(0.0, pingpong_interval=10.0, strict_pingpong=True)
    raw = RawClient(server)  # answers nothing
    server.events()
    server.handle_timer(10.0)
    raw.take()
    assert "PINGPONG" in raw.texts[-1]
    server.handle_timer(20.0)
    closed = server.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert "PINGPONG" in closed.reason
    assert server.closed


def test_in_use_refusal_then_the_socket_drops() -> None:
    client, server = pair()
    server.refuse_in_use()
    client.receive_data(server.data_to_send(), now=1.0)
    client.receive_eof(now=1.0)
    events = client.events()
    assert isinstance(events[0], ServerError)
    assert events[0].code is MsgCode.ALREADY_IN_USE_APPKEY
    assert isinstance(events[-1], ConnectionClosed)
    assert events[-1].code == 1006
    assert server.closed


def test_invalid_approval_key_is_refused() -> None:
    client = KISConnection(approval_key="wrong-key", host="h", port=1, now=0.0)
    server = make_server()
    settle(client, server, now=0.0)
    client.events()
    client.subscribe("H0STCNT0", "005930", now=0.0)
    settle(client, server, now=0.0)
    [error] = client.events()
    assert isinstance(error, ServerError)
    assert error.code is MsgCode.INVALID_APPROVAL
    assert "wrong-key" not in error.message  # echoed by the server, redacted by the client
    assert client.subscriptions == {}  # the refused request is over: no ack timeout follows
    assert client.timer() == 150.0


def test_close_handshakes_both_ways() -> None:
    client, server = pair()
    client.close(now=1.0)
    settle(client, server, now=1.0)
    assert isinstance(client.events()[-1], ConnectionClosed)
    assert server.events() == [ConnectionClosed(code=1000, clean=True, by_peer=True)]

    client, server = pair()
    server.close(1001, "maintenance", now=1.0)
    settle(client, server, now=1.0)
    closed = client.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert (closed.code, closed.reason, closed.by_peer) == (1001, "maintenance", True)
    assert server.closed


def test_unsubscribe_end_to_end() -> None:
    client, server = pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    settle(client, server, now=1.0)
    client.unsubscribe("H0STCNT0", "005930", now=2.0)
    settle(client, server, now=2.0)
    assert server.events()[-1] == SubscriptionRemoved(tr_id="H0STCNT0", tr_key="005930")
    assert server.subscriptions == []
    assert client.subscriptions == {}


# -- with a raw client: every reply code ---------------------------------------------------------------


def test_duplicate_and_the_42nd_registration() -> None:
    server = make_server()
    raw = RawClient(server)
    assert server.events() == [SessionOpened(path="/any/path")]
    first = raw.send(request())
    assert first["body"]["msg_cd"] == "OPSP0000"
    again = raw.send(request())
    assert (again["body"]["rt_cd"], again["body"]["msg_cd"]) == ("1", "OPSP0002")
    for n in range(1, 41):
        assert raw.send(request(tr_key=f"{n:06d}"))["body"]["msg_cd"] == "OPSP0000"
    over = raw.send(request(tr_key="999999"))
    assert over["body"]["msg_cd"] == "OPSP0008"
    assert len(server.subscriptions) == 41
    [event] = list(decode_message(json.dumps(over)))
    assert isinstance(event, SubscribeFailed)


def test_notice_ack_says_encrypted() -> None:
    raw = RawClient(make_server())
    reply = raw.send(request("H0STCNI0", "myhtsid"))
    assert reply["header"]["encrypt"] == "Y"
    key, iv = reply["body"]["output"]["key"], reply["body"]["output"]["iv"]
    assert len(key) == 32
    assert len(iv) == 16


def test_unsubscribe_not_found() -> None:
    raw = RawClient(make_server())
    reply = raw.send(request(tr_type="2"))
    assert reply["body"]["msg_cd"] == "OPSP0003"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", MsgCode.JSON_INVALID_FORMAT),
        ("[1]", MsgCode.JSON_INVALID_FORMAT),
        ({"body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}}}, MsgCode.JSON_HEADER_NOT_FOUND),
        ({"header": {"approval_key": APPROVAL, "tr_type": "1"}, "body": {}}, MsgCode.JSON_CUSTTYPE_NOT_FOUND),
        (request(custtype="X"), MsgCode.JSON_INVALID_CUSTTYPE),
        (request(tr_type="0"), MsgCode.JSON_INVALID_TR_TYPE),
        ({"header": request()["header"]}, MsgCode.JSON_BODY_NOT_FOUND),
        ({"header": request()["header"], "body": {"input": {}}}, MsgCode.JSON_INPUT_NOT_FOUND),
        (
            {"header": request()["header"], "body": {"input": {"tr_id": "H0STCNT0"}}},
            MsgCode.JSON_TR_KEY_NOT_FOUND,
        ),
        (request("H0XXXXX0"), MsgCode.INVALID_TR_ID),
        (request(approval_key="nope"), MsgCode.INVALID_APPROVAL),
        ({"header": {"custtype": "P", "tr_type": "1"}, "body": request()["body"]}, MsgCode.INVALID_APPROVAL),
    ],
)
def test_every_malformed_request_gets_its_code(message: object, code: MsgCode) -> None:
    server = make_server()
    raw = RawClient(server)
    server.events()
    reply = raw.send(message)
    assert reply["body"]["msg_cd"] == code.value
    assert reply["body"]["rt_cd"] in ("1", "9")
    [refused] = server.events()
    assert isinstance(refused, RequestRefused)
    assert refused.msg_cd == code.value
    assert not server.closed


def test_refused_approval_is_echoed_like_kis() -> None:
    raw = RawClient(make_server())
    reply = raw.send(request(approval_key="0123-key"))
    assert reply["body"]["msg1"] == "invalid approval : 0123-key"


def test_raw_fault_injection() -> None:
    client, server = pair()
    server.send_bytes(bytes([0x81, 2, 0xC3, 0x28]))  # a text frame with invalid UTF-8
    client.receive_data(server.data_to_send(), now=1.0)
    closed = client.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.code == 1007


def test_commands_need_an_open_connection() -> None:
    server = make_server()
    with pytest.raises(LocalProtocolError, match="connecting"):
        server.send_text("x")
    server.receive_eof(now=0.0)
    assert server.closed
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"x", now=0.0)


def test_encrypted_frame_on_the_wire_decrypts_independently() -> None:
    server = make_server()
    raw = RawClient(server)
    assert server.key_for("H0STCNI0") is None
    reply = raw.send(request("H0STCNI0", "me"))
    key, iv = reply["body"]["output"]["key"], reply["body"]["output"]["iv"]
    assert server.key_for("H0STCNI0") == (key, iv)
    server.send_records("H0STCNI0", [VECTOR_PLAINTEXT.split("^")])
    raw.take()
    flag, tr_id, count, blob = raw.texts[-1].split("|")
    assert (flag, tr_id, count) == ("1", "H0STCNI0", "001")
    cipher = AES.new(key.encode(), AES.MODE_CBC, iv.encode())
    assert unpad(cipher.decrypt(base64.b64decode(blob)), 16).decode() == VECTOR_PLAINTEXT


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_server_never_raises_on_client_bytes(chunks: list[bytes]) -> None:
    server = make_server()
    for chunk in chunks:
        server.receive_data(chunk, now=0.0)
        server.data_to_send()
    server.handle_timer(1000.0)
    server.receive_eof(now=1000.0)
    events = server.events()
    assert isinstance(events[-1], ConnectionClosed)
    assert sum(isinstance(e, ConnectionClosed) for e in events) == 1


def test_server_refuses_a_client_frame_with_bad_utf8_and_answers_pings() -> None:
    server = make_server()
    raw = RawClient(server)
    raw.deliver(raw.ws.send(Ping(payload=b"p")))
    assert raw.pongs == [b"p"]
    assert "<KISServerConnection open" in repr(server)
    masked = raw.ws.send(Message(data="x"))  # a valid masked frame; corrupt its payload into bad UTF-8
    bad = masked[:-1] + bytes([masked[-1] ^ ord("x") ^ 0xFF])
    raw.deliver(bad)
    closed = server.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.code == 1007


def test_server_limits() -> None:
    server = make_server(max_message_size=100)
    raw = RawClient(server)
    raw.deliver(raw.ws.send(Message(data="x" * 101)))
    assert isinstance(server.events()[-1], ConnectionClosed)
    with pytest.raises(LocalProtocolError, match="closed"):
        server.send_records("H0STCNT0", [["1"]])


def test_server_frame_size_and_binary_requests() -> None:
    server = make_server()
    raw = RawClient(server)
    with pytest.raises(LocalProtocolError, match="999"):
        server.send_records("H0STCNT0", [["1"]] * 1000)
    raw.deliver(raw.ws.send(Message(data=b"\x00")))
    assert json.loads(raw.texts[-1])["body"]["msg_cd"] == "OPSP9999"
    server.send_text("hello")
    raw.take()
    assert raw.texts[-1] == "hello"


# -- PINGPONG answers (PROTOCOL.md §5): every form official and community clients send ------------------


def pingpong_sent(strict: bool = True) -> tuple[KISServerConnection, RawClient, str]:
    """A session (strict by default, every 10 s) that has just sent its first PINGPONG."""
    server = make_server(0.0, pingpong_interval=10.0, strict_pingpong=strict)
    raw = RawClient(server)
    server.events()
    server.handle_timer(10.0)
    raw.take()
    text = raw.texts[-1]
    assert json.loads(text)["header"]["tr_id"] == "PINGPONG"
    return server, raw, text


def survives_the_next_interval(server: KISServerConnection, raw: RawClient) -> bool:
    """Whether a strict server sends its next PINGPONG at 20 s rather than dropping the client."""
    before = len(raw.texts)
    server.handle_timer(20.0)
    raw.take()
    return not server.closed and len(raw.texts) == before + 1 and "PINGPONG" in raw.texts[-1]


def respaced(text: str) -> str:
    """What python-kis echoes: the PINGPONG parsed and dumped again (``json.dumps`` adds spaces)."""
    again = json.dumps(json.loads(text))
    assert again != text
    return again


@pytest.mark.parametrize(
    ("frame", "how"),
    [
        (lambda text: Message(data=text), "text"),  # the verbatim echo (legacy samples, M)
        (lambda text: Message(data=respaced(text)), "json"),  # python-kis
        (lambda text: Pong(payload=text.encode()), "pong"),  # the official client since 2023
        (lambda text: Pong(payload=respaced(text).encode()), "pong"),
        (lambda text: Ping(payload=text.encode()), "ping"),  # an older official sample
    ],
)
def test_each_form_of_answer_keeps_a_strict_session(frame: Callable[[str], Any], how: KeepAliveHow) -> None:
    server, raw, text = pingpong_sent()
    sent = frame(text)
    raw.deliver(raw.ws.send(sent))
    payload = sent.data if isinstance(sent, Message) else bytes(sent.payload).decode()
    assert server.events() == [KeepAliveAnswered(text=payload, how=how)]
    assert survives_the_next_interval(server, raw)


def test_a_ping_answer_is_still_answered_with_a_pong() -> None:
    _, raw, text = pingpong_sent()
    raw.deliver(raw.ws.send(Ping(payload=text.encode())))
    assert raw.pongs == [text.encode()]


@pytest.mark.parametrize(
    "frame",
    [
        Pong(payload=b""),  # unsolicited pong (RFC 6455 allows it as a heartbeat)
        Ping(payload=b""),  # a library's own keep-alive ping
        Pong(payload=b"keepalive"),
        Pong(payload=b"\xff\xfe"),  # not UTF-8
        Pong(payload=b'{"header":{"tr_id":"PINGPONG","datetime":"20250101000000"}}'),  # another PINGPONG
        Message(data='{"header":{"tr_id":"PINGPONG","datetime":"20250101000000"}}'),
        Message(data='{"header":{"tr_id":"PINGPONG"}}'),
    ],
)
def test_non_answers_do_not_count_and_strict_mode_drops(frame: Any) -> None:
    server, raw, _ = pingpong_sent()
    texts = len(raw.texts)
    raw.deliver(raw.ws.send(frame))
    assert server.events() == []
    assert len(raw.texts) == texts  # a PINGPONG-shaped text gets no error reply either
    server.handle_timer(20.0)
    assert server.closed
    closed = server.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert "did not answer PINGPONG" in closed.reason


def test_an_answer_before_any_pingpong_or_a_second_answer_does_not_count() -> None:
    server = make_server(0.0, pingpong_interval=10.0, strict_pingpong=True)
    raw = RawClient(server)
    server.events()
    early = '{"header":{"tr_id":"PINGPONG","datetime":"20260101000010"}}'
    raw.deliver(raw.ws.send(Message(data=early)))  # the very text that will be sent at 10 s
    raw.deliver(raw.ws.send(Pong(payload=early.encode())))
    assert server.events() == []
    server.handle_timer(10.0)
    raw.take()
    assert raw.texts[-1] == early
    raw.deliver(raw.ws.send(Message(data=early)))
    raw.deliver(raw.ws.send(Pong(payload=early.encode())))  # both forms, as some clients do: one answer
    assert server.events() == [KeepAliveAnswered(text=early, how="text")]


def test_lenient_mode_keeps_a_silent_client() -> None:
    server, raw, _ = pingpong_sent(strict=False)
    assert survives_the_next_interval(server, raw)
    assert server.events() == []


def test_the_pingpong_label_comes_from_the_injected_clock() -> None:
    server = KISServerConnection(
        now=0.0,
        approval_ok=lambda key: True,
        random_bytes=random.Random(1).randbytes,
        config=KISServerConfig(pingpong_interval=5.0),
        datetime_text=lambda now: f"2025010203{int(now):04d}",
    )
    raw = RawClient(server)
    server.handle_timer(5.0)
    raw.take()
    assert json.loads(raw.texts[-1]) == {"header": {"tr_id": "PINGPONG", "datetime": "20250102030005"}}


# -- a request that is no WebSocket upgrade gets an HTTP answer, not a dropped socket ---------------------


def http_exchange(request: h11.Request) -> tuple[h11.Response, bytes, KISServerConnection]:
    """Send `request` from an h11 client to a fresh server; the response, its body and the server."""
    client = h11.Connection(h11.CLIENT)
    server = make_server()
    server.receive_data(client.send(request) + client.send(h11.EndOfMessage()), now=0.0)
    client.receive_data(server.data_to_send())
    client.receive_data(b"")  # the server then drops the socket
    response, body = None, b""
    while (event := client.next_event()) is not h11.PAUSED and not isinstance(event, h11.ConnectionClosed):
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
    assert response is not None
    return response, body, server


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"DELETE", b"POST"])
def test_a_request_without_upgrade_gets_404_json(method: bytes) -> None:
    headers = [(b"Host", b"sim"), (b"Content-Length", b"0")]
    response, body, server = http_exchange(h11.Request(method=method, target=b"/foo?x=1", headers=headers))
    assert response.status_code == 404
    assert (b"connection", b"close") in response.headers
    assert (b"content-type", b"application/json; charset=UTF-8") in response.headers
    assert json.loads(body) == {"error_code": "404", "error_description": "Not Found"}
    assert server.closed
    closed = server.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert "not a WebSocket upgrade" in closed.reason


def test_a_head_request_gets_the_head_only() -> None:
    response, body, server = http_exchange(
        h11.Request(method=b"HEAD", target=b"/", headers=[(b"Host", b"x")])
    )
    assert response.status_code == 404
    assert body == b""
    assert server.closed


def test_wrong_websocket_version_and_broken_http() -> None:
    headers = [
        (b"Host", b"sim"),
        (b"Connection", b"Upgrade"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Version", b"8"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    ]
    response, _, _ = http_exchange(h11.Request(method=b"GET", target=b"/", headers=headers))
    assert response.status_code == 426
    assert (b"sec-websocket-version", b"13") in response.headers
    server = make_server()
    server.receive_data(b"NOT HTTP AT ALL\r\n\r\n", now=0.0)
    assert server.data_to_send().startswith(b"HTTP/1.1 400 ")
    assert server.closed


@pytest.mark.parametrize("host", [b"xn--zz", b"\x80"])
def test_an_undecodable_host_gets_400_rather_than_an_exception(host: bytes) -> None:
    # wsproto decodes Host as IDNA and lets UnicodeError out; under serve() it would end every session.
    server = make_server()
    server.receive_data(
        b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        now=0.0,
    )
    assert server.data_to_send().startswith(b"HTTP/1.1 400 ")
    assert server.closed
