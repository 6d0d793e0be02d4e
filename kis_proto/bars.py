"""Bars from the trade feed: by time, tick count, volume or traded value. Sans-IO, time is an input.

KIS sends trades, never candles. `BarAggregator` turns the trade records of a feed into bars
(`Bar`), one code path for every source: a live feed hands it each event with the receive time (``now``,
unix seconds) and calls `BarAggregator.handle_timer` when `BarAggregator.timer` says, so a quiet
symbol's bar still closes on time; a replay hands it each recorded event with its recorded
receive time (`bars_from` does exactly that), and the same events at the same times give the same
bars. Nothing here reads the clock, sleeps or does I/O.

    >>> from kis_proto import bars
    >>> agg = bars.BarAggregator(every=60)            # 1-minute bars, aligned to KST minutes
    >>> for t, event in recording:                    # doctest: +SKIP
    ...     for bar in agg.add(event, now=t):
    ...         print(bar)

How a bar is cut (docs/bars.md has the whole story):

- A trade belongs to a bar by its **exchange time** (체결시간, whole seconds, KST) and its
  **session** (``MARKET_CLS_CODE``): bars never span sessions, so the closing auction's print is a
  bar of its own (`MarketSession.CLOSING`), never part of the last regular bar.
- A time bar closes at the first trade of a later bar of its key, or when the clock (``now``)
  passes its end plus `grace`; a trade for a bar already closed is **late**: the bar is emitted
  again with the trade in it and `Bar.revision` one higher (the newer emission replaces the older).
- A bar knows when it may be **incomplete** (`Bar.complete` is False): the feed was down, lost
  records, or started after the bar began (`Bar.gap`), or the cumulative volume KIS sends with each
  trade (``ACML_VOL``) grew by more than the bar's trades (`Bar.missing_volume`).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._buffer import EventsDropped, Reconnecting
from ._errors import LocalProtocolError
from ._events import ConnectionClosed, Subscribed, UndecodableMessage, Unsubscribed
from ._fields import KST, MISSING, MarketSession, Record
from .records import TRS
from .sessions import krx_session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from ._buffer import FeedEvent

__all__ = [
    "TRADE_TRS",
    "Bar",
    "BarAggregator",
    "BarKind",
    "Price",
    "Timetable",
    "bars_from",
    "parse_interval",
]

logger = logging.getLogger("kis_proto.bars")

#: A price as the record has it: whole won on domestic stocks, Decimal on futures, options and
#: overseas stocks.
Price: TypeAlias = int | Decimal
#: What a bar is cut by: ``time`` (seconds on the KST clock), ``ticks`` (trades), ``volume``
#: (shares or contracts) or ``value`` (price × volume).
BarKind: TypeAlias = Literal["time", "ticks", "volume", "value"]
#: A session timetable: the session at a KST time, or None while the market is closed.
Timetable: TypeAlias = "Callable[[datetime], MarketSession | None]"

_DAY = 86_400
_HALF_DAY = 43_200
_VWAP_PLACES = Decimal("0.000001")
_DECIMAL = Context(prec=40)  # VWAP: value / volume with room to spare, then 6 places


# -- which TRs, and where their columns are ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TradeColumns:
    """Where one TR's trades keep what a bar needs (official column names)."""

    time: str  # a KST time of day, HHMMSS
    price: str
    volume: str  # this trade's volume
    cumulative: str  # the day's volume so far, including this trade
    side: str | None = None  # 체결구분: "1" buy, "5" sell (anything else: no side)
    session: str | None = None  # MARKET_CLS_CODE
    us_session: str | None = None  # HDFSCNT0's MTYP: 1 regular, 2 pre, 3 after
    cumulative_buy: str | None = None  # for TRs without a side column: the day's buy volume so far
    cumulative_sell: str | None = None


_STOCK = _TradeColumns("STCK_CNTG_HOUR", "STCK_PRPR", "CNTG_VOL", "ACML_VOL", "CCLD_DVSN", "MARKET_CLS_CODE")
_STOCK_NX = _TradeColumns(
    "STCK_CNTG_HOUR", "STCK_PRPR", "CNTG_VOL", "ACML_VOL", "CNTG_CLS_CODE", "MARKET_CLS_CODE"
)


def _derivative(price: str) -> _TradeColumns:
    return _TradeColumns(
        "BSOP_HOUR",
        price,
        "LAST_CNQN",
        "ACML_VOL",
        cumulative_buy="SHNU_CNTG_SMTN",
        cumulative_sell="SELN_CNTG_SMTN",
    )


_COLUMNS: dict[str, _TradeColumns] = {
    "H0STCNT0": _STOCK,
    "H0NXCNT0": _STOCK_NX,
    "H0UNCNT0": _STOCK_NX,
    "H0IFCNT0": _derivative("FUTS_PRPR"),  # index futures
    "H0IOCNT0": _derivative("OPTN_PRPR"),  # index options
    "H0CFCNT0": _derivative("FUTS_PRPR"),  # commodity futures
    "H0ZFCNT0": _derivative("STCK_PRPR"),  # stock futures
    "H0ZOCNT0": _derivative("OPTN_PRPR"),  # stock options
    "H0MFCNT0": _derivative("FUTS_PRPR"),  # night futures
    "H0EUCNT0": _derivative("OPTN_PRPR"),  # night options
    # KHMS: the Korean time (KST), so US bars sit on the same KST clock as everything else.
    # BIVL is 매도체결량 (volume traded at the bid: sells), ASVL 매수체결량 (at the ask: buys).
    "HDFSCNT0": _TradeColumns(
        "KHMS", "LAST", "EVOL", "TVOL", us_session="MTYP", cumulative_buy="ASVL", cumulative_sell="BIVL"
    ),
}

#: The trade TRs bars are made from. Any other TR id given to `BarAggregator` is refused.
TRADE_TRS: tuple[str, ...] = tuple(_COLUMNS)

#: The KRX day's timetable (docs/layouts.md) serves the domestic stock trades' flat bars.
_TIMETABLES: dict[str, Timetable] = dict.fromkeys(("H0STCNT0", "H0NXCNT0", "H0UNCNT0"), krx_session)

_SESSIONS = {session.value: session for session in MarketSession}
_US_SESSIONS = {"1": MarketSession.REGULAR, "2": MarketSession.PRE_MARKET, "3": MarketSession.AFTER_MARKET}


class _Layout:
    """One record class's column indices (an era of a TR), resolved once."""

    __slots__ = (
        "buy",
        "cumulative",
        "decimal",
        "indices",
        "price",
        "sell",
        "session",
        "session_map",
        "side",
        "split_to",
        "states",
        "time",
        "tr_id",
        "volume",
    )

    def __init__(self, tr_id: str, cls: type[Record], columns: _TradeColumns) -> None:
        by_name = {f.name: f for f in cls.columns}

        def index(name: str | None) -> int:
            # A column this era lacks (MARKET_CLS_CODE before 2026-09) reads as "" at MISSING.
            if name is None or name not in by_name:
                return MISSING
            return by_name[name].index

        self.tr_id = tr_id
        self.states: dict[str, _Key] = {}  # by key; shared by the TR's eras (set by _layouts)
        self.time = index(columns.time)
        self.price = index(columns.price)
        self.volume = index(columns.volume)
        self.cumulative = index(columns.cumulative)
        self.side = index(columns.side)
        self.buy = index(columns.cumulative_buy)
        self.sell = index(columns.cumulative_sell)
        if columns.session is not None:
            self.session, self.session_map = index(columns.session), _SESSIONS
        else:
            self.session, self.session_map = index(columns.us_session), _US_SESSIONS
        self.decimal = by_name[columns.price].type.value is Decimal
        # The hot path's indices; a side of -1: no side column (derived from the day's totals).
        side = -1 if self.side == MISSING else self.side
        self.indices = (self.time, self.price, self.volume, self.cumulative, self.session, side)
        # A one-record frame's text is split only this far (0: in full), when every column read
        # but the session comes before it and the session is the last field (where KIS appended
        # it in 2026-09): the session is then cut from the end, and the split is half as long.
        reach = [self.time, self.price, self.volume, self.cumulative, 0]
        reach += [self.side] if self.side != MISSING else [self.buy, self.sell]
        last = max(i for i in reach if i != MISSING) + 1
        width = cls.width or 0
        self.split_to = last if self.session == width - 1 and last < width - 2 else 0
        for name in (columns.time, columns.price, columns.volume, columns.cumulative):
            if name not in by_name:  # pragma: no cover - the table above is checked by the tests
                raise TypeError(f"{cls.__name__} has no {name}")


def _layouts(tr_ids: Iterable[str]) -> dict[type[Record], _Layout]:
    out: dict[type[Record], _Layout] = {}
    for tr_id in tr_ids:
        states: dict[str, _Key] = {}
        for layout in TRS[tr_id].layouts:
            resolved = out[layout.record_class] = _Layout(tr_id, layout.record_class, _COLUMNS[tr_id])
            resolved.states = states
    return out


# -- the bar -------------------------------------------------------------------------------------------


_WHEN: dict[float, datetime] = {}


def _when(ts: float | None) -> datetime | None:
    """The KST datetime of a unix time; bars of many keys share their starts and ends (cached)."""
    if ts is None:
        return None
    at = _WHEN.get(ts)
    if at is None:
        if len(_WHEN) > 4096:
            _WHEN.clear()
        at = _WHEN[ts] = datetime.fromtimestamp(ts, KST)
    return at


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _price_json(value: Price | None) -> int | str | None:
    return value if value is None or isinstance(value, int) else str(value)


def _price_back(value: Any) -> Price | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LocalProtocolError(f"a bar's price is an int or a decimal string, not {value!r}")
    return value if isinstance(value, int) else Decimal(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One bar of one key: OHLC, volumes, VWAP, and whether it holds every trade.

    Prices are the record's type (`int` won on domestic stocks, `Decimal` elsewhere); times are
    KST-aware datetimes. `start` and `end` are the bar's interval on the KST clock for time bars
    (end exclusive); for tick, volume and value bars they are its first and last trade times.
    """

    tr_id: str
    symbol: str
    #: The session of every trade in the bar (None on TRs that carry none: futures and options).
    session: MarketSession | None
    kind: BarKind
    #: The bar's size in its kind: seconds, trades, volume or value.
    size: int | Decimal
    start: datetime
    end: datetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: int
    #: Σ price × volume, in the price's unit (won on domestic stocks; points × contracts on
    #: futures: no contract multiplier is applied).
    value: Price
    #: value / volume, rounded half-even to 6 places; None for a flat bar (no trade).
    vwap: Decimal | None
    trades: int
    #: Volume of trades the buyer initiated (체결구분 1) and the seller (5); trades of neither kind
    #: (체결구분 3, an auction's print) count in `volume` only.
    buy_volume: int
    sell_volume: int
    #: The earliest and latest trade times in the bar (None for a flat bar).
    first_trade: datetime | None
    last_trade: datetime | None
    #: True when every trade of the bar is known to be in it: no `gap`, and ACML_VOL shows no
    #: volume missing.
    complete: bool
    #: The feed did not watch this key for the whole bar: it was reconnecting, lost or could not
    #: decode records, or began (or was subscribed) after the bar's start.
    gap: bool
    #: Volume that KIS's cumulative volume says traded but no trade of the bar carried; None
    #: when it cannot be told (no earlier trade of the key that day to count from).
    missing_volume: int | None
    #: 0 for the first emission; each late trade emits the bar again, one higher.
    revision: int = 0
    #: Trades that arrived after the bar had been emitted (counted in it from `revision` 1 on).
    late_trades: int = 0

    def __repr__(self) -> str:
        session = self.session.label if self.session is not None else "-"
        span = f"{self.start:%Y-%m-%d %H:%M:%S}–{self.end:%H:%M:%S}"
        state = "complete" if self.complete else "incomplete"
        if self.missing_volume:
            state += f" missing={self.missing_volume}"
        elif self.gap:
            state += " gap"
        rev = f" rev={self.revision}" if self.revision else ""
        return (
            f"<Bar {self.tr_id} {self.symbol} {session} {span} O={self.open} H={self.high} "
            f"L={self.low} C={self.close} V={self.volume} n={self.trades} {state}{rev}>"
        )

    @property
    def flat(self) -> bool:
        """A bar with no trade (``empty="flat"``): every price is the last close."""
        return self.trades == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (docs/bars.md, "The dict format"): ints stay ints, decimals are
        strings, times ISO 8601 with +09:00, the session its label."""
        return {
            "v": 1,
            "tr_id": self.tr_id,
            "symbol": self.symbol,
            "session": None if self.session is None else self.session.label,
            "kind": self.kind,
            "size": _price_json(self.size),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "open": _price_json(self.open),
            "high": _price_json(self.high),
            "low": _price_json(self.low),
            "close": _price_json(self.close),
            "volume": self.volume,
            "value": _price_json(self.value),
            "vwap": None if self.vwap is None else str(self.vwap),
            "trades": self.trades,
            "buy_volume": self.buy_volume,
            "sell_volume": self.sell_volume,
            "first_trade": _iso(self.first_trade),
            "last_trade": _iso(self.last_trade),
            "complete": self.complete,
            "gap": self.gap,
            "missing_volume": self.missing_volume,
            "revision": self.revision,
            "late_trades": self.late_trades,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bar:
        """The bar `to_dict` gave (also after a JSON round trip). Raises `LocalProtocolError`
        for a dict of another version or shape."""
        if data.get("v") != 1:
            raise LocalProtocolError(f"not a version-1 bar dict (v={data.get('v')!r})")
        try:
            session = data["session"]
            by_label = {s.label: s for s in MarketSession}
            first, last = data["first_trade"], data["last_trade"]
            if data["kind"] not in ("time", "ticks", "volume", "value"):
                raise ValueError(f"kind {data['kind']!r}")
            return cls(
                tr_id=str(data["tr_id"]),
                symbol=str(data["symbol"]),
                session=None if session is None else by_label[session],
                kind=data["kind"],
                size=_price_back(data["size"]),  # type: ignore[arg-type]
                start=datetime.fromisoformat(data["start"]),
                end=datetime.fromisoformat(data["end"]),
                open=_price_back(data["open"]),  # type: ignore[arg-type]
                high=_price_back(data["high"]),  # type: ignore[arg-type]
                low=_price_back(data["low"]),  # type: ignore[arg-type]
                close=_price_back(data["close"]),  # type: ignore[arg-type]
                volume=int(data["volume"]),
                value=_price_back(data["value"]),  # type: ignore[arg-type]
                vwap=None if data["vwap"] is None else Decimal(data["vwap"]),
                trades=int(data["trades"]),
                buy_volume=int(data["buy_volume"]),
                sell_volume=int(data["sell_volume"]),
                first_trade=None if first is None else datetime.fromisoformat(first),
                last_trade=None if last is None else datetime.fromisoformat(last),
                complete=bool(data["complete"]),
                gap=bool(data["gap"]),
                missing_volume=None if data["missing_volume"] is None else int(data["missing_volume"]),
                revision=int(data["revision"]),
                late_trades=int(data["late_trades"]),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise LocalProtocolError(f"not a bar dict: {exc!r}") from None


# -- the state -----------------------------------------------------------------------------------------


class _Acc:
    """A bar being built (or kept after emission, for late trades)."""

    __slots__ = (
        "buy",
        "charged",
        "close",
        "end",
        "first",
        "gap",
        "high",
        "last",
        "late",
        "low",
        "missing",
        "open",
        "revision",
        "sell",
        "session",
        "slot",
        "start",
        "trades",
        "unverified",
        "value",
        "volume",
    )

    def __init__(
        self, start: float, end: float, session: MarketSession | None, gap: bool, slot: float
    ) -> None:
        self.slot = slot  # time bars: the interval's start; other kinds: 0.0 (one open bar a key)
        self.start = start
        self.end = end  # time bars: the interval's end; count bars: grows with the trades
        self.session = session
        self.gap = gap
        self.open: Price = 0
        self.high: Price = 0
        self.low: Price = 0
        self.close: Price = 0
        self.volume = 0
        self.value: Price = 0
        self.trades = 0
        self.buy = 0
        self.sell = 0
        self.first = math.inf
        self.last = -math.inf
        self.missing = 0
        self.charged = 0  # missing volume charged here that an out-of-order trade may still fill
        self.unverified = False  # ACML_VOL could not vouch for this bar
        self.revision = -1  # not emitted yet
        self.late = 0


class _Key:
    """What the aggregator keeps per (TR, key) across bars."""

    __slots__ = (
        "bar",
        "buy_total",
        "close",
        "cumulative",
        "day",
        "flat_from",
        "history",
        "key",
        "lost",
        "place",
        "sell_total",
        "session",
        "since",
        "tr_id",
    )

    def __init__(self, tr_id: str, key: str) -> None:
        self.tr_id = tr_id
        self.key = key
        self.bar: _Acc | None = None  # the open bar
        self.history: deque[_Acc] = deque(maxlen=16)  # emitted bars a late trade may still join
        self.cumulative: int | None = None  # the largest ACML_VOL seen
        self.day = -math.inf  # the KST midnight of the key's last trade
        self.buy_total: int | None = None
        self.sell_total: int | None = None
        self.since: float | None = None  # watched since (receive time); None while not watched
        self.lost = -math.inf  # when records were last lost (receive time)
        self.close: Price | None = None  # the last trade price
        self.session: MarketSession | None = None  # the last trade's session
        self.flat_from: float | None = None  # flat bars: the start of the next empty interval
        #: Where the last trade's time put it: (time text, unix time, its time bar's start and
        #: end (0.0 for other kinds), the KST midnight of its day). Keys share these tuples.
        self.place: _Place = _NOWHERE


_NO_BARS: tuple[Bar, ...] = ()
_Place: TypeAlias = tuple[str, float, float, float, float]
_NOWHERE: _Place = ("", 0.0, 0.0, 0.0, -math.inf)


def parse_interval(every: int | str) -> int:
    """Seconds of a bar interval: an int, or ``"30s"``, ``"1m"``, ``"5m"``, ``"1h"``.

    Raises `LocalProtocolError` for anything else, or for an interval longer than a day.
    """
    if isinstance(every, bool):
        raise LocalProtocolError(f"a bar interval is whole seconds or a text like '1m', not {every!r}")
    if isinstance(every, int):
        seconds = every
    elif isinstance(every, str):
        text = every.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600}
        number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
        if not number.isascii() or not number.isdigit():
            raise LocalProtocolError(
                f"a bar interval is like '30s', '1m', '1h' or whole seconds, not {every!r}"
            )
        seconds = int(number) * unit
    else:
        raise LocalProtocolError(f"a bar interval is whole seconds or a text like '1m', not {every!r}")
    if not 0 < seconds <= _DAY:
        raise LocalProtocolError(f"a bar interval is 1 second to 1 day, not {every!r}")
    return seconds


class BarAggregator:
    """Bars of every (TR, key) in a stream of feed events; one per `Bar` kind, chosen at construction.

    Give exactly one of `every` (seconds, or ``"1m"``: time bars aligned to KST midnight; the
    last bar of a day ends at midnight when the interval does not divide the day), `ticks`
    (trades per bar), `volume` or `value` (a bar closes with the trade that brings it to the size
    or past it: trades are never split). `tr_ids` limits the TRs (default: all of `TRADE_TRS`);
    an unsupported TR id raises `LocalProtocolError` here. Records of other TRs (books, notices)
    are ignored, so a whole feed can be handed over.

    `grace` (seconds) is how long past its end a time bar waits for its trades: its close is
    driven by the clock at ``end + grace``. Use more than your clock's skew from the exchange's.

    `empty` is what an interval with no trade gives: ``"skip"`` (no bar) or ``"flat"`` (time bars
    only: a bar carrying the last close with no volume, while the `timetable` says the session of
    the key's last trade goes on). `timetable` defaults to the KRX day (docs/layouts.md) for the
    domestic stock TRs; other TRs get flat bars only with one given (named in `tr_ids` without
    one, they raise `LocalProtocolError`).

    Drive it: `add` every event with its receive time, `handle_timer` when `timer` says (a live
    feed), `flush` when the data ends. Each returns the bars it completed, oldest end first.
    """

    def __init__(
        self,
        *,
        every: int | str | None = None,
        ticks: int | None = None,
        volume: int | None = None,
        value: int | Decimal | None = None,
        tr_ids: Iterable[str] | None = None,
        grace: float = 2.0,
        empty: Literal["skip", "flat"] = "skip",
        timetable: Timetable | None = None,
    ) -> None:
        given = {
            name: size
            for name, size in (("every", every), ("ticks", ticks), ("volume", volume), ("value", value))
            if size is not None
        }
        if len(given) != 1:
            raise LocalProtocolError(
                "give exactly one of every= (seconds or '1m'), ticks=, volume= or value= "
                f"(got {', '.join(given) or 'none'})"
            )
        ((name, size),) = given.items()
        self.kind: BarKind
        self.size: int | Decimal
        if name == "every":
            self.kind, self.size = "time", parse_interval(size)  # type: ignore[arg-type]
            self._every = self.size
        else:
            if isinstance(size, bool) or not isinstance(size, int | Decimal) or not size > 0:
                raise LocalProtocolError(f"{name}= is a positive number, not {size!r}")
            if name != "value" and not isinstance(size, int):
                raise LocalProtocolError(f"{name}= is a whole number, not {size!r}")
            self.kind = "ticks" if name == "ticks" else name  # type: ignore[assignment]
            self.size = size
            self._every = 0
        wanted = tuple(TRADE_TRS if tr_ids is None else ([tr_ids] if isinstance(tr_ids, str) else tr_ids))
        for tr_id in wanted:
            if tr_id not in _COLUMNS:
                spec = TRS.get(tr_id)
                what = (
                    f"a {spec.kind.value.replace('_', ' ')} TR"
                    if spec is not None
                    else "not a TR kis_proto knows"
                )
                hint = (
                    " (book snapshots: kis_proto.books)"
                    if spec is not None and spec.kind.value == "order_book"
                    else ""
                )
                raise LocalProtocolError(
                    f"bars are made from the trade TRs {', '.join(TRADE_TRS)}; {tr_id} is {what}{hint}"
                )
        if not math.isfinite(grace) or grace < 0:
            raise LocalProtocolError(f"grace is seconds, 0 or more, not {grace!r}")
        if empty not in ("skip", "flat"):
            raise LocalProtocolError(f"empty= is 'skip' or 'flat', not {empty!r}")
        self.tr_ids = wanted
        self.grace = float(grace)
        self.empty = empty
        self._timetables: dict[str, Timetable] = {}
        if empty == "flat":
            if self.kind != "time":
                raise LocalProtocolError(
                    "empty='flat' is for time bars (every=): other bars have no empty interval"
                )
            for tr_id in wanted:
                table = timetable or _TIMETABLES.get(tr_id)
                if table is not None:
                    self._timetables[tr_id] = table
                elif tr_ids is not None:  # asked for by name: say so (by default: no flat bars)
                    raise LocalProtocolError(
                        f"flat bars of {tr_id} need a session timetable: pass timetable=, a function "
                        "from a KST datetime to its MarketSession (None while closed)"
                    )
        self._layouts = _layouts(wanted)
        self._states = {layout.tr_id: layout.states for layout in self._layouts.values()}
        self._keys: dict[tuple[str, str], _Key] = {}
        self._deadline = math.inf  # the earliest time handle_timer has work
        self._day = -math.inf  # unix time of the KST midnight that starts now's day
        self._seconds: dict[str, int] = {}  # HHMMSS -> seconds after midnight (a small cache)
        self._place_cache: _Place = _NOWHERE  # the last trade's placement on the clock
        self._invalid = 0  # trades that could not be read (no price, volume or time)
        self._last_now = -math.inf

    def __repr__(self) -> str:
        return f"<BarAggregator {self.kind}={self.size} keys={len(self._keys)}>"

    @property
    def invalid_trades(self) -> int:
        """Trade records that could not be used (an empty or malformed price, volume or time).

        Each is logged at WARNING on ``kis_proto.bars`` and gives its key's bar a `Bar.gap`; its
        volume, counted by KIS in ACML_VOL, shows in `Bar.missing_volume` of the key's next trade.
        """
        return self._invalid

    # -- the driver's side --------------------------------------------------------------------------
    def timer(self) -> float | None:
        """When `handle_timer` next has a bar to close (unix seconds), or None."""
        return None if self._deadline == math.inf else self._deadline

    def handle_timer(self, now: float) -> Sequence[Bar]:
        """The clock reached `now`: the time bars that ended `grace` ago or more, and flat bars."""
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise _bad_now(now)
        if now < self._deadline:
            return _NO_BARS
        return self._run_timer(now)

    def add(self, event: FeedEvent, now: float) -> Sequence[Bar]:
        """Take one feed event received at `now` (unix seconds); the bars it completed.

        Trade records of the aggregator's TRs update their key's bar; acks, reconnects, dropped
        or undecodable messages tell it what the feed watched; anything else is ignored. The
        clock's work due at `now` is done first, so a live feed and a replay agree.
        """
        layout = self._layouts.get(type(event))  # type: ignore[arg-type]
        if layout is None:
            return self._other(event, now)
        try:
            due = self._run_timer(now) if now >= self._deadline else _NO_BARS
        except TypeError:
            raise _bad_now(now) from None
        self._last_now = now
        # The hot path: every trade comes here. Fields are read by index, once each.
        # Field i is fields[o + i]: a record of a multi-record frame reads the frame's shared split
        # in place (no slice of its own); a one-record frame's text is split only as far as needed.
        src = event._p  # type: ignore[union-attr]
        last: str | None = None
        o = 0
        if src is None:
            fields: list[str] = event._f  # type: ignore[union-attr]
            o = event._o  # type: ignore[union-attr]
        elif layout.split_to and type(src) is str:
            fields = src.split("^", layout.split_to)
            last = src[src.rfind("^") + 1 :]
        else:
            fields = event._list()  # type: ignore[union-attr]
        i_time, i_price, i_volume, i_cumulative, i_session, i_side = layout.indices
        try:
            text = fields[o + i_time]
            price: Price = _decimal(fields[o + i_price]) if layout.decimal else int(fields[o + i_price])
            volume = int(fields[o + i_volume])
        except (ValueError, IndexError, ArithmeticError):
            self._bad_trade(event)  # type: ignore[arg-type]
            return due
        try:
            cumulative: int | None = int(fields[o + i_cumulative])
        except (ValueError, IndexError):
            cumulative = None
        try:
            session = layout.session_map.get(fields[o + i_session] if last is None else last)
        except IndexError:
            session = None
        key = fields[o]
        state = layout.states.get(key)
        moved = state is None or text != state.place[0]
        if moved:  # a new second for this key: place it on the clock
            place = self._place_cache  # the last placement, usually of another key's trade
            if (
                state is None
                or text != place[0]
                or not -_HALF_DAY < place[1] - now < _HALF_DAY
                or place[4] != state.place[4]
                or state.since is None
            ):
                try:
                    state = self._clock(layout, key, state, text, now, cumulative, volume)
                except ValueError:
                    self._bad_trade(event)  # type: ignore[arg-type]
                    return due
            else:
                state.place = place
        assert state is not None
        bar = state.bar
        if bar is None or bar.slot != state.place[2] or bar.session is not session:
            row = event._list() if o else fields  # type: ignore[union-attr]
            bar, due = self._place(layout, row, state, session, price, volume, cumulative, now, due)
            if bar is None:
                return due  # a late trade: its bar was emitted again
            moved = True
        # One more trade in the open bar (a new bar starts with open, high and low at its price).
        if price > bar.high:
            bar.high = price
        elif price < bar.low:
            bar.low = price
        bar.close = price
        bar.trades += 1
        bar.volume += volume
        bar.value += price * volume
        if i_side >= 0:
            try:
                code = fields[o + i_side]
            except IndexError:
                code = ""
            if code == "1":
                bar.buy += volume
            elif code == "5":
                bar.sell += volume
        else:
            side = self._side(layout, event._list() if o else fields, state, volume)  # type: ignore[union-attr]
            if side > 0:
                bar.buy += volume
            elif side < 0:
                bar.sell += volume
        if moved:  # the same time text in the same bar cannot move its first or last trade time
            at = state.place[1]
            if at < bar.first:  # noqa: PLR1730 - a comparison is cheaper than min() on every trade
                bar.first = at
            if at > bar.last:  # noqa: PLR1730
                bar.last = at
        if cumulative is not None and cumulative - volume == state.cumulative:
            state.cumulative = cumulative  # ACML_VOL grew by exactly this trade: nothing missed
        else:
            _check(state, bar, cumulative, volume)
        if self._every == 0 and self._full(bar):
            due = (*due, self._close_open(state))
        return due

    def _clock(
        self,
        layout: _Layout,
        key: str,
        state: _Key | None,
        text: str,
        now: float,
        cumulative: int | None,
        volume: int,
    ) -> _Key:
        """Place a trade's time of day on the KST day nearest to its receive time."""
        seconds = self._seconds.get(text)
        if seconds is None:
            seconds = self._parse_time(text)
        if state is None:
            state = self._state(layout.tr_id, key)
        if not self._day <= now < self._day + _DAY:
            self._day = _kst_midnight(now)
        midnight = self._day
        if midnight + seconds - now > _HALF_DAY:
            midnight -= _DAY
        elif now - midnight - seconds > _HALF_DAY:
            midnight += _DAY
        if midnight != state.day:
            if state.day != -math.inf and (
                cumulative is None or state.cumulative is None or cumulative - volume < state.cumulative
            ):
                state.cumulative = None  # a new day: KIS counts the day's volume from zero again
            state.day = midnight
        if state.since is None:  # first sight of this key (or after a gap): watched from now
            state.since = -math.inf if cumulative == volume else now
        if self._every:
            offset = seconds - seconds % self._every
            place = (
                text,
                midnight + seconds,
                midnight + offset,
                midnight + min(offset + self._every, _DAY),
                midnight,
            )
        else:
            place = (text, midnight + seconds, 0.0, 0.0, midnight)
        state.place = self._place_cache = place
        return state

    def _place(
        self,
        layout: _Layout,
        fields: list[str],
        state: _Key,
        session: MarketSession | None,
        price: Price,
        volume: int,
        cumulative: int | None,
        now: float,
        due: Sequence[Bar],
    ) -> tuple[_Acc | None, Sequence[Bar]]:
        """The bar a trade goes to when it is not the open one: a new bar, or a late one."""
        bar = state.bar
        if state.since is None:  # watched from now (after a gap: the same second as before it)
            state.since = -math.inf if cumulative == volume else now
        if self._every:
            start = state.place[2]
            target = self._find_emitted(state, start, session)
            if (
                target is not None
                or state.place[3] + self.grace <= now
                or (bar is not None and start < bar.slot)
            ):
                side = self._side(layout, fields, state, volume)
                return None, self._late(state, target, session, price, volume, cumulative, side, due)
            if bar is not None:
                due = (*due, self._close_open(state))
            if state.flat_from is not None and state.flat_from < start:
                due = (*due, *self._flats(state, now, upto=start))
            bar = state.bar = self._open(state, start, state.place[3], session)
        else:
            if bar is not None:  # the session changed: a tick, volume or value bar ends with it
                due = (*due, self._close_open(state))
            bar = state.bar = self._open(state, state.place[1], state.place[1], session)
        bar.open = bar.high = bar.low = price
        if cumulative == volume:
            bar.gap = False  # the day's first trade: nothing traded before it, nothing missed
        return bar, due

    def flush(self, now: float | None = None) -> Sequence[Bar]:
        """The data ends (at `now`, if given: the clock's work due then is done first).

        Every bar still open is emitted, marked `Bar.gap` (nothing more is watched): use it at
        the end of a replay, or when a live feed stops.
        """
        if now is not None and (isinstance(now, bool) or not isinstance(now, int | float)):
            raise _bad_now(now)
        out = list(self._run_timer(now)) if now is not None and now >= self._deadline else []
        for state in self._keys.values():
            if state.bar is not None:
                state.bar.gap = True
                out.append(self._close_open(state))
            state.since = None
            state.flat_from = None
        self._deadline = math.inf
        out.sort(key=_order)
        return out

    def open_bars(self) -> list[Bar]:
        """The bars still being built, as they stand: one per key with a bar open, oldest end first.

        For a live view (``kis-ws bars`` shows them updating). Nothing changes: the bar emitted
        when it closes may hold more trades, or say `Bar.gap` after a reconnect. An open bar reads
        `revision` 0, its `complete` as of now.
        """
        out = [
            replace(self._bar(state, state.bar), revision=0)
            for state in self._keys.values()
            if state.bar is not None
        ]
        out.sort(key=_order)
        return out

    def forget(self, tr_id: str, key: str) -> bool:
        """Drop everything kept of (tr_id, key), its open bar unemitted; False when nothing was kept.

        For a driver that stops wanting a key's bars while the feed goes on (the gateway, when
        its last client lets go): the key's trades after this start it again, watched from then.
        """
        state = self._keys.pop((tr_id, key), None)
        if state is None:
            return False
        self._states[tr_id].pop(key, None)
        self._deadline = self._next_deadline()
        return True

    # -- the rest of the feed ----------------------------------------------------------------------
    def _other(self, event: object, now: float) -> Sequence[Bar]:
        """What a non-trade event says about coverage; the timer's work first (or after, below)."""
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise _bad_now(now)
        kind = type(event)
        if kind is Subscribed:
            assert isinstance(event, Subscribed)
            state = self._keys.get((event.tr_id, event.tr_key))
            if event.tr_id in self.tr_ids and state is not None and state.since is not None:
                # An ack for a key already watched: a new connection (a recording holds no
                # close): every key's watch ended before now, so mark before the clock closes bars.
                self._lost_all(None, now, coverage=True)
            due = self._run_timer(now) if now >= self._deadline else _NO_BARS
            if event.tr_id in self.tr_ids:
                if state is None:
                    state = self._state(event.tr_id, event.tr_key)
                state.since = now
            return due
        due = self._run_timer(now) if now >= self._deadline else _NO_BARS
        if kind is ConnectionClosed or kind is Reconnecting:
            self._lost_all(None, now, coverage=True)
        elif kind is EventsDropped:
            self._lost_all(None, now, coverage=False)
        elif kind is UndecodableMessage:
            assert isinstance(event, UndecodableMessage)
            if event.tr_id is None or event.tr_id in self.tr_ids:
                self._lost_all(event.tr_id, now, coverage=False)
        elif kind is Unsubscribed:
            assert isinstance(event, Unsubscribed)
            state = self._keys.get((event.tr_id, event.tr_key))
            if state is not None:
                self._lost(state, now, coverage=True)
        return due

    def _state(self, tr_id: str, key: str) -> _Key:
        """A new key's state, known both by (TR, key) and to its TR's layouts."""
        state = self._keys[(tr_id, key)] = self._states[tr_id][key] = _Key(tr_id, key)
        return state

    def _lost_all(self, tr_id: str | None, now: float, *, coverage: bool) -> None:
        for state in self._keys.values():
            if tr_id is None or state.tr_id == tr_id:
                self._lost(state, now, coverage=coverage)

    @staticmethod
    def _lost(state: _Key, now: float, *, coverage: bool) -> None:
        if state.bar is not None:
            state.bar.gap = True
        state.lost = now
        if coverage:
            state.since = None

    # -- trades --------------------------------------------------------------------------------------
    def _parse_time(self, text: str) -> int:
        if len(text) != 6 or not text.isascii() or not text.isdigit():
            raise ValueError(text)
        seconds = int(text[:2]) * 3600 + int(text[2:4]) * 60 + int(text[4:])
        if not 0 <= seconds < _DAY or int(text[2:4]) > 59 or int(text[4:]) > 59:
            raise ValueError(text)
        if len(self._seconds) > 100_000:
            self._seconds.clear()
        self._seconds[text] = seconds
        return seconds

    def _bad_trade(self, rec: Record) -> None:
        """A trade that cannot be counted: its key's bar has a gap (and ACML_VOL may say more)."""
        state = self._keys.get((rec.tr_id, rec.tr_key))
        if state is not None:
            self._lost(state, self._last_now, coverage=False)
        self._invalid += 1
        if self._invalid == 1 or self._invalid % 1000 == 0:
            logger.warning(
                "%s %s: a trade without a valid time, price or volume is left out of the bars "
                "(%d so far; its bar has a gap)",
                rec.tr_id,
                rec.tr_key,
                self._invalid,
            )

    @staticmethod
    def _side(layout: _Layout, fields: list[str], state: _Key, volume: int) -> int:
        """1 buy, -1 sell, 0 neither or unknown."""
        if layout.side != MISSING:
            code = fields[layout.side] if layout.side < len(fields) else ""
            return 1 if code == "1" else -1 if code == "5" else 0
        if layout.buy == MISSING:
            return 0
        # No side column: the change of the day's buy and sell totals since the key's last trade.
        try:
            buy, sell = int(fields[layout.buy]), int(fields[layout.sell])
        except (ValueError, IndexError):
            state.buy_total = state.sell_total = None
            return 0
        before_buy, before_sell = state.buy_total, state.sell_total
        state.buy_total, state.sell_total = buy, sell
        if before_buy is None or before_sell is None:
            return 0
        if buy - before_buy == volume and sell == before_sell:
            return 1
        if sell - before_sell == volume and buy == before_buy:
            return -1
        return 0

    @staticmethod
    def _new(state: _Key, start: float, end: float, session: MarketSession | None) -> _Acc:
        """A bar of `state`'s key, with a gap if the key was not watched since `start`."""
        since = state.since
        gap = since is None or since > start or state.lost >= start
        return _Acc(start, end, session, gap, state.place[2])

    def _open(self, state: _Key, start: float, end: float, session: MarketSession | None) -> _Acc:
        bar = self._new(state, start, end, session)
        state.flat_from = None
        if self.kind == "time":
            deadline = end + self.grace
            self._deadline = min(self._deadline, deadline)
        return bar

    @staticmethod
    def _count(state: _Key, bar: _Acc, price: Price, volume: int, cumulative: int | None, side: int) -> None:
        """Count one trade in `bar` (the late path; `add` inlines the same for the open bar)."""
        if bar.trades:
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
        else:
            bar.open = bar.high = bar.low = price
        bar.close = price
        bar.trades += 1
        bar.volume += volume
        bar.value += price * volume
        if side > 0:
            bar.buy += volume
        elif side < 0:
            bar.sell += volume
        bar.first = min(bar.first, state.place[1])
        bar.last = max(bar.last, state.place[1])
        _check(state, bar, cumulative, volume)

    def _full(self, bar: _Acc) -> bool:
        if self.kind == "ticks":
            return bar.trades >= self.size
        if self.kind == "volume":
            return bar.volume >= self.size
        return bar.value >= self.size

    def _find_emitted(self, state: _Key, start: float, session: MarketSession | None) -> _Acc | None:
        for old in reversed(state.history):
            if old.slot == start and old.session is session:
                return old
        return None

    def _late(
        self,
        state: _Key,
        target: _Acc | None,
        session: MarketSession | None,
        price: Price,
        volume: int,
        cumulative: int | None,
        side: int,
        due: Sequence[Bar],
    ) -> Sequence[Bar]:
        """A trade for a bar already closed: the bar is emitted again with it (revision + 1)."""
        if target is None:  # an interval that had no bar (or one too old to keep): a bar of its own
            target = self._new(state, state.place[2], state.place[3], session)
            state.history.append(target)
        self._count(state, target, price, volume, cumulative, side)
        target.late += 1
        target.revision += 1
        return (*due, self._bar(state, target))

    # -- closing -------------------------------------------------------------------------------------
    def _close_open(self, state: _Key) -> Bar:
        bar = state.bar
        assert bar is not None
        state.bar = None
        bar.revision += 1
        state.history.append(bar)
        state.close, state.session = bar.close, bar.session
        if state.tr_id in self._timetables:
            state.flat_from = bar.end
        return self._bar(state, bar)

    def _bar(self, state: _Key, acc: _Acc) -> Bar:
        flat = acc.trades == 0
        missing = None if acc.unverified else acc.missing
        if self.kind == "time":
            start, end = _when(acc.start), _when(acc.end)
        else:
            start, end = _when(acc.first), _when(acc.last)
        assert start is not None
        assert end is not None
        return Bar(
            tr_id=state.tr_id,
            symbol=state.key,
            session=acc.session,
            kind=self.kind,
            size=self.size,
            start=start,
            end=end,
            open=acc.open,
            high=acc.high,
            low=acc.low,
            close=acc.close,
            volume=acc.volume,
            value=acc.value,
            vwap=None
            if flat
            else _DECIMAL.divide(Decimal(acc.value), Decimal(acc.volume)).quantize(
                _VWAP_PLACES, rounding=ROUND_HALF_EVEN, context=_DECIMAL
            ),
            trades=acc.trades,
            buy_volume=acc.buy,
            sell_volume=acc.sell,
            first_trade=None if flat else _when(acc.first),
            last_trade=None if flat else _when(acc.last),
            complete=not acc.gap and missing == 0,
            gap=acc.gap,
            missing_volume=missing,
            revision=acc.revision,
            late_trades=acc.late,
        )

    def _run_timer(self, now: float) -> Sequence[Bar]:
        """Close every time bar whose end + grace has passed; emit due flat bars."""
        out: list[Bar] = []
        grace = self.grace
        for state in self._keys.values():
            bar = state.bar
            if bar is not None and bar.end + grace <= now:
                out.append(self._close_open(state))
            if state.flat_from is not None and state.bar is None:
                out.extend(self._flats(state, now))
        self._deadline = self._next_deadline()
        if len(out) > 1:
            out.sort(key=_order)
        return out

    def _flats(self, state: _Key, now: float, upto: float | None = None) -> Iterator[Bar]:
        """Flat bars for the key's empty intervals that ended `grace` ago (or, with `upto`, all
        that start before it: a trade of a later interval has come), while its session lasts."""
        size = self._every
        table = self._timetables[state.tr_id]
        start = state.flat_from
        assert start is not None
        while True:
            midnight = _kst_midnight(start)
            end = min(start + size, midnight + _DAY)
            if (end + self.grace > now) if upto is None else (start >= upto):
                state.flat_from = start
                return
            if state.session is None or table(_when(start)) is not state.session:  # type: ignore[arg-type]
                state.flat_from = None  # the session is over: no flat bars until the next trade
                return
            close = state.close
            assert close is not None
            acc = _Acc(start, end, state.session, state.since is None or state.since > start, start)
            acc.gap = acc.gap or start <= state.lost < end + self.grace
            acc.open = acc.high = acc.low = acc.close = close
            acc.value = Decimal(0) if isinstance(close, Decimal) else 0
            acc.revision = 0
            state.history.append(acc)
            yield self._bar(state, acc)
            start = end

    def _next_deadline(self) -> float:
        deadline = math.inf
        grace = self.grace
        size = self._every
        for state in self._keys.values():
            bar = state.bar
            if bar is not None:
                if self.kind == "time" and bar.end + grace < deadline:
                    deadline = bar.end + grace
            elif state.flat_from is not None:
                end = min(state.flat_from + size, _kst_midnight(state.flat_from) + _DAY)
                deadline = min(deadline, end + grace)
        return deadline


def _bad_now(now: object) -> LocalProtocolError:
    return LocalProtocolError(
        f"now is unix seconds, a float (the wall clock's, datetime.timestamp(), a recording's t), not {now!r}"
    )


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(text)
    return value


def _check(state: _Key, bar: _Acc, cumulative: int | None, volume: int) -> None:
    """ACML_VOL, the day's volume so far, did not grow by exactly this trade: why."""
    before = state.cumulative
    if cumulative is None:
        bar.unverified = True
    elif before is None:
        # The key's first trade of the day here: counted from if the bar was watched from its
        # start (nothing before it can be missing), or if it is the day's first trade.
        state.cumulative = cumulative
        if cumulative != volume and bar.gap:
            bar.unverified = True
    elif cumulative - volume >= before:
        excess = cumulative - volume - before
        state.cumulative = cumulative
        bar.missing += excess
        bar.charged += excess
    elif bar.charged >= volume:
        bar.missing -= volume  # out of order: a trade counted as missing has come after all
        bar.charged -= volume


def _order(bar: Bar) -> tuple[datetime, str, str]:
    return (bar.end, bar.tr_id, bar.symbol)


def _kst_midnight(ts: float) -> float:
    """Unix time of the KST midnight at or before `ts` (KST has no daylight saving)."""
    kst = ts + 9 * 3600
    return kst - kst % _DAY - 9 * 3600


def bars_from(
    events: Iterable[tuple[float, FeedEvent]],
    *,
    until: float | None = None,
    **options: Any,
) -> Iterator[Bar]:
    """Bars of (receive time, event) pairs, e.g. ``kis_proto.recording.replay_lines`` or
    ``kis_data.read_recording``: the recording's receive times are the clock.

    `options` are `BarAggregator`'s. At the end the bars still open are flushed as
    `BarAggregator.flush` does; a recording does not say when it stopped, so give `until` (unix
    seconds) to run the clock to the moment it did (bars that ended by then close complete).
    """
    agg = BarAggregator(**options)
    for now, event in events:
        yield from agg.add(event, now)
    yield from agg.flush(until)
