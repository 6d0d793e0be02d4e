"""The anyio client: a `Feed` to iterate, and the original design's callback `WSClient` on top.

The loop is the one every sans-IO transport runs: flush, hand out events, wait for bytes or the
core's deadline, feed, repeat. A reader task owns the socket and never waits for the
application: events go through a bounded `EventBuffer`, so PINGPONG is echoed even while a
callback is slow. Reconnects follow `ReconnectPolicy`; the `SubscriptionRegistry` says what to
restore. No protocol decisions are made here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, overload

import anyio
import anyio.abc
import anyio.to_thread

from kis_proto import ApprovalError, Credentials, FeedEvent, KISConfig, LocalProtocolError
from kis_proto.approval import ApprovalExchange, ApprovalFailure
from kis_proto.feed import (
    KIS_MAX_SUBSCRIPTIONS,
    Callback,
    CallbackClient,
    FeedCore,
    ReconnectPolicy,
    Subscription,
    connect_failure,
    feed_core,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
    from contextlib import AbstractAsyncContextManager

    from kis_proto import KISConnection
    from kis_proto.feed import FeedCounters

__all__ = ["Callback", "ConnectOptions", "Feed", "WSClient", "connect", "fetch_approval_key", "open_feed"]

T = TypeVar("T")

logger = logging.getLogger("kis_anyio")


async def fetch_approval_key(
    credentials: Credentials,
    *,
    host: str | None = None,
    port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    tls: bool = True,
) -> str:
    """Fetch an approval key over HTTPS (certificate verification on); raises `ApprovalError`."""
    exchange = ApprovalExchange(credentials, host=host, port=port)
    endpoint = credentials.endpoint
    host, port = host or endpoint.rest_host, port or endpoint.rest_port
    try:
        with anyio.fail_after(30):
            stream: anyio.abc.ByteStream
            if tls:
                # h11 frames the response (Content-Length or chunks), so a missing TLS close_notify
                # cannot truncate it unnoticed; many servers omit it, hence not "standard compatible".
                stream = await anyio.connect_tcp(
                    host,
                    port,
                    tls=True,
                    ssl_context=ssl_context or ssl.create_default_context(),
                    tls_hostname=host,
                    tls_standard_compatible=False,
                )
            else:
                stream = await anyio.connect_tcp(host, port)
            async with stream:
                await stream.send(exchange.data_to_send())
                while not exchange.done:
                    try:
                        exchange.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        exchange.receive_eof()
    except (OSError, TimeoutError, anyio.BrokenResourceError) as exc:
        failure = ApprovalFailure(
            status=None, code="", message=connect_failure(exc, host, port), retryable=True
        )
        raise ApprovalError(failure) from None
    result = exchange.result
    if isinstance(result, ApprovalFailure):
        raise ApprovalError(result)
    assert result is not None
    return result.value


class Feed:
    """A live KIS feed: `subscribe`, then `async for event in feed`. Made by `connect` or `open_feed`.

    Reconnects by itself and restores every subscription; yields records, acks, errors,
    `ConnectionClosed` + `Reconnecting` between connections, and `EventsDropped` when the
    application fell more than `buffer_size` market records behind (notices are never dropped).
    Refused subscriptions and server errors are also logged at WARNING on the ``kis_anyio``
    logger. Iteration ends after `aclose`; it raises `ConnectionError` when the policy gives up.
    """

    def __init__(
        self,
        core: FeedCore,
        approval: Callable[[], Awaitable[str]] | None,
        credentials: Credentials | None = None,
    ) -> None:
        self._core = core
        self._approval = approval
        self._credentials = credentials
        self._ready = anyio.Event()
        self._answers = anyio.Event()  # set (and replaced) when subscription tickets were answered
        self._close_requested = anyio.Event()
        self._stream: anyio.abc.ByteStream | None = None
        self._receive_scope: anyio.CancelScope | None = None  # the reader's wait for bytes
        self._pending: anyio.CancelScope | None = None  # its approval request or connect, if any
        self._send_lock = anyio.Lock()
        self._finished = anyio.Event()
        self._error: BaseException | None = None
        self._scope: anyio.CancelScope | None = None  # the reader's, when it runs detached (open_feed)
        self._task: asyncio.Task[None] | None = None
        core.on_answer = self._notify_answers

    def __repr__(self) -> str:
        return f"<kis_anyio.Feed {self._core!r}>"

    @property
    def closing(self) -> bool:
        """True once `aclose` was called."""
        return self._core.closing

    @property
    def counters(self) -> FeedCounters:
        """What the feed has seen since it started: records per TR, reconnects and why, drops...
        (`kis_proto.feed.FeedCounters`; `kis_metrics.FeedCollector` exports it to Prometheus)."""
        return self._core.counters

    # -- the application's side ------------------------------------------------------------------
    # A str is also an Iterable[str]; the first overload wins for it, as the code does.
    @overload
    async def subscribe(self, tr_id: str, keys: str) -> Subscription: ...  # type: ignore[overload-overlap]
    @overload
    async def subscribe(self, tr_id: str, keys: Iterable[str]) -> list[Subscription]: ...
    async def subscribe(self, tr_id: str, keys: str | Iterable[str]) -> Subscription | list[Subscription]:
        """Subscribe `tr_id` for each key (a symbol, or your HTS ID for notices); kept across reconnects.

        Returns a `Subscription` per key (a list for a list of keys) without waiting: ``await
        sub.wait()`` gives the server's answer (`Subscribed`, or raises `SubscriptionRefused`),
        ``await sub.unsubscribe()`` releases the key. Ignoring it is fine.
        """
        wanted = [keys] if isinstance(keys, str) else list(keys)
        self._core.subscribe(tr_id, wanted, anyio.current_time())
        tickets = [
            Subscription(tr_id, key, news=self._answer_news, release=self.unsubscribe) for key in wanted
        ]
        for ticket in tickets:
            self._core.track(ticket)
        await self._flush()
        return tickets[0] if isinstance(keys, str) else tickets

    async def unsubscribe(self, tr_id: str, keys: str | Iterable[str]) -> None:
        """Stop receiving `tr_id` for each key."""
        self._core.unsubscribe(tr_id, keys, anyio.current_time())
        await self._flush()

    async def subscribe_notices(self, market: Literal["domestic", "overseas"] = "domestic") -> str:
        """Subscribe your own execution notices (real or paper TR by the credentials); returns the TR id."""
        if self._credentials is None:
            raise LocalProtocolError("execution notices need Credentials with your hts_id")
        tr_id, key = self._credentials.notice_subscription(market)
        await self.subscribe(tr_id, key)
        return tr_id

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> FeedEvent:
        while True:
            self._ready = anyio.Event()
            event = self._core.next_event()
            if event is not None:
                return event
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            await self._ready.wait()

    async def batches(self) -> AsyncIterator[list[FeedEvent]]:
        """Iterate events a batch at a time: everything waiting, in order (cheaper per event)."""
        while (batch := await self._next_batch()) is not None:
            yield batch

    async def _next_batch(self) -> list[FeedEvent] | None:
        """Everything waiting, once there is something; None when the feed has ended."""
        while True:
            self._ready = anyio.Event()
            batch = self._core.drain()
            if batch:
                return batch
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                return None
            await self._ready.wait()

    async def aclose(self) -> None:
        """Close the connection cleanly and stop reconnecting; iteration then ends.

        Returns once the reader has ended (at most the config's `close_timeout`); the events
        that came before the close can still be iterated. A feed from `open_feed` has its
        reader stopped here, after that time if it must.
        """
        self._core.close(anyio.current_time())
        self._close_requested.set()
        if self._pending is not None:  # fetching the approval key or connecting: nothing to close
            self._pending.cancel()
        await self._flush()
        self._ready.set()
        with anyio.move_on_after(self._core.config.close_timeout):
            await self._finished.wait()
        if self._scope is not None:
            self._scope.cancel()
            await self._finished.wait()

    # -- subscription tickets --------------------------------------------------------------------
    def _notify_answers(self) -> None:
        self._answers.set()
        self._answers = anyio.Event()

    async def _answer_news(self) -> bool:
        if self._finished.is_set():
            return False
        await self._answers.wait()
        return True

    # -- the reader ------------------------------------------------------------------------------
    def _detach(self) -> None:
        """Run the reader as a task of its own, outside any task group the caller holds.

        For `open_feed`: notebook cells and ``python -m asyncio`` inputs are separate tasks,
        and a task group (a cancel scope) must be entered and left by one task.
        """
        scope = self._scope = anyio.CancelScope()

        async def reader() -> None:
            with scope:
                try:
                    await self._run()
                except Exception as exc:  # a bug: hand it to the application, never to the loop
                    logger.exception("the feed's reader failed")
                    self._error = exc

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio, the other backend anyio runs on
            import trio

            trio.lowlevel.spawn_system_task(reader, name="kis_anyio reader")
        else:
            self._task = loop.create_task(reader(), name="kis_anyio reader")

    async def _run(self) -> None:
        core = self._core
        try:
            while not self.closing:
                error: Exception | None = None
                try:
                    if core.key_is_due(anyio.current_time()):
                        if self._approval is None:
                            raise ConnectionError("no approval key and no credentials to fetch one")
                        with self._until_closed() as pending:
                            core.set_approval_key(await self._approval(), anyio.current_time())
                        if pending.cancelled_caught:
                            break  # closed while the request was on its way
                    if not await self._session():
                        break
                except ApprovalError as exc:
                    if not exc.failure.retryable:
                        raise ConnectionError(str(exc)) from None
                    error = exc
                except OSError as exc:
                    error = exc
                decision = core.lost(anyio.current_time(), error)
                self._ready.set()
                if decision is None:
                    break
                if decision.delay is None:
                    raise ConnectionError(decision.reason)
                logger.info(
                    "reconnecting (attempt %d in %.1f s): %s",
                    decision.attempt,
                    decision.delay,
                    decision.reason,
                )
                with anyio.move_on_after(decision.delay):
                    await self._close_requested.wait()  # aclose() cuts the wait short
        except ConnectionError as exc:
            self._error = exc
        finally:
            self._finished.set()
            self._ready.set()
            self._notify_answers()

    @contextmanager
    def _until_closed(self) -> Iterator[anyio.CancelScope]:
        """A wait that `aclose` cuts short: before a connection there is nothing to close cleanly."""
        with anyio.CancelScope() as scope:
            self._pending = scope
            if self.closing:
                scope.cancel()
            try:
                yield scope
            finally:
                self._pending = None

    async def _session(self) -> bool:
        """One connection; False when the feed was closed before it was made."""
        core = self._core
        with self._until_closed() as pending:
            stream = await anyio.connect_tcp(core.host, core.port)
        if pending.cancelled_caught:
            return False
        conn = core.open(anyio.current_time())
        self._stream = stream
        try:
            failure: Exception | None = None
            async with anyio.create_task_group() as renewal:
                renewal.start_soon(self._renew_key)
                try:
                    await self._drive(conn, stream)
                except Exception as exc:  # noqa: BLE001 - raised below, not wrapped in an ExceptionGroup
                    failure = exc
                renewal.cancel_scope.cancel()
            if failure is not None:
                raise failure
        finally:
            self._stream = None
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        return True

    async def _renew_key(self) -> None:
        """While a session stays up, fetch a new approval key before the one in use expires."""
        core = self._core
        while self._approval is not None and (due := core.renew_at()) is not None:
            await anyio.sleep_until(due)
            try:
                core.set_approval_key(await self._approval(), anyio.current_time())
            except (ApprovalError, OSError, LocalProtocolError) as exc:
                logger.warning("could not renew the approval key (%s); trying again in a minute", exc)
                await anyio.sleep(60.0)
            else:
                logger.info("renewed the approval key; the session goes on")

    async def _drive(self, conn: KISConnection, stream: anyio.abc.ByteStream) -> None:
        """Read, feed the connection, hand out its events and write its bytes until it is closed."""
        core = self._core
        await self._flush()
        while not conn.closed:
            deadline = conn.timer()
            data = b""
            with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._receive_scope = scope
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    data = b""
            self._receive_scope = None
            now = anyio.current_time()
            if scope.cancelled_caught:
                conn.handle_timer(now)
            elif data:
                conn.receive_data(data, now=now)
            else:
                conn.receive_eof(now=now)
            if core.collect(now):
                self._ready.set()
            await self._flush()

    async def _flush(self) -> None:
        conn, stream = self._core.conn, self._stream
        if conn is None or stream is None:
            return
        async with self._send_lock:
            data = conn.data_to_send()
            if data:
                try:
                    await stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    conn.receive_eof(now=anyio.current_time())
        scope = self._receive_scope
        if scope is not None:
            # A command (from the application) may have ended the connection (a close while
            # connecting) or set an earlier deadline (a subscribe's ack timeout): the reader,
            # waiting for bytes, must see it now rather than at its old deadline.
            deadline = conn.timer()
            if conn.closed:
                scope.cancel()
            elif deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline


class ConnectOptions(TypedDict, total=False):
    """The keyword arguments of `connect` and `open_feed` (for the faces that pass them on)."""

    credentials: Credentials | None
    approval_key: str | None
    max_retries: int | None
    retry_delay: float
    policy: ReconnectPolicy | None
    config: KISConfig | None
    buffer_size: int
    approval_host: str | None
    approval_port: int | None
    ssl_context: ssl.SSLContext | None
    approval_tls: bool


def _make_feed(
    url: str | None,
    *,
    credentials: Credentials | None = None,
    approval_key: str | None = None,
    max_retries: int | None = 5,
    retry_delay: float = 1.0,
    policy: ReconnectPolicy | None = None,
    config: KISConfig | None = None,
    buffer_size: int = 10_000,
    approval_host: str | None = None,
    approval_port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    approval_tls: bool = True,
) -> Feed:
    core = feed_core(
        url,
        credentials=credentials,
        approval_key=approval_key,
        config=config,
        policy=policy
        or ReconnectPolicy(rand=random.random, retry_delay=retry_delay, max_retries=max_retries),
        buffer_size=buffer_size,
        log=logger,
    )
    approval = None
    if credentials is not None:
        creds = credentials

        async def approval() -> str:
            return await fetch_approval_key(
                creds, host=approval_host, port=approval_port, ssl_context=ssl_context, tls=approval_tls
            )

    return Feed(core, approval, credentials)


@asynccontextmanager
async def connect(
    url: str | None = None,
    *,
    credentials: Credentials | None = None,
    approval_key: str | None = None,
    max_retries: int | None = 5,
    retry_delay: float = 1.0,
    policy: ReconnectPolicy | None = None,
    config: KISConfig | None = None,
    buffer_size: int = 10_000,
    approval_host: str | None = None,
    approval_port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    approval_tls: bool = True,
) -> AsyncIterator[Feed]:
    """Open a KIS feed: ``async with kis_anyio.connect(credentials=creds) as feed: ...``.

    The URL defaults to the credentials' environment (real :21000, paper :31000). Give
    `approval_key` to skip the REST call (the simulator, or keys you manage yourself); otherwise
    it is fetched once over HTTPS and again only after ``invalid approval``.

    The block must be entered and left by one task (it holds a task group). Where that cannot
    be, in a notebook or ``python -m asyncio`` whose inputs are separate tasks, use `open_feed`.
    """
    feed = _make_feed(
        url,
        credentials=credentials,
        approval_key=approval_key,
        max_retries=max_retries,
        retry_delay=retry_delay,
        policy=policy,
        config=config,
        buffer_size=buffer_size,
        approval_host=approval_host,
        approval_port=approval_port,
        ssl_context=ssl_context,
        approval_tls=approval_tls,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed._run)
            try:
                yield feed
            finally:
                await feed.aclose()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises; an error here is the application's (or ConnectionError from
        # iterating): hand it back as it was raised, not wrapped in a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def open_feed(
    url: str | None = None,
    *,
    credentials: Credentials | None = None,
    approval_key: str | None = None,
    max_retries: int | None = 5,
    retry_delay: float = 1.0,
    policy: ReconnectPolicy | None = None,
    config: KISConfig | None = None,
    buffer_size: int = 10_000,
    approval_host: str | None = None,
    approval_port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    approval_tls: bool = True,
) -> Feed:
    """Open a KIS feed without a block: ``feed = await kis_anyio.open_feed(...)``, later ``await feed.aclose()``.

    For notebooks and ``python -m asyncio``, where each cell or input runs as a task of its own:
    the reader runs as a task of its own too, so opening, iterating and closing may each happen
    in a different task. The arguments are `connect`'s. Close the feed with `Feed.aclose`; until
    then it keeps its connection (and reconnects).
    """
    feed = _make_feed(
        url,
        credentials=credentials,
        approval_key=approval_key,
        max_retries=max_retries,
        retry_delay=retry_delay,
        policy=policy,
        config=config,
        buffer_size=buffer_size,
        approval_host=approval_host,
        approval_port=approval_port,
        ssl_context=ssl_context,
        approval_tls=approval_tls,
    )
    feed._detach()
    return feed


class _Workers:
    """Lane tasks in the client's task group; sync callbacks in anyio's worker threads; the wall
    clock and a sleep that `wake` ends, for bars."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        # Its own limiter, one thread per subscription (+ on_error): a lane never waits for a
        # thread that another subscription's slow callback holds, nor for the application's
        # own `to_thread` calls.
        self._limiter = anyio.CapacityLimiter(KIS_MAX_SUBSCRIPTIONS + 1)
        self._wake = anyio.Event()

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], /) -> None:
        self._tg.start_soon(fn)

    async def run_sync(self, fn: Callable[[], T], /) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, /) -> None:
        with anyio.move_on_after(seconds):
            await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()


class WSClient(CallbackClient[Feed]):
    """The original design's callback client, on the anyio feed (trio or asyncio).

    ``ws = WSClient(credentials)``; ``await ws.subscribe("H0STCNT0", ["005930"], on_price)``;
    ``await ws.run()`` until ``await ws.close()``. Options: ``sync_callbacks="worker"`` runs
    plain callbacks in a worker thread, one at a time in arrival order (``"per-subscription"``:
    a worker per subscription, in parallel across them); ``on_error=`` gets refused
    subscriptions and server errors. The full story is `kis_proto.feed.CallbackClient`'s; for code
    with no ``async`` at all, see ``kis_anyio.blocking.WSClient``.
    """

    _log = logger

    def _connect(self, url: str | None, **options: Any) -> AbstractAsyncContextManager[Feed]:
        return connect(url, **options)

    @asynccontextmanager
    async def _workers(self) -> AsyncIterator[_Workers]:
        async with anyio.create_task_group() as tg:
            yield _Workers(tg)
