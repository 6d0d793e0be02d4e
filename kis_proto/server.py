"""The server role of the KIS real-time protocol: what KIS does, for simulators and tests.

`KISServerConnection` is the sans-IO server side (PROTOCOL.md §12): the upgrade, every OPSP reply,
per-TR AES keys, PINGPONG on a timer, encrypted and multi-record frames, faults. It is what
`kis_sim` (the simulator) drives over sockets, and what tests pipe a client into without any.
Programs that only consume the feed never need it.
"""

from __future__ import annotations

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
