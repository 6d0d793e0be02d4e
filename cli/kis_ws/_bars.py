"""``kis-ws bars [TR:]KEY… --every 1m``: live bars, from the simulator without credentials.

The feed is `kis-ws watch`'s (the same options and sources); its trades go to a
`kis_proto.bars.BarAggregator` driven by `kis_anyio.bars` (the wall clock, and its timer: a quiet
symbol's bar closes on time). A bar is printed when it completes — one JSON object (`Bar.to_dict`)
with ``--jsonl``, one line otherwise — and in a terminal a table shows the last bars and the open
ones updating. When the run ends (``--duration``, ``--count``, Ctrl-C aside) the bars still open are
printed too, marked ``gap``: they were cut short.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import kis_anyio

from kis_proto import Connected, LocalProtocolError, Reconnecting, Record
from kis_proto.bars import TRADE_TRS, Bar, BarAggregator, parse_interval
from kis_proto.symbols import listing

from ._errors import CLIError
from ._inputs import check_subscriptions
from ._live import Answers, heed, open_feed, subscribe_all
from ._output import status_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import RenderableType

    from kis_proto import FeedEvent

    from ._live import LiveFeed

__all__ = ["BarBoard", "bars", "describe_bar", "interval", "positive_int", "positive_number"]


def interval(text: str) -> int:
    """``--every``: a bar interval, ``10s``, ``1m``, ``5m``, ``1h`` or whole seconds."""
    try:
        return parse_interval(text)
    except LocalProtocolError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a bar interval: give e.g. 10s, 1m, 5m or 1h (1 second to 1 day)"
        ) from None


def positive_int(text: str) -> int:
    """``--ticks``, ``--volume``: a whole number above 0."""
    if not text.strip().isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bar size: give a whole number above 0, e.g. 100")
    return int(text)


def positive_number(text: str) -> int | Decimal:
    """``--value``: traded value (price × volume) above 0, e.g. 1000000000 or 1e9."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        amount = Decimal(0)
    if not amount.is_finite() or amount <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bar size: give a value above 0, e.g. 1000000000")
    return int(amount) if amount == amount.to_integral_value() else amount


def bar_options(args: argparse.Namespace) -> dict[str, Any]:
    """The aggregator's options from ``--every``/``--ticks``/``--volume``/``--value`` and ``--grace``."""
    chosen = {
        name: getattr(args, name)
        for name in ("every", "ticks", "volume", "value")
        if getattr(args, name) is not None
    }
    return {**chosen, "grace": args.grace}


def describe_bar(bar: Bar) -> str:
    """One bar as one readable line."""
    listed = listing(bar.symbol)
    name = f" {listed.name}" if listed is not None else ""
    session = bar.session.label if bar.session is not None else "-"
    if bar.complete:
        state = "complete"
    elif bar.missing_volume:
        state = f"incomplete missing={bar.missing_volume}"
    else:
        state = "incomplete gap"
    revision = f" rev={bar.revision}" if bar.revision else ""
    return (
        f"{bar.tr_id:<9} {bar.symbol:<10}{name} {session} {bar.start:%H:%M:%S}–{bar.end:%H:%M:%S} "
        f"O={bar.open} H={bar.high} L={bar.low} C={bar.close} V={bar.volume} "
        f"VWAP={bar.vwap if bar.vwap is not None else '-'} n={bar.trades} {state}{revision}"
    )


def _bar_line(bar: Bar, jsonl: bool) -> str:
    return json.dumps(bar.to_dict(), ensure_ascii=False) if jsonl else describe_bar(bar)


class _Tap:
    """The feed as the bars read it, with its other events noted on the way (cancel-safe: nothing
    is awaited once an event is taken). Ends when every subscription was refused."""

    def __init__(self, feed: LiveFeed, answers: Answers, note: Callable[[FeedEvent], None]) -> None:
        self._feed = feed.__aiter__()
        self._answers = answers
        self._note = note

    def __aiter__(self) -> _Tap:
        return self

    async def __anext__(self) -> FeedEvent:
        if self._answers.all_refused:
            raise StopAsyncIteration
        event = await self._feed.__anext__()
        self._note(event)
        return event


async def bars(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stream bars: a live table in a terminal, lines or JSON otherwise."""
    subscriptions = check_subscriptions(args.keys)
    others = [f"{tr_id}:{key}" for tr_id, key in subscriptions if tr_id not in TRADE_TRS]
    if others:
        raise CLIError(
            f"bars are made of trades, and {', '.join(others)} {'is' if len(others) == 1 else 'are'} "
            "not of a trade TR",
            hint=f"give a bare key (005930, DNASAAPL) or a trade TR: {', '.join(TRADE_TRS)}",
        )
    aggregator = BarAggregator(tr_ids=sorted({tr_id for tr_id, _ in subscriptions}), **bar_options(args))
    answers = Answers(subscriptions)
    live = out.isatty() and not args.jsonl and not args.plain
    async with open_feed(args, err) as (feed, url):
        await subscribe_all(feed, subscriptions, err)
        if live:
            await _bars_table(feed, aggregator, url, args, answers)
        else:
            await _bars_lines(feed, aggregator, args, out, err, answers)
    answers.raise_failure(url)
    return 0


async def _bars_lines(
    feed: LiveFeed,
    aggregator: BarAggregator,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    answers: Answers,
) -> None:
    stream = kis_anyio.bars(_Tap(feed, answers, lambda event: _heed(event, answers, err)), aggregator)
    shown = 0
    with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
        async for bar in stream:
            out.write(_bar_line(bar, args.jsonl) + "\n")
            out.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                return
    for bar in stream.flush():  # the run ended: the bars still open, cut short
        out.write(_bar_line(bar, args.jsonl) + "\n")
    out.flush()


def _heed(event: FeedEvent, answers: Answers, err: TextIO) -> None:
    if not isinstance(event, Record):
        heed(event, answers, err)


async def _bars_table(
    feed: LiveFeed, aggregator: BarAggregator, source: str, args: argparse.Namespace, answers: Answers
) -> None:
    from rich.live import Live

    board = BarBoard(source, aggregator)
    with Live(board.render(), refresh_per_second=4, transient=False) as screen:
        last = 0.0

        def note(event: FeedEvent) -> None:
            nonlocal last
            if isinstance(event, Record):
                board.trades += 1
            else:
                answers.note(event)
                if isinstance(event, Connected):
                    board.status = "connected"
                elif isinstance(event, Reconnecting):
                    board.status = f"reconnecting in {event.delay:.1f} s: {event.reason}"
                elif (line := status_line(event)) is not None:
                    board.note(line)
            if (
                time.monotonic() - last >= 0.25
            ):  # the open bars change with every trade: redraw 4 times a second
                last = time.monotonic()
                screen.update(board.render())

        stream = kis_anyio.bars(_Tap(feed, answers, note), aggregator)
        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
            async for bar in stream:
                board.add(bar)
                screen.update(board.render())
                if args.count is not None and board.bars >= args.count:
                    return
        for bar in stream.flush():  # the run ended: the bars still open, cut short
            board.add(bar)
        screen.update(board.render())


class BarBoard:
    """The last bars of each key and the open ones, for the live table."""

    def __init__(self, source: str, aggregator: BarAggregator, keep: int = 12) -> None:
        self.source = source
        self.aggregator = aggregator
        self.status = "connecting"
        self.done: deque[Bar] = deque(maxlen=keep)
        self.bars = 0
        self.trades = 0
        self.notes: list[str] = []

    def add(self, bar: Bar) -> None:
        self.done.append(bar)
        self.bars += 1

    def note(self, line: str) -> None:
        self.notes = [*self.notes[-4:], line]

    def render(self) -> RenderableType:
        from rich.table import Table

        table = Table(
            title=f"{self.source} — {_size(self.aggregator)} bars — {self.status} — "
            f"{self.bars:,} bars, {self.trades:,} trades",
            expand=False,
        )
        several = len(self.aggregator.tr_ids) > 1
        columns = ("TR", "key", "session", "bar") if several else ("key", "session", "bar")
        for column in (*columns, "open", "high", "low", "close", "volume", "n", "state"):
            table.add_column(column, justify="left" if column in (*columns, "state") else "right")
        rows = [(bar, False) for bar in self.done] + [(bar, True) for bar in self.aggregator.open_bars()]
        for bar, is_open in rows:
            if is_open:
                state = "[yellow]open…[/]"
            elif bar.complete:
                state = "[green]complete[/]" + (f" rev {bar.revision}" if bar.revision else "")
            elif bar.missing_volume:
                state = f"[red]missing {bar.missing_volume:,}[/]"
            else:
                state = "[red]gap[/]"
            listed = listing(bar.symbol)
            key = f"{bar.symbol} {listed.name}" if listed is not None else bar.symbol
            table.add_row(
                *((bar.tr_id,) if several else ()),
                key,
                bar.session.label if bar.session is not None else "-",
                f"{bar.start:%H:%M:%S}–{bar.end:%H:%M:%S}",
                *(f"{value:,}" for value in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
                f"{bar.trades:,}",
                state,
            )
        if self.notes:
            table.caption = " | ".join(self.notes)
        return table


def _size(aggregator: BarAggregator) -> str:
    """``1m``, ``100-trade``: what the bars are cut by, for the table's title."""
    size = aggregator.size
    if aggregator.kind == "time":
        for unit, seconds in (("h", 3600), ("m", 60)):
            if int(size) % seconds == 0:
                return f"{int(size) // seconds}{unit}"
        return f"{size}s"
    return f"{size:,}-{'trade' if aggregator.kind == 'ticks' else aggregator.kind}"
