"""kis_nats: one KIS feed shared over NATS — the consumer of the gateway, and an embedded nats-server.

``async with kis_nats.connect("nats://host:4222", env="real") as feed:`` gives a feed with the
face of `kis_asyncio.Feed` (``subscribe``, ``async for event in feed``, ``aclose``), its records
published by ``kis-ws gateway``, which holds the KIS sessions; `WSClient` is the callback client
on top. The wire contract (subjects, headers, control requests) is docs/gateway.md; its names
live in `kis_nats._subjects`. asyncio only: nats-py is an asyncio library. Needs the ``nats``
extra: ``pip install 'kis-proto[nats]'``.
"""

from __future__ import annotations

import logging

from ._consumer import (
    DEFAULT_URL,
    Feed,
    GatewayRefusedError,
    GatewaySubscription,
    GatewayUnavailableError,
    WSClient,
    connect,
    open_feed,
)
from ._server import NatsServer, NatsServerUnavailable, embedded_server, find_nats_server, start_server
from ._subjects import (
    ctl_subject,
    data_subject,
    escape_token,
    notice_subject,
    parse_subject,
    unescape_token,
)

__all__ = [
    "DEFAULT_URL",
    "Feed",
    "GatewayRefusedError",
    "GatewaySubscription",
    "GatewayUnavailableError",
    "NatsServer",
    "NatsServerUnavailable",
    "WSClient",
    "connect",
    "ctl_subject",
    "data_subject",
    "embedded_server",
    "escape_token",
    "find_nats_server",
    "notice_subject",
    "open_feed",
    "parse_subject",
    "start_server",
    "unescape_token",
]

# A library logs and leaves the handlers to the application.
logging.getLogger(__name__).addHandler(logging.NullHandler())
