"""`FeedCore`: everything a transport's feed does that is not I/O, shared by both transports.

A feed outlives its sockets. Across them it keeps the desired subscriptions
(`SubscriptionRegistry`), the reconnect policy, the approval key, and the bounded buffer of
events waiting for the application. For each socket it makes a `KISConnection`, restores the
subscriptions on it, and turns the connection's events into registry updates. The transports
(`kis_anyio`, `kis_asyncio`) keep only the sockets, the waiting and the sleeping.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ._approval import ApprovalError
from ._buffer import EventBuffer, EventsDropped, FeedEvent, Reconnecting
from ._codes import MsgCode
from ._connection import ABNORMAL, INTERNAL_ERROR, ConnState, KISConfig, KISConnection
from ._errors import KISError, LocalProtocolError
from ._events import (
    Connected,
    ConnectionClosed,
    LayoutDrift,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
)
from ._fields import Record
from ._subscriptions import SubscriptionRegistry, SubState
from .records import RECORD_CLASSES, TRS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._approval import Credentials
    from ._reconnect import ReconnectDecision, ReconnectPolicy

__all__ = [
    "PAPER_REQUEST_RATE",
    "REQUEST_RATE",
    "FeedCore",
    "FeedCounters",
    "Subscription",
    "SubscriptionError",
    "connect_failure",
    "feed_core",
    "shown_key",
    "split_ws_url",
]

logger = logging.getLogger("kis_proto.feed")


def shown_key(tr_id: str, tr_key: str) -> str:
    """`tr_key` as logs and reprs may show it: masked on notice TRs, where it is the user's HTS ID."""
    cls = RECORD_CLASSES.get(tr_id)
    if cls is not None and TRS[cls.__name__].encrypted:
        return tr_key[:2] + "***"
    return tr_key


class SubscriptionError(KISError):
    """The server refused a subscription, or did not answer it in time; `event` says which.

    Raised by `Subscription.wait`. `event.timed_out` tells a refusal (the key is not retried
    until subscribed again) from a missing answer (the key is requested again on the next
    connection).
    """

    def __init__(self, event: SubscribeFailed) -> None:
        key = f"{event.tr_id} {shown_key(event.tr_id, event.tr_key)}"
        if event.timed_out:
            text = f"no answer from KIS to the subscription of {key}: {event.message}"
        else:
            text = f"KIS refused the subscription of {key}: {event.msg_cd} {event.message}"
        super().__init__(text)
        self.event = event


class Subscription:
    """One (tr_id, key) asked for with a feed's ``subscribe``: await its answer, or release it.

    ``sub = await feed.subscribe("H0STCNT0", "005930")``; ``await sub.wait()`` returns the
    server's `Subscribed`, or raises `SubscriptionError` (carrying the `SubscribeFailed`);
    ``await sub.unsubscribe()`` releases the key.

    Across reconnects: the answer is the first one the server gives after the ticket was made,
    on this connection or a later one. A key requested while disconnected, or whose request was
    cut by a dropped socket, is restored on the next connection and the ticket is answered there.
    A ticket made for a key the server already holds is answered at once. An answer once given
    stands, even when the connection later drops (the feed restores the key by itself; a
    refusal is final until the key is subscribed again). `wait` raises `ConnectionError` when the
    feed ends before any answer, and `LocalProtocolError` when the key was unsubscribed first.
    A subscription is per (tr_id, key), not per ticket: two tickets of one key share it, and
    releasing either releases the key.
    """

    __slots__ = ("_answer", "_news", "_release", "_released", "tr_id", "tr_key")

    def __init__(
        self,
        tr_id: str,
        tr_key: str,
        *,
        news: Callable[[], Awaitable[bool]],
        release: Callable[[str, str], Awaitable[None]],
    ) -> None:
        """Made by a transport's feed. `news()` waits until an answer may have come in and
        returns False once none can come any more; `release(tr_id, tr_key)` unsubscribes."""
        self.tr_id = tr_id
        self.tr_key = tr_key
        self._news = news
        self._release = release
        self._answer: Subscribed | SubscribeFailed | None = None
        self._released = False

    def __repr__(self) -> str:
        if self._answer is None:
            state = "released" if self._released else "waiting"
        elif isinstance(self._answer, Subscribed):
            state = "subscribed"
        else:
            state = f"refused {self._answer.msg_cd}" if not self._answer.timed_out else "timed out"
        return f"<Subscription {self.tr_id} {shown_key(self.tr_id, self.tr_key)} {state}>"

    @property
    def answer(self) -> Subscribed | SubscribeFailed | None:
        """The server's answer, or None while there is none."""
        return self._answer

    async def wait(self) -> Subscribed:
        """The server's `Subscribed`; raises `SubscriptionError` when it refused the key."""
        while (answer := self.answer) is None:
            if self._released:
                raise LocalProtocolError(
                    f"{self.tr_id} {shown_key(self.tr_id, self.tr_key)} was unsubscribed before KIS answered"
                )
            if not await self._news() and self.answer is None:
                raise ConnectionError(
                    f"the feed ended before KIS answered the subscription of "
                    f"{self.tr_id} {shown_key(self.tr_id, self.tr_key)}"
                )
        if isinstance(answer, SubscribeFailed):
            raise SubscriptionError(answer)
        return answer

    async def unsubscribe(self) -> None:
        """Release the key on the server (the same as the feed's ``unsubscribe``)."""
        await self._release(self.tr_id, self.tr_key)


def _log_drop(event: EventsDropped) -> None:
    logger.warning(
        "the application fell behind: %d market-data records dropped, oldest first "
        "(notices are never dropped; raise buffer_size or consume faster)",
        event.count,
    )


_SESSION_ENDERS = frozenset({MsgCode.INVALID_APPROVAL, MsgCode.ALREADY_IN_USE_APPKEY})
_SESSION_ENDER_LABELS = {
    MsgCode.INVALID_APPROVAL: "invalid_approval",
    MsgCode.ALREADY_IN_USE_APPKEY: "in_use",
}
# The events that are neither bookkeeping nor records: every other event is a record.
_COUNTED = frozenset({PingPong, UndecodableMessage, LayoutDrift, TextReceived})
_BOOKKEEPING = frozenset(
    {Connected, Subscribed, SubscribeFailed, Unsubscribed, ServerError, ConnectionClosed}
)


@dataclasses.dataclass(slots=True, eq=False)
class FeedCounters:
    """What a feed has seen since it started, counted as it goes: for a program's own metrics.

    Every transport's `Feed` has one (``feed.counters``); `kis_metrics.FeedCollector` exports it
    to Prometheus. Read it from the feed's event loop (it is updated there, without locks).
    """

    #: Records received, by TR id (``H0STCNI9`` on paper notices).
    records: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Sessions that ended and were followed by a reconnect, by why they ended: ``dropped`` (no
    #: close frame), ``closed`` (by the server), ``silent`` (no data, not even PINGPONG), ``in_use``
    #: (OPSP8996), ``invalid_approval`` (OPSP0011), ``refused``, ``dns``, ``tls``, ``timeout``
    #: (connecting), ``approval`` (the key could not be fetched) or ``other``.
    reconnects: dict[str, int] = dataclasses.field(default_factory=dict)
    #: WebSocket sessions opened (handshakes completed).
    connects: int = 0
    #: Messages that could not be decoded (`UndecodableMessage`).
    decode_failures: int = 0
    #: Records of a width no known layout has (`LayoutDrift` reports).
    layout_drift: int = 0
    #: Records dropped because the application fell behind (`EventsDropped`).
    dropped: int = 0
    #: Subscriptions the server refused.
    refused: int = 0
    #: True while a session is open.
    connected: bool = False
    #: Registrations the server holds now.
    subscriptions: int = 0


class FeedCore:
    """The state of one feed across its connections. Pure; the transport drives it.

    Per connection: `open(now)` gives the `KISConnection` to drive (subscriptions restored on it);
    after each call into that connection, `collect(now)` moves its events into the buffer; when
    it is over, `lost(now)` says whether and when to connect again. The application's side is
    `subscribe`, `unsubscribe`, `close` and `next_event`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        config: KISConfig,
        policy: ReconnectPolicy,
        buffer_size: int = 10_000,
        approval_key: str | None = None,
        can_fetch_key: bool = False,
        log: logging.Logger | None = None,
    ) -> None:
        if approval_key is None and not can_fetch_key:
            raise LocalProtocolError("give an approval_key, or credentials to fetch one")
        self.host, self.port, self.config = host, port, config
        self.policy = policy
        self.registry = SubscriptionRegistry(config.max_subscriptions)
        self.buffer = EventBuffer(buffer_size)
        self.conn: KISConnection | None = None
        self.closing = False
        self._key = approval_key
        self._key_at: float | None = None  # when the key in use was fetched (None: given, never renewed)
        self._can_fetch_key = can_fetch_key
        self._last_code: str | None = None
        self._cause: str | None = None  # why the current connection ended, in words
        self._delivered = False  # the current connection delivered a record
        #: Where refusals and server errors are logged at WARNING: the transport's logger.
        self.log = log or logger
        #: Called (by `collect` and `unsubscribe`) when tickets were answered or released: the
        #: transport wakes whoever waits on `Subscription.wait`.
        self.on_answer: Callable[[], None] | None = None
        self._tickets: dict[tuple[str, str], list[Subscription]] = {}
        self._acks: dict[tuple[str, str], Subscribed] = {}
        #: What the feed has seen, for metrics.
        self.counters = FeedCounters()
        self._reason: str | None = None  # the current connection's end, as a `reconnects` label

    def __repr__(self) -> str:
        state = self.conn.state.value if self.conn is not None else "between connections"
        return f"<FeedCore {self.host}:{self.port} {state} {self.registry!r}>"

    # -- the approval key -----------------------------------------------------------------------------
    @property
    def approval_key(self) -> str | None:
        """The key to connect with, or None when the transport must fetch one first."""
        return self._key

    def set_approval_key(self, key: str, now: float | None = None) -> None:
        """The transport fetched a key at `now` (its age decides `renew_at`); an open connection
        uses it for its requests from now on."""
        self._key = key
        self._key_at = now
        if self.conn is not None and self._usable():
            self.conn.set_approval_key(key)

    def renew_at(self) -> float | None:
        """When the key in use must be fetched again (`KISConfig.approval_key_renew_after` after it
        was fetched); None for a key the application gave, which the feed cannot renew."""
        if not self._can_fetch_key or self._key_at is None or self._key is None:
            return None
        return self._key_at + self.config.approval_key_renew_after

    def key_is_due(self, now: float) -> bool:
        """True when the transport should fetch a key before connecting: none yet, or an old one."""
        if self._key is None:
            return True
        due = self.renew_at()
        return due is not None and now >= due

    # -- one connection ----------------------------------------------------------------------------
    def open(self, now: float) -> KISConnection:
        """A new connection for a fresh socket, with every wanted subscription queued on it."""
        if self._key is None:
            raise LocalProtocolError("no approval key yet: fetch one and call set_approval_key first")
        conn = KISConnection(
            approval_key=self._key, host=self.host, port=self.port, now=now, config=self.config
        )
        for tr_id, tr_key in self.registry.to_restore():
            conn.subscribe(tr_id, tr_key, now=now)
            self.registry.mark_sent(tr_id, tr_key)
        self.conn = conn
        self._last_code = self._cause = self._reason = None
        self._delivered = False
        return conn

    def collect(self, now: float) -> bool:
        """Move the connection's events into the buffer, updating the registry; True if any.

        It may queue bytes (a close after ``invalid approval`` or ``ALREADY IN USE appkey``):
        flush the connection after calling it.
        """
        conn = self.conn
        if conn is None:
            return False
        events = conn.events()
        registry = self.registry
        counters = self.counters
        records = counters.records
        for event in events:
            kind = type(event)
            if kind in _BOOKKEEPING:  # one set lookup lets records through untouched
                if isinstance(event, Connected):
                    self.policy.connected(now)
                    counters.connects += 1
                    counters.connected = True
                elif isinstance(event, Subscribed):
                    registry.on_subscribed(event.tr_id, event.tr_key)
                    self._answered(event)
                    counters.subscriptions = len(registry.active())
                elif isinstance(event, SubscribeFailed):
                    if not event.timed_out:  # a timeout leaves it pending: restored on reconnect
                        registry.on_failed(event.tr_id, event.tr_key, event.msg_cd)
                        counters.refused += event.msg_cd != MsgCode.UNSUBSCRIBE_NOT_FOUND
                    self._report(event)
                    if event.msg_cd != MsgCode.UNSUBSCRIBE_NOT_FOUND:  # that one answers an unsubscribe
                        self._answered(event)
                elif isinstance(event, Unsubscribed):
                    registry.on_unsubscribed(event.tr_id, event.tr_key)
                    counters.subscriptions = len(registry.active())
                elif isinstance(event, ConnectionClosed):
                    self._cause = self._cause or _close_cause(event)
                    self._reason = self._reason or _close_label(event)
                    counters.connected = False
                    counters.subscriptions = 0
                elif isinstance(event, ServerError):
                    self._report(event)
                    self._last_code = event.msg_cd
                    if event.code in _SESSION_ENDERS:
                        self._cause = f"{event.msg_cd} {event.code.text if event.code else event.message}"
                        self._reason = _SESSION_ENDER_LABELS.get(event.code, "other")
                    if event.code in _SESSION_ENDERS and self.conn is not None:
                        # The session is useless now (a stale key, or another client holds the
                        # appkey): close it so the policy decides what comes next.
                        self.conn.close(now=now)
            elif kind in _COUNTED:
                if kind is UndecodableMessage:
                    counters.decode_failures += 1
                elif kind is LayoutDrift:
                    counters.layout_drift += 1
            else:  # a record: the one line every record pays for its count
                tr_id = event._tr_id  # type: ignore[union-attr]
                records[tr_id] = records.get(tr_id, 0) + 1
            self.buffer.put(event)
        if not self._delivered and any(isinstance(event, Record) for event in events):
            # The first record of this connection: it works, so it ends any failure streak. After
            # the loop: the handshake's `Connected` may come in the same read as the first record,
            # and the policy hears of the connection before its first delivery.
            self._delivered = True
            self.policy.delivered()
        return bool(events)

    def lost(self, now: float, error: BaseException | None = None) -> ReconnectDecision | None:
        """The connection is over (or never came up): the decision, or None when closing.

        `error` is what the transport caught when there was no connection to end (the socket
        could not be opened, the approval key could not be fetched): it names the cause. A
        decision with a delay is also announced in the buffer as `Reconnecting`.
        """
        self.conn = None
        self.counters.connected = False
        self.counters.subscriptions = 0
        if self.closing:
            return None
        self.registry.connection_lost()
        cause = self._cause if error is None else self.failure_cause(error)
        reason = (self._reason or "other") if error is None else failure_label(error)
        decision = self.policy.disconnected(now, msg_cd=self._last_code, cause=cause)
        self._last_code = self._cause = self._reason = None
        self._delivered = False
        if decision.delay is not None:
            reconnects = self.counters.reconnects
            reconnects[reason] = reconnects.get(reason, 0) + 1
            if decision.refresh_approval_key and self._can_fetch_key:
                self._key = None
            self.buffer.put(
                Reconnecting(attempt=decision.attempt, delay=decision.delay, reason=decision.reason)
            )
        return decision

    def failure_cause(self, error: BaseException) -> str:
        """Why this feed could not connect (or fetch its approval key), in a few words."""
        if isinstance(error, ApprovalError):  # its text says what the approval endpoint answered
            return str(error)
        return connect_failure(error, self.host, self.port)

    # -- the application's side ---------------------------------------------------------------------
    def subscribe(self, tr_id: str, keys: str | Iterable[str], now: float) -> None:
        """Want (tr_id, key) for each key; requested now if connected, else on the next connection."""
        for key in [keys] if isinstance(keys, str) else list(keys):
            if self.registry.add(tr_id, key) and self._usable():
                assert self.conn is not None
                self.conn.subscribe(tr_id, key, now=now)
                self.registry.mark_sent(tr_id, key)

    def track(self, ticket: Subscription) -> None:
        """Answer `ticket` now if the server holds its key, else with the next answer for the key."""
        key = (ticket.tr_id, ticket.tr_key)
        ack = self._acks.get(key)
        if ack is not None and self.registry.state(*key) is SubState.ACTIVE:
            ticket._answer = ack
        else:
            self._tickets.setdefault(key, []).append(ticket)

    def unsubscribe(self, tr_id: str, keys: str | Iterable[str], now: float) -> None:
        """Stop wanting (tr_id, key) for each key; released on the server if it holds it."""
        released = False
        for key in [keys] if isinstance(keys, str) else list(keys):
            self._acks.pop((tr_id, key), None)
            for ticket in self._tickets.pop((tr_id, key), ()):
                ticket._released = released = True
            if self.registry.remove(tr_id, key) and self._usable():
                assert self.conn is not None
                try:
                    self.conn.unsubscribe(tr_id, key, now=now)
                except LocalProtocolError:
                    continue  # this connection never registered it: nothing to release
        if released and self.on_answer is not None:
            self.on_answer()

    def close(self, now: float) -> None:
        """Stop reconnecting and close the current connection cleanly."""
        self.closing = True
        if self.conn is not None:
            self.conn.close(now=now)

    def next_event(self) -> FeedEvent | None:
        """The next event for the application, or None when the buffer is empty."""
        event = self.buffer.get()
        if type(event) is EventsDropped:
            _log_drop(event)
            self.counters.dropped += event.count
        return event

    def drain(self) -> list[FeedEvent]:
        """Every event waiting for the application, in order."""
        dropped = self.buffer.dropped
        events = self.buffer.drain()
        if dropped:
            for event in events:
                if isinstance(event, EventsDropped):
                    _log_drop(event)
                    self.counters.dropped += event.count
        return events

    def _answered(self, event: Subscribed | SubscribeFailed) -> None:
        """The server answered a subscribe request: remember an ack, answer the waiting tickets."""
        key = (event.tr_id, event.tr_key)
        if isinstance(event, Subscribed):
            if key not in self.registry:
                return  # a late ack for a key removed since: no ticket waits for it
            self._acks[key] = event
        tickets = self._tickets.pop(key, None)
        if tickets:
            for ticket in tickets:
                ticket._answer = event
            if self.on_answer is not None:
                self.on_answer()

    def _report(self, event: SubscribeFailed | ServerError) -> None:
        """A refusal or a server error must not pass silently: WARNING on the transport's logger."""
        key = f"{event.tr_id} {shown_key(event.tr_id, event.tr_key)}"
        if isinstance(event, ServerError):
            where = f" (about {key})" if event.tr_id and event.tr_id != "(null)" else ""
            self.log.warning("KIS server error %s: %s%s", event.msg_cd, event.message, where)
        elif event.timed_out:
            self.log.warning(
                "no answer from KIS to the subscription of %s: %s; it is requested again on the next "
                "connection",
                key,
                event.message,
            )
        elif event.msg_cd == MsgCode.UNSUBSCRIBE_NOT_FOUND:
            self.log.warning("KIS did not hold %s when asked to release it: %s", key, event.message)
        else:
            hint = " (not a real-time TR id KIS knows)" if event.code is MsgCode.INVALID_TR_ID else ""
            self.log.warning(
                "KIS refused the subscription of %s%s: %s %s; it is not retried until subscribed again",
                key,
                hint,
                event.msg_cd,
                event.message,
            )

    def _usable(self) -> bool:
        conn = self.conn
        return conn is not None and conn.state in (ConnState.CONNECTING, ConnState.OPEN)


def _underlying(error: BaseException) -> BaseException:
    """anyio and asyncio wrap the attempts' errors ("All connection attempts failed"): the first
    underlying one says more."""
    while isinstance(error.__cause__, BaseException) and str(error).startswith("All connection attempts"):
        cause = error.__cause__
        error = cause.exceptions[0] if isinstance(cause, BaseExceptionGroup) else cause
    return error


def failure_label(error: BaseException) -> str:
    """What kind of failure kept a feed from connecting: ``approval``, ``refused``, ``dns``,
    ``tls``, ``timeout``, ``other`` (`FeedCounters.reconnects`; `connect_failure` words it).

    Decided by the exception's type (and its module, for ``socket.gaierror`` and ``ssl`` errors,
    which the core does not import).
    """
    if isinstance(error, ApprovalError):
        return "approval"
    error = _underlying(error)
    module, name = type(error).__module__, type(error).__name__
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if name == "gaierror":
        return "dns"
    if module == "ssl" or name.startswith("SSL"):
        return "tls"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "other"


def connect_failure(error: BaseException, host: str, port: int) -> str:
    """A failure to reach `host:port` in a few words: refused, DNS, TLS, a timeout.

    Both transports word their connection and approval-key failures with it.
    """
    where = f"{host}:{port}"
    error = _underlying(error)
    kind = "other" if isinstance(error, ApprovalError) else failure_label(error)
    if kind == "refused":
        return f"connection refused by {where} (nothing listens there?)"
    if kind == "dns":
        return f"cannot resolve {host} (DNS): {getattr(error, 'strerror', None) or error}"
    if kind == "tls":
        return f"TLS failed with {host}: {error}"
    if kind == "timeout":
        return f"no answer from {where} in time"
    if isinstance(error, OSError):
        return f"cannot connect to {where}: {error.strerror or error}"
    return str(error) or type(error).__name__


def _close_label(event: ConnectionClosed) -> str:
    """How a connection ended, as a `FeedCounters.reconnects` label."""
    if event.code == ABNORMAL:
        return "dropped"  # no close frame: the socket broke or was cut
    if event.code == INTERNAL_ERROR and not event.by_peer:
        return "silent"  # our liveness check: no data, not even PINGPONG
    return "closed" if event.by_peer else "other"


def _close_cause(event: ConnectionClosed) -> str:
    """Why a connection ended, from its last event: who closed it, with which code and why."""
    if event.by_peer:
        text = f"closed by the server with code {event.code}"
        return f"{text}: {event.reason}" if event.reason else text
    return f"{event.reason} ({event.code})" if event.reason else f"closed with code {event.code}"


#: Subscribe and unsubscribe requests per second a feed sends by default (KIS's own client's pace).
REQUEST_RATE = 20.0
#: ... and on paper trading (모의투자), where KIS's own client goes ten times slower.
PAPER_REQUEST_RATE = 2.0


def split_ws_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a ``ws://host:port/path`` URL (KIS serves plain ws only)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme != "ws":
        raise LocalProtocolError(f"the KIS real-time URL is plain ws://host:port, not {url!r}")
    authority, slash, path = (rest if sep else url).partition("/")
    if authority.startswith("["):  # an IPv6 literal: [::1]:21000
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        raise LocalProtocolError(f"the KIS real-time URL is plain ws://host:port, not {url!r}")
    port = int(port_text) if port_text else 80
    if not 0 < port < 65536:
        raise LocalProtocolError(f"the port of {url!r} is not 1 to 65535: KIS serves ws://host:port")
    return host, port, (slash + path) or "/tryitout"


def feed_core(
    url: str | None,
    *,
    credentials: Credentials | None,
    approval_key: str | None,
    config: KISConfig | None,
    policy: ReconnectPolicy,
    buffer_size: int,
    log: logging.Logger | None = None,
) -> FeedCore:
    """The `FeedCore` for a transport's ``connect(...)`` arguments, checked the same way by both.

    The URL defaults to the credentials' environment; the config takes the URL's path, the
    credentials' custtype and, unless it sets one, the pace of KIS's own client for subscribe
    requests (`REQUEST_RATE`, `PAPER_REQUEST_RATE` on paper). Raises `LocalProtocolError` when there is no way to the server or no
    way to an approval key. `log` is the transport's logger, for refusals and server errors.
    """
    if url is None:
        if credentials is None:
            raise LocalProtocolError(
                "give a url (e.g. the simulator's) or credentials to pick the KIS server"
            )
        url = credentials.endpoint.ws_url
    if approval_key is None and credentials is None:
        raise LocalProtocolError("give credentials (to fetch an approval key) or an approval_key")
    host, port, path = split_ws_url(url)
    config = config or KISConfig(custtype=credentials.custtype if credentials else "P")
    if config.path != path:
        config = dataclasses.replace(config, path=path)
    if config.request_rate is None:  # KIS's own client's pace: 20 requests/s, 2/s on paper
        paper = credentials is not None and credentials.env == "paper"
        config = dataclasses.replace(config, request_rate=PAPER_REQUEST_RATE if paper else REQUEST_RATE)
    return FeedCore(
        host=host,
        port=port,
        config=config,
        policy=policy,
        buffer_size=buffer_size,
        approval_key=approval_key,
        can_fetch_key=credentials is not None,
        log=log,
    )
