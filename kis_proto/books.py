"""Book snapshots from the order-book feed: at an interval or on change. Sans-IO, time is an input.

KIS sends the 10-level (5 on most derivatives) book of a key on every change. `BookSnapshots`
turns those records into snapshots (`BookSnapshot`) that say what a strategy asks of a book: best bid and
ask, spread, mid, micro-price, depth imbalance over N levels, the resting totals, and during an
auction the expected price and volume. Driven like `kis_proto.bars.BarAggregator`: `add` every
event with its receive time (unix seconds), `handle_timer` when `timer` says, so a live feed and a
replay of its recording give the same snapshots.

    >>> from kis_proto import books
    >>> snaps = books.BookSnapshots(every=1, levels=5)    # once a second, KST-aligned
    >>> for t, event in recording:                         # doctest: +SKIP
    ...     for snap in snaps.add(event, now=t):
    ...         print(snap.symbol, snap.bid, snap.ask, snap.imbalance)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from typing import TYPE_CHECKING, Any

from ._errors import LocalProtocolError
from ._fields import KST, MarketSession, Record
from .bars import _bad_now, parse_interval
from .records import TRS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ._buffer import FeedEvent

__all__ = ["BOOK_TRS", "BookSnapshot", "BookSnapshots"]

Price = int | Decimal
_DAY = 86_400
_HALF_DAY = 43_200
_DECIMAL = Context(prec=40)
_PLACES = Decimal("0.000001")
_SESSIONS = {session.value: session for session in MarketSession}

#: The book TRs snapshots are made from (domestic stocks, futures and options, US stocks).
BOOK_TRS: tuple[str, ...] = (
    "H0STASP0",
    "H0NXASP0",
    "H0UNASP0",
    "H0IFASP0",
    "H0IOASP0",
    "H0CFASP0",
    "H0ZFASP0",
    "H0ZOASP0",
    "H0MFASP0",
    "H0EUASP0",
    "HDFSASP0",
    "HDFSASP1",
)


class _Layout:
    """One record class's book columns, found by the official names' patterns."""

    __slots__ = (
        "ask_prices",
        "ask_sizes",
        "bid_prices",
        "bid_sizes",
        "compare",
        "decimal",
        "expected_price",
        "expected_volume",
        "session",
        "states",
        "time",
        "total_ask",
        "total_bid",
        "tr_id",
    )

    def __init__(self, tr_id: str, cls: type[Record]) -> None:
        by_name = {f.name: f for f in cls.columns}

        def first(*names: str) -> int | None:
            return next((by_name[n].index for n in names if n in by_name), None)

        self.tr_id = tr_id
        self.time = first("BSOP_HOUR", "KHMS")
        ask_prices, bid_prices, ask_sizes, bid_sizes = [], [], [], []
        for n in range(1, 11):
            ask = first(f"ASKP{n}", f"FUTS_ASKP{n}", f"OPTN_ASKP{n}", f"PASK{n}")
            bid = first(f"BIDP{n}", f"FUTS_BIDP{n}", f"OPTN_BIDP{n}", f"PBID{n}")
            ask_size = first(f"ASKP_RSQN{n}", f"VASK{n}")
            bid_size = first(f"BIDP_RSQN{n}", f"VBID{n}")
            if ask is None or bid is None or ask_size is None or bid_size is None:
                break
            ask_prices.append(ask)
            bid_prices.append(bid)
            ask_sizes.append(ask_size)
            bid_sizes.append(bid_size)
        self.ask_prices, self.bid_prices = tuple(ask_prices), tuple(bid_prices)
        self.ask_sizes, self.bid_sizes = tuple(ask_sizes), tuple(bid_sizes)
        self.total_ask = first("TOTAL_ASKP_RSQN", "AVOL")
        self.total_bid = first("TOTAL_BIDP_RSQN", "BVOL")
        self.expected_price = first("ANTC_CNPR")
        self.expected_volume = first("ANTC_CNQN")
        self.session = first("MARKET_CLS_CODE")
        self.decimal = by_name[cls.columns[ask_prices[0]].name].type.value is Decimal
        self.compare: tuple[int, ...] = ()  # the fields a change is judged by (set per levels)
        self.states: dict[str, _Key] = {}
        if self.time is None or not ask_prices:  # pragma: no cover - checked by the tests
            raise TypeError(f"{cls.__name__} is not a book this module knows")


@dataclass(frozen=True, slots=True, kw_only=True)
class BookSnapshot:
    """A key's book at one moment: the top, the depth over `levels`, the totals, the auction.

    Prices are the record's type (int won on domestic stocks, Decimal elsewhere); `mid`,
    `micro_price` and `imbalance` are Decimal (6 places); a side with no order reads None.
    """

    tr_id: str
    symbol: str
    #: The moment the snapshot stands for: the interval's KST time, or (on change) when the book
    #: arrived.
    at: datetime
    #: The book's own time (영업 시간, KST).
    time: datetime | None
    session: MarketSession | None
    bid: Price | None
    ask: Price | None
    bid_size: int
    ask_size: int
    #: ask - bid
    spread: Price | None
    #: (bid + ask) / 2
    mid: Decimal | None
    #: (bid × ask_size + ask × bid_size) / (bid_size + ask_size): the mid leaned toward the side
    #: with less resting, where the next trade more likely is.
    micro_price: Decimal | None
    #: The number of levels `bid_depth`, `ask_depth` and `imbalance` sum over.
    levels: int
    bid_depth: int
    ask_depth: int
    #: (bid_depth - ask_depth) / (bid_depth + ask_depth), from -1 (all asks) to 1 (all bids).
    imbalance: Decimal | None
    #: Every level's resting quantity as KIS totals it (총 매수/매도호가 잔량).
    total_bid: int | None
    total_ask: int | None
    #: During an auction (pre-market, the closing auction): the expected price and quantity of
    #: the auction's print (예상 체결가, 예상 체결량); None otherwise and on books without them.
    expected_price: Price | None
    expected_volume: int | None
    #: (price, quantity) per level, best first, `levels` of them at most.
    bids: tuple[tuple[Price, int], ...]
    asks: tuple[tuple[Price, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ints stay ints, decimals are strings, times ISO 8601."""

        def num(value: Price | None) -> int | str | None:
            return value if value is None or isinstance(value, int) else str(value)

        return {
            "v": 1,
            "tr_id": self.tr_id,
            "symbol": self.symbol,
            "at": self.at.isoformat(),
            "time": None if self.time is None else self.time.isoformat(),
            "session": None if self.session is None else self.session.label,
            "bid": num(self.bid),
            "ask": num(self.ask),
            "bid_size": self.bid_size,
            "ask_size": self.ask_size,
            "spread": num(self.spread),
            "mid": num(self.mid),
            "micro_price": num(self.micro_price),
            "levels": self.levels,
            "bid_depth": self.bid_depth,
            "ask_depth": self.ask_depth,
            "imbalance": num(self.imbalance),
            "total_bid": self.total_bid,
            "total_ask": self.total_ask,
            "expected_price": num(self.expected_price),
            "expected_volume": self.expected_volume,
            "bids": [[num(p), q] for p, q in self.bids],
            "asks": [[num(p), q] for p, q in self.asks],
        }


class _Key:
    __slots__ = ("last", "now", "pending", "record")

    def __init__(self) -> None:
        self.record: Record | None = None  # the latest book
        self.now = 0.0  # when it came
        self.pending = False  # changed since the last interval snapshot
        self.last: tuple[str, ...] = ()  # its compared fields, for on-change snapshots


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, KST)


def _kst_midnight(ts: float) -> float:
    kst = ts + 9 * 3600
    return kst - kst % _DAY - 9 * 3600


class BookSnapshots:
    """Snapshots of every (TR, key) book in a stream of feed events.

    Give `every` (seconds, or ``"1s"``, ``"1m"``: a snapshot of each key whose book changed in
    the interval, at each KST-aligned interval boundary, of the book as it was then) or
    ``on_change=True`` (a snapshot for each book whose top `levels` differ from the key's last).
    `levels` (1 to 10) is the depth `imbalance`, `bid_depth` and `ask_depth` sum over and the
    levels a snapshot lists. `tr_ids` limits the TRs (default: `BOOK_TRS`); any other raises
    `LocalProtocolError`. Records of other TRs are ignored.
    """

    def __init__(
        self,
        *,
        every: int | str | None = None,
        on_change: bool = False,
        levels: int = 5,
        tr_ids: Iterable[str] | None = None,
    ) -> None:
        if (every is None) == (not on_change):
            raise LocalProtocolError("give every= (seconds or '1s') or on_change=True, not both or neither")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 10:
            raise LocalProtocolError(f"levels is 1 to 10, not {levels!r}")
        self.every = 0 if every is None else parse_interval(every)
        self.levels = levels
        wanted = tuple(BOOK_TRS if tr_ids is None else ([tr_ids] if isinstance(tr_ids, str) else tr_ids))
        for tr_id in wanted:
            if tr_id not in BOOK_TRS:
                spec = TRS.get(tr_id)
                what = (
                    f"a {spec.kind.value.replace('_', ' ')} TR"
                    if spec is not None
                    else "not a TR kis_proto knows"
                )
                hint = " (bars: kis_proto.bars)" if spec is not None and spec.kind.value == "trade" else ""
                raise LocalProtocolError(
                    f"book snapshots are made from the book TRs {', '.join(BOOK_TRS)}; {tr_id} is {what}{hint}"
                )
        self.tr_ids = wanted
        self._layouts: dict[type[Record], _Layout] = {}
        self._states: list[dict[str, _Key]] = []  # one per TR, shared by its eras
        for tr_id in wanted:
            states: dict[str, _Key] = {}
            self._states.append(states)
            for layout in TRS[tr_id].layouts:
                resolved = _Layout(tr_id, layout.record_class)
                resolved.states = states
                n = min(levels, len(resolved.ask_prices))
                resolved.compare = (
                    resolved.ask_prices[:n]
                    + resolved.bid_prices[:n]
                    + resolved.ask_sizes[:n]
                    + resolved.bid_sizes[:n]
                )
                self._layouts[layout.record_class] = resolved
        self._deadline = math.inf

    def __repr__(self) -> str:
        how = f"every={self.every}" if self.every else "on_change"
        return f"<BookSnapshots {how} levels={self.levels}>"

    def timer(self) -> float | None:
        """When `handle_timer` next has snapshots to give (unix seconds), or None."""
        return None if self._deadline == math.inf else self._deadline

    def handle_timer(self, now: float) -> Sequence[BookSnapshot]:
        """The clock reached `now`: the interval snapshots due by then."""
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise _bad_now(now)
        if now < self._deadline:
            return ()
        return self._run_timer(now)

    def add(self, event: FeedEvent, now: float) -> Sequence[BookSnapshot]:
        """Take one feed event received at `now` (unix seconds); the snapshots it completed.

        The snapshots due at `now` come first (of the books as they were before this one).
        """
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise _bad_now(now)
        layout = self._layouts.get(type(event))  # type: ignore[arg-type]
        due = self._run_timer(now) if now >= self._deadline else ()
        if layout is None:
            return due
        assert isinstance(event, Record)
        fields = event._list()
        state = layout.states.get(fields[0])
        if state is None:
            state = layout.states[fields[0]] = _Key()
        if self.every:
            state.record, state.now = event, now
            if not state.pending:
                state.pending = True
                self._deadline = min(self._deadline, self._boundary(now))
            return due
        compared = tuple(fields[i] if i < len(fields) else "" for i in layout.compare)
        if compared == state.last:
            return due
        state.last, state.record, state.now = compared, event, now
        return (*due, self._snapshot(layout, event, now, now))

    def _run_timer(self, now: float) -> list[BookSnapshot]:
        out: list[BookSnapshot] = []
        for states in self._states:
            for state in states.values():
                if state.pending and state.record is not None:
                    boundary = self._boundary(state.now)
                    if boundary <= now:
                        state.pending = False
                        # The record's own era says where its columns are.
                        layout = self._layouts[type(state.record)]
                        out.append(self._snapshot(layout, state.record, state.now, boundary))
        self._deadline = min(
            (
                self._boundary(state.now)
                for states in self._states
                for state in states.values()
                if state.pending
            ),
            default=math.inf,
        )
        out.sort(key=lambda s: (s.at, s.tr_id, s.symbol))
        return out

    def _boundary(self, received: float) -> float:
        midnight = _kst_midnight(received)
        return min(midnight + ((received - midnight) // self.every + 1) * self.every, midnight + _DAY)

    def _snapshot(self, layout: _Layout, rec: Record, received: float, at: float) -> BookSnapshot:
        fields = rec._list()
        width = len(fields)

        def text(index: int | None) -> str:
            return fields[index] if index is not None and index < width else ""

        def price(index: int | None) -> Price | None:
            value = text(index)
            try:
                number: Price = Decimal(value) if layout.decimal else int(value)
            except (ValueError, ArithmeticError):
                return None
            if isinstance(number, Decimal) and not number.is_finite():
                return None
            return number if number else None  # KIS writes 0 for an empty level

        def quantity(index: int | None) -> int | None:
            try:
                return int(text(index))
            except ValueError:
                return None

        n = min(self.levels, len(layout.ask_prices))
        bids: list[tuple[Price, int]] = []
        asks: list[tuple[Price, int]] = []
        for i in range(n):
            bid, bid_qty = price(layout.bid_prices[i]), quantity(layout.bid_sizes[i]) or 0
            ask, ask_qty = price(layout.ask_prices[i]), quantity(layout.ask_sizes[i]) or 0
            if bid is not None:
                bids.append((bid, bid_qty))
            if ask is not None:
                asks.append((ask, ask_qty))
        best_bid, bid_size = bids[0] if bids else (None, 0)
        best_ask, ask_size = asks[0] if asks else (None, 0)
        spread: Price | None = None
        mid = micro = None
        if best_bid is not None and best_ask is not None:
            spread = best_ask - best_bid
            mid = _DECIMAL.divide(Decimal(best_bid + best_ask), 2).quantize(_PLACES, context=_DECIMAL)
            if bid_size + ask_size:
                micro = _DECIMAL.divide(
                    Decimal(best_bid * ask_size + best_ask * bid_size), Decimal(bid_size + ask_size)
                ).quantize(_PLACES, context=_DECIMAL)
        bid_depth, ask_depth = sum(q for _, q in bids), sum(q for _, q in asks)
        imbalance = (
            _DECIMAL.divide(Decimal(bid_depth - ask_depth), Decimal(bid_depth + ask_depth)).quantize(
                _PLACES, context=_DECIMAL
            )
            if bid_depth + ask_depth
            else None
        )
        expected = price(layout.expected_price)
        book_time = None
        clock = text(layout.time)
        if len(clock) == 6 and clock.isascii() and clock.isdigit():
            seconds = int(clock[:2]) * 3600 + int(clock[2:4]) * 60 + int(clock[4:])
            midnight = _kst_midnight(received)
            stamp = midnight + seconds
            if stamp - received > _HALF_DAY:
                stamp -= _DAY
            elif received - stamp > _HALF_DAY:
                stamp += _DAY
            if seconds < _DAY and int(clock[2:4]) < 60 and int(clock[4:]) < 60:
                book_time = _when(stamp)
        return BookSnapshot(
            tr_id=layout.tr_id,
            symbol=rec.tr_key,
            at=_when(at),
            time=book_time,
            session=_SESSIONS.get(text(layout.session)),
            bid=best_bid,
            ask=best_ask,
            bid_size=bid_size,
            ask_size=ask_size,
            spread=spread,
            mid=mid,
            micro_price=micro,
            levels=n,
            bid_depth=bid_depth,
            ask_depth=ask_depth,
            imbalance=imbalance,
            total_bid=quantity(layout.total_bid),
            total_ask=quantity(layout.total_ask),
            expected_price=expected,
            expected_volume=(quantity(layout.expected_volume) or None) if expected is not None else None,
            bids=tuple(bids),
            asks=tuple(asks),
        )
