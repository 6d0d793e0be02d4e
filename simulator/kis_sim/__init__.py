"""kis_sim: a simulator of the KIS real-time server, for demos, tests and any KIS client.

``async with kis_sim.simulate() as sim:`` serves a simulated market on a loopback port
(``sim.url``): the real protocol (approval endpoint, WebSocket upgrade, every OPSP reply,
PINGPONG, AES-encrypted notices), today's layouts or an earlier era's, a session clock, and faults
to test a client's resilience (`Faults`). `serve` is the server underneath, for tests that script
what it sends. The market is `MarketModel`, pure and seeded. Built on the core's server role
(`kis_proto.server`) and anyio (asyncio or trio); the core never imports it.
"""

from __future__ import annotations

import logging

from ._market import MarketModel, RandomSource, demo_session, krx_tick, layout_row
from ._serve import KISServer, ServerSession, serve
from ._sim import Clock, Faults, Simulator, Unsent, running, simulate

__all__ = [
    "Clock",
    "Faults",
    "KISServer",
    "MarketModel",
    "RandomSource",
    "ServerSession",
    "Simulator",
    "Unsent",
    "demo_session",
    "krx_tick",
    "layout_row",
    "running",
    "serve",
    "simulate",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
