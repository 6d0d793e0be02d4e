"""kis_gateway: the gateway service — KIS sessions shared through NATS, as docs/gateway.md specifies.

`Gateway` holds one KIS session per app key (through `kis_asyncio`), publishes every record on
the wire contract's subjects (`kis_nats.subjects`), keeps execution notices in JetStream, answers
the control requests with leased, reference-counted demand (`kis_gateway.placement`), and keeps a
leader lease so a standby waits. `start_server` / `embedded_server` run the embedded nats-server,
with the users and permissions of the roles (`ensure_credentials`, `server_config`). The command
line is ``kis-ws gateway``; consumers use `kis_nats`. asyncio only, as nats-py. Needs the ``nats``
extra; `gateway_collector` (its Prometheus metrics) the ``metrics`` extra too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._gateway import Gateway, GatewayConfigError, SessionSpec
from ._roles import ensure_credentials, permissions, server_config, write_credential
from ._server import NatsServer, NatsServerUnavailable, embedded_server, find_nats_server, start_server
from ._stats import GatewayStats

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = [
    "Gateway",
    "GatewayConfigError",
    "GatewayStats",
    "NatsServer",
    "NatsServerUnavailable",
    "SessionSpec",
    "embedded_server",
    "ensure_credentials",
    "find_nats_server",
    "gateway_collector",
    "permissions",
    "server_config",
    "start_server",
    "write_credential",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def gateway_collector(gateway: Gateway) -> Collector:
    """A prometheus_client collector of `gateway`'s metrics (docs/howto/operations.md), read per scrape."""
    from ._metrics import GatewayCollector  # prometheus_client is loaded only when metrics are asked for

    return GatewayCollector(gateway)
