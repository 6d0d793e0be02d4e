"""``kis-ws book KEY``: a live 10-level order book (호가창) with the last trades.

A KRX code shows H0STASP0 and H0STCNT0; an overseas key (``DNASAAPL``) HDFSASP0 and HDFSCNT0.
Asks are listed above the bids, best prices in the middle, with each level's quantity as a bar,
as a broker's 호가창 does.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import time as day_time
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

import anyio

from kis_proto import MarketSession, Record, Subscribed
from kis_proto.symbols import listing

from ._errors import CLIError
from ._inputs import check_subscriptions
from ._live import Answers, LiveFeed, open_feed, subscribe_all
from ._output import status_line

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from rich.console import RenderableType

    from kis_proto.layouts import FieldValue

__all__ = ["BookView", "book"]

LEVELS = 10


Level = tuple["FieldValue", "FieldValue"]


def _levels(rec: Record) -> tuple[list[Level], list[Level]]:
    """(asks, bids) as (price, quantity) from best to worst, for KRX and overseas books."""
    if "ASKP1" in rec:
        asks = [(rec.get(f"ASKP{n}"), rec.get(f"ASKP_RSQN{n}")) for n in range(1, LEVELS + 1)]
        bids = [(rec.get(f"BIDP{n}"), rec.get(f"BIDP_RSQN{n}")) for n in range(1, LEVELS + 1)]
    else:
        asks = [(rec.get(f"PASK{n}"), rec.get(f"VASK{n}")) for n in range(1, LEVELS + 1)]
        bids = [(rec.get(f"PBID{n}"), rec.get(f"VBID{n}")) for n in range(1, LEVELS + 1)]
    return [(p, q) for p, q in asks if p not in (None, 0)], [(p, q) for p, q in bids if p not in (None, 0)]


def _bar(quantity: object, largest: int, width: int = 20) -> str:
    if not isinstance(quantity, int) or largest <= 0:
        return ""
    return "█" * max(1 if quantity else 0, round(width * quantity / largest))


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int | Decimal) else "-"


class BookView:
    """The latest book of one key and its last trades; `render` draws them."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.book: Record | None = None
        self.trades: deque[Record] = deque(maxlen=5)
        self.status = "connecting"

    def update(self, rec: Record) -> None:
        if "price" in rec.friendly:
            self.trades.appendleft(rec)
        else:
            self.book = rec

    def render(self) -> RenderableType:
        from rich.table import Table

        listed = listing(self.key)
        name = f" {listed.name}" if listed is not None else ""
        table = Table(title=f"{self.key}{name} — {self.status}", expand=False, show_lines=False)
        for column, justify in (
            ("매도잔량 ask qty", "right"),
            ("호가 price", "right"),
            ("매수잔량 bid qty", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        if self.book is None:
            table.caption = "waiting for the first book"
            return table
        asks, bids = _levels(self.book)
        largest = max((q for _, q in asks + bids if isinstance(q, int)), default=0)
        for price, qty in reversed(asks):
            table.add_row(f"{_bar(qty, largest)} {_number(qty)}", f"[blue]{_number(price)}[/]", "")
        for price, qty in bids:
            table.add_row("", f"[red]{_number(price)}[/]", f"{_number(qty)} {_bar(qty, largest)}")
        session = self.book.get("session")
        clock = self.book.get("time")
        facts = [f"mid {_mid(asks, bids)}"]
        if isinstance(session, MarketSession):
            facts.append(f"session {session.label}")
        if isinstance(clock, day_time):
            facts.append(f"at {clock.strftime('%H:%M:%S')}")
        if self.trades:
            last = ", ".join(f"{_number(t.get('price'))}×{_number(t.get('volume'))}" for t in self.trades)
            facts.append(f"last trades {last}")
        table.caption = " · ".join(facts)
        return table


def _mid(asks: list[Level], bids: list[Level]) -> str:
    if not asks or not bids:
        return "-"
    ask, bid = asks[0][0], bids[0][0]
    if not isinstance(ask, int | Decimal) or not isinstance(bid, int | Decimal):
        return "-"
    total = Decimal(ask) + Decimal(bid)
    return f"{total / 2:,}" if total % 2 else f"{total // 2:,}"


async def book(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Show one key's live book (a terminal) or print it every update (`--count` books)."""
    [(trade_tr, key)] = check_subscriptions([args.key])
    if trade_tr not in ("H0STCNT0", "HDFSCNT0"):
        raise CLIError(
            f"kis-ws book takes a KRX code or an overseas key (005930, DNASAAPL), not {args.key!r}",
            hint="for other TRs use kis-ws watch TR:KEY",
        )
    book_tr = "H0STASP0" if trade_tr == "H0STCNT0" else "HDFSASP0"
    answers = Answers([(trade_tr, key), (book_tr, key)])
    view = BookView(key)
    async with open_feed(args, err) as (feed, _):
        await subscribe_all(feed, [(trade_tr, key), (book_tr, key)], err)
        live = out.isatty() and not args.plain
        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
            if live:
                from rich.live import Live

                with Live(view.render(), refresh_per_second=4, transient=False) as screen:
                    await _follow(feed, view, answers, err, args.count, lambda: screen.update(view.render()))
            else:
                from rich.console import Console

                console = Console(file=out, width=100, color_system=None)
                await _follow(feed, view, answers, err, args.count, lambda: console.print(view.render()))
    if answers.all_refused:
        raise answers.error()
    return 0


async def _follow(
    feed: LiveFeed,
    view: BookView,
    answers: Answers,
    err: TextIO,
    count: int | None,
    show: Callable[[], object],
) -> None:
    books = 0
    async for batch in feed.batches():
        changed = False
        for event in batch:
            if isinstance(event, Record):
                view.update(event)
                changed = changed or "price" not in event.friendly
                continue
            answers.note(event)
            if isinstance(event, Subscribed):
                view.status = "live"
            elif (line := status_line(event)) is not None:
                err.write(line + "\n")
        if changed:
            show()
            books += 1
            if count is not None and books >= count:
                return
        if answers.all_refused:
            return
