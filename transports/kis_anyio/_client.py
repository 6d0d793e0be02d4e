"""The anyio client: a `Feed` to iterate, and the original design's callback `WSClient` on top.

The loop is the one every sans-IO transport runs: flush, hand out events, wait for bytes or the
core's deadline, feed, repeat. A reader task owns the socket and never waits for the
application: events go through a bounded `EventBuffer`, so PINGPONG is echoed even while a
callback is slow. Reconnects follow `ReconnectPolicy`; the `SubscriptionRegistry` says what to
restore. No protocol decisions are made here.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.abc

from kis_proto import (
    ApprovalError,
    ApprovalExchange,
    ApprovalFailure,
    Callback,
    CallbackTable,
    Credentials,
    FeedCore,
    FeedEvent,
    KISConfig,
    LocalProtocolError,
    ReconnectPolicy,
    Record,
    feed_core,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
    from types import TracebackType

__all__ = ["Callback", "Feed", "WSClient", "connect"]

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
            status=None, code="", message=f"{type(exc).__name__}: {exc}", retryable=True
        )
        raise ApprovalError(failure) from None
    result = exchange.result
    if isinstance(result, ApprovalFailure):
        raise ApprovalError(result)
    assert result is not None
    return result.value


class Feed:
    """A live KIS feed: `subscribe`, then `async for event in feed`. Made by `connect`.

    Reconnects by itself and restores every subscription; yields records, acks, errors,
    `ConnectionClosed` + `Reconnecting` between connections, and `EventsDropped` when the
    application fell more than `buffer_size` market records behind (notices are never dropped).
    Iteration ends after `aclose`; it raises `ConnectionError` when the policy gives up.
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
        self._stream: anyio.abc.ByteStream | None = None
        self._send_lock = anyio.Lock()
        self._finished = anyio.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<kis_anyio.Feed {self._core!r}>"

    @property
    def closing(self) -> bool:
        """True once `aclose` was called."""
        return self._core.closing

    # -- the application's side ------------------------------------------------------------------
    async def subscribe(self, tr_id: str, keys: str | Iterable[str]) -> None:
        """Subscribe `tr_id` for each key (a symbol, or your HTS ID for notices); kept across reconnects."""
        self._core.subscribe(tr_id, keys, anyio.current_time())
        await self._flush()

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
        while True:
            self._ready = anyio.Event()
            batch = self._core.drain()
            if batch:
                yield batch
                continue
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                return
            await self._ready.wait()

    async def aclose(self) -> None:
        """Close the connection cleanly and stop reconnecting; iteration then ends."""
        self._core.close(anyio.current_time())
        await self._flush()
        self._ready.set()

    # -- the reader ------------------------------------------------------------------------------
    async def _run(self) -> None:
        core = self._core
        try:
            while not self.closing:
                error: Exception | None = None
                try:
                    if core.approval_key is None:
                        if self._approval is None:
                            raise ConnectionError("no approval key and no credentials to fetch one")
                        core.set_approval_key(await self._approval())
                    await self._session()
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
                await anyio.sleep(decision.delay)
        except ConnectionError as exc:
            self._error = exc
        finally:
            self._finished.set()
            self._ready.set()

    async def _session(self) -> None:
        core = self._core
        stream = await anyio.connect_tcp(core.host, core.port)
        conn = core.open(anyio.current_time())
        self._stream = stream
        try:
            await self._flush()
            while not conn.closed:
                deadline = conn.timer()
                data = b""
                with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                    try:
                        data = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        data = b""
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
        finally:
            self._stream = None
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _flush(self) -> None:
        conn, stream = self._core.conn, self._stream
        if conn is None or stream is None:
            return
        async with self._send_lock:
            data = conn.data_to_send()
            if not data:
                return
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                conn.receive_eof(now=anyio.current_time())


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
    """
    core = feed_core(
        url,
        credentials=credentials,
        approval_key=approval_key,
        config=config,
        policy=policy
        or ReconnectPolicy(rand=random.random, retry_delay=retry_delay, max_retries=max_retries),
        buffer_size=buffer_size,
    )
    approval = None
    if credentials is not None:
        creds = credentials

        async def approval() -> str:
            return await fetch_approval_key(
                creds, host=approval_host, port=approval_port, ssl_context=ssl_context, tls=approval_tls
            )

    feed = Feed(core, approval, credentials)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed._run)
            try:
                yield feed
            finally:
                await feed.aclose()
                with anyio.move_on_after(core.config.close_timeout):
                    await feed._finished.wait()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises; an error here is the application's (or ConnectionError from
        # iterating): hand it back as it was raised, not wrapped in a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class WSClient:
    """The original design's callback client, on the anyio feed.

    ``ws = WSClient(credentials)``; ``await ws.subscribe("H0STCNT0", ["005930"], on_price)``
    (before or after `run` starts); ``await ws.run()`` until ``await ws.close()``. Callbacks get
    each record (``data["price"]`` works), may be sync or async, several per (tr_id, key); one
    that raises is logged and the feed goes on. `run` raises `ConnectionError` after
    `max_retries` failed reconnects.
    """

    def __init__(
        self,
        kis: Credentials | None,
        max_retries: int | None = 5,
        retry_delay: float = 1.0,
        *,
        url: str | None = None,
        approval_key: str | None = None,
        **options: Any,
    ) -> None:
        self.kis = kis
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self._url = url
        self._approval_key = approval_key
        self._options = options
        self._callbacks = CallbackTable()
        self._feed: Feed | None = None
        self._closed = False

    async def subscribe(self, tr_id: str, symbols: str | Iterable[str], callback: Callback) -> None:
        """Call `callback` with every record of `tr_id` for these symbols."""
        symbols = self._callbacks.add(tr_id, symbols, callback)
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

    async def unsubscribe(self, tr_id: str, symbols: str | Iterable[str]) -> None:
        """Stop the callbacks of these symbols and release them on the server."""
        symbols = self._callbacks.remove(tr_id, symbols)
        if self._feed is not None:
            await self._feed.unsubscribe(tr_id, symbols)

    async def run(self) -> None:
        """Receive until `close`; raises `ConnectionError` when reconnecting gives up."""
        options = {"max_retries": self.max_retries, "retry_delay": self.retry_delay} | self._options
        async with connect(
            self._url, credentials=self.kis, approval_key=self._approval_key, **options
        ) as feed:
            self._feed = feed
            for tr_id, symbol in self._callbacks.subscriptions():
                await feed.subscribe(tr_id, symbol)
            if self._closed:
                await feed.aclose()
            async for batch in feed.batches():
                for event in batch:
                    if isinstance(event, Record):
                        for pending in self._callbacks.call(event):
                            try:
                                await pending
                            except Exception:
                                logger.exception(
                                    "a callback for %s %s raised; the feed goes on", event.tr_id, event.tr_key
                                )
        self._feed = None

    async def close(self) -> None:
        """Stop `run`: close the connection cleanly."""
        self._closed = True
        if self._feed is not None:
            await self._feed.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
