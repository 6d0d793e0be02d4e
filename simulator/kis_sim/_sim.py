"""The KIS simulator: the loopback server plus a seeded market that trades every subscribed symbol.

`simulate(...)` runs `serve(...)` and a ticker: every `tick` seconds each live session receives,
for each of its subscriptions, a frame of one to four trades (H0STCNT0 and its NXT/UN twins), a
book (H0STASP0 …), an overseas trade (HDFSCNT0) or book (HDFSASP0/1), in today's layouts or an
earlier era's. Under a burst (`burst`), frames carry several records, as KIS does under load.
Times and business dates are the KST wall clock; the session clock decides whether the market is
open and which session (`MARKET_CLS_CODE`) records carry. Deterministic for a given seed, but for
the wall-clock times.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.from_thread import start_blocking_portal

from kis_proto import LocalProtocolError, MarketSession
from kis_proto.layouts import ERAS, TRS, Layout
from kis_proto.server import KISServerConfig
from kis_proto.sessions import krx_session, us_session

from ._market import MarketModel, demo_session, layout_row
from ._serve import KISServer, ServerSession, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping
    from decimal import Decimal

__all__ = ["Clock", "Faults", "Simulator", "Unsent", "running", "simulate"]

_TRADES = {"H0STCNT0", "H0NXCNT0", "H0UNCNT0"}
_BOOKS = {"H0STASP0", "H0NXASP0", "H0UNASP0"}
_OVERSEAS = {"HDFSCNT0"}
_OVERSEAS_BOOKS = {"HDFSASP0", "HDFSASP1"}
_NOTICES = {"H0STCNI0", "H0STCNI9"}
KST = timezone(timedelta(hours=9), "KST")

#: The session clock: "open" keeps the market open at any hour and cycles through the sessions
#: (regular, closing auction, after-market, pre-market: 40 s in all); "kst" follows the real KRX
#: timetable in KST (closed on weekends and between sessions: nothing is sent, as KIS sends none).
Clock = Literal["open", "kst"]


def _new_york(now: datetime) -> datetime:
    """`now` in New York time (zoneinfo when the system has it; else US Eastern standard time)."""
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - the standard library has it
        return now.astimezone(timezone(timedelta(hours=-5)))
    try:
        return now.astimezone(ZoneInfo("America/New_York"))
    except ZoneInfoNotFoundError:
        return now.astimezone(timezone(timedelta(hours=-5)))


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What the simulator does wrong, on purpose (all off by default).

    From the command line: ``--faults drop=5,garbage=20,utf8=50,oversize=100,stall=3,in_use,
    refuse_approval,slow_accept=2,max_rate=10`` (counts are frames; times are seconds; rates per second).
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
    #: Drop a client that sends more than this many subscribe/unsubscribe requests in a second.
    max_rate: float | None = None

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsent:
    """A trade the simulated market made that no client received (`Simulator.unsent`)."""

    tr_id: str
    tr_key: str
    #: The trade's time (KST, whole seconds, as its record says).
    at: datetime
    volume: int
    #: "away": no session held the key (its client was reconnecting); "fault": a faulty frame
    #: (garbage, invalid UTF-8) was sent in its place.
    why: str


@dataclass(eq=False)
class Simulator:
    """A running simulator: the server (url, sessions), its market, and the layouts it speaks."""

    server: KISServer
    market: MarketModel
    #: The era whose layouts the simulator sends (`kis_proto.layouts.ERAS`; the last is today's).
    era: str
    clock: Clock
    #: The KRX session now, as the clock has it (None while the market is closed).
    session_now: Callable[[], MarketSession | None] = field(repr=False)
    #: The layout sent for each TR id, by the era.
    layouts: dict[str, Layout] = field(default_factory=dict, repr=False)
    frames_sent: int = 0
    #: Trades made but not received: with ``trade_while_away=True``, those of keys no session
    #: held; always, those a fault frame replaced. What a client's bars should find missing.
    unsent: list[Unsent] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        """``ws://host:port``: where a client connects (and fetches approval keys, on the same port)."""
        return self.server.url

    @property
    def approval_key(self) -> str:
        """An approval key to connect with: the simulator accepts any, so this saves inventing one."""
        return "simulator"


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
    layouts: str | None = None,
    clock: Clock = "open",
    prices: Mapping[str, Decimal | int | str] | None = None,
    wall_clock: Callable[[], datetime] | None = None,
    trade_while_away: bool = False,
) -> AsyncIterator[Simulator]:
    """Run the simulator on `host:port` until the block exits; any approval key is accepted.

    Subscribers to the notice TRs (H0STCNI0/H0STCNI9, keyed by any HTS ID) get a simulated order
    on about `notice_rate` of the ticks: an acceptance notice, then its fill, AES-encrypted with
    the key of their ack. `faults` makes it misbehave in the ways KIS (or a network) does. It also
    answers ``POST /oauth2/Approval`` and ``/oauth2/tokenP`` on the same port, for any app key.

    `layouts` is the era to speak (``"2026-08"``: before KIS's change of 2026-09-14; default:
    today's). `layout` then shifts every market-data record: +N appends N fields (a layout newer
    than any known), -N drops the last N, to test how clients take drift. `clock` is the session
    clock (`Clock`). `prices` sets start prices (won; dollars for overseas keys) over the
    reference prices of `kis_proto.symbols.LISTINGS`. `wall_clock()` gives the current KST time (default:
    the real one; tests pass a fixed one). With `trade_while_away`, a trade TR's key once
    subscribed goes on trading while no session holds it (as the exchange does while a client
    reconnects): those trades, and any a fault frame replaced, are listed in `Simulator.unsent`.
    """
    era = ERAS[-1] if layouts is None else layouts
    if era not in ERAS:
        raise LocalProtocolError(f"unknown layouts era {era!r}; known: {', '.join(ERAS)}")
    if clock not in ("open", "kst"):
        raise LocalProtocolError(f"unknown clock {clock!r}; use 'open' or 'kst'")
    faults = faults or Faults()
    rng = random.Random(seed)  # noqa: S311 - a simulated market and its keys: reproducible by design
    market = MarketModel(rng, prices=prices)
    refuse = faults.refuse_approval
    by_id = {tr_id: spec.layout(era) for spec in TRS.values() for tr_id in spec.tr_ids}
    started = anyio.current_time()
    wall_clock = wall_clock or (lambda: datetime.now(KST))

    def session_now(now: datetime) -> MarketSession | None:
        return krx_session(now) if clock == "kst" else demo_session(anyio.current_time() - started)

    def approve(app_key: str, secret: str) -> bool:
        return not refuse

    if faults.max_rate is not None:
        config = dataclasses.replace(config or KISServerConfig(), max_request_rate=faults.max_rate)
    async with serve(
        host, port, config=config, random_bytes=rng.randbytes, approve=approve, slow_accept=faults.slow_accept
    ) as server:
        simulator = Simulator(
            server=server,
            market=market,
            era=era,
            clock=clock,
            session_now=lambda: session_now(wall_clock()),
            layouts=by_id,
        )
        opened: dict[int, float] = {}  # id(session) -> when the simulator first saw it
        frames = 0
        traded: set[tuple[str, str]] = set()  # trade TR keys any session has held
        volume_at = {
            tr_id: next(f.index for f in layout.fields if f.name in ("CNTG_VOL", "EVOL"))
            for tr_id, layout in by_id.items()
            if tr_id in _TRADES or tr_id in _OVERSEAS
        }

        def note_unsent(tr_id: str, key: str, rows: list[list[str]], now: datetime, why: str) -> None:
            if tr_id in volume_at:
                at = now.replace(microsecond=0)
                for row in rows:
                    simulator.unsent.append(
                        Unsent(tr_id=tr_id, tr_key=key, at=at, volume=int(row[volume_at[tr_id]]), why=why)
                    )

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

        def rows_for(tr_id: str, key: str, session: MarketSession | None, now: datetime) -> list[list[str]]:
            """This tick's records of one subscription, in the era's layout; [] when none are due."""
            if tr_id in _TRADES or tr_id in _BOOKS:
                if session is None:
                    return []  # the KRX market is closed: KIS sends nothing
                if tr_id in _TRADES:
                    values = [market.trade(key, now, session) for _ in range(rng.randint(1, 4))]
                else:
                    values = [market.book(key, now, session)]
            elif tr_id in _OVERSEAS or tr_id in _OVERSEAS_BOOKS:
                local = _new_york(now)
                mtyp = us_session(local) if clock == "kst" else "1"
                if mtyp is None:
                    return []
                if tr_id in _OVERSEAS:
                    values = [market.overseas_trade(key, local, now, mtyp)]
                else:
                    values = [market.overseas_book(key, local, now)]
            else:
                return []
            rows = [layout_row(by_id[tr_id], v) for v in values]
            if layout > 0:
                rows = [[*row, *["0"] * layout] for row in rows]
            elif layout < 0:
                rows = [row[:layout] for row in rows]
            return rows

        async def send_notices(session: ServerSession, tr_id: str, hts_id: str, now: datetime) -> None:
            """A simulated order on the first subscribed stock (or 005930): accepted, then filled."""
            symbols = [k for t, k in session.conn.subscriptions if t in _TRADES] or ["005930"]
            for values in market.order_notices(hts_id, symbols[0], now):
                await session.send_records(tr_id, [layout_row(by_id[tr_id], values)])  # one per frame
                simulator.frames_sent += 1

        async def ticker() -> None:
            nonlocal frames
            while True:
                await anyio.sleep(tick)
                now = wall_clock().astimezone(KST).replace(microsecond=0)
                krx = session_now(now)
                held: set[tuple[str, str]] = set()
                for session in list(server.sessions):
                    if session.conn.closed or await misbehave(session, anyio.current_time()):
                        continue
                    held.update(session.conn.subscriptions)
                    for tr_id, key in list(session.conn.subscriptions):
                        try:
                            if tr_id in _NOTICES:
                                if krx is not None and rng.random() <= notice_rate:
                                    await send_notices(session, tr_id, key, now)
                                continue
                            rows = rows_for(tr_id, key, krx, now)
                            if not rows:
                                continue
                            frames += 1
                            if not await fault_frame(session):
                                await session.send_records(tr_id, rows)
                            else:
                                note_unsent(tr_id, key, rows, now, "fault")
                            simulator.frames_sent += 1
                        except LocalProtocolError:
                            break  # the session is closing
                if trade_while_away:
                    traded.update(k for k in held if k[0] in volume_at)
                    for tr_id, key in sorted(traded - held):
                        note_unsent(tr_id, key, rows_for(tr_id, key, krx, now), now, "away")

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            try:
                yield simulator
            finally:
                tg.cancel_scope.cancel()


@contextmanager
def running(
    host: str = "127.0.0.1", port: int = 0, *, backend: Literal["asyncio", "trio"] = "asyncio", **options: Any
) -> Iterator[Simulator]:
    """``with kis_sim.running() as sim:`` the simulator in a thread of its own, for code without async.

    The same simulator as `simulate` (its keyword options are `simulate`'s), on an event loop of
    its own (anyio's blocking portal, `backend`), so a plain script, a notebook or a test connects
    any client to ``sim.url``: ``kis_anyio.blocking.connect(sim.url, approval_key=sim.approval_key)``.
    It stops when the block exits. The simulator's own coroutines (``sim.server.broadcast``) belong
    to that loop: call them from async code, not from here.
    """
    with (
        start_blocking_portal(backend) as portal,
        portal.wrap_async_context_manager(simulate(host, port, **options)) as sim,
    ):
        yield sim
