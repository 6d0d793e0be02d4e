"""kis_nats: the gateway's consumer — a KIS feed from ``kis-ws gateway``, over NATS.

``async with kis_nats.connect("nats://host:4222", env="real") as feed:`` gives a feed with the
face of `kis_asyncio.Feed` (``subscribe``, ``async for event in feed``, ``aclose``), its records
published by the gateway (`kis_gateway`), which holds the KIS sessions; `WSClient` is the callback
client on top. The wire contract (subjects, headers, control requests) is docs/gateway.md; its
names live in `kis_nats.subjects`, shared with the gateway. Logging in: `login`, the roles'
credential files (`NatsCredential`, `discover`) and `tls_context`. asyncio only: nats-py is an
asyncio library. Needs the ``nats`` extra: ``pip install 'kis-proto[nats]'``.
"""

from __future__ import annotations

import logging

from . import subjects
from ._auth import (
    ROLES,
    CredentialError,
    NatsCredential,
    Role,
    credential_path,
    default_state_dir,
    discover,
    read_credential,
    tls_context,
)
from ._consumer import (
    DEFAULT_URL,
    Feed,
    GatewayForbiddenError,
    GatewayRefusedError,
    GatewaySubscription,
    GatewayUnavailableError,
    WSClient,
    connect,
    login,
    open_feed,
)
from .subjects import (
    ENVS,
    ctl_subject,
    data_subject,
    escape_token,
    notice_stream,
    notice_subject,
    parse_subject,
    unescape_token,
)

__all__ = [
    "DEFAULT_URL",
    "ENVS",
    "ROLES",
    "CredentialError",
    "Feed",
    "GatewayForbiddenError",
    "GatewayRefusedError",
    "GatewaySubscription",
    "GatewayUnavailableError",
    "NatsCredential",
    "Role",
    "WSClient",
    "connect",
    "credential_path",
    "ctl_subject",
    "data_subject",
    "default_state_dir",
    "discover",
    "escape_token",
    "login",
    "notice_stream",
    "notice_subject",
    "open_feed",
    "parse_subject",
    "read_credential",
    "subjects",
    "tls_context",
    "unescape_token",
]

# A library logs and leaves the handlers to the application.
logging.getLogger(__name__).addHandler(logging.NullHandler())
