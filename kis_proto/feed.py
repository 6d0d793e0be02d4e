"""The transport kit: what a transport's feed does that is not I/O, shared by every transport.

For people writing a transport (`kis_anyio`, `kis_asyncio` and `kis_nats` are built on it):
`FeedCore` (a feed across its connections: registry, reconnect policy, approval key, buffer),
`EventBuffer`, `ReconnectPolicy`, `SubscriptionRegistry`, the `Subscription` tickets, and the
callback client `CallbackClient` behind every `WSClient`. Users of a transport meet only its
types in signatures (`ReconnectPolicy` to tune reconnects, `Callback` for type hints).
"""

from __future__ import annotations

from ._buffer import EventBuffer
from ._callbacks import (
    BarCallback,
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
from ._codec import check_subscription
from ._feed import (
    PAPER_REQUEST_RATE,
    REQUEST_RATE,
    FeedCore,
    FeedCounters,
    Subscription,
    connect_failure,
    feed_core,
    shown_key,
    split_ws_url,
)
from ._reconnect import ReconnectDecision, ReconnectPolicy
from ._subscriptions import KIS_MAX_SUBSCRIPTIONS, SubscriptionRegistry, SubState

__all__ = [
    "KIS_MAX_SUBSCRIPTIONS",
    "PAPER_REQUEST_RATE",
    "REQUEST_RATE",
    "BarCallback",
    "Callback",
    "CallbackClient",
    "CallbackTable",
    "ClientFeed",
    "ErrorCallback",
    "EventBuffer",
    "FeedCore",
    "FeedCounters",
    "ReconnectDecision",
    "ReconnectPolicy",
    "SubState",
    "Subscription",
    "SubscriptionRegistry",
    "SyncCallbacks",
    "TypedCallback",
    "Workers",
    "check_subscription",
    "connect_failure",
    "feed_core",
    "shown_key",
    "split_ws_url",
    "tr_id_of",
]
