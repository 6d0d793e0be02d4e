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
from typing import TYPE_CHECKING, Any

import anyio

from kis_proto import KISServerConfig, LocalProtocolError, MarketModel

from ._serve import KISServer, ServerSession, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Faults", "Simulator", "simulate"]

_TRADES = {"H0STCNT0", "H0NXCNT0", "H0UNCNT0"}
_BOOKS = {"H0STASP0", "H0NXASP0", "H0UNASP0"}
_OVERSEAS = {"HDFSCNT0"}
_NOTICES = {"H0STCNI0", "H0STCNI9"}


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What the simulator does wrong, on purpose (all off by default).

    From the command line: ``--faults drop=5,garbage=20,utf8=50,oversize=100,stall=3,in_use,
    refuse_approval,slow_accept=2`` (counts are frames; times are seconds).
    """

    #: Drop each session's socket (no close frame) this many seconds after it opened.
    drop: float | None = None
    #: Send a garbage text message instead of every Nth frame.
    garbage: int | None = None
    #: Send a text frame with invalid UTF-8 instead of every Nth frame (clients close with 1007).
    utf8: int | None = None
    #: After N frames, send a frame header announcing 2**40 bytes (clients close with 1009).
    oversize: int | None = None
    #: One second into each session, send nothing (no data, no PINGPONG) for this many seconds.
    stall: float | None = None
    #: A second concurrent session gets OPSP8996 ALREADY IN USE appkey, then its socket drops.
    in_use: bool = False
    #: The approval endpoint refuses every request (EGW00103).
    refuse_approval: bool = False
    #: Wait this many seconds before answering each WebSocket upgrade.
    slow_accept: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``name=value,flag,...`` as on the command line."""
        options: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            name = name.replace("-", "_")
            if name not in cls.__dataclass_fields__:
                known = ", ".join(cls.__dataclass_fields__)
                raise LocalProtocolError(f"unknown fault {name!r}; known: {known}")
            kind = cls.__dataclass_fields__[name].type
            if "bool" in str(kind):
                options[name] = value.lower() not in ("0", "false", "no") if value else True
            elif "int" in str(kind):
                options[name] = int(value)
            else:
                options[name] = float(value)
        return cls(**options)


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
    notice_rate: float = 0.2,
    config: KISServerConfig | None = None,
    faults: Faults | None = None,
    layout: int = 0,
) -> AsyncIterator[Simulator]:
    """Run the simulator on `host:port` until the block exits; any approval key is accepted.

    Subscribers to the notice TRs (H0STCNI0/H0STCNI9, keyed by any HTS ID) get a simulated order
    on about `notice_rate` of the ticks: an acceptance notice, then its fill, AES-encrypted with
    the key of their ack. `faults` makes it misbehave in the ways KIS (or a network) does. It also
    answers ``POST /oauth2/Approval`` on the same port, for any app key and secret.

    `layout` shifts market-data layouts from today's: +N appends N fields to every record (a newer
    KIS layout), -N drops the last N (an older one), to test how clients take drift.
    """
    faults = faults or Faults()
    rng = random.Random(seed)  # noqa: S311 - a simulated market and its keys: reproducible by design
    market = MarketModel(rng)
    refuse = faults.refuse_approval

    def approve(app_key: str, secret: str) -> bool:
        return not refuse

    async with serve(
        host, port, config=config, random_bytes=rng.randbytes, approve=approve, slow_accept=faults.slow_accept
    ) as server:
        simulator = Simulator(server=server, market=market)
        opened: dict[int, float] = {}  # id(session) -> when the simulator first saw it
        frames = 0

        async def misbehave(session: ServerSession, now: float) -> bool:
            """Apply the session-level faults; True when the session must get no data this tick."""
            started = opened.setdefault(id(session), now)
            if faults.in_use and session is not server.sessions[0] and session.conn.subscriptions:
                await session.refuse_in_use()
                return True
            if faults.drop is not None and now - started >= faults.drop:
                await session.drop()
                return True
            return faults.stall is not None and started + 1 <= now < started + 1 + faults.stall

        async def fault_frame(session: ServerSession) -> bool:
            """Replace this frame by a faulty one when its number comes up; True if it did."""
            if faults.garbage and frames % faults.garbage == 0:
                await session.send_text("garbage: not a KIS message")
            elif faults.utf8 and frames % faults.utf8 == 0:
                session.conn.send_bytes(bytes([0x81, 0x02, 0xC3, 0x28]))
                await session.flush()
            elif faults.oversize and frames == faults.oversize:
                session.conn.send_bytes(bytes([0x81, 127]) + (2**40).to_bytes(8, "big"))
                await session.flush()
            else:
                return False
            return True

        async def ticker() -> None:
            nonlocal frames
            while True:
                await anyio.sleep(tick)
                now = datetime.now()
                local = (now - timedelta(hours=14)).time().replace(microsecond=0)
                clock = now.time().replace(microsecond=0)
                for session in list(server.sessions):
                    if session.conn.closed or await misbehave(session, anyio.current_time()):
                        continue
                    for tr_id, key in list(session.conn.subscriptions):
                        if tr_id in _TRADES:
                            rows = [market.trade(key, clock) for _ in range(rng.randint(1, 4))]
                        elif tr_id in _BOOKS:
                            rows = [market.book(key, clock)]
                        elif tr_id in _OVERSEAS:
                            rows = [market.overseas_trade(key, local, clock)]
                        elif tr_id in _NOTICES:
                            if rng.random() > notice_rate:
                                continue
                            # An order on the first subscribed stock (or 005930): accepted, then filled.
                            symbols = [k for t, k in session.conn.subscriptions if t in _TRADES] or ["005930"]
                            rows = market.order_notices(key, symbols[0], clock)
                            try:
                                for row in rows:  # one notice per frame, as KIS sends them
                                    await session.send_records(tr_id, [row])
                            except LocalProtocolError:
                                break
                            simulator.frames_sent += len(rows)
                            continue
                        else:
                            continue
                        if layout > 0:
                            rows = [[*row, *["0"] * layout] for row in rows]
                        elif layout < 0:
                            rows = [row[:layout] for row in rows]
                        frames += 1
                        try:
                            if not await fault_frame(session):
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
