"""The events kis_proto produces.

Every event is a frozen, slotted, keyword-only dataclass, except data records, which are
`Record` subclasses (immutable too, but built on a faster path because a busy feed makes
thousands a second). `Event` is the union to `match` over, with `assert_never` for exhaustiveness.

Nothing secret appears in a repr: AES keys and IVs are hidden, and a server message that echoes
the approval key has it replaced by ``<redacted>`` before it reaches an event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from ._codes import MsgCode
from ._fields import Record

if TYPE_CHECKING:
    from ._errors import RemoteProtocolError

__all__ = [
    "Connected",
    "ConnectionClosed",
    "DecodeFailure",
    "Event",
    "LayoutDrift",
    "PingPong",
    "ServerError",
    "SubscribeFailed",
    "Subscribed",
    "TextReceived",
    "UndecodableMessage",
    "Unsubscribed",
]


class _Coded:
    """Gives a reply event the typed form of its `msg_cd`."""

    __slots__ = ()
    msg_cd: str

    @property
    def code(self) -> MsgCode | None:
        """The typed code, or None for a code this version does not know."""
        return MsgCode.lookup(self.msg_cd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribed(_Coded):
    """KIS accepted a registration (``OPSP0000``), or says it already had it (``OPSP0002``).

    `key` and `iv` are the AES-256 key and IV strings exactly as the ack carried them; KIS sends
    them on every successful ack, and uses them for the TR's encrypted frames (`encrypted`).
    """

    tr_id: str
    tr_key: str
    encrypted: bool
    key: str | None = field(default=None, repr=False)
    iv: str | None = field(default=None, repr=False)
    #: True for ``OPSP0002 ALREADY IN SUBSCRIBE`` (common right after a reconnect).
    already_subscribed: bool = False
    msg_cd: str = MsgCode.SUBSCRIBE_SUCCESS.value
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribed(_Coded):
    """KIS released a registration (``OPSP0001 UNSUBSCRIBE SUCCESS``)."""

    tr_id: str
    tr_key: str
    msg_cd: str = MsgCode.UNSUBSCRIBE_SUCCESS.value
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeFailed(_Coded):
    """KIS refused one subscribe or unsubscribe request; the session goes on.

    `msg_cd` is the code as sent, known or not; `code` is the typed `MsgCode` (None when this
    version does not know the code). For a refused unsubscribe the code is ``OPSP0003``.
    """

    tr_id: str
    tr_key: str
    msg_cd: str
    message: str
    rt_cd: str = ""
    #: True when no reply came in time (the connection's ``subscribe_timeout``); msg_cd is then "".
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerError(_Coded):
    """A session-level refusal: ``ALREADY IN USE appkey``, ``invalid approval``, a JSON parse error.

    KIS sends these with header tr_id ``(null)``, or with no header at all; after ``OPSP8996`` it
    drops the socket. `message` never contains the approval key (KIS echoes it; it is redacted).
    """

    msg_cd: str
    message: str
    rt_cd: str = ""
    tr_id: str = ""
    tr_key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PingPong:
    """The server's application keep-alive. Echo `text` back, unchanged, as a TEXT frame."""

    text: str


class DecodeFailure(enum.Enum):
    """Why a message could not be turned into records or a control event."""

    #: Neither a data frame nor JSON.
    UNKNOWN_MESSAGE = "unknown message"
    #: A data frame whose header (flag|tr_id|count|) is malformed.
    BAD_FRAME = "malformed data frame"
    #: The number of fields does not split into the announced number of records.
    BAD_RECORD_COUNT = "field count does not match the record count"
    #: An encrypted frame for a TR with no key (no SUBSCRIBE SUCCESS seen for it).
    NO_KEY = "no AES key for this TR"
    #: An encrypted frame that does not decrypt with the key held for its TR.
    DECRYPT_FAILED = "decryption failed"
    #: JSON that is not a control message KIS is known to send.
    BAD_CONTROL = "unrecognised control message"


@dataclass(frozen=True, slots=True, kw_only=True)
class UndecodableMessage:
    """A message that yields nothing usable. Not fatal: the feed goes on.

    `raw` is the whole text as received (ciphertext for encrypted frames), kept so nothing is
    silently lost; it is left out of the repr because it can be long.
    """

    failure: DecodeFailure
    reason: str
    raw: str = field(repr=False)
    tr_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutDrift:
    """Records of a TR carry a number of fields that none of its known layouts has.

    KIS changes layouts without changing the TR id (H0STASP0 59→62→63, H0STCNT0 46→47, H0STCNI0
    23→26). Every known width decodes with its own era's names and is not drift. For any other
    width the records are still delivered: today's layout names the fields it can, extra ones stay
    in `Record.extra`, missing ones read as None. A `MessageDecoder` reports each (TR, width) once.
    """

    tr_id: str
    #: The width of today's layout.
    expected: int
    received: int
    #: Every width a known layout of the TR has, oldest era first.
    known: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    """The WebSocket opening handshake succeeded; requests can flow."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The connection is over; always the last event. The transport closes the socket.

    `code` is the WebSocket close code (1006 when the socket ended without a close frame), `clean`
    is True when both sides exchanged close frames, `error` carries what went wrong when the
    peer broke the protocol or went silent, and `by_peer` says who started the close.
    """

    code: int
    reason: str = ""
    clean: bool = False
    by_peer: bool = False
    error: RemoteProtocolError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReceived:
    """A text message exactly as received, before its decoded events (`KISConfig(emit_text=True)`)."""

    text: str = field(repr=False)


Event: TypeAlias = (
    Record
    | Subscribed
    | Unsubscribed
    | SubscribeFailed
    | ServerError
    | PingPong
    | UndecodableMessage
    | LayoutDrift
    | Connected
    | ConnectionClosed
    | TextReceived
)
