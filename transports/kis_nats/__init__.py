"""kis_nats: one KIS feed shared over NATS — the consumer of the gateway, and an embedded nats-server.

``async with kis_nats.connect("nats://host:4222", env="real") as feed:`` gives a feed with the
face of `kis_asyncio.Feed` (``subscribe``, ``async for event in feed``, ``aclose``), its records
published by ``kis-ws gateway``, which holds the KIS sessions; `WSClient` is the callback client
on top. The wire contract (subjects, headers, control requests) is docs/gateway.md; its names
live in `kis_nats._subjects`; who may use which (the roles, their credentials, the server's
configuration) in `kis_nats._auth`. asyncio only: nats-py is an asyncio library. Needs the ``nats``
extra: ``pip install 'kis-proto[nats]'``.
"""

from __future__ import annotations

import logging

from ._auth import (
    ROLES,
    CredentialError,
    NatsCredential,
    Role,
    credential_path,
    default_state_dir,
    discover,
    ensure_credentials,
    permissions,
    read_credential,
    server_config,
    tls_context,
    write_credential,
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
from ._server import NatsServer, NatsServerUnavailable, embedded_server, find_nats_server, start_server
from ._subjects import (
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
    "ROLES",
    "CredentialError",
    "Feed",
    "GatewayForbiddenError",
    "GatewayRefusedError",
    "GatewaySubscription",
    "GatewayUnavailableError",
    "NatsCredential",
    "NatsServer",
    "NatsServerUnavailable",
    "Role",
    "WSClient",
    "connect",
    "credential_path",
    "ctl_subject",
    "data_subject",
    "default_state_dir",
    "discover",
    "embedded_server",
    "ensure_credentials",
    "escape_token",
    "find_nats_server",
    "login",
    "notice_stream",
    "notice_subject",
    "open_feed",
    "parse_subject",
    "permissions",
    "read_credential",
    "server_config",
    "start_server",
    "tls_context",
    "unescape_token",
    "write_credential",
]

# A library logs and leaves the handlers to the application.
logging.getLogger(__name__).addHandler(logging.NullHandler())
