"""KISConnection against a second independent server: the `websockets` library's sans-IO server."""

from __future__ import annotations

import json

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from kis_proto import Connected, ConnectionClosed, KISConnection, PingPong, Subscribed, records

from .helpers import sample
from .peers import ack


def handshake() -> tuple[KISConnection, ServerProtocol]:
    client = KISConnection(approval_key="approval", host="127.0.0.1", port=21000, now=0.0)
    server = ServerProtocol()
    server.receive_data(client.data_to_send())
    [request] = server.events_received()
    assert isinstance(request, Request)  # websockets validated our upgrade request
    assert request.path == "/tryitout"
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()), now=0.0)
    assert client.events() == [Connected(path="/tryitout")]
    return client, server


def frames_from(client: KISConnection, server: ServerProtocol) -> list[Frame]:
    server.receive_data(client.data_to_send())
    return [f for f in server.events_received() if isinstance(f, Frame)]


def test_requests_records_and_keepalive_with_websockets() -> None:
    client, server = handshake()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    [request] = frames_from(client, server)  # websockets checked our masking and framing
    assert json.loads(bytes(request.data))["body"]["input"] == {"tr_id": "H0STCNT0", "tr_key": "005930"}

    server.send_text(ack("H0STCNT0", "005930").encode())
    server.send_text(sample("0|H0STCNT0").encode())
    keepalive = '{"header":{"tr_id":"PINGPONG","datetime":"20260101000000"}}'
    server.send_text(keepalive.encode())
    client.receive_data(b"".join(server.data_to_send()), now=2.0)
    subscribed, trade, ping = client.events()
    assert isinstance(subscribed, Subscribed)
    assert isinstance(trade, records.H0STCNT0)
    assert trade.price == 62700
    assert ping == PingPong(text=keepalive)
    [echo] = frames_from(client, server)
    assert (echo.opcode, bytes(echo.data).decode()) == (Opcode.TEXT, keepalive)


def test_fragmented_message_and_close_with_websockets() -> None:
    client, server = handshake()
    text = sample("0|HDFSCNT0").encode()
    server.send_text(text[:20], fin=False)
    server.send_continuation(text[20:], fin=True)
    server.send_close(1001, "bye")
    client.receive_data(b"".join(server.data_to_send()), now=1.0)
    trade, closed = client.events()
    assert isinstance(trade, records.HDFSCNT0)
    assert trade.symbol == "AAPL"
    assert closed == ConnectionClosed(code=1001, reason="bye", clean=True, by_peer=True)
    [reply] = frames_from(client, server)
    assert reply.opcode is Opcode.CLOSE
