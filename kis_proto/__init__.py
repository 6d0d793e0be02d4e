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
from ._approval import (
    ENDPOINTS,
    ApprovalError,
    ApprovalExchange,
    ApprovalFailure,
    ApprovalKey,
    Credentials,
    Endpoint,
)
from ._buffer import EventBuffer, EventsDropped, FeedEvent, Reconnecting
from ._callbacks import (
    Callback,
    CallbackClient,
    CallbackTable,
    ClientFeed,
    ErrorCallback,
    SyncCallbacks,
    TypedCallback,
    Workers,
    tr_id_of,
)
from ._codec import (
    MessageDecoder,
    check_subscription,
    decode_message,
    subscribe_message,
    unsubscribe_message,
)
from ._codes import MsgCode
from ._connection import ConnState, KISConfig, KISConnection
from ._crypto import DecryptError, decrypt_payload, encrypt_payload
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
from ._feed import FeedCore, Subscription, SubscriptionError, connect_failure, feed_core, split_ws_url
from ._fields import (
    KST,
    EmptyFieldError,
    FieldSpec,
    FieldType,
    FieldValue,
    Layout,
    Market,
    MarketSession,
    Record,
    TRKind,
    TRSpec,
)
from ._market import (
    MarketModel,
    RandomSource,
    demo_session,
    krx_session,
    krx_tick,
    layout_row,
    us_session,
)
from ._reconnect import ReconnectDecision, ReconnectPolicy
from ._recording import RECORDING_HEADER, parse_recording_line, recording_line, replay_lines
from ._server import (
    KeepAliveAnswered,
    KISServerConfig,
    KISServerConnection,
    RequestRefused,
    ServerEvent,
    SessionOpened,
    SubscriptionAdded,
    SubscriptionRemoved,
)
from ._subscriptions import KIS_MAX_SUBSCRIPTIONS, SubscriptionRegistry, SubState
from ._symbols import LISTINGS, Listing, key_problem, listing
from ._version import __version__
from .records import ERAS, TRS

__all__ = [
    "ENDPOINTS",
    "ERAS",
    "KIS_MAX_SUBSCRIPTIONS",
    "KST",
    "LISTINGS",
    "RECORDING_HEADER",
    "TRS",
    "ApprovalError",
    "ApprovalExchange",
    "ApprovalFailure",
    "ApprovalKey",
    "Callback",
    "CallbackClient",
    "CallbackTable",
    "ClientFeed",
    "ConnState",
    "Connected",
    "ConnectionClosed",
    "Credentials",
    "DecodeFailure",
    "DecryptError",
    "EmptyFieldError",
    "Endpoint",
    "ErrorCallback",
    "Event",
    "EventBuffer",
    "EventsDropped",
    "FeedCore",
    "FeedEvent",
    "FieldSpec",
    "FieldType",
    "FieldValue",
    "KISConfig",
    "KISConnection",
    "KISError",
    "KISServerConfig",
    "KISServerConnection",
    "KeepAliveAnswered",
    "Layout",
    "LayoutDrift",
    "Listing",
    "LocalProtocolError",
    "Market",
    "MarketModel",
    "MarketSession",
    "MessageDecoder",
    "MsgCode",
    "PingPong",
    "RandomSource",
    "ReconnectDecision",
    "ReconnectPolicy",
    "Reconnecting",
    "Record",
    "RemoteProtocolError",
    "RequestRefused",
    "ServerError",
    "ServerEvent",
    "SessionOpened",
    "SubState",
    "SubscribeFailed",
    "Subscribed",
    "Subscription",
    "SubscriptionAdded",
    "SubscriptionError",
    "SubscriptionRegistry",
    "SubscriptionRemoved",
    "SyncCallbacks",
    "TRKind",
    "TRSpec",
    "TextReceived",
    "TypedCallback",
    "UndecodableMessage",
    "Unsubscribed",
    "Workers",
    "__version__",
    "check_subscription",
    "connect_failure",
    "decode_message",
    "decrypt_payload",
    "demo_session",
    "encrypt_payload",
    "feed_core",
    "key_problem",
    "krx_session",
    "krx_tick",
    "layout_row",
    "listing",
    "parse_recording_line",
    "recording_line",
    "records",
    "replay_lines",
    "split_ws_url",
    "subscribe_message",
    "tr_id_of",
    "tr_spec",
    "unsubscribe_message",
    "us_session",
]


# A library logs and leaves the handlers to the application (no "No handlers" warnings either).
logging.getLogger(__name__).addHandler(logging.NullHandler())


def tr_spec(tr_id: str) -> TRSpec | None:
    """What kis_proto knows about `tr_id` (paper-trading notice ids included), or None."""
    cls = records.RECORD_CLASSES.get(tr_id)
    return TRS[cls.__name__] if cls is not None else None
