"""`KISServerConnection`: the KIS side of one WebSocket connection, sans-IO.

For the simulator and the tests. It behaves as PROTOCOL.md §12 describes the real service: any
path is accepted; every request is validated and answered with the OPSP code KIS uses; a
successful subscribe carries a per-TR AES key and IV (`encrypt` "Y" on notice TRs); duplicates get
``ALREADY IN SUBSCRIBE``, the 42nd registration ``MAX SUBSCRIBE OVER``; PINGPONG goes out on a
timer, and a strict mode drops clients that never answer it (any of the answers official and
community clients give, PROTOCOL.md §5). A request that is not a WebSocket upgrade gets an HTTP
error with a JSON body rather than a silently dropped socket. Commands let a test or the simulator
send records (plain, encrypted, multi-record) and fail the session the ways KIS does.

Same shape as `KISConnection`: bytes in, events out, `data_to_send()`, `timer()` /
`handle_timer(now)`, no I/O, no clock, no randomness of its own (`random_bytes` is injected).
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from ._codes import MsgCode
from ._crypto import encrypt_payload
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import ConnectionClosed
from .records import RECORD_CLASSES, TRS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "KISServerConfig",
    "KISServerConnection",
    "KeepAliveAnswered",
    "RequestRefused",
    "ServerEvent",
    "SessionOpened",
    "SubscriptionAdded",
    "SubscriptionRemoved",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_BASE_TIME = datetime(2026, 1, 1)


def _http_error(status: int) -> dict[str, str]:
    """The JSON body of an HTTP error from the WebSocket port (the simulator's own, not a KIS capture)."""
    reason = {400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}.get(status, "Error")
    return {"error_code": str(status), "error_description": reason}


def _label_from_monotonic(now: float) -> str:
    """A PINGPONG datetime label from the monotonic `now` (the simulator passes a real clock)."""
    return (_BASE_TIME + timedelta(seconds=now)).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True, slots=True, kw_only=True)
class KISServerConfig:
    """How the simulated KIS server behaves on one connection."""

    #: Registrations allowed per session (KIS: 41; the 42nd gets OPSP0008).
    max_subscriptions: int = 41
    #: Seconds between PINGPONG keep-alives (KIS: about 100 s); None sends none.
    pingpong_interval: float | None = 100.0
    #: Drop a client that has not echoed the previous PINGPONG when the next one is due.
    strict_pingpong: bool = False
    #: Largest client message accepted, in bytes (requests are about 200).
    max_message_size: int = 64 * 1024
    #: How long to wait for the client's close frame after sending ours.
    close_timeout: float = 10.0
    #: Drop (no close frame, as KIS does) a client that sends more subscribe and unsubscribe
    #: requests than this within any one second; None lets any pace through. A fault for testing
    #: the client's pacing: KIS publishes no limit, its own client keeps 20/s (2/s on paper).
    max_request_rate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened:
    """A client completed the WebSocket upgrade (KIS accepts any path)."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionAdded:
    """The server registered (tr_id, tr_key) and sent SUBSCRIBE SUCCESS with this key and IV."""

    tr_id: str
    tr_key: str
    encrypted: bool
    key: str = field(repr=False)
    iv: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRemoved:
    """The server released (tr_id, tr_key) and sent UNSUBSCRIBE SUCCESS."""

    tr_id: str
    tr_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused:
    """The server answered a request with an error code (also ALREADY IN SUBSCRIBE)."""

    msg_cd: str
    message: str
    tr_id: str = ""
    tr_key: str = ""


#: How a client answered PINGPONG: the text echoed verbatim, the same JSON re-serialised (python-kis),
#: a PONG control frame carrying it (the official client since 2023), or a PING frame carrying it
#: (an older official sample).
KeepAliveHow: TypeAlias = Literal["text", "json", "pong", "ping"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAliveAnswered:
    """The client answered the outstanding PINGPONG; `text` is what it sent, `how` the way it did."""

    text: str
    how: KeepAliveHow = "text"


ServerEvent: TypeAlias = (
    SessionOpened
    | SubscriptionAdded
    | SubscriptionRemoved
    | RequestRefused
    | KeepAliveAnswered
    | ConnectionClosed
)


class _State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class KISServerConnection:
    """The KIS end of one WebSocket connection.

    `approval_ok(key)` says whether an approval key is valid; `random_bytes(n)` supplies the
    randomness of AES keys and IVs (``os.urandom``, or ``random.Random(seed).randbytes`` for a
    reproducible simulation). `datetime_text(now)` labels PINGPONGs (default: a fixed base plus
    `now`, so runs are deterministic).
    """

    def __init__(
        self,
        *,
        now: float,
        approval_ok: Callable[[str], bool],
        random_bytes: Callable[[int], bytes],
        config: KISServerConfig | None = None,
        datetime_text: Callable[[float], str] = _label_from_monotonic,
    ) -> None:
        self.config = config or KISServerConfig()
        self._approval_ok = approval_ok
        self._random_bytes = random_bytes
        self._datetime_text = datetime_text
        self._ws = WSConnection(ConnectionType.SERVER)
        self._state = _State.CONNECTING
        self._out = bytearray()
        self._events: deque[ServerEvent] = deque()
        self._subs: dict[tuple[str, str], None] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._message: list[str] = []
        self._message_size = 0
        self._pingpong_due: float | None = None
        self._unanswered: str | None = None  # the last PINGPONG text, until answered
        self._unanswered_value: object = None  # ... and its JSON value, for re-serialised echoes
        self._close_due: float | None = None
        self._eof = False
        self._request_times: deque[float] = deque()  # of the last second, for max_request_rate
        del now  # nothing is due before the handshake

    # -- introspection ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the connection is over: flush `data_to_send()`, then close the socket."""
        return self._state is _State.CLOSED

    @property
    def subscriptions(self) -> list[tuple[str, str]]:
        """The registrations of this session, in order."""
        return list(self._subs)

    def key_for(self, tr_id: str) -> tuple[str, str] | None:
        """The (key, iv) this session uses for `tr_id`'s encrypted frames, once subscribed."""
        return self._keys.get(tr_id)

    def __repr__(self) -> str:
        return f"<KISServerConnection {self._state.value} subscriptions={len(self._subs)}>"

    # -- output ------------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Everything queued to go out, in order."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def events(self) -> list[ServerEvent]:
        """Drain the events produced so far (`ConnectionClosed` last)."""
        events = list(self._events)
        self._events.clear()
        return events

    def timer(self) -> float | None:
        """When `handle_timer` is next due, or None."""
        deadlines = [d for d in (self._pingpong_due, self._close_due) if d is not None]
        return min(deadlines) if deadlines and self._state is not _State.CLOSED else None

    # -- commands ----------------------------------------------------------------------------------
    def send_records(self, tr_id: str, rows: Sequence[Sequence[str]]) -> None:
        """Send one data frame carrying `rows` (1 to 999 records), encrypted on notice TRs.

        An encrypted TR must have been subscribed in this session (its key comes from the ack).
        """
        self._require_open("send records")
        if not 1 <= len(rows) <= 999:
            raise LocalProtocolError(f"a frame carries 1 to 999 records, not {len(rows)}")
        payload = "^".join("^".join(row) for row in rows)
        cls = RECORD_CLASSES.get(tr_id)
        encrypted = cls is not None and TRS[cls.__name__].encrypted
        if encrypted:
            pair = self._keys.get(tr_id)
            if pair is None:
                raise LocalProtocolError(f"{tr_id} is encrypted and not subscribed in this session: no key")
            self._send_text(f"1|{tr_id}|{len(rows):03d}|{encrypt_payload(payload, *pair)}")
        else:
            self._send_text(f"0|{tr_id}|{len(rows):03d}|{payload}")

    def send_text(self, text: str) -> None:
        """Send any text message (faults: garbage, truncated frames, unknown JSON)."""
        self._require_open("send text")
        self._send_text(text)

    def send_bytes(self, data: bytes) -> None:
        """Queue raw bytes on the socket, outside WebSocket framing (faults: invalid UTF-8, bad frames)."""
        self._require_open("send bytes")
        self._out += data

    def send_pingpong(self, now: float) -> None:
        """Send a PINGPONG keep-alive now."""
        self._require_open("send PINGPONG")
        text = json.dumps(
            {"header": {"tr_id": "PINGPONG", "datetime": self._datetime_text(now)}}, separators=(",", ":")
        )
        self._unanswered = text
        self._unanswered_value = json.loads(text)
        self._send_text(text)

    def refuse_in_use(self) -> None:
        """Do what KIS does to a second session of an appkey: OPSP8996, then drop the socket."""
        self._require_open("refuse the session")
        self._reply(MsgCode.ALREADY_IN_USE_APPKEY, rt_cd="9")
        self.abort("ALREADY IN USE appkey")

    def abort(self, reason: str = "aborted") -> None:
        """End the connection without a close frame (the transport drops the socket)."""
        if self._state is not _State.CLOSED:
            self._finish(ConnectionClosed(code=1006, reason=reason))

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Start the closing handshake. Idempotent."""
        if self._state is _State.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self._state = _State.CLOSING
            self._close_due = now + self.config.close_timeout
            self._pingpong_due = None
        elif self._state is _State.CONNECTING:
            self.abort("closed before the handshake")

    # -- network input -------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, *, now: float) -> None:
        """Feed bytes from the client. Never raises on client input."""
        if self._eof:
            raise LocalProtocolError("receive_data after receive_eof: the stream has ended")
        if self._state is _State.CLOSED or not data:
            return
        try:
            self._ws.receive_data(bytes(data))
            for event in self._ws.events():
                if self.closed:  # a property: mypy must not narrow the state across the call below
                    return
                self._on_ws_event(event, now)
        except WSRemoteProtocolError as exc:
            if self._state is _State.CONNECTING:
                self._refuse_handshake(exc)
            else:
                self._fail(1002, f"bad request from the client: {exc}")
        except WSLocalProtocolError as exc:
            self._fail(1002, f"bad request from the client: {exc}")
        except UnicodeError as exc:  # wsproto decodes the Host header as IDNA, unguarded
            if self._state is _State.CONNECTING:
                self._refuse_handshake(exc)
            else:
                self._fail(1007, f"undecodable text from the client: {exc}")

    def receive_eof(self, *, now: float) -> None:
        """The client's socket ended. Idempotent."""
        if self._eof:
            return
        self._eof = True
        if self._state is not _State.CLOSED:
            self._finish(
                ConnectionClosed(code=1006, reason="the client closed the socket without a close frame")
            )

    def handle_timer(self, now: float) -> None:
        """Send PINGPONG when due (dropping a silent client in strict mode); end a stalled close."""
        if self._state is _State.CLOSED:
            return
        if self._close_due is not None and now >= self._close_due:
            self._finish(ConnectionClosed(code=1000, reason="the client did not answer the close"))
            return
        if self._pingpong_due is not None and now >= self._pingpong_due:
            if self.config.strict_pingpong and self._unanswered is not None:
                self.abort("the client did not answer PINGPONG")
                return
            self.send_pingpong(now)
            assert self.config.pingpong_interval is not None
            self._pingpong_due = now + self.config.pingpong_interval

    # -- internals -----------------------------------------------------------------------------------
    def _require_open(self, what: str) -> None:
        if self._state is not _State.OPEN:
            raise LocalProtocolError(f"cannot {what}: the connection is {self._state.value}")

    def _send_text(self, text: str) -> None:
        self._out += self._ws.send(Message(data=text))

    def _finish(self, closed: ConnectionClosed) -> None:
        self._state = _State.CLOSED
        self._pingpong_due = self._close_due = None
        self._events.append(closed)

    def _fail(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason[:120]))
        self._finish(
            ConnectionClosed(code=code, reason=reason, error=RemoteProtocolError(reason, close_code=code))
        )

    def _refuse_handshake(self, exc: WSRemoteProtocolError | UnicodeError) -> None:
        """Answer a request that is no WebSocket upgrade with an HTTP error and a JSON body.

        A GET without ``Upgrade: websocket`` or another method is a REST call to a path the
        WebSocket port does not serve: 404. A request HTTP cannot parse (or an undecodable Host)
        gets 400, an upgrade with another WebSocket version what wsproto says (426). The socket
        closes after the answer.
        """
        status = 404
        extra: list[tuple[bytes, bytes]] = []
        if isinstance(exc, UnicodeError) or isinstance(exc.__context__, h11.RemoteProtocolError):
            status = 400
        elif isinstance(exc.event_hint, RejectConnection) and exc.event_hint.status_code != 400:
            status, extra = exc.event_hint.status_code, list(exc.event_hint.headers)
        body = json.dumps(_http_error(status), ensure_ascii=False).encode()
        headers = [
            (b"Content-Type", b"application/json; charset=UTF-8"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"),
            *extra,
        ]
        try:
            self._out += self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            self._out += self._ws.send(RejectData(data=body, body_finished=True))
        except (WSLocalProtocolError, h11.LocalProtocolError):
            pass  # HEAD: the head is out and a body is not allowed; or h11 can answer nothing
        self._fail(1002, f"not a WebSocket upgrade (HTTP {status}): {exc}")

    def _on_ws_event(self, event: object, now: float) -> None:
        if isinstance(event, Request):
            self._out += self._ws.send(AcceptConnection())
            self._state = _State.OPEN
            if self.config.pingpong_interval is not None:
                self._pingpong_due = now + self.config.pingpong_interval
            self._events.append(SessionOpened(path=event.target))
        elif isinstance(event, TextMessage):
            self._message_size += len(event.data)
            if self._message_size > self.config.max_message_size:
                self._fail(1009, f"a client message exceeds {self.config.max_message_size} bytes")
                return
            self._message.append(event.data)
            if event.message_finished:
                text = "".join(self._message)
                self._message.clear()
                self._message_size = 0
                self._on_request(text, now)
        elif isinstance(event, Ping):
            self._out += self._ws.send(event.response())
            self._keepalive_frame(bytes(event.payload), "ping")
        elif isinstance(event, Pong):
            self._keepalive_frame(bytes(event.payload), "pong")
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.OPEN:  # a malformed frame, reported by wsproto
                self._fail(event.code, f"protocol error: {event.reason or event.code}")
                return
            by_peer = self._state is _State.OPEN
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._out += self._ws.send(event.response())
            self._finish(
                ConnectionClosed(code=event.code, reason=event.reason or "", clean=True, by_peer=by_peer)
            )
        elif isinstance(event, BytesMessage) and event.message_finished:
            self._reply(MsgCode.JSON_INVALID_FORMAT, rt_cd="9")

    def _reply(
        self,
        code: MsgCode,
        *,
        rt_cd: str = "1",
        tr_id: str = "(null)",
        tr_key: str = "",
        encrypt: str = "N",
        message: str | None = None,
        output: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {"rt_cd": rt_cd, "msg_cd": code.value, "msg1": message or code.text}
        if output is not None:
            body["output"] = output
        reply = {"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt}, "body": body}
        self._send_text(json.dumps(reply, separators=(",", ":"), ensure_ascii=False))
        if code is not MsgCode.SUBSCRIBE_SUCCESS and code is not MsgCode.UNSUBSCRIBE_SUCCESS:
            self._events.append(
                RequestRefused(msg_cd=code.value, message=message or code.text, tr_id=tr_id, tr_key=tr_key)
            )

    def _too_fast(self, now: float) -> bool:
        """Count one request at `now`; True when the last second holds more than the limit."""
        limit = self.config.max_request_rate
        if limit is None:
            return False
        times = self._request_times
        times.append(now)
        while times and times[0] <= now - 1.0:
            times.popleft()
        return len(times) > limit

    def _on_request(self, text: str, now: float) -> None:
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            self._reply(MsgCode.JSON_INVALID_FORMAT, rt_cd="9")
            return
        header = request.get("header")
        if isinstance(header, dict) and header.get("tr_id") == "PINGPONG" and "body" not in request:
            # Never refused (KIS sends no reply to it); it counts only if it answers ours.
            if text == self._unanswered:
                self._answered(text, "text")
            elif self._unanswered is not None and request == self._unanswered_value:
                self._answered(text, "json")
            return
        refusal = self._validate(request)
        if refusal is not None:
            code, tr_id, tr_key, message = refusal
            self._reply(
                code, tr_id=tr_id, tr_key=tr_key, message=message, rt_cd="9" if tr_id == "(null)" else "1"
            )
            return
        header = request["header"]
        tr_id, tr_key = request["body"]["input"]["tr_id"], request["body"]["input"]["tr_key"]
        if self._too_fast(now):
            self.abort(f"requests faster than {self.config.max_request_rate:g} per second")
            return
        if header["tr_type"] == "1":
            self._subscribe(tr_id, tr_key)
        else:
            self._unsubscribe(tr_id, tr_key)

    def _keepalive_frame(self, payload: bytes, how: KeepAliveHow) -> None:
        """A PING or PONG control frame answers PINGPONG when it carries its text (or equal JSON).

        An empty or unrelated payload (a library's own keep-alive, an unsolicited pong) does not.
        """
        if self._unanswered is None or not payload:
            return
        try:
            text = payload.decode()
            matches = text == self._unanswered or json.loads(text) == self._unanswered_value
        except (UnicodeDecodeError, ValueError, RecursionError):
            return
        if matches:
            self._answered(text, how)

    def _answered(self, text: str, how: KeepAliveHow) -> None:
        self._unanswered = self._unanswered_value = None
        self._events.append(KeepAliveAnswered(text=text, how=how))

    def _validate(self, request: dict[str, Any]) -> tuple[MsgCode, str, str, str | None] | None:
        """The refusal KIS would send for `request` (PROTOCOL.md §12.3), or None if it is valid."""
        header = request.get("header")
        if not isinstance(header, dict):
            return MsgCode.JSON_HEADER_NOT_FOUND, "(null)", "", None
        custtype = header.get("custtype")
        if custtype is None:
            return MsgCode.JSON_CUSTTYPE_NOT_FOUND, "(null)", "", None
        if custtype not in ("P", "B"):
            return MsgCode.JSON_INVALID_CUSTTYPE, "(null)", "", None
        if header.get("tr_type") not in ("1", "2"):
            return MsgCode.JSON_INVALID_TR_TYPE, "(null)", "", None
        body = request.get("body")
        if not isinstance(body, dict):
            return MsgCode.JSON_BODY_NOT_FOUND, "(null)", "", None
        given = body.get("input")
        if not isinstance(given, dict) or not given:
            return MsgCode.JSON_INPUT_NOT_FOUND, "(null)", "", None
        tr_id, tr_key = given.get("tr_id"), given.get("tr_key")
        if not isinstance(tr_key, str) or not tr_key:
            return MsgCode.JSON_TR_KEY_NOT_FOUND, "(null)", "", None
        if not isinstance(tr_id, str) or tr_id not in RECORD_CLASSES:
            return MsgCode.INVALID_TR_ID, str(tr_id), tr_key, None
        key = header.get("approval_key")
        if not isinstance(key, str) or not self._approval_ok(key):
            # KIS echoes the key it refused (the client redacts it).
            return (
                MsgCode.INVALID_APPROVAL,
                tr_id,
                tr_key,
                f"invalid approval : {key if isinstance(key, str) else ''}",
            )
        return None

    def _subscribe(self, tr_id: str, tr_key: str) -> None:
        encrypted = TRS[RECORD_CLASSES[tr_id].__name__].encrypted
        encrypt = "Y" if encrypted else "N"
        if (tr_id, tr_key) in self._subs:
            self._reply(MsgCode.ALREADY_IN_SUBSCRIBE, tr_id=tr_id, tr_key=tr_key, encrypt=encrypt)
            return
        if len(self._subs) >= self.config.max_subscriptions:
            self._reply(MsgCode.MAX_SUBSCRIBE_OVER, tr_id=tr_id, tr_key=tr_key, encrypt=encrypt)
            return
        if tr_id not in self._keys:
            raw = self._random_bytes(40)
            key = "".join(_LETTERS[b % 26] for b in raw[:32])
            self._keys[tr_id] = (key, raw[32:40].hex())
        key, iv = self._keys[tr_id]
        self._subs[(tr_id, tr_key)] = None
        self._reply(
            MsgCode.SUBSCRIBE_SUCCESS,
            rt_cd="0",
            tr_id=tr_id,
            tr_key=tr_key,
            encrypt=encrypt,
            output={"iv": iv, "key": key},
        )
        self._events.append(
            SubscriptionAdded(tr_id=tr_id, tr_key=tr_key, encrypted=encrypted, key=key, iv=iv)
        )

    def _unsubscribe(self, tr_id: str, tr_key: str) -> None:
        if (tr_id, tr_key) not in self._subs:
            self._reply(MsgCode.UNSUBSCRIBE_NOT_FOUND, tr_id=tr_id, tr_key=tr_key)
            return
        del self._subs[(tr_id, tr_key)]
        self._reply(MsgCode.UNSUBSCRIBE_SUCCESS, rt_cd="0", tr_id=tr_id, tr_key=tr_key)
        self._events.append(SubscriptionRemoved(tr_id=tr_id, tr_key=tr_key))
