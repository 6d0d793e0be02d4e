"""Bars of a live feed: `kis_proto.bars.BarAggregator` driven by a clock and its timer.

The aggregator is pure (time is an input); this is its live driver. Every event of the feed is
handed over with its receive time, and when no event comes the driver sleeps until the
aggregator's `timer` and runs `handle_timer`, so a quiet symbol's bar closes on time. A recording
replayed with `kis_proto.bars.bars_from` gives the same bars: there the recorded receive times
are the clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from kis_proto import (
    Connected,
    ConnectionClosed,
    EventsDropped,
    LocalProtocolError,
    Reconnecting,
    TextReceived,
)
from kis_proto.bars import Bar, BarAggregator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from kis_proto import FeedEvent

__all__ = ["BarStream", "bars"]

#: Events a transport makes itself, not of a message: each gets the clock's time of its own.
_NOT_OF_A_MESSAGE = (Connected, ConnectionClosed, Reconnecting, EventsDropped)


class BarStream:
    """The bars of a live feed, as they complete: ``async for bar in kis_anyio.bars(feed, every="1m")``.

    Made by `bars`. `aggregator` is the `BarAggregator` it drives (`BarAggregator.open_bars`
    shows the bars still being built). Iteration ends when the feed does, with the bars still
    open emitted as `kis_proto.bars.BarAggregator.flush` gives them (marked `gap`); `flush` does
    the same when you stop earlier. Errors of the feed (``ConnectionError``) are raised as the
    feed raises them.
    """

    def __init__(
        self,
        feed: AsyncIterator[FeedEvent],
        aggregator: BarAggregator,
        clock: Callable[[], float],
    ) -> None:
        self._feed = feed
        self.aggregator = aggregator
        self._clock = clock
        self._ready: deque[Bar] = deque()
        self._message_time: float | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f"<kis_anyio.BarStream {self.aggregator!r}>"

    def __aiter__(self) -> BarStream:
        return self

    async def __anext__(self) -> Bar:
        agg = self.aggregator
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            deadline = agg.timer()
            wait = math.inf if deadline is None else max(0.0, deadline - self._clock())
            event: FeedEvent | None = None
            with anyio.move_on_after(wait):
                try:
                    # Cancelling this wait loses no event: every kis feed keeps it until handed out.
                    event = await self._feed.__anext__()
                except StopAsyncIteration:
                    self._ended = True
                    self._ready.extend(agg.flush(self._clock()))
                    continue
            if event is None:  # the deadline came first: the clock closes what is due
                self._ready.extend(agg.handle_timer(self._clock()))
            else:
                self._ready.extend(agg.add(event, self._stamp(event)))
        return self._ready.popleft()

    def _stamp(self, event: FeedEvent) -> float:
        """The event's receive time. A message's events (after its `TextReceived`, with
        ``KISConfig(emit_text=True)``) share the message's, as they do in its recording."""
        if isinstance(event, TextReceived):
            self._message_time = now = self._clock()
            return now
        if self._message_time is not None and not isinstance(event, _NOT_OF_A_MESSAGE):
            return self._message_time
        self._message_time = None
        return self._clock()

    def flush(self) -> list[Bar]:
        """Stop: the bars ready but not yet taken, then every bar still open (marked `gap`).

        After it, iteration ends. For a stream stopped before its feed ended (a duration, Ctrl-C).
        """
        out = list(self._ready)
        self._ready.clear()
        if not self._ended:
            self._ended = True
            out += self.aggregator.flush(self._clock())
        return out


def bars(
    feed: AsyncIterator[FeedEvent],
    aggregator: BarAggregator | None = None,
    *,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> BarStream:
    """The bars of `feed`, as they complete: ``async for bar in kis_anyio.bars(feed, every="1m")``.

    `feed` is any async iterator of feed events whose ``__anext__`` may be cancelled without losing
    an event: a `kis_anyio.Feed`, a ``kis_asyncio`` or ``kis_nats`` feed (on asyncio). `options`
    are `kis_proto.bars.BarAggregator`'s (``every="1m"``, ``ticks=100``, ``volume=``, ``value=``,
    ``tr_ids=``, ``grace=``, ``empty=``), or give an `aggregator` of your own. `clock` is the
    receive time, unix seconds (default `time.time`; the bars' KST day is found from it).
    Subscribe the feed to the trade TR (``H0STCNT0``) of the keys; other events are read for what
    they say about gaps, and ignored otherwise.
    """
    if aggregator is None:
        aggregator = BarAggregator(**options)
    elif options:
        raise LocalProtocolError(f"give an aggregator or its options, not both ({', '.join(options)})")
    return BarStream(feed, aggregator, clock)
