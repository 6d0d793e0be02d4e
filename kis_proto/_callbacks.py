"""The callback client of both transports (`CallbackClient`, their `WSClient`) and its callbacks table.

The client was once written twice, line for line, in kis_anyio and kis_asyncio. Its logic lives
here once; what differs by transport is supplied by each subclass: `_connect` (how to open a
feed, hence the feed type) and `_workers` (how to start a task and how to run a plain function
in a worker thread). The core imports no asyncio, anyio or threading: it only awaits what the
transport hands it.

Sync callbacks run *inline* (on the event loop, as the original design did: a callback that
blocks stalls every other callback, though never the socket reader), in one *worker* thread
(every callback one at a time, in arrival order, off the loop: what a script's plain counter
needs), or *per subscription*: each (tr_id, key) has a lane whose records reach its callbacks in
order in a worker thread of its own, so a slow callback holds back its own subscription and
nothing else, and callbacks of different subscriptions run at the same time.

`close` is a promise: no callback starts after it was called, from inside a callback too; the
records still queued are counted in the close's log line.

Bars (`CallbackClient.subscribe_bars`) are made in the same dispatcher: each batch of events goes
to a `BarAggregator` with the transport's wall clock as its receive time, and a timer task sleeps
until the aggregator's `timer`, so a quiet symbol's bar closes on time. The clock and the sleep
are the transport's (`Workers`); the core reads no clock. Bar callbacks run where record
callbacks run, in their turn.
"""

from __future__ import annotations

import abc
import inspect
import logging
import math
from collections import defaultdict, deque
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)

from ._buffer import EventBuffer, EventsDropped
from ._codec import check_subscription
from ._errors import LocalProtocolError
from ._events import ServerError, Subscribed, SubscribeFailed, Unsubscribed
from ._feed import shown_key
from ._fields import Record
from .bars import Bar, BarAggregator
from .records import TRS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ._approval import Credentials
    from ._buffer import FeedEvent

__all__ = [
    "BarCallback",
    "Callback",
    "CallbackClient",
    "CallbackTable",
    "ClientFeed",
    "ErrorCallback",
    "SyncCallbacks",
    "TypedCallback",
    "Workers",
    "tr_id_of",
]

logger = logging.getLogger("kis_proto.callbacks")

#: A record callback: plain or async.
Callback: TypeAlias = "Callable[[Record], Awaitable[None]] | Callable[[Record], None]"
R = TypeVar("R", bound="Record")
#: A callback for one TR's records, typed by its record class.
TypedCallback: TypeAlias = "Callable[[R], Awaitable[None]] | Callable[[R], None]"
#: A bar callback (`CallbackClient.subscribe_bars`): plain or async.
BarCallback: TypeAlias = "Callable[[Bar], Awaitable[None]] | Callable[[Bar], None]"


def tr_id_of(tr: str | type[Record]) -> str:
    """The TR id of `tr`: a TR id as given, or the main id of a record class's TR (any era)."""
    if isinstance(tr, str):
        return tr
    for spec in TRS.values():
        if isinstance(tr, type) and issubclass(tr, spec.record_class):
            return spec.tr_id
    raise LocalProtocolError(f"{tr!r} is not a record class of kis_proto.records: give its TR id")


#: What `WSClient(on_error=...)` gets: a refused subscription or a session-level server error.
ErrorCallback: TypeAlias = "Callable[[SubscribeFailed | ServerError], Awaitable[None] | None]"

#: Where sync callbacks run: ``"inline"`` on the event loop; ``"worker"`` in one worker thread,
#: one at a time in arrival order; ``"per-subscription"`` in a worker thread per subscription,
#: in order per subscription and in parallel across them.
SyncCallbacks: TypeAlias = Literal["inline", "worker", "per-subscription"]
_SYNC_CALLBACKS = ("inline", "worker", "per-subscription")

T = TypeVar("T")


def is_async_callback(callback: object) -> bool:
    """True when calling `callback` gives a coroutine (an ``async def`` function or method, or an
    object whose ``__call__`` is one): it is awaited on the loop, never sent to a thread."""
    call = type(callback).__call__ if callable(callback) else None
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(call)


class CallbackTable:
    """Callbacks per (tr_id, key), several per key, in the order they were added."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: dict[tuple[str, str], list[Callback]] = defaultdict(list)

    def add(self, tr_id: str, keys: str | Iterable[str], callback: Callback) -> list[str]:
        """Call `callback` for records of `tr_id` with these keys; returns the keys as a list."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        for key in keys:
            self._callbacks[(tr_id, key)].append(callback)
        return keys

    def remove(self, tr_id: str, keys: str | Iterable[str]) -> list[str]:
        """Forget every callback of these keys; returns the keys as a list."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        for key in keys:
            self._callbacks.pop((tr_id, key), None)
        return keys

    def subscriptions(self) -> list[tuple[str, str]]:
        """Every (tr_id, key) with a callback, in the order first added."""
        return list(self._callbacks)

    def callbacks(self, tr_id: str, tr_key: str) -> list[Callback]:
        """The callbacks of (tr_id, tr_key), in the order added (a copy; [] for none)."""
        return list(self._callbacks.get((tr_id, tr_key), ()))

    def call(self, record: Record) -> list[Awaitable[Any]]:
        """Call the record's callbacks; return what async ones gave, for the transport to await.

        A callback that raises is logged and the others still run: one bug must not stop the feed.
        """
        pending: list[Awaitable[Any]] = []
        for callback in self._callbacks.get((record.tr_id, record.tr_key), ()):
            try:
                result = callback(record)
            except Exception:
                logger.exception("a callback for %s %s raised; the feed goes on", record.tr_id, record.tr_key)
                continue
            # Plain callbacks return None: skip the awaitable test for them.
            if result is not None and inspect.isawaitable(result):
                pending.append(result)
        return pending


class ClientFeed(Protocol):
    """What `CallbackClient` needs of a transport's feed (both `Feed` classes have it)."""

    @property
    def closing(self) -> bool: ...

    async def subscribe(self, tr_id: str, keys: list[str], /) -> object: ...

    async def unsubscribe(self, tr_id: str, keys: list[str], /) -> None: ...

    async def aclose(self) -> None: ...

    def batches(self) -> AsyncIterator[list[FeedEvent]]: ...


class Workers(Protocol):
    """What a transport lends `CallbackClient` while it runs: tasks and worker threads."""

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], /) -> None:
        """Start `fn()` as a task that `run` waits for (or cancels) before it returns."""

    async def run_sync(self, fn: Callable[[], T], /) -> T:
        """Run `fn()` in a worker thread and return its result, the loop running meanwhile."""
        ...

    def time(self) -> float:
        """The wall clock, unix seconds: the receive time bars are cut by."""
        ...

    async def sleep(self, seconds: float, /) -> None:
        """Sleep `seconds`, or less: until `wake` is called."""

    def wake(self) -> None:
        """End every `sleep` under way now."""


FeedT = TypeVar("FeedT", bound=ClientFeed)
# A lane's key: a subscription or a bar subscription (per-subscription mode), None for the
# on_error lane there, or _ONE_LANE for the single lane of every event in worker mode.
_LaneKey: TypeAlias = "tuple[str, str] | _Bars | str | None"
_ONE_LANE = "worker"


class _Bars:
    """One `subscribe_bars`: its aggregator, its keys, its callback, the bars it is handing out."""

    __slots__ = ("aggregator", "callback", "delivering", "keys", "pending", "tr_id")

    def __init__(self, tr_id: str, keys: list[str], aggregator: BarAggregator, callback: BarCallback) -> None:
        self.tr_id = tr_id
        self.keys = set(keys)
        self.aggregator = aggregator
        self.callback = callback
        self.pending: deque[Bar] = deque()  # inline mode: bars in order, whichever task made them
        self.delivering = False

    def wants(self, event: object) -> bool:
        """Whether the aggregator is to see `event`: its own keys' records and acks, and every
        event about the feed as a whole (reconnects, drops)."""
        if isinstance(event, Record | Subscribed | Unsubscribed):
            return event.tr_id == self.tr_id and event.tr_key in self.keys
        return True


class _BarItem:
    """A bar waiting in a worker lane, with the bar subscription whose callback gets it."""

    __slots__ = ("bar", "bars")

    def __init__(self, bars: _Bars, bar: Bar) -> None:
        self.bars, self.bar = bars, bar


class _Lane:
    """Records waiting for their callbacks in a worker thread, in order, bounded."""

    __slots__ = ("buffer", "running")

    def __init__(self, size: int) -> None:
        self.buffer = EventBuffer(size)  # drops the oldest market data past `size`, never notices
        self.running = False


class CallbackClient(abc.ABC, Generic[FeedT]):
    """The original design's callback client; each transport's `WSClient` is this with its I/O.

    ``ws = WSClient(credentials)`` (or ``WSClient(url=sim.url, approval_key=sim.approval_key)`` for
    a simulator); ``await ws.subscribe("H0STCNT0", ["005930"], on_price)``
    (before or after `run` starts); ``await ws.run()`` until ``await ws.close()``. Callbacks get
    each record (``data["price"]`` works), may be sync or async, several per (tr_id, key); one
    that raises is logged and the feed goes on. `run` raises `ConnectionError` after
    `max_retries` failed reconnects. Other keyword options go to the transport's ``connect``.

    `sync_callbacks`: ``"inline"`` (the default of the async clients) calls sync callbacks on
    the event loop, one after another: a callback that blocks (``time.sleep``, an HTTP order,
    pandas) holds back every callback, though never the PINGPONG answer. ``"worker"`` (the
    default of `kis_anyio.blocking.WSClient`) runs them in one worker thread, one at a time in
    arrival order, async ones on the loop in their turn: blocking delays the callbacks, never the
    socket. ``"per-subscription"`` gives each subscription a worker lane of its own: a slow
    callback delays only its own subscription, and callbacks of *different* subscriptions run at
    the same time, so state they share needs a lock (a plain counter races). A worker's queue
    keeps at most `buffer_size` market records (the ``connect`` option; 10,000 by default) and
    drops the oldest past that, logged; notices are never dropped.

    `close` (or `close_nowait`) means no callback starts after it, even when called from a
    callback: the records still queued are not handed out, and their number is in the close's
    log line (INFO); a callback already running is waited for.

    `on_error` (sync or async) gets every `SubscribeFailed` (a refused subscription, e.g. an
    unknown TR id) and `ServerError` (session level); each is also logged at WARNING on the
    transport's logger, with or without `on_error`.
    """

    #: The transport's logger (``kis_anyio`` / ``kis_asyncio``).
    _log: ClassVar[logging.Logger] = logger

    def __init__(
        self,
        kis: Credentials | None = None,
        max_retries: int | None = 5,
        retry_delay: float = 1.0,
        *,
        url: str | None = None,
        approval_key: str | None = None,
        sync_callbacks: SyncCallbacks = "inline",
        on_error: ErrorCallback | None = None,
        **options: Any,
    ) -> None:
        if sync_callbacks not in _SYNC_CALLBACKS:
            raise LocalProtocolError(
                f"sync_callbacks must be 'inline', 'worker' or 'per-subscription', not {sync_callbacks!r}"
            )
        self.kis = kis
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.sync_callbacks: SyncCallbacks = sync_callbacks
        self.on_error = on_error
        self._url = url
        self._approval_key = approval_key
        self._options = options
        self._callbacks = CallbackTable()
        self._feed: FeedT | None = None
        self._closed = False
        self._stopping = False  # lanes take no more work: close() was called or run() is ending
        self._lanes: dict[_LaneKey, _Lane] = {}
        self._unhanded = 0  # records not handed to callbacks because close() came first
        self._async: dict[object, bool] = {}  # is_async_callback, cached per callback
        self._bars: list[_Bars] = []
        self._timing = False  # the bar timer task runs
        self._timer_deadline = math.inf  # what it sleeps until

    def __repr__(self) -> str:
        state = "running" if self._feed is not None else "closed" if self._closed else "not running"
        return (
            f"<{type(self).__module__.split('.')[0]}.{type(self).__name__} {state}, "
            f"{len(self._callbacks.subscriptions())} subscriptions, sync callbacks {self.sync_callbacks}>"
        )

    # -- what the transport supplies --------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self, url: str | None, **options: Any) -> AbstractAsyncContextManager[FeedT]:
        """The transport's ``connect(url, **options)``."""

    @abc.abstractmethod
    def _workers(self) -> AbstractAsyncContextManager[Workers]:
        """Tasks and worker threads for one `run`; leaving it waits for the tasks."""

    # -- the application's side -------------------------------------------------------------------
    @overload
    async def subscribe(
        self, tr_id: type[R], symbols: str | Iterable[str], callback: TypedCallback[R]
    ) -> None: ...
    @overload
    async def subscribe(self, tr_id: str, symbols: str | Iterable[str], callback: Callback) -> None: ...
    async def subscribe(
        self, tr_id: str | type[R], symbols: str | Iterable[str], callback: Callback | TypedCallback[R]
    ) -> None:
        """Call `callback` (sync or async) with every record of `tr_id` for these symbols.

        `tr_id` may be a record class (``records.H0STCNT0``): the callback is then typed for it
        (``def on_trade(rec: records.H0STCNT0)``), as every record of a TR is an instance of its
        class, whatever its era. Raises `LocalProtocolError` at once for a malformed tr_id or
        symbol; a well-formed one the server refuses reaches `on_error` and the log.
        """
        tr_id = tr_id_of(tr_id)
        callback = cast("Callback", callback)
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        for symbol in symbols:
            check_subscription(tr_id, symbol)
        self._callbacks.add(tr_id, symbols, callback)
        if self._feed is not None:
            await self._feed.subscribe(tr_id, symbols)

    async def subscribe_notices(
        self, callback: Callback, market: Literal["domestic", "overseas"] = "domestic"
    ) -> str:
        """Call `callback` with your own execution notices (the TR follows `kis.env`); returns the TR id."""
        if self.kis is None:
            raise LocalProtocolError("execution notices need Credentials with your hts_id")
        tr_id, key = self.kis.notice_subscription(market)
        await self.subscribe(tr_id, [key], callback)
        return tr_id

    async def subscribe_bars(
        self,
        symbols: str | Iterable[str],
        callback: BarCallback,
        *,
        tr_id: str | type[Record] = "H0STCNT0",
        **options: Any,
    ) -> None:
        """Call `callback` (sync or async) with every bar of these symbols' trades as it completes.

        ``await ws.subscribe_bars(["005930"], on_bar, every="1m")``. `options` are
        `kis_proto.bars.BarAggregator`'s: one of ``every=`` (``"10s"``, ``"1m"``, ``"1h"``, or
        seconds), ``ticks=``, ``volume=``, ``value=``; ``grace=``, ``empty=``. `tr_id` is the trade
        TR (``H0STCNT0`` KRX by default; ``HDFSCNT0`` for US stocks…); it is subscribed for the
        symbols, as `subscribe` does. The receive time is the transport's wall clock, one time per
        batch of events, and a time bar closes on time even when its symbol goes quiet. Bar
        callbacks run as record callbacks do (inline or in a thread, by `sync_callbacks`), in
        order; a bar emitted again with a late trade (`Bar.revision`) replaces the one before.
        Bars still open when the client closes are not delivered. Raises `LocalProtocolError` at
        once for bad options, a TR that is not a trade TR, or a malformed symbol.
        """
        tr = tr_id_of(tr_id)
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        for symbol in symbols:
            check_subscription(tr, symbol)
        aggregator = BarAggregator(tr_ids=[tr], **options)
        self._bars.append(_Bars(tr, symbols, aggregator, callback))
        if self._feed is not None:
            await self._feed.subscribe(tr, symbols)

    async def unsubscribe(self, tr_id: str, symbols: str | Iterable[str]) -> None:
        """Stop the callbacks (and bars) of these symbols and release them on the server."""
        symbols = self._callbacks.remove(tr_id, symbols)
        for bars in self._bars:
            if bars.tr_id == tr_id:
                bars.keys.difference_update(symbols)
        self._bars = [bars for bars in self._bars if bars.keys]
        for symbol in symbols:
            lane = self._lanes.get((tr_id, symbol))
            if lane is not None:
                lane.buffer.drain()  # what waits is dropped; the lane stays, should the key come back
        if self._feed is not None:
            await self._feed.unsubscribe(tr_id, symbols)

    async def run(self) -> None:
        """Receive until `close`; raises `ConnectionError` when reconnecting gives up."""
        options = {"max_retries": self.max_retries, "retry_delay": self.retry_delay} | self._options
        self._stopping = self._closed
        self._lanes = {}
        self._unhanded = 0
        error: ConnectionError | None = None
        async with self._connect(
            self._url, credentials=self.kis, approval_key=self._approval_key, **options
        ) as feed:
            self._feed = feed
            try:
                wanted = dict.fromkeys(self._callbacks.subscriptions())
                wanted.update(dict.fromkeys((bars.tr_id, key) for bars in self._bars for key in bars.keys))
                for tr_id, symbol in wanted:
                    await feed.subscribe(tr_id, [symbol])
                async with self._workers() as workers:
                    try:
                        await self._dispatch(feed, workers)
                    except ConnectionError as exc:
                        error = exc  # raised below, not wrapped in the task group's exception group
                    finally:
                        self._stopping = True
                        workers.wake()  # the bar timer ends
            finally:
                self._feed = None
                self._log_close()
        if error is not None:
            raise error

    def _log_close(self) -> None:
        """The close's log line: how many records were still queued for callbacks."""
        queued = self._unhanded + sum(
            sum(1 for event in lane.buffer.drain() if isinstance(event, Record))
            for lane in self._lanes.values()
        )
        self._lanes = {}
        if self._closed:
            self._log.info(
                "closed: %d record%s still queued %s not handed to callbacks",
                queued,
                "" if queued == 1 else "s",
                "was" if queued == 1 else "were",
            )
        elif queued:
            self._log.info("the feed ended: %d records still queued were not handed to callbacks", queued)

    async def close(self) -> None:
        """Stop `run`: close the connection cleanly."""
        self.close_nowait()
        if self._feed is not None:
            await self._feed.aclose()

    def close_nowait(self) -> None:
        """Stop `run` from plain code: a sync callback, inline or in a worker thread.

        No callback starts after it returns (from any thread: it only sets flags). On the loop,
        `run` then closes the connection once the events at hand are counted. From a worker
        thread, also run ``close`` on the loop so the connection closes without waiting for the
        next record (``asyncio.run_coroutine_threadsafe(ws.close(), loop)``, or
        ``anyio.from_thread.run(ws.close)``): calling ``close`` that way alone would let the
        callbacks go on until it starts there. Elsewhere, ``await close()``.
        """
        self._closed = self._stopping = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the dispatcher ---------------------------------------------------------------------------
    async def _dispatch(self, feed: FeedT, workers: Workers) -> None:
        mode = self.sync_callbacks
        table = self._callbacks._callbacks
        if self._closed:
            await feed.aclose()
        async for batch in feed.batches():
            if self._bars and not self._stopping:
                await self._add_to_bars(batch, workers)
            for index, event in enumerate(batch):
                if self._closed:  # close() came from a callback: nothing more starts
                    self._unhanded += sum(1 for left in batch[index:] if isinstance(left, Record))
                    break
                if isinstance(event, Record):
                    if mode == "inline":
                        for callback in table.get((event.tr_id, event.tr_key), ()):
                            if self._stopped():  # close() from the callback before
                                break
                            await self._call_inline(callback, event)
                    else:
                        key = _ONE_LANE if mode == "worker" else (event.tr_id, event.tr_key)
                        self._enqueue(key, event, workers)
                elif isinstance(event, SubscribeFailed | ServerError) and self.on_error is not None:
                    if mode == "inline":
                        await self._call_on_error(event)
                    else:
                        self._enqueue(_ONE_LANE if mode == "worker" else None, event, workers)
            if self._closed and not feed.closing:
                await feed.aclose()  # close_nowait() was called from a callback

    def _stopped(self) -> bool:
        """`_stopping` read afresh: a callback (or another thread) may have set it since the last look."""
        return self._stopping

    async def _call_inline(self, callback: Callback, record: Record) -> None:
        log = self._log
        try:
            result = callback(record)
        except Exception:
            log.exception("a callback for %s %s raised; the feed goes on", record.tr_id, record.tr_key)
            return
        # Plain callbacks return None: skip the awaitable test for them.
        if result is not None and inspect.isawaitable(result):
            await self._guarded(result, record)

    # -- bars -----------------------------------------------------------------------------------
    async def _add_to_bars(self, batch: list[FeedEvent], workers: Workers) -> None:
        """Hand a batch to every bar subscription, received now (one time: one read's events)."""
        now = workers.time()
        for bars in list(self._bars):
            made: list[Bar] = []
            for event in batch:
                if bars.wants(event):
                    made += bars.aggregator.add(event, now)
            await self._deliver_bars(bars, made, workers)
        deadline = min((t for bars in self._bars if (t := bars.aggregator.timer()) is not None), default=None)
        if deadline is None:
            return
        if not self._timing:
            self._timing = True
            workers.spawn(partial(self._bar_timer, workers))
        elif deadline < self._timer_deadline:
            workers.wake()  # the timer task sleeps until a later deadline: it looks again

    async def _bar_timer(self, workers: Workers) -> None:
        """Close the time bars on the clock: sleep until the earliest `timer`, `handle_timer`, repeat."""
        try:
            while not self._stopping:
                deadlines = [t for bars in self._bars if (t := bars.aggregator.timer()) is not None]
                if not deadlines:
                    return  # nothing to close: the next batch that opens a bar starts a timer again
                self._timer_deadline = min(deadlines)
                wait = self._timer_deadline - workers.time()
                if wait > 0:
                    await workers.sleep(min(wait, 3600.0))
                    continue
                now = workers.time()
                for bars in list(self._bars):
                    await self._deliver_bars(bars, list(bars.aggregator.handle_timer(now)), workers)
        finally:
            self._timing = False
            self._timer_deadline = math.inf

    async def _deliver_bars(self, bars: _Bars, made: list[Bar], workers: Workers) -> None:
        """Hand `made` to the callback in order: in its lane (thread mode), or here, on the loop;
        bars made while an async callback runs wait their turn behind the ones before."""
        if not made or self._stopping:
            return
        mode = self.sync_callbacks
        if mode != "inline":
            key = _ONE_LANE if mode == "worker" else bars
            for bar in made:
                self._enqueue(key, _BarItem(bars, bar), workers)
            return
        bars.pending.extend(made)
        if bars.delivering:
            return
        bars.delivering = True
        log = self._log
        try:
            while bars.pending and not self._stopping:
                bar = bars.pending.popleft()
                try:
                    result = bars.callback(bar)
                except Exception:
                    log.exception("%s raised; the feed goes on", _callback_name(bar))
                    continue
                if result is not None and inspect.isawaitable(result):
                    await self._guarded(result, bars)
        finally:
            bars.delivering = False

    async def _call_on_error(self, event: SubscribeFailed | ServerError) -> None:
        assert self.on_error is not None
        log = self._log
        try:
            result = self.on_error(event)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the on_error callback raised; the feed goes on")

    def _handout(self, item: object) -> tuple[list[Callable[[Any], Any]], object]:
        """The callbacks of one lane item, in the order added, and what they are called with:
        a record's callbacks and the record, a bar subscription's and its bar, or on_error."""
        if isinstance(item, Record):
            return self._callbacks.callbacks(item.tr_id, item.tr_key), item
        if isinstance(item, _BarItem):
            return ([item.bars.callback] if item.bars in self._bars else []), item.bar
        return ([self.on_error] if self.on_error is not None else []), item

    def _is_async(self, callback: object) -> bool:
        known = self._async.get(callback)
        if known is None:
            known = self._async[callback] = is_async_callback(callback)
        return known

    # -- worker threads: one lane for every event, or one per subscription ------------------------
    def _enqueue(
        self, key: _LaneKey, event: Record | SubscribeFailed | ServerError | _BarItem, workers: Workers
    ) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            if self._stopping or (key != _ONE_LANE and not self._handout(event)[0]):
                return
            lane = self._lanes[key] = _Lane(self._options.get("buffer_size", 10_000))
        lane.buffer.put(event)  # type: ignore[arg-type]  # a bar, as a notice, is never dropped
        if not lane.running and not self._stopping:
            lane.running = True
            workers.spawn(partial(self._run_lane, key, lane, workers))

    async def _run_lane(self, key: _LaneKey, lane: _Lane, workers: Workers) -> None:
        """Hand a lane's events to their callbacks, in order, until it is empty (or the client stops).

        Runs of events whose callbacks are all plain go to the worker thread at once; an event
        with an async callback is handed out on the loop, its plain callbacks in the thread, in
        the order they were added.
        """
        try:
            while not self._stopping:
                events = lane.buffer.drain()
                if not events:
                    return
                items: list[Any] = []
                for event in events:
                    if isinstance(event, EventsDropped):
                        self._log.warning(
                            "the callbacks%s fell behind: %d records dropped, oldest first "
                            "(notices are never dropped)",
                            f" of {key[0]} {shown_key(*key)}" if isinstance(key, tuple) else "",
                            event.count,
                        )
                    else:
                        items.append(event)
                start = 0
                while start < len(items) and not self._stopping:
                    start, pending = await workers.run_sync(partial(self._call_plain, items, start))
                    for awaitable in pending:
                        await self._guarded(awaitable, key)
                    if start < len(items) and not self._stopping:  # an event with an async callback
                        await self._call_mixed(items[start], workers)
                        start += 1
                self._unhanded += sum(1 for item in items[start:] if isinstance(item, Record))
        finally:
            lane.running = False

    async def _call_mixed(self, item: Any, workers: Workers) -> None:
        """One event with an async callback: each callback in turn, plain ones in the thread."""
        callbacks, arg = self._handout(item)
        for callback in callbacks:
            if self._stopping:
                return
            if self._is_async(callback):
                await self._guarded(callback(arg), arg)
                continue
            for awaitable in await workers.run_sync(partial(self._call_plain_one, callback, arg)):
                await self._guarded(awaitable, arg)

    async def _guarded(self, awaitable: Awaitable[Any], about: object) -> None:
        log = self._log
        try:
            await awaitable
        except Exception:
            log.exception("%s raised; the feed goes on", _callback_name(about))

    def _call_plain(self, items: list[Any], start: int) -> tuple[int, list[Awaitable[Any]]]:
        """In a worker thread: the callbacks of items[start:], in order, while all are plain.

        Returns where it stopped (an event with an async callback, or the end) and the awaitables
        plain callbacks returned. Stops as soon as the client is closing.
        """
        pending: list[Awaitable[Any]] = []
        for index in range(start, len(items)):
            callbacks, arg = self._handout(items[index])
            if self._stopping or any(self._is_async(callback) for callback in callbacks):
                return index, pending  # not started: the caller hands it out, or counts it
            for callback in callbacks:
                if self._stopped():
                    return index + 1, pending  # begun: not counted as left over
                pending.extend(self._call_plain_one(callback, arg))
        return len(items), pending

    def _call_plain_one(self, callback: Callable[[Any], Any], item: Any) -> list[Awaitable[Any]]:
        log = self._log
        try:
            result = callback(item)
        except Exception:
            log.exception("%s raised; the feed goes on", _callback_name(item))
            return []
        return [result] if result is not None and inspect.isawaitable(result) else []


def _callback_name(about: object) -> str:
    """Which callback, for a log line: of which subscription, or on_error."""
    if isinstance(about, Record):
        about = (about.tr_id, about.tr_key)
    if isinstance(about, tuple):
        return f"a callback for {about[0]} {shown_key(about[0], about[1])}"
    if isinstance(about, Bar | _Bars):
        return f"a bar callback for {about.tr_id} {', '.join(sorted(_keys_of(about)))}"
    if isinstance(about, SubscribeFailed | ServerError) or about is None:
        return "the on_error callback"
    return "a callback"


def _keys_of(about: Bar | _Bars) -> set[str]:
    return {about.symbol} if isinstance(about, Bar) else about.keys
