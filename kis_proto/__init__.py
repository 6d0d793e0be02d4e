"""kis_proto: a sans-IO core for the KIS (한국투자증권) Open API real-time WebSocket feed.

Bytes and text in, typed events out; commands in, text and bytes out. It never does I/O, never
sleeps and never reads the clock: the transports in ``kis_anyio`` and ``kis_asyncio`` do that.

The codec::

    >>> from kis_proto import decode_message
    >>> [rec] = decode_message("0|H0STCNT0|001|005930^093015^71500^2^500^0.70" + "^" * 40)
    >>> rec.tr_key, rec.price, rec["PRDY_VRSS"], rec.change
    ('005930', 71500, 500, 500)
"""

from __future__ import annotations

import logging

from . import records
from ._approval import ApprovalError, Credentials
from ._buffer import EventsDropped, FeedEvent, Reconnecting
from ._codec import MessageDecoder, decode_message, subscribe_message, unsubscribe_message
from ._codes import MsgCode
from ._connection import ConnState, KISConfig, KISConnection
from ._errors import KISError, LocalProtocolError, RemoteProtocolError
from ._events import (
    Connected,
    ConnectionClosed,
    DecodeFailure,
    Event,
    LayoutDrift,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
)
from ._feed import SubscriptionError
from ._fields import KST, MarketSession, Record
from ._version import __version__

__all__ = [
    "KST",
    "ApprovalError",
    "ConnState",
    "Connected",
    "ConnectionClosed",
    "Credentials",
    "DecodeFailure",
    "Event",
    "EventsDropped",
    "FeedEvent",
    "KISConfig",
    "KISConnection",
    "KISError",
    "LayoutDrift",
    "LocalProtocolError",
    "MarketSession",
    "MessageDecoder",
    "MsgCode",
    "PingPong",
    "Reconnecting",
    "Record",
    "RemoteProtocolError",
    "ServerError",
    "SubscribeFailed",
    "Subscribed",
    "SubscriptionError",
    "TextReceived",
    "UndecodableMessage",
    "Unsubscribed",
    "__version__",
    "decode_message",
    "records",
    "subscribe_message",
    "unsubscribe_message",
]


# A library logs and leaves the handlers to the application (no "No handlers" warnings either).
logging.getLogger(__name__).addHandler(logging.NullHandler())
