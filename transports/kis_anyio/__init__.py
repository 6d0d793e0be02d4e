"""kis_anyio: the anyio transport for kis_proto (runs on trio and asyncio), and the ``kis-ws`` CLI.

``async with kis_anyio.connect(credentials=creds) as feed:`` subscribes and iterates a live feed
that reconnects by itself; `WSClient` is the original design's callback face on the same loop;
`serve` runs a loopback KIS server for tests and the simulator.
"""

from __future__ import annotations

from ._client import Callback, Feed, WSClient, connect, fetch_approval_key
from ._recording import read_recording
from ._serve import KISServer, ServerSession, serve
from ._sim import Clock, Faults, Simulator, simulate

__all__ = [
    "Callback",
    "Clock",
    "Faults",
    "Feed",
    "KISServer",
    "ServerSession",
    "Simulator",
    "WSClient",
    "connect",
    "fetch_approval_key",
    "read_recording",
    "serve",
    "simulate",
]
