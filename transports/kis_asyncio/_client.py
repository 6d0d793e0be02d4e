"""The standard-library asyncio client: the same `Feed` and `WSClient` faces as kis_anyio.

An `asyncio.BufferedProtocol` feeds the core as bytes arrive, synchronously: no reader task, no
await per read, and the socket is always drained whatever the application does; the core's
deadline is a `loop.call_at` timer. Measured end to end (bench/bench_e2e.py, full speed): the
streams version with a reader task ran at ~0.5x the websockets baseline, this one at ~1x. The non-I/O work (subscriptions across reconnects, the reconnect policy, the
bounded event buffer) is `kis_proto.feed.FeedCore`, shared with kis_anyio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

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
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
    from contextlib import AbstractAsyncContextManager

    from kis_proto.feed import FeedCounters

__all__ = ["Callback", "Feed", "WSClient", "connect", "fetch_approval_key", "open_feed"]

T = TypeVar("T")

logger = logging.getLogger("kis_asyncio")

READ_SIZE = 64 * 1024


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
    context = (ssl_context or ssl.create_default_context()) if tls else None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if tls else None
            )
            writer.write(exchange.data_to_send())
            await writer.drain()
            while not exchange.done:
                data = await reader.read(READ_SIZE)
                if data:
                    exchange.receive_data(data)
                else:
                    exchange.receive_eof()
    except (OSError, TimeoutError) as exc:
        failure = ApprovalFailure(
            status=None, code="", message=connect_failure(exc, host, port), retryable=True
        )
        raise ApprovalError(failure) from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    result = exchange.result
    if isinstance(result, ApprovalFailure):
        raise ApprovalError(result)
    assert result is not None
    return result.value


class Feed:
    """A live KIS feed: `subscribe`, then `async for event in feed`. Made by `connect` or `open_feed`.

    Behaves as `kis_anyio.Feed`: reconnects and restores subscriptions by itself, never lets a
    slow application stall the socket, logs refusals and server errors at WARNING on the
    ``kis_asyncio`` logger, ends after `aclose`, raises `ConnectionError` on give-up.
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
        self._ready = asyncio.Event()
        self._answers = asyncio.Event()  # set (and replaced) when subscription tickets were answered
        self._close_requested = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._session_over: asyncio.Future[None] | None = None
        self._finished = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        core.on_answer = self._notify_answers

    def __repr__(self) -> str:
        return f"<kis_asyncio.Feed {self._core!r}>"

    @property
    def closing(self) -> bool:
        """True once `aclose` was called."""
        return self._core.closing

    @property
    def counters(self) -> FeedCounters:
        """What the feed has seen since it started: records per TR, reconnects and why, drops...
        (`kis_proto.feed.FeedCounters`; `kis_metrics.FeedCollector` exports it to Prometheus)."""
        return self._core.counters

    # A str is also an Iterable[str]; the first overload wins for it, as the code does.
    @overload
    async def subscribe(self, tr_id: str, keys: str) -> Subscription: ...  # type: ignore[overload-overlap]
    @overload
    async def subscribe(self, tr_id: str, keys: Iterable[str]) -> list[Subscription]: ...
    async def subscribe(self, tr_id: str, keys: str | Iterable[str]) -> Subscription | list[Subscription]:
        """Subscribe `tr_id` for each key (a symbol, or your HTS ID for notices); kept across reconnects.

        Returns a `Subscription` per key (a list for a list of keys), as `kis_anyio.Feed.subscribe`.
        """
        wanted = [keys] if isinstance(keys, str) else list(keys)
        self._core.subscribe(tr_id, wanted, asyncio.get_running_loop().time())
        tickets = [
            Subscription(tr_id, key, news=self._answer_news, release=self.unsubscribe) for key in wanted
        ]
        for ticket in tickets:
            self._core.track(ticket)
        await self._flush()
        return tickets[0] if isinstance(keys, str) else tickets

    async def unsubscribe(self, tr_id: str, keys: str | Iterable[str]) -> None:
        """Stop receiving `tr_id` for each key."""
        self._core.unsubscribe(tr_id, keys, asyncio.get_running_loop().time())
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
            event = self._core.next_event()
            if event is not None:
                return event
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def batches(self) -> AsyncIterator[list[FeedEvent]]:
        """Iterate events a batch at a time: everything waiting, in order (cheaper per event)."""
        while True:
            batch = self._core.drain()
            if batch:
                yield batch
                continue
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                return
            self._ready.clear()
            await self._ready.wait()

    async def aclose(self) -> None:
        """Close the connection cleanly and stop reconnecting; iteration then ends.

        Returns once the reader has ended: at most the config's `close_timeout`, after which it
        is cancelled. The events that came before the close can still be iterated.
        """
        self._core.close(asyncio.get_running_loop().time())
        self._close_requested.set()
        await self._flush()
        self._ready.set()
        if self._transport is not None:  # a connection to close cleanly: wait for its handshake
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._core.config.close_timeout):
                    await self._finished.wait()
        # Otherwise the reader is fetching the approval key or connecting: nothing to wait for.
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notify_answers(self) -> None:
        self._answers.set()
        self._answers = asyncio.Event()

    async def _answer_news(self) -> bool:
        if self._finished.is_set():
            return False
        await self._answers.wait()
        return True

    def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kis_asyncio reader")

    async def _run(self) -> None:
        core = self._core
        loop = asyncio.get_running_loop()
        try:
            while not self.closing:
                error: Exception | None = None
                try:
                    if core.key_is_due(loop.time()):
                        if self._approval is None:
                            raise ConnectionError("no approval key and no credentials to fetch one")
                        core.set_approval_key(await self._approval(), loop.time())
                    await self._session()
                except ApprovalError as exc:
                    if not exc.failure.retryable:
                        raise ConnectionError(str(exc)) from None
                    error = exc
                except OSError as exc:
                    error = exc
                decision = core.lost(loop.time(), error)
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
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(decision.delay):
                        await self._close_requested.wait()  # aclose() cuts the wait short
        except ConnectionError as exc:
            self._error = exc
        finally:
            self._finished.set()
            self._ready.set()
            self._notify_answers()

    async def _session(self) -> None:
        """One connection, driven from protocol callbacks: bytes are fed as they arrive."""
        core = self._core
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: _Protocol(self), core.host, core.port)
        core.open(loop.time())
        self._transport = transport
        self._session_over = loop.create_future()
        renewal = asyncio.create_task(self._renew_key(), name="kis_asyncio approval key renewal")
        try:
            self._after(loop.time())
            await self._session_over
        finally:
            renewal.cancel()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._transport = None
            transport.close()

    async def _renew_key(self) -> None:
        """While a session stays up, fetch a new approval key before the one in use expires."""
        core, loop = self._core, asyncio.get_running_loop()
        while self._approval is not None and (due := core.renew_at()) is not None:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                core.set_approval_key(await self._approval(), loop.time())
            except (ApprovalError, OSError, LocalProtocolError) as exc:
                logger.warning("could not renew the approval key (%s); trying again in a minute", exc)
                await asyncio.sleep(60.0)
            else:
                logger.info("renewed the approval key; the session goes on")

    # Protocol callbacks: synchronous, so the reader never waits for the application.
    def _on_data(self, data: bytes) -> None:
        conn = self._core.conn
        if conn is not None:
            now = asyncio.get_running_loop().time()
            conn.receive_data(data, now=now)
            self._after(now)

    def _on_eof(self) -> None:
        conn = self._core.conn
        if conn is not None:
            now = asyncio.get_running_loop().time()
            conn.receive_eof(now=now)
            self._after(now)

    def _on_timer(self) -> None:
        self._timer = None
        conn = self._core.conn
        if conn is not None:
            now = asyncio.get_running_loop().time()
            conn.handle_timer(now)
            self._after(now)

    def _after(self, now: float) -> None:
        """After every call into the connection: events out, bytes out, the next deadline."""
        core = self._core
        conn = core.conn
        if conn is None:
            return
        if core.collect(now):
            self._ready.set()
        self._write()
        if conn.closed:
            if self._session_over is not None and not self._session_over.done():
                self._session_over.set_result(None)
            return
        deadline = conn.timer()
        if deadline is not None and (self._timer is None or self._timer.when() != deadline):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _write(self) -> None:
        conn, transport = self._core.conn, self._transport
        if conn is not None and transport is not None:
            data = conn.data_to_send()
            if data and not transport.is_closing():
                transport.write(data)

    async def _flush(self) -> None:
        # After a command: its bytes out, and what it changed seen at once (a close while
        # connecting ends the session, a subscribe's ack timeout is an earlier deadline).
        if self._transport is not None:
            self._after(asyncio.get_running_loop().time())


class _Protocol(asyncio.BufferedProtocol):
    """Hands the socket's events to the feed, reading at most `READ_SIZE` bytes at a time.

    The bound matters: a plain Protocol gets up to 256 KiB per read, thousands of records alive
    at once, and the garbage collector's passes over them cost more than the decoding (measured:
    ~170k vs ~270k records/s end to end with 64 KiB reads).
    """

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._feed._on_data(bytes(self._view[:nbytes]))

    def eof_received(self) -> bool:
        self._feed._on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._feed._on_eof()


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

    feed = Feed(core, approval, credentials)
    feed._start()
    return feed


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
    """Open a KIS feed on the running asyncio loop; see `kis_anyio.connect` for the arguments."""
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
        yield feed
    finally:
        await feed.aclose()


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
    """Open a KIS feed without a block: ``feed = await kis_asyncio.open_feed(...)``, later ``await feed.aclose()``.

    As `kis_anyio.open_feed`: for notebooks and ``python -m asyncio``, where opening, iterating
    and closing may each run in a task of its own. The arguments are `connect`'s.
    """
    return _make_feed(
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


class Workers:
    """Lane tasks in an `asyncio.TaskGroup`; sync callbacks in the client's own thread pool; the
    wall clock and a sleep that `wake` ends, for bars."""

    def __init__(self, tg: asyncio.TaskGroup, executor: ThreadPoolExecutor) -> None:
        self._tg = tg
        self._executor = executor
        self._wake = asyncio.Event()

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], /) -> None:
        self._tg.create_task(fn())

    async def run_sync(self, fn: Callable[[], T], /) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float, /) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def wake(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()


@asynccontextmanager
async def workers(thread_name_prefix: str) -> AsyncIterator[Workers]:
    """A `WSClient`'s workers (this one's and `kis_nats.WSClient`'s): tasks, and threads of its own.

    Not the loop's default executor: its few threads would make one subscription's slow callback
    hold up another's, and the application may need them for its own work.
    """
    executor = ThreadPoolExecutor(KIS_MAX_SUBSCRIPTIONS + 1, thread_name_prefix=thread_name_prefix)
    try:
        async with asyncio.TaskGroup() as tg:
            yield Workers(tg, executor)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class WSClient(CallbackClient[Feed]):
    """The original design's callback client on asyncio alone; see `kis_anyio.WSClient`.

    ``sync_callbacks="worker"`` and ``"per-subscription"`` run plain callbacks in a thread pool
    of the client's own (one thread, or one per subscription at most, created as needed).
    """

    _log = logger

    def _connect(self, url: str | None, **options: Any) -> AbstractAsyncContextManager[Feed]:
        return connect(url, **options)

    def _workers(self) -> AbstractAsyncContextManager[Workers]:
        return workers("kis_asyncio-callback")
