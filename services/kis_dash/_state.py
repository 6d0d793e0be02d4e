"""What the dashboard shows, kept up to date from feed events and bars: pure, time passed in.

`DashState` takes every event of a feed (`add`), every bar its aggregator completes (`add_bar`)
and, from a gateway, its status reply (`set_gateway`). It keeps, per widget, the latest state and a
version that grows when the state changes; `render` gives a widget's JSON-ready dict. The server
(`kis_dash.DashServer`) sends a widget to a page only when its version moved, at most ten times a
second: a thousand trades between two sends cost one message.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import time as day_time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kis_proto import (
    Connected,
    ConnectionClosed,
    EventsDropped,
    LayoutDrift,
    MarketSession,
    Reconnecting,
    Record,
    Subscribed,
    SubscribeFailed,
    UndecodableMessage,
    Unsubscribed,
)
from kis_proto.feed import KIS_MAX_SUBSCRIPTIONS, shown_key
from kis_proto.layouts import tr_spec
from kis_proto.symbols import listing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from kis_proto import FeedEvent
    from kis_proto.bars import Bar, BarAggregator
    from kis_proto.feed import FeedCounters

__all__ = ["BOOK_LEVELS", "DashState", "book_key", "chart_key"]

#: The depth of the 호가창: KIS sends 10 levels a side.
BOOK_LEVELS = 10
#: Completed bars kept per key (the chart's history).
KEEP_BARS = 500
#: Closed bars sent with each chart update (a page that missed more asks for the whole chart).
TAIL_BARS = 5
#: Notices kept.
KEEP_NOTICES = 50
#: KST is UTC+9 all year: lightweight-charts draws UTC, so bar times are shifted to read as KST.
_KST_SHIFT = 9 * 3600

_SIDES = {"01": "sell", "02": "buy"}


def book_key(symbol: str) -> str:
    """The widget name of one key's order book."""
    return f"book:{symbol}"


def chart_key(symbol: str) -> str:
    """The widget name of one key's chart."""
    return f"chart:{symbol}"


def _number(value: object) -> int | float | None:
    """A price or quantity as JSON carries it (the page formats it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    return None


def _clock(value: object) -> str | None:
    return value.strftime("%H:%M:%S") if isinstance(value, day_time) else None


def _first(rec: Record, *names: str) -> object:
    for name in names:
        value = rec.get(name)
        if value is not None:
            return value
    return None


@dataclass
class _Quote:
    symbol: str
    name: str
    last: int | float | None = None
    change: int | float | None = None
    rate: int | float | None = None
    volume: int | float | None = None
    session: str | None = None
    time: str | None = None
    trades: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "name": self.name,
            "last": self.last,
            "change": self.change,
            "rate": self.rate,
            "volume": self.volume,
            "session": self.session,
            "time": self.time,
            "trades": self.trades,
        }


@dataclass
class _Health:
    connection: str = "connecting"
    detail: str = ""
    connects: int = 0
    reconnects: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    drift: int = 0
    undecodable: int = 0
    refused: list[str] = field(default_factory=list)
    records: int = 0
    accepted: set[tuple[str, str]] = field(default_factory=set)


class DashState:
    """The dashboard's widgets, fed by a feed's events and an aggregator's bars.

    `keys` are the watchlist's (trade TR, key) pairs; `books` the (book TR, key) pairs whose
    호가창 are shown; `notices` the notice subscriptions (their HTS IDs are shown masked).
    `aggregator` is the `BarAggregator` whose bars `add_bar` gets (its open bars are the chart's
    last candle). `counters` is the feed's `FeedCounters` when it has them (a KIS feed; a
    gateway's consumer has none: the state counts from the events, and `subscribed`, when given,
    says how many subscriptions the feed holds). `source` says where the feed comes from, for the
    health panel; it must hold no secret.
    """

    def __init__(
        self,
        *,
        keys: Iterable[tuple[str, str]],
        books: Iterable[tuple[str, str]] = (),
        notices: Iterable[tuple[str, str]] = (),
        aggregator: BarAggregator | None = None,
        counters: FeedCounters | None = None,
        subscribed: Callable[[], int] | None = None,
        source: str = "",
        limit: int = KIS_MAX_SUBSCRIPTIONS,
    ) -> None:
        self.keys = list(dict.fromkeys(keys))
        self.books = list(dict.fromkeys(books))
        self.notice_keys = list(dict.fromkeys(notices))
        self.aggregator = aggregator
        self.counters = counters
        self._subscribed = subscribed
        self.source = source
        self.limit = limit
        self.symbols = list(dict.fromkeys(key for _, key in self.keys))
        #: Each key's Korean name (the English one for US stocks), "" for one the table lacks.
        self.names = {key: _name(key) for key in self.symbols}
        self._quotes = {key: _Quote(key, self.names[key]) for key in self.symbols}
        self._book_of = {key: tr_id for tr_id, key in self.books}
        self._books: dict[str, dict[str, Any]] = {}
        self._bars: dict[str, deque[dict[str, Any]]] = {key: deque(maxlen=KEEP_BARS) for key in self.symbols}
        self._closed: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._notices: deque[dict[str, Any]] = deque(maxlen=KEEP_NOTICES)
        self._health = _Health()
        self._gateway: dict[str, Any] | None = None
        self._versions: dict[str, int] = {}
        self._rate_at = -math.inf
        self._rate_records = 0
        self._rate = 0.0
        self._notice_trs = {tr_id for tr_id, _ in self.notice_keys}

    def __repr__(self) -> str:
        return f"<DashState {len(self.symbols)} keys, {len(self.books)} books, {self._health.connection}>"

    # -- versions ------------------------------------------------------------------------------------
    def version(self, widget: str) -> int:
        """How often `widget` changed: the server sends it again when this moved."""
        return self._versions.get(widget, 0)

    def _bump(self, widget: str) -> None:
        self._versions[widget] = self._versions.get(widget, 0) + 1

    @property
    def widgets(self) -> list[str]:
        """Every widget's name: the three shared ones, then a book and a chart per key."""
        return [
            "watchlist",
            "health",
            "notices",
            *(book_key(key) for _, key in self.books),
            *(chart_key(key) for key in self.symbols),
        ]

    # -- input ---------------------------------------------------------------------------------------
    def add(self, event: FeedEvent) -> None:
        """One event of the feed: records update their widget, the rest the health panel."""
        if isinstance(event, Record):
            self._record(event)
            return
        health = self._health
        if isinstance(event, Connected):
            health.connection, health.detail = "connected", ""
            health.connects += 1
        elif isinstance(event, Reconnecting):
            health.connection = "reconnecting"
            health.detail = f"in {event.delay:.1f} s (attempt {event.attempt}): {event.reason}"
            health.reconnects += 1
            reason = _reason(event.reason)
            health.reasons[reason] = health.reasons.get(reason, 0) + 1
            health.accepted.clear()
        elif isinstance(event, ConnectionClosed):
            health.connection, health.detail = "disconnected", f"{event.code} {event.reason}".strip()
            health.accepted.clear()
        elif isinstance(event, Subscribed):
            health.accepted.add((event.tr_id, event.tr_key))
        elif isinstance(event, Unsubscribed):
            health.accepted.discard((event.tr_id, event.tr_key))
        elif isinstance(event, SubscribeFailed):
            if not event.timed_out:
                shown = shown_key(event.tr_id, event.tr_key)
                health.refused = [
                    *health.refused[-4:],
                    f"{event.tr_id} {shown}: {event.msg_cd} {event.message}",
                ]
        elif isinstance(event, EventsDropped):
            health.dropped += event.count
        elif isinstance(event, LayoutDrift):
            health.drift += 1
        elif isinstance(event, UndecodableMessage):
            health.undecodable += 1
        else:
            return
        self._bump("health")

    def _record(self, rec: Record) -> None:
        self._health.records += 1
        tr_id, key = rec.tr_id, rec.tr_key
        if key in self._book_of and tr_id == self._book_of[key]:
            self._books[key] = _book(rec)
            self._bump(book_key(key))
            return
        if tr_id in self._notice_trs or _is_notice(tr_id):
            if (notice := _notice(rec)) is not None:
                self._notices.appendleft(notice)
                self._bump("notices")
            return
        quote = self._quotes.get(key)
        if quote is None or "price" not in rec.friendly:
            return
        quote.last = _number(rec.get("price"))
        quote.change = _number(_first(rec, "PRDY_VRSS", "DIFF", "change"))
        quote.rate = _number(_first(rec, "PRDY_CTRT", "RATE"))
        quote.volume = _number(_first(rec, "ACML_VOL", "TVOL", "volume"))
        session = rec.get("session") if "session" in rec.friendly else None
        if isinstance(session, MarketSession):
            quote.session = session.label
        quote.time = _clock(rec.get("time"))
        quote.trades += 1
        self._bump("watchlist")
        self._bump(chart_key(key))  # its open bar changed

    def add_bar(self, bar: Bar) -> None:
        """A bar the aggregator completed (again, when a late trade revised it)."""
        bars = self._bars.get(bar.symbol)
        if bars is None:
            return
        shown = _bar(bar)
        if bars and bars[-1]["time"] == shown["time"]:
            bars[-1] = shown  # a revision of the last bar
        elif bars and bars[-1]["time"] > shown["time"]:
            return  # a revision of an older one: the chart keeps its first emission
        else:
            bars.append(shown)
            self._closed[bar.symbol] += 1
        self._bump(chart_key(bar.symbol))

    def set_gateway(self, report: Mapping[str, Any] | None) -> None:
        """A gateway's status reply (`kis_nats.Feed.status`), or None when it did not answer.

        Only what the panel shows is kept: the gateway, its role, its capacity, its sessions and
        consumers by name and counts.
        """
        self._gateway = None if report is None else _gateway(report)
        self._bump("health")

    def tick(self, now: float) -> None:
        """The clock (monotonic seconds): the records-per-second figure, once a second."""
        if now - self._rate_at >= 1.0:
            if self._rate_at > -math.inf:
                self._rate = (self._health.records - self._rate_records) / (now - self._rate_at)
            self._rate_at, self._rate_records = now, self._health.records
            self._bump("health")

    # -- output --------------------------------------------------------------------------------------
    def render(self, widget: str) -> dict[str, Any]:
        """`widget`'s message to a page: a dict with ``type`` and the widget's state, JSON-ready.

        A chart's is its tail (the last closed bars and the open one); `render_chart` the whole.
        Raises KeyError for a name `widgets` does not list.
        """
        if widget == "watchlist":
            return {"type": "watchlist", "rows": [self._quotes[key].row() for key in self.symbols]}
        if widget == "health":
            return self._render_health()
        if widget == "notices":
            return {"type": "notices", "subscribed": bool(self.notice_keys), "items": list(self._notices)}
        kind, _, key = widget.partition(":")
        if kind == "book" and key in self._book_of:
            return {"type": "book", "symbol": key, "name": _name(key), **self._books.get(key, _EMPTY_BOOK)}
        if kind == "chart" and key in self._bars:
            return self.render_chart(key, full=False)
        raise KeyError(widget)

    def render_chart(self, symbol: str, *, full: bool = True) -> dict[str, Any]:
        """One key's chart: every kept closed bar (`full`) or the last few, and the open bar."""
        bars = self._bars[symbol]
        shown = list(bars) if full else list(bars)[-TAIL_BARS:]
        return {
            "type": "chart",
            "symbol": symbol,
            "full": full,
            "closed": self._closed[symbol],
            "bars": shown,
            "open": self._open_bar(symbol),
        }

    def _open_bar(self, symbol: str) -> dict[str, Any] | None:
        if self.aggregator is None:
            return None
        for bar in self.aggregator.open_bars():
            if bar.symbol == symbol:
                return _bar(bar)
        return None

    def _render_health(self) -> dict[str, Any]:
        health = self._health
        if self.counters is not None:
            used = self.counters.subscriptions
        elif self._subscribed is not None:
            used = self._subscribed()
        else:
            used = len(health.accepted)
        return {
            "type": "health",
            "source": self.source,
            "connection": health.connection,
            "detail": health.detail,
            "connects": health.connects,
            "reconnects": health.reconnects,
            "reasons": dict(self.counters.reconnects if self.counters is not None else health.reasons),
            "subscriptions": used,
            "wanted": len(self.keys) + len(self.books) + len(self.notice_keys),
            "limit": self.limit,
            "records": health.records,
            "rate": round(self._rate, 1),
            "drift": health.drift,
            "dropped": health.dropped,
            "undecodable": health.undecodable,
            "refused": list(health.refused),
            "gateway": self._gateway,
        }


_EMPTY_BOOK: dict[str, Any] = {"asks": [], "bids": [], "time": None, "session": None}


def _name(key: str) -> str:
    listed = listing(key)
    return listed.name if listed is not None else ""


def _reason(text: str) -> str:
    """A reconnect's reason, short (a feed without counters, whose labels are better, gives only this)."""
    return text.split(":", 1)[0].strip()[:60] or "other"


def _is_notice(tr_id: str) -> bool:
    spec = tr_spec(tr_id)
    return spec is not None and spec.encrypted


def _book(rec: Record) -> dict[str, Any]:
    """(asks, bids) as [price, quantity] pairs from the best out, for KRX and overseas books."""
    if "ASKP1" in rec:
        ask_p, ask_q, bid_p, bid_q = "ASKP", "ASKP_RSQN", "BIDP", "BIDP_RSQN"
    else:
        ask_p, ask_q, bid_p, bid_q = "PASK", "VASK", "PBID", "VBID"
    sides: list[list[list[int | float | None]]] = []
    for price_name, qty_name in ((ask_p, ask_q), (bid_p, bid_q)):
        levels = []
        for n in range(1, BOOK_LEVELS + 1):
            price = _number(rec.get(f"{price_name}{n}"))
            if price:
                levels.append([price, _number(rec.get(f"{qty_name}{n}"))])
        sides.append(levels)
    session = rec.get("session") if "session" in rec.friendly else None
    return {
        "asks": sides[0],
        "bids": sides[1],
        "time": _clock(rec.get("time")) if "time" in rec.friendly else None,
        "session": session.label if isinstance(session, MarketSession) else None,
    }


def _notice(rec: Record) -> dict[str, Any] | None:
    """An execution notice as the panel lists it; the HTS ID masked, the account left out."""
    if "CNTG_YN" not in rec:
        return None
    refused, filled = rec.get("RFUS_YN") == "1", rec.get("CNTG_YN") == "2"
    symbol = rec.get("STCK_SHRN_ISCD")
    return {
        "kind": "refused" if refused else "filled" if filled else "accepted",
        "side": _SIDES.get(str(rec.get("SELN_BYOV_CLS")), "-"),
        "symbol": symbol,
        "name": _name(str(symbol)) if symbol else "",
        "quantity": _number(rec.get("CNTG_QTY")),
        "price": _number(rec.get("CNTG_UNPR")),
        "order": rec.get("ODER_NO"),
        "time": _clock(rec.get("STCK_CNTG_HOUR")),
        "hts_id": shown_key(rec.tr_id, rec.tr_key),
    }


def _bar(bar: Bar) -> dict[str, Any]:
    return {
        "time": int(bar.start.timestamp()) + _KST_SHIFT,
        "open": _number(bar.open),
        "high": _number(bar.high),
        "low": _number(bar.low),
        "close": _number(bar.close),
        "volume": bar.volume,
        "complete": bar.complete,
    }


def _gateway(report: Mapping[str, Any]) -> dict[str, Any]:
    def pick(item: object, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: item.get(name) for name in names} if isinstance(item, dict) else {}

    sessions = report.get("sessions")
    clients = report.get("clients")
    capacity = report.get("capacity")
    return {
        "gateway": report.get("gateway"),
        "role": report.get("role"),
        "env": report.get("env"),
        "capacity": pick(capacity, ("used", "total")),
        "published": report.get("published"),
        "dropped": report.get("dropped"),
        "sessions": [
            pick(s, ("name", "state", "subscriptions", "capacity", "records", "reconnects"))
            for s in (sessions if isinstance(sessions, list) else [])[:20]
        ],
        "clients": [
            pick(c, ("client", "subscriptions", "lease_left"))
            for c in (clients if isinstance(clients, list) else [])[:20]
        ],
    }
