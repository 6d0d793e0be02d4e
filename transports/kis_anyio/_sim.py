"""The KIS simulator: the loopback server plus a seeded market that trades every subscribed symbol.

`simulate(...)` runs `serve(...)` and a ticker: every `tick` seconds each live session receives,
for each of its subscriptions, a frame of one to four trades (H0STCNT0 and its NXT/UN twins), a
book (H0STASP0 …) or an overseas trade (HDFSCNT0). Under a burst (`burst`), frames carry several
records, as KIS does under load. Deterministic for a given seed, but for the wall-clock times.
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from kis_proto import KISServerConfig, LocalProtocolError, MarketModel

from ._serve import KISServer, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Simulator", "simulate"]

_TRADES = {"H0STCNT0", "H0NXCNT0", "H0UNCNT0"}
_BOOKS = {"H0STASP0", "H0NXASP0", "H0UNASP0"}
_OVERSEAS = {"HDFSCNT0"}


@dataclass(eq=False)
class Simulator:
    """A running simulator: the server (url, sessions) and its market."""

    server: KISServer
    market: MarketModel
    frames_sent: int = 0

    @property
    def url(self) -> str:
        return self.server.url


@asynccontextmanager
async def simulate(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int | None = None,
    tick: float = 0.25,
    config: KISServerConfig | None = None,
) -> AsyncIterator[Simulator]:
    """Run the simulator on `host:port` until the block exits; any approval key is accepted."""
    rng = random.Random(seed)  # noqa: S311 - a simulated market and its keys: reproducible by design
    market = MarketModel(rng)
    async with serve(host, port, config=config, random_bytes=rng.randbytes) as server:
        simulator = Simulator(server=server, market=market)

        async def ticker() -> None:
            while True:
                await anyio.sleep(tick)
                now = datetime.now()
                local = (now - timedelta(hours=14)).time().replace(microsecond=0)
                clock = now.time().replace(microsecond=0)
                for session in list(server.sessions):
                    for tr_id, key in list(session.conn.subscriptions):
                        if tr_id in _TRADES:
                            rows = [market.trade(key, clock) for _ in range(rng.randint(1, 4))]
                        elif tr_id in _BOOKS:
                            rows = [market.book(key, clock)]
                        elif tr_id in _OVERSEAS:
                            rows = [market.overseas_trade(key, local, clock)]
                        else:
                            continue
                        try:
                            await session.send_records(tr_id, rows)
                        except LocalProtocolError:
                            break  # the session is closing
                        simulator.frames_sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            try:
                yield simulator
            finally:
                tg.cancel_scope.cancel()
