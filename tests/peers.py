"""An independent server peer for connection tests: wsproto's own server role, driven by the test.

It is deliberately not kis_proto's server role, so client tests check the client against a
second implementation of WebSocket rather than against its twin.
"""

from __future__ import annotations

import json
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from kis_proto import Event, KISConnection

HOST, PORT = "127.0.0.1", 21000


class WsprotoServer:
    """A scripted KIS server: accepts the upgrade, parses requests, sends what the test says."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.request: Request | None = None
        self.texts: list[str] = []  # every complete text message the client sent
        self.pongs: list[bytes] = []
        self.pings: list[bytes] = []
        self.close: CloseConnection | None = None
        self._partial: list[str] = []

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The client's text messages parsed as JSON (subscribe/unsubscribe requests)."""
        out: list[dict[str, Any]] = []
        for text in self.texts:
            try:
                out.append(json.loads(text))
            except ValueError:
                continue
        return out

    def receive(self, data: bytes) -> bytes:
        """Feed client bytes; return the server's automatic replies (close reply)."""
        replies = b""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Request):
                self.request = event
            elif isinstance(event, TextMessage):
                self._partial.append(event.data)
                if event.message_finished:
                    self.texts.append("".join(self._partial))
                    self._partial.clear()
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.close = event
                if self.ws.state.name == "REMOTE_CLOSING":
                    replies += self.ws.send(event.response())
            elif isinstance(event, BytesMessage):
                raise TypeError("the client sent a binary message; KIS clients send text")
        return replies

    def accept(self) -> bytes:
        return self.ws.send(AcceptConnection())

    def reject(self, status: int = 403) -> bytes:
        return self.ws.send(RejectConnection(status_code=status, has_body=False))

    def text(self, data: str, *, finished: bool = True) -> bytes:
        return self.ws.send(Message(data=data, message_finished=finished))

    def binary(self, data: bytes) -> bytes:
        return self.ws.send(Message(data=data))

    def ping(self, payload: bytes = b"hi") -> bytes:
        return self.ws.send(Ping(payload=payload))

    def close_with(self, code: int = 1000, reason: str = "") -> bytes:
        return self.ws.send(CloseConnection(code=code, reason=reason))


def ack(tr_id: str, tr_key: str, *, key: str = "k" * 32, iv: str = "0" * 16, encrypt: str = "N") -> str:
    """A SUBSCRIBE SUCCESS reply as KIS sends it."""
    return json.dumps(
        {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt},
            "body": {
                "rt_cd": "0",
                "msg_cd": "OPSP0000",
                "msg1": "SUBSCRIBE SUCCESS",
                "output": {"iv": iv, "key": key},
            },
        }
    )


def connected_pair(now: float = 0.0, **kwargs: Any) -> tuple[KISConnection, WsprotoServer]:
    """A client that finished its handshake with a fresh server; its Connected event drained."""
    client = KISConnection(approval_key="approval-key-0123", host=HOST, port=PORT, now=now, **kwargs)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    client.receive_data(server.accept(), now=now)
    events = client.events()
    assert [type(e).__name__ for e in events] == ["Connected"]
    return client, server


def pump(client: KISConnection, server: WsprotoServer, data: bytes, *, now: float) -> list[Event]:
    """Deliver server bytes to the client, the client's replies to the server; return client events."""
    client.receive_data(data, now=now)
    out = client.data_to_send()
    if out:
        back = server.receive(out)
        if back and not client.closed:
            client.receive_data(back, now=now)
    return client.events()
