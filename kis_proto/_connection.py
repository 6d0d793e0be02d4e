"""`KISConnection`: the client side of one KIS WebSocket connection, sans-IO.

Theory of operation. One object per socket. The transport feeds it bytes (`receive_data`), the
end of the stream (`receive_eof`) and the time (`now=`, any monotonic clock, and
`handle_timer(now)` when `timer()` is due); it writes out `data_to_send()` after every call and
hands `events()` to the application. The object never does I/O and never reads a clock.

Underneath, wsproto does the HTTP upgrade and the framing; this class adds what wsproto leaves
to its user: automatic replies (Pong, the close reply, the PINGPONG echo), a
message-size cap checked on each frame header before any payload is buffered, reassembly of
fragmented messages, timeouts, and KIS itself: requests, acks, records.

Rules of the road:

* Commands (`subscribe`, `unsubscribe`, `close`) queue bytes and raise `LocalProtocolError` on
  misuse, leaving the state unchanged.
* Peer input never raises. A protocol fault queues the matching close frame and ends the
  connection with a `ConnectionClosed` that carries a `RemoteProtocolError`. One message that
  cannot be decoded is an `UndecodableMessage`, and the feed goes on.
* `ConnectionClosed` is always the last event; bytes fed after it are dropped.

All state transitions are in `_TRANSITIONS`; nothing else assigns `self._state`.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.events import (
    Event as WSEvent,
)
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from ._codec import MessageDecoder, check_approval_key, check_subscription, subscribe_message
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Connected,
    ConnectionClosed,
    DecodeFailure,
    Event,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ConnState", "KISConfig", "KISConnection"]

logger = logging.getLogger("kis_proto.connection")

# WebSocket close codes used here (RFC 6455 §7.4.1).
NORMAL = 1000
PROTOCOL_ERROR = 1002
ABNORMAL = 1006
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011


@dataclass(frozen=True, slots=True, kw_only=True)
class KISConfig:
    """Limits and timeouts of one connection. Every default has a reason."""

    #: The request target. The current official client uses ``/tryitout``; KIS accepts any path.
    path: str = "/tryitout"
    #: ``P`` (individual) or ``B`` (corporate), sent in every request header.
    custtype: str = "P"
    #: Largest message accepted, in bytes (the websockets library's default, 1 MiB). A 999-record
    #: H0STASP0 frame is about 400 KiB; anything larger is a fault, closed with 1009.
    max_message_size: int = 1 << 20
    #: KIS allows 41 registrations per session (PROTOCOL.md §9); the 42nd is refused.
    max_subscriptions: int = 41
    #: No bytes from the server for this long means it is gone. KIS sends PINGPONG about every
    #: 100 s even with no market data, so 150 s leaves room for one late keep-alive.
    idle_timeout: float = 150.0
    #: How long the opening handshake may take.
    open_timeout: float = 10.0
    #: How long a subscribe or unsubscribe may wait for its ack before it is reported failed.
    subscribe_timeout: float = 10.0
    #: How long to wait for the server's close frame after sending ours.
    close_timeout: float = 10.0
    #: Decode plain text frames without wsproto (about 2.5x faster end to end; see
    #: bench/bench_connection.py). False sends every byte through wsproto: the reference behaviour
    #: the fast path is tested against.
    fast_path: bool = True
    #: Also emit each received text message as a `TextReceived` event, before its decoded events
    #: (for recording a session; `kis-ws record` uses it).
    emit_text: bool = False
    #: Subscribe and unsubscribe requests sent per second at most, evenly spaced, on the first
    #: connect and every restore alike (41 at 20/s take 2 s). None: no pacing on a bare
    #: connection; the transports' feeds fill in KIS's own client's pace, 20/s (2/s on paper).
    request_rate: float | None = None
    #: How long a fetched approval key is used before the feed fetches a new one, in seconds.
    #: KIS's keys last 24 h; a session that stays up for days renews an hour early, so no
    #: request ever carries an expired key (`FeedCore.renew_at`).
    approval_key_renew_after: float = 23 * 3600.0

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise LocalProtocolError(f"path must start with '/', e.g. '/tryitout', not {self.path!r}")
        if self.custtype not in ("P", "B"):
            raise LocalProtocolError(f"custtype must be 'P' or 'B', not {self.custtype!r}")
        for name in ("max_message_size", "max_subscriptions"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        for name in (
            "idle_timeout",
            "open_timeout",
            "subscribe_timeout",
            "close_timeout",
            "approval_key_renew_after",
        ):
            value = getattr(self, name)
            if not value > 0:  # also refuses NaN
                raise LocalProtocolError(f"{name} must be a positive number of seconds, not {value!r}")
        rate = self.request_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0):
            raise LocalProtocolError(
                f"request_rate must be a positive number of requests per second (math.inf: no pacing) or None, not {rate!r}"
            )


class ConnState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"  # upgrade request queued, waiting for 101
    OPEN = "open"
    CLOSING = "closing"  # our close frame queued, waiting for the server's
    CLOSED = "closed"  # terminal: ConnectionClosed has been emitted


class _Input(enum.Enum):
    ACCEPTED = enum.auto()
    REJECTED = enum.auto()
    SEND_CLOSE = enum.auto()
    CLOSED = enum.auto()  # close handshake done, EOF, timeout, or a fatal fault


_TRANSITIONS: Final[dict[tuple[ConnState, _Input], ConnState]] = {
    (ConnState.CONNECTING, _Input.ACCEPTED): ConnState.OPEN,
    (ConnState.CONNECTING, _Input.REJECTED): ConnState.CLOSED,
    (ConnState.CONNECTING, _Input.CLOSED): ConnState.CLOSED,
    (ConnState.OPEN, _Input.SEND_CLOSE): ConnState.CLOSING,
    (ConnState.OPEN, _Input.CLOSED): ConnState.CLOSED,
    (ConnState.CLOSING, _Input.CLOSED): ConnState.CLOSED,
}


class _Sub(enum.Enum):
    """A registration as this connection sees it."""

    QUEUED = "queued"  # asked for, not sent yet: before the handshake, or waiting for its turn
    PENDING = "pending"  # request sent, no ack yet
    ACTIVE = "active"
    RELEASING = "releasing"  # unsubscribe sent, no ack yet (still counts toward the cap)


_CONTROL_EVENTS: Final = frozenset({PingPong, Subscribed, Unsubscribed, SubscribeFailed, ServerError})


def _frame_header(buf: bytes, pos: int) -> tuple[int, int, bool] | None:
    """(header length, payload length, valid) of the frame starting at `pos`; None if incomplete.

    `valid` is False for a header wsproto refuses (as a client without extensions): a reserved
    opcode or bit, a mask, a fragmented or over-125-byte control frame, or a length not in its
    shortest form (RFC 6455 §5.2). Such a frame is wsproto's to refuse (1002), never our size
    check's (1009): wsproto may refuse it before the header is complete, so deciding here would
    make the outcome depend on how the bytes were cut.
    """
    if len(buf) - pos < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    short = length = second & 0x7F
    head = 2 + (4 if second & 0x80 else 0)
    if length == 126:
        head += 2
        if len(buf) - pos < head:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
    elif length == 127:
        head += 8
        if len(buf) - pos < head:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
    if len(buf) - pos < head:
        return None
    opcode = first & 0x0F
    valid = (
        not first & 0x70
        and not second & 0x80
        and opcode in _OPCODES
        and (opcode < 8 or (first & 0x80 and short < 126))
        and (short < 126 or (length >= 126 if short == 126 else 65536 <= length < 1 << 63))
    )
    return head, length, bool(valid)


_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})


class KISConnection:
    """One client connection to the KIS real-time WebSocket service.

    Create it when the TCP socket is up; it queues the HTTP upgrade at once, so the transport's
    first act is to write `data_to_send()`. After every call below, write `data_to_send()` and
    hand out `events()`; when `closed` turns True, close the socket.
    """

    def __init__(
        self,
        *,
        approval_key: str,
        host: str,
        port: int,
        now: float,
        config: KISConfig | None = None,
    ) -> None:
        self.config = config or KISConfig()
        check_approval_key(approval_key)
        self._approval_key = approval_key
        self._state = ConnState.CONNECTING
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._decoder = MessageDecoder()
        self._handshake_bytes = bytearray()  # the upgrade response, until it is complete
        self._header = b""  # a partial frame header (already given to wsproto), at most 13 bytes
        self._skip = 0  # bytes left of the frame wsproto is reading
        self._in_message = False  # wsproto is inside a fragmented message
        self._binary_head = b""  # the first bytes of a binary message, for the report
        self._message: list[str] = []  # fragments of the text message being reassembled
        self._message_size = 0
        self._subs: dict[tuple[str, str], _Sub] = {}
        self._ack_deadlines: dict[tuple[str, str], float] = {}
        # Requests waiting for their turn at `request_rate`: (key, True to subscribe / False to
        # release). What is sent is decided when its turn comes, from `_subs`.
        self._outbox: deque[tuple[tuple[str, str], bool]] = deque()
        rate = self.config.request_rate
        self._spacing = 0.0 if rate is None else 1.0 / rate
        self._send_at = -math.inf  # when the next request may leave
        self._eof = False
        self._close_code = NORMAL
        self._deadline = now + self.config.open_timeout  # open, idle or close deadline by state
        self._host = host
        self._out += self._ws.send(Request(host=f"{host}:{port}", target=self.config.path))

    # -- introspection ---------------------------------------------------------------------------
    @property
    def state(self) -> ConnState:
        """The connection's state."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the connection is over: flush `data_to_send()`, then close the socket."""
        return self._state is ConnState.CLOSED

    @property
    def subscriptions(self) -> dict[tuple[str, str], str]:
        """Each (tr_id, tr_key) this connection registered or is registering, with its state."""
        return {key: sub.value for key, sub in self._subs.items()}

    def __repr__(self) -> str:
        return (
            f"<KISConnection {self._state.value} {self._host}{self.config.path} "
            f"subscriptions={len(self._subs)}>"
        )

    # -- output ------------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Everything queued to go out, in order; b"" when nothing is pending."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def events(self) -> list[Event]:
        """Drain the events produced so far (a `ConnectionClosed` is always the last one)."""
        events = list(self._events)
        self._events.clear()
        return events

    def timer(self) -> float | None:
        """The earliest time at which `handle_timer` must be called, or None when closed."""
        if self._state is ConnState.CLOSED:
            return None
        deadline = self._deadline
        if self._ack_deadlines:
            deadline = min(deadline, min(self._ack_deadlines.values()))
        if self._outbox and self._state is ConnState.OPEN:
            deadline = min(deadline, self._send_at)
        return deadline

    # -- commands ----------------------------------------------------------------------------------
    def set_approval_key(self, approval_key: str) -> None:
        """Use a renewed approval key in every request from now on (the session itself stays)."""
        check_approval_key(approval_key)
        self._approval_key = approval_key

    def subscribe(self, tr_id: str, tr_key: str, *, now: float) -> None:
        """Register (tr_id, tr_key); the answer comes as `Subscribed` or `SubscribeFailed`.

        Legal while connecting (sent when the handshake completes) and open. Subscribing to
        something already registered does nothing. Raises `LocalProtocolError` after `close`,
        for a malformed tr_id or tr_key, and for a registration past `max_subscriptions`.
        """
        self._require_usable("subscribe")
        check_subscription(tr_id, tr_key)
        key = (tr_id, tr_key)
        if key in self._subs:
            return
        if len(self._subs) >= self.config.max_subscriptions:
            raise LocalProtocolError(
                f"cannot subscribe {tr_id}/{tr_key}: this session already has {len(self._subs)} "
                f"registrations and KIS allows {self.config.max_subscriptions}; unsubscribe one first"
            )
        self._subs[key] = _Sub.QUEUED
        self._outbox.append((key, True))
        if self._state is ConnState.OPEN:
            self._send_due(now)

    def unsubscribe(self, tr_id: str, tr_key: str, *, now: float) -> None:
        """Release (tr_id, tr_key); the answer comes as `Unsubscribed` or `SubscribeFailed`.

        Raises `LocalProtocolError` after `close` or for something this connection did not subscribe.
        """
        self._require_usable("unsubscribe")
        key = (tr_id, tr_key)
        sub = self._subs.get(key)
        if sub is None:
            raise LocalProtocolError(f"{tr_id}/{tr_key} is not subscribed on this connection")
        if sub is _Sub.QUEUED:  # never sent: just forget it (its turn in the outbox is skipped)
            del self._subs[key]
            return
        if sub is _Sub.RELEASING:
            return
        self._subs[key] = _Sub.RELEASING
        self._outbox.append((key, False))
        self._send_due(now)

    def _send_due(self, now: float) -> None:
        """Send the requests whose turn has come at `request_rate` (all of them without a rate)."""
        outbox = self._outbox
        while outbox and now >= self._send_at:
            key, subscribe = outbox.popleft()
            sub = self._subs.get(key)
            if subscribe and sub is _Sub.QUEUED:
                self._subs[key] = _Sub.PENDING
            elif subscribe or sub is not _Sub.RELEASING:
                continue  # withdrawn meanwhile: it takes no turn
            self._send_text(
                subscribe_message(
                    self._approval_key, *key, custtype=self.config.custtype, subscribe=subscribe
                )
            )
            self._ack_deadlines[key] = now + self.config.subscribe_timeout
            if self._spacing:
                self._send_at = now + self._spacing

    def close(self, code: int = NORMAL, *, now: float) -> None:
        """Start the closing handshake (or, while connecting, just give up).

        Idempotent: closing a closing or closed connection does nothing, so a transport may call
        it from cleanup code. `ConnectionClosed` follows when the server answers, the socket ends,
        or `close_timeout` passes.
        """
        if not (code == NORMAL or 3000 <= code <= 4999 or code in (1001, 1008, 1011)):
            raise LocalProtocolError(f"close code {code} is not one an endpoint may send; use 1000")
        if self._state is ConnState.CONNECTING:
            self._finish(ConnectionClosed(code=code, reason="closed before the handshake completed"))
        elif self._state is ConnState.OPEN:
            self._close_code = code
            self._out += self._ws.send(CloseConnection(code=code))
            self._fire(_Input.SEND_CLOSE)
            self._deadline = now + self.config.close_timeout
            self._ack_deadlines.clear()
            self._outbox.clear()

    # -- network input -------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, *, now: float) -> None:
        """Feed bytes read from the socket. Never raises on anything the server sends.

        Raises `LocalProtocolError` only if called after `receive_eof` (a transport bug).
        """
        if self._eof:
            raise LocalProtocolError("receive_data after receive_eof: the stream has ended")
        if self._state is ConnState.CLOSED or not data:
            return
        data = bytes(data)
        if self._state is ConnState.CONNECTING:
            data = self._receive_handshake(data, now)
            if not data or self.closed:  # frames can follow the 101 only if it was accepted
                return
        elif self._state is ConnState.OPEN:
            self._deadline = now + self.config.idle_timeout
        self._receive_frames(data, now)

    def _receive_handshake(self, data: bytes, now: float) -> bytes:
        """Feed wsproto the upgrade response only; return the frame bytes that follow it, if any.

        wsproto gets exactly the HTTP head, so its frame parser starts empty and every frame
        byte goes through `_receive_frames`.
        """
        before = len(self._handshake_bytes)
        self._handshake_bytes += data
        end = self._handshake_bytes.find(b"\r\n\r\n")
        if end < 0:
            head, rest = data, b""
        else:
            cut = max(0, end + 4 - before)
            head, rest = data[:cut], data[cut:]
            self._handshake_bytes = bytearray()
        try:
            self._ws.receive_data(head)
        except (WSLocalProtocolError, WSRemoteProtocolError) as exc:
            self._fail(PROTOCOL_ERROR, f"bad upgrade response: {exc}")
            return b""
        self._process(now)
        return rest

    def _receive_frames(self, data: bytes, now: float) -> None:
        """Walk the frames in `data`: plain text frames decoded here, every other byte to wsproto.

        The walk tracks frame boundaries itself, so a header announcing more than
        `max_message_size` closes the connection with 1009 before any payload is buffered (wsproto
        would accept any length). With `fast_path`, a complete, unfragmented, unmasked TEXT frame
        with no reserved bits (nearly every KIS message) is decoded without wsproto; every other
        byte goes to wsproto in stream order, so wsproto sees exactly the stream it would have
        seen, less some whole text frames it would have handled the same way. Nothing is
        buffered here but at most one partial frame header.
        """
        fast = self.config.fast_path
        limit = self.config.max_message_size
        size = len(data)
        pos = run = 0  # data[run:pos] is owed to wsproto
        view = memoryview(data)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            if fast and not self._header and data[pos] == 0x81 and pos + 1 < size and data[pos + 1] < 0x80:
                # Unmasked FIN+TEXT: the usual KIS message. Short and 16-bit lengths inline; a
                # length in a longer form than it needs is wsproto's to refuse, as below.
                length = data[pos + 1]
                head, shortest = 2, True
                if length == 126:
                    head, length = 4, int.from_bytes(data[pos + 2 : pos + 4], "big")
                    shortest = length >= 126
                elif length == 127:
                    head, length = 10, int.from_bytes(data[pos + 2 : pos + 10], "big")
                    shortest = 65536 <= length < 1 << 63
                end = pos + head + length  # past `size` when the frame (or its header) is incomplete
                if end <= size and length <= limit and shortest:
                    if run < pos:
                        self._to_wsproto(data[run:pos], now)
                        if self._state is ConnState.CLOSED:
                            return
                    run = pos
                    if not self._in_message:
                        try:
                            text = str(view[pos + head : end], "utf-8")
                        except UnicodeDecodeError:
                            pass  # wsproto refuses it below, with 1007
                        else:
                            self._on_message(text)
                            pos = run = end
                            continue
            # Any other frame: its bytes go to wsproto; track its header to find where it ends.
            header = self._header + data[pos : pos + 14 - len(self._header)]
            parsed = _frame_header(header, 0)
            if parsed is None:
                self._header = header
                pos = size
                break
            head, length, valid = parsed
            start = pos - len(self._header)
            pos += head - len(self._header)
            self._header = b""
            if valid and header[0] & 0x0F < 8 and length > limit:
                if run < start:
                    self._to_wsproto(data[run:start], now)
                if self._state is not ConnState.CLOSED:
                    self._fail(MESSAGE_TOO_BIG, f"a frame announces {length} bytes; the limit is {limit}")
                return
            self._skip = length
        if run < size:
            self._to_wsproto(data[run:size], now)

    def _to_wsproto(self, chunk: bytes, now: float) -> None:
        self._ws.receive_data(chunk)
        self._process(now)

    def receive_eof(self, *, now: float) -> None:
        """The socket reached EOF (or broke). Idempotent."""
        if self._eof:
            return
        self._eof = True
        if self._state is ConnState.CLOSED:
            return
        reason = "the server closed the socket without a close frame"
        if self._state is ConnState.CONNECTING:
            reason = "the server closed the socket during the opening handshake"
        self._finish(
            ConnectionClosed(
                code=ABNORMAL, reason=reason, error=RemoteProtocolError(reason, close_code=ABNORMAL)
            )
        )

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed; does nothing before `timer()`."""
        if self._state is ConnState.CLOSED:
            return
        if self._outbox and self._state is ConnState.OPEN:
            self._send_due(now)
        for key, deadline in list(self._ack_deadlines.items()):
            if now >= deadline:
                del self._ack_deadlines[key]
                sub = self._subs.pop(key, None)
                verb = "unsubscribe" if sub is _Sub.RELEASING else "subscribe"
                self._events.append(
                    SubscribeFailed(
                        tr_id=key[0],
                        tr_key=key[1],
                        msg_cd="",
                        message=f"no reply to the {verb} request within {self.config.subscribe_timeout:g} s",
                        timed_out=True,
                    )
                )
        if now < self._deadline:
            return
        if self._state is ConnState.CONNECTING:
            self._fail(ABNORMAL, f"the opening handshake took longer than {self.config.open_timeout:g} s")
        elif self._state is ConnState.OPEN:
            self._fail(
                INTERNAL_ERROR,
                f"no data from the server, not even a PINGPONG, for {self.config.idle_timeout:g} s",
            )
        else:
            reason = f"the server did not answer the close within {self.config.close_timeout:g} s"
            self._finish(ConnectionClosed(code=self._close_code, reason=reason))

    # -- internals -----------------------------------------------------------------------------------
    def _fire(self, event: _Input) -> None:
        try:
            self._state = _TRANSITIONS[(self._state, event)]
        except KeyError:
            raise AssertionError(f"no transition from {self._state} on {event}") from None

    def _require_usable(self, command: str) -> None:
        if self._state is not ConnState.CONNECTING and self._state is not ConnState.OPEN:
            raise LocalProtocolError(
                f"cannot {command}: the connection is {self._state.value}; open a new KISConnection"
            )

    def _send_text(self, text: str) -> None:
        self._out += self._ws.send(Message(data=text))

    def _finish(self, closed: ConnectionClosed) -> None:
        """Emit the terminal event and stop."""
        self._fire(_Input.CLOSED)
        self._ack_deadlines.clear()
        self._outbox.clear()
        self._message.clear()
        self._events.append(closed)

    def _fail(self, code: int, reason: str) -> None:
        """A fault: queue our close frame if the WebSocket is up, then end."""
        error = RemoteProtocolError(reason, close_code=code)
        logger.debug("closing with %d: %s", code, reason)
        if self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason[:120]))
        self._finish(ConnectionClosed(code=code, reason=reason, error=error))

    def _process(self, now: float) -> None:
        for event in self._ws_events():
            if self._state is ConnState.CLOSED:
                return
            if isinstance(event, TextMessage):
                self._on_text(event)
            elif isinstance(event, Ping):
                self._out += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            elif isinstance(event, AcceptConnection):
                self._on_accept(now)
            elif isinstance(event, RejectConnection):
                self._on_reject(event.status_code)
            elif isinstance(event, BytesMessage):
                self._on_bytes(event)
            # Pong, RejectData: nothing to do.

    def _ws_events(self) -> Iterator[WSEvent]:
        try:
            yield from self._ws.events()
        except (WSLocalProtocolError, WSRemoteProtocolError) as exc:  # pragma: no cover - defensive
            self._fail(PROTOCOL_ERROR, f"WebSocket error: {exc}")

    def _on_accept(self, now: float) -> None:
        self._fire(_Input.ACCEPTED)
        self._deadline = now + self.config.idle_timeout
        self._events.append(Connected(path=self.config.path))
        self._send_due(now)  # what was asked for while connecting, at the pace

    def _on_reject(self, status: int) -> None:
        reason = f"the server refused the WebSocket upgrade with HTTP {status}"
        self._finish(
            ConnectionClosed(
                code=ABNORMAL, reason=reason, error=RemoteProtocolError(reason, close_code=ABNORMAL)
            )
        )

    def _on_close(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.OPEN:
            # wsproto reports a malformed frame as a CloseConnection while still open.
            self._fail(event.code, f"protocol error: {event.reason or event.code}")
            return
        by_peer = self._state is ConnState.OPEN
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._out += self._ws.send(event.response())
        self._finish(
            ConnectionClosed(code=event.code, reason=event.reason or "", clean=True, by_peer=by_peer)
        )

    def _on_bytes(self, event: BytesMessage) -> None:
        # KIS sends text only: a binary message is reported (its size and first bytes), not kept.
        self._message_size += len(event.data)
        if self._message_size > self.config.max_message_size:
            self._fail(MESSAGE_TOO_BIG, f"a message exceeds {self.config.max_message_size} bytes")
            return
        if len(self._binary_head) < 32:
            self._binary_head += bytes(event.data[: 32 - len(self._binary_head)])
        self._in_message = not event.message_finished
        if event.message_finished:
            size, self._message_size = self._message_size, 0
            head, self._binary_head = self._binary_head, b""
            self._events.append(
                UndecodableMessage(
                    failure=DecodeFailure.UNKNOWN_MESSAGE,
                    reason=f"a binary message of {size} bytes (KIS sends text only)",
                    raw=head.hex(),
                )
            )

    def _on_text(self, event: TextMessage) -> None:
        # Size is counted in characters; a character is at least one byte on the wire, and
        # every single frame over the byte limit has already been refused from its header.
        self._message_size += len(event.data)
        if self._message_size > self.config.max_message_size:
            self._fail(MESSAGE_TOO_BIG, f"a message exceeds {self.config.max_message_size} bytes")
            return
        if not event.message_finished:
            self._in_message = True
            self._message.append(event.data)
            return
        self._in_message = False
        if self._message:
            self._message.append(event.data)
            text = "".join(self._message)
            self._message.clear()
        else:
            text = event.data
        self._message_size = 0
        self._on_message(text)

    def _on_message(self, text: str) -> None:
        """One complete text message: decode it, answer PINGPONG, track acks."""
        if self.config.emit_text:
            self._events.append(TextReceived(text=text))
        decoded = self._decoder.decode(text)
        # Control messages give exactly one event; one exact-type lookup skips records.
        if len(decoded) == 1 and type(decoded[0]) in _CONTROL_EVENTS:
            single = decoded[0]
            if isinstance(single, PingPong):
                self._send_text(text)  # echo the keep-alive verbatim, as a TEXT frame
            elif isinstance(single, Subscribed | Unsubscribed | SubscribeFailed):
                self._on_ack(single)
            elif isinstance(single, ServerError) and (single.tr_id, single.tr_key) in self._subs:
                # A session-level refusal that names a request (e.g. invalid approval): that request
                # is over; the ServerError itself is the answer the application sees.
                self._subs.pop((single.tr_id, single.tr_key))
                self._ack_deadlines.pop((single.tr_id, single.tr_key), None)
        self._events.extend(decoded)

    def _on_ack(self, ack: Subscribed | Unsubscribed | SubscribeFailed) -> None:
        key = (ack.tr_id, ack.tr_key)
        self._ack_deadlines.pop(key, None)
        if isinstance(ack, Subscribed):
            if self._subs.get(key) is _Sub.PENDING:  # not one being released meanwhile
                self._subs[key] = _Sub.ACTIVE
        else:
            self._subs.pop(key, None)
