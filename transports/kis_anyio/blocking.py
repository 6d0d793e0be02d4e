"""kis_anyio.blocking: the feed and the callback client for code with no ``async`` at all.

Scripts, notebooks and code written the way python-kis users write it::

    from kis_anyio import blocking

    with blocking.connect(credentials=creds) as feed:
        feed.subscribe("H0STCNT0", "005930").wait(timeout=10)
        for event in feed:
            ...

    ws = blocking.WSClient(creds)
    ws.subscribe("H0STCNT0", ["005930"], on_price)   # plain functions; they may block
    ws.subscribe_bars(["005930"], on_bar, every="1m")  # a bar each minute, as it completes
    ws.run_forever()                                  # until ws.close(), from anywhere

Each feed or client runs the async one (`kis_anyio.Feed`, `kis_anyio.WSClient`) on an event loop
of its own, in a thread started with anyio's blocking portal (asyncio by default,
``backend="trio"`` for trio). The socket reader lives on that loop, so PINGPONG is answered
whatever the calling thread does.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, Unpack, cast, overload

import anyio
from anyio.from_thread import start_blocking_portal

from kis_proto import LocalProtocolError, Record, SubscribeFailed, SubscriptionError
from kis_proto.bars import BarAggregator
from kis_proto.feed import check_subscription, tr_id_of

from . import _client

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator
    from types import TracebackType

    from anyio.from_thread import BlockingPortal

    from kis_proto import Credentials, FeedEvent, Subscribed
    from kis_proto.feed import BarCallback, Callback, ErrorCallback, SyncCallbacks, TypedCallback
    from kis_proto.feed import Subscription as AsyncSubscription

__all__ = ["Backend", "Feed", "Subscription", "WSClient", "connect", "open_feed"]

R = TypeVar("R", bound=Record)

#: The event loop run in the background thread.
Backend = Literal["asyncio", "trio"]


class _FeedClosedError(LocalProtocolError):
    """The feed is closed: its loop is gone, nothing can be asked of it."""


class Subscription:
    """One (tr_id, key) of a blocking `Feed`: `wait` for the server's answer, or `unsubscribe`.

    The blocking face of `kis_proto.Subscription` (whose docstring says what happens across
    reconnects).
    """

    __slots__ = ("_feed", "_ticket")

    def __init__(self, ticket: AsyncSubscription, feed: Feed) -> None:
        self._ticket = ticket
        self._feed = feed

    def __repr__(self) -> str:
        return repr(self._ticket)

    @property
    def tr_id(self) -> str:
        return self._ticket.tr_id

    @property
    def tr_key(self) -> str:
        return self._ticket.tr_key

    @property
    def answer(self) -> Subscribed | SubscribeFailed | None:
        """The server's answer, or None while there is none."""
        return self._ticket.answer

    def wait(self, timeout: float | None = None) -> Subscribed:
        """Block until the server answers: its `Subscribed`, or `SubscriptionError` raised.

        Raises `TimeoutError` when no answer came within `timeout` seconds (the subscription
        stands and may still be answered), `ConnectionError` when the feed ended first.
        """
        answer = self._ticket.answer
        if answer is None:
            try:
                subscribed: Subscribed = self._feed._call(self._wait, timeout)
            except _FeedClosedError:
                if self._ticket.answer is None:
                    raise ConnectionError(f"the feed was closed before KIS answered: {self!r}") from None
                return self.wait()
            return subscribed
        if isinstance(answer, SubscribeFailed):
            raise SubscriptionError(answer)
        return answer

    async def _wait(self, timeout: float | None) -> Subscribed:
        with anyio.fail_after(timeout):
            return await self._ticket.wait()

    def unsubscribe(self) -> None:
        """Release the key on the server (the same as the feed's ``unsubscribe``)."""
        self._feed.unsubscribe(self.tr_id, self.tr_key)


class Feed:
    """A live KIS feed for blocking code: `subscribe`, then ``for event in feed``. Made by `connect`
    or `open_feed`.

    The events are those of `kis_anyio.Feed` (records, acks, refusals, reconnects). `close`
    (callable from any thread) closes the connection and stops the background loop; iteration
    then yields what had arrived before and ends. `next_event` takes a timeout, for scripts.
    Iterating raises `ConnectionError` when reconnecting gives up.
    """

    def __init__(self, feed: _client.Feed, portal: BlockingPortal, stack: ExitStack) -> None:
        self._feed = feed
        self._portal: BlockingPortal | None = portal
        self._stack = stack  # holds the portal (its thread) open
        self._events: deque[FeedEvent] = deque()
        self._ended = False
        self._lock = threading.Lock()  # guards _portal
        self._fetching = threading.Lock()  # one thread at a time moves events into _events

    def __repr__(self) -> str:
        return f"<kis_anyio.blocking.Feed {self._feed._core!r}>"

    @property
    def closing(self) -> bool:
        """True once `close` was called."""
        return self._feed.closing

    def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        with self._lock:
            portal = self._portal
        if portal is None:
            raise _FeedClosedError("this feed is closed")
        return portal.call(fn, *args)

    # -- subscriptions ---------------------------------------------------------------------------
    # A str is also an Iterable[str]; the first overload wins for it, as the code does.
    @overload
    def subscribe(self, tr_id: str, keys: str) -> Subscription: ...  # type: ignore[overload-overlap]
    @overload
    def subscribe(self, tr_id: str, keys: Iterable[str]) -> list[Subscription]: ...
    def subscribe(self, tr_id: str, keys: str | Iterable[str]) -> Subscription | list[Subscription]:
        """Subscribe `tr_id` for each key; kept across reconnects. Returns at once with a
        `Subscription` per key (a list for a list of keys): ``.wait(timeout)`` for the answer."""
        wanted = [keys] if isinstance(keys, str) else list(keys)
        if self.closing:
            raise LocalProtocolError("this feed is closed")

        async def subscribe() -> list[AsyncSubscription]:
            return await self._feed.subscribe(tr_id, wanted)

        tickets = [Subscription(ticket, self) for ticket in self._call(subscribe)]
        return tickets[0] if isinstance(keys, str) else tickets

    def unsubscribe(self, tr_id: str, keys: str | Iterable[str]) -> None:
        """Stop receiving `tr_id` for each key (after `close`, there is nothing left to release)."""
        with contextlib.suppress(_FeedClosedError):
            self._call(self._feed.unsubscribe, tr_id, keys if isinstance(keys, str) else list(keys))

    def subscribe_notices(self, market: Literal["domestic", "overseas"] = "domestic") -> str:
        """Subscribe your own execution notices (real or paper TR by the credentials); returns the TR id."""
        tr_id: str = self._call(self._feed.subscribe_notices, market)
        return tr_id

    # -- events ----------------------------------------------------------------------------------
    def next_event(self, timeout: float | None = None) -> FeedEvent | None:
        """The next event, waiting at most `timeout` seconds (None: as long as it takes).

        Returns None once the feed has ended (after `close`); raises `TimeoutError` when nothing
        came in time, `ConnectionError` when reconnecting gave up.
        """
        with self._fetching:
            while not self._events:
                if self._ended:
                    return None
                with self._lock:
                    portal = self._portal
                if portal is None:
                    self._ended = True
                    return None
                batch = portal.call(self._next_batch, timeout)
                if batch is None:
                    self._ended = True
                else:
                    self._events.extend(batch)
            return self._events.popleft()

    async def _next_batch(self, timeout: float | None) -> list[FeedEvent] | None:
        with anyio.fail_after(timeout):
            return await self._feed._next_batch()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> FeedEvent:
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection cleanly and stop the background loop; from any thread.

        Events that arrived before the close can still be iterated; iteration then ends.
        Closing twice is harmless.
        """
        with self._lock:
            portal = self._portal
        if portal is None:
            return
        try:
            portal.call(self._feed.aclose)  # returns once the reader has ended
        finally:
            self._stop(portal)

    def _stop(self, portal: BlockingPortal) -> None:
        """Keep what is left of the events, then stop the loop and its thread (once)."""
        with self._fetching:  # a thread blocked in next_event returns now: the feed has ended
            with self._lock:
                last = self._portal is not None
                self._portal = None
            if not last:
                return
            try:
                while (batch := portal.call(self._feed._next_batch)) is not None:
                    self._events.extend(batch)
            except ConnectionError:
                pass  # the feed gave up before the close: iteration has raised it already
            finally:
                self._ended = True
                self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_feed(
    url: str | None = None,
    *,
    backend: Backend = "asyncio",
    backend_options: dict[str, Any] | None = None,
    **options: Unpack[_client.ConnectOptions],
) -> Feed:
    """Open a KIS feed for blocking code; close it with `Feed.close` (or use `connect`).

    The arguments are those of `kis_anyio.connect` (``credentials=``, ``approval_key=``, ...),
    plus the `backend` to run in the background thread and its `backend_options` (as
    ``anyio.run`` takes them).
    """
    stack = ExitStack()
    portal = stack.enter_context(start_blocking_portal(backend, backend_options))
    try:
        feed = portal.call(partial(_client.open_feed, url, **options))
    except BaseException:
        stack.close()
        raise
    return Feed(feed, portal, stack)


@contextmanager
def connect(
    url: str | None = None,
    *,
    backend: Backend = "asyncio",
    backend_options: dict[str, Any] | None = None,
    **options: Unpack[_client.ConnectOptions],
) -> Iterator[Feed]:
    """``with blocking.connect(credentials=creds) as feed:``: `open_feed`, closed when the block ends."""
    feed = open_feed(url, backend=backend, backend_options=backend_options, **options)
    try:
        yield feed
    finally:
        feed.close()


class WSClient:
    """The original design's callback client for blocking code: `run_forever` blocks until `close`.

    ``ws = blocking.WSClient(creds)``; ``ws.subscribe("H0STCNT0", ["005930"], on_price)``
    (before or during `run_forever`, from any thread); ``ws.run_forever()``. ``ws.close()``
    ends it from another thread or from a callback; Ctrl+C ends it too.

    Callbacks are plain functions (async ones work as well). By default they run in one worker
    thread (``sync_callbacks="worker"``), one at a time in arrival order, so a plain counter is
    exact and one may block (sleep, send an order over HTTP, crunch pandas) without delaying the
    PINGPONG answer. ``sync_callbacks="per-subscription"`` gives each subscription a worker of
    its own: a slow callback then holds back only its own subscription, but callbacks of
    different subscriptions run at the same time, so what they share needs a lock.
    ``sync_callbacks="inline"`` runs them on the background loop, as the async
    `kis_anyio.WSClient` does by default. `close` means no callback starts after it, even from a
    callback. `on_error` gets every refused subscription and server error (they are logged at
    WARNING on ``kis_anyio`` either way).
    Other arguments are the async client's; `backend` picks the loop of the background thread.
    """

    def __init__(
        self,
        kis: Credentials | None = None,
        max_retries: int | None = 5,
        retry_delay: float = 1.0,
        *,
        url: str | None = None,
        approval_key: str | None = None,
        sync_callbacks: SyncCallbacks = "worker",
        on_error: ErrorCallback | None = None,
        backend: Backend = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._client = _client.WSClient(
            kis,
            max_retries,
            retry_delay,
            url=url,
            approval_key=approval_key,
            sync_callbacks=sync_callbacks,
            on_error=on_error,
            **options,
        )
        self._backend = backend
        self._backend_options = backend_options
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._loop_thread: int | None = None
        self._before_run: list[Callable[[], Awaitable[Any]]] = []

    def __repr__(self) -> str:
        return repr(self._client).replace("kis_anyio.", "kis_anyio.blocking.", 1)

    @property
    def kis(self) -> Credentials | None:
        return self._client.kis

    def _call(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn` on the running loop; before `run_forever`, keep it for when it starts."""
        with self._lock:
            portal = self._portal
            if portal is None:
                self._before_run.append(fn)
                return
        if threading.get_ident() == self._loop_thread:
            raise LocalProtocolError(
                "a callback run inline cannot subscribe or unsubscribe (it runs on the event loop); "
                "use sync_callbacks='worker' (the default)"
            )
        portal.call(fn)

    @overload
    def subscribe(self, tr_id: type[R], symbols: str | Iterable[str], callback: TypedCallback[R]) -> None: ...
    @overload
    def subscribe(self, tr_id: str, symbols: str | Iterable[str], callback: Callback) -> None: ...
    def subscribe(
        self, tr_id: str | type[R], symbols: str | Iterable[str], callback: Callback | TypedCallback[R]
    ) -> None:
        """Call `callback` with every record of `tr_id` for these symbols (now, or once running).

        `tr_id` may be a record class (``records.H0STCNT0``), which types the callback's record.
        """
        tr = tr_id_of(tr_id)
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        for symbol in symbols:
            check_subscription(tr, symbol)
        self._call(partial(self._client.subscribe, tr, symbols, cast("Callback", callback)))

    def subscribe_bars(
        self,
        symbols: str | Iterable[str],
        callback: BarCallback,
        *,
        tr_id: str | type[Record] = "H0STCNT0",
        **options: Any,
    ) -> None:
        """Call `callback` with every bar of these symbols' trades as it completes (now, or once
        running): ``ws.subscribe_bars(["005930"], on_bar, every="1m")``.

        The options are `kis_proto.bars.BarAggregator`'s; the whole story is
        `kis_anyio.WSClient.subscribe_bars`'s. Bad options raise `LocalProtocolError` here.
        """
        tr = tr_id_of(tr_id)
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        for symbol in symbols:
            check_subscription(tr, symbol)
        BarAggregator(tr_ids=[tr], **options)  # refused options raise now, not once running
        self._call(partial(self._client.subscribe_bars, symbols, callback, tr_id=tr, **options))

    def subscribe_notices(
        self, callback: Callback, market: Literal["domestic", "overseas"] = "domestic"
    ) -> str:
        """Call `callback` with your own execution notices (the TR follows `kis.env`); returns the TR id."""
        if self.kis is None:
            raise LocalProtocolError("execution notices need Credentials with your hts_id")
        tr_id, key = self.kis.notice_subscription(market)
        self.subscribe(tr_id, [key], callback)
        return tr_id

    def unsubscribe(self, tr_id: str, symbols: str | Iterable[str]) -> None:
        """Stop the callbacks of these symbols and release them on the server."""
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        self._call(partial(self._client.unsubscribe, tr_id, symbols))

    def run_forever(self) -> None:
        """Receive until `close`; raises `ConnectionError` when reconnecting gives up."""
        with start_blocking_portal(self._backend, self._backend_options) as portal:
            with self._lock:
                if self._portal is not None:
                    raise LocalProtocolError("run_forever is already running")
                self._portal = portal
                self._loop_thread = portal.call(threading.get_ident)
                before_run, self._before_run = self._before_run, []
            try:
                portal.call(self._run, before_run)
            finally:
                with self._lock:
                    self._portal = self._loop_thread = None

    async def _run(self, before_run: list[Callable[[], Awaitable[Any]]]) -> None:
        for fn in before_run:
            await fn()
        await self._client.run()

    def close(self) -> None:
        """Stop `run_forever`: close the connection cleanly. From any thread or a callback."""
        with self._lock:
            portal, loop_thread = self._portal, self._loop_thread
        if portal is None or threading.get_ident() == loop_thread:
            self._client.close_nowait()  # not running (it will close at once), or on the loop
            return
        with contextlib.suppress(RuntimeError):  # the portal stopped meanwhile: run_forever is over
            portal.call(self._client.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
