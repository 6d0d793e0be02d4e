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

from ._buffer import EventBuffer, EventsDropped, FeedEvent, Reconnecting
from ._codes import MsgCode
from ._connection import ConnState, KISConfig, KISConnection
from ._errors import LocalProtocolError
from ._events import Connected, ConnectionClosed, ServerError, Subscribed, SubscribeFailed, Unsubscribed
from ._fields import Record
from ._subscriptions import SubscriptionRegistry

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._approval import Credentials
    from ._reconnect import ReconnectDecision, ReconnectPolicy

__all__ = ["FeedCore", "feed_core", "split_ws_url"]

logger = logging.getLogger("kis_proto.feed")


def _log_drop(event: EventsDropped) -> None:
    logger.warning(
        "the application fell behind: %d market-data records dropped, oldest first "
        "(notices are never dropped; raise buffer_size or consume faster)",
        event.count,
    )


_SESSION_ENDERS = frozenset({MsgCode.INVALID_APPROVAL, MsgCode.ALREADY_IN_USE_APPKEY})
_BOOKKEEPING = frozenset(
    {Connected, Subscribed, SubscribeFailed, Unsubscribed, ServerError, ConnectionClosed}
)


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
        self._can_fetch_key = can_fetch_key
        self._last_code: str | None = None
        self._cause: str | None = None  # why the current connection ended, in words
        self._delivered = False  # the current connection delivered a record

    def __repr__(self) -> str:
        state = self.conn.state.value if self.conn is not None else "between connections"
        return f"<FeedCore {self.host}:{self.port} {state} {self.registry!r}>"

    # -- the approval key -----------------------------------------------------------------------------
    @property
    def approval_key(self) -> str | None:
        """The key to connect with, or None when the transport must fetch one first."""
        return self._key

    def set_approval_key(self, key: str) -> None:
        """The transport fetched a key."""
        self._key = key

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
        self._last_code = self._cause = None
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
        if not self._delivered and any(isinstance(event, Record) for event in events):
            # The first record of this connection: it works, so it ends any failure streak.
            self._delivered = True
            self.policy.delivered()
        for event in events:
            if type(event) in _BOOKKEEPING:  # one set lookup lets records through untouched
                if isinstance(event, Connected):
                    self.policy.connected(now)
                elif isinstance(event, Subscribed):
                    registry.on_subscribed(event.tr_id, event.tr_key)
                elif isinstance(event, SubscribeFailed):
                    if not event.timed_out:  # a timeout leaves it pending: restored on reconnect
                        registry.on_failed(event.tr_id, event.tr_key, event.msg_cd)
                elif isinstance(event, Unsubscribed):
                    registry.on_unsubscribed(event.tr_id, event.tr_key)
                elif isinstance(event, ConnectionClosed):
                    self._cause = self._cause or _close_cause(event)
                elif isinstance(event, ServerError):
                    self._last_code = event.msg_cd
                    if event.code in _SESSION_ENDERS:
                        self._cause = f"{event.msg_cd} {event.code.text if event.code else event.message}"
                    if event.code in _SESSION_ENDERS and self.conn is not None:
                        # The session is useless now (a stale key, or another client holds the
                        # appkey): close it so the policy decides what comes next.
                        self.conn.close(now=now)
            self.buffer.put(event)
        return bool(events)

    def lost(self, now: float, error: BaseException | None = None) -> ReconnectDecision | None:
        """The connection is over (or never came up): the decision, or None when closing.

        `error` is what the transport caught when there was no connection to end (the socket
        could not be opened, the approval key could not be fetched): it names the cause. A
        decision with a delay is also announced in the buffer as `Reconnecting`.
        """
        self.conn = None
        if self.closing:
            return None
        self.registry.connection_lost()
        cause = self._cause if error is None else self.failure_cause(error)
        decision = self.policy.disconnected(now, msg_cd=self._last_code, cause=cause)
        self._last_code = self._cause = None
        self._delivered = False
        if decision.delay is not None:
            if decision.refresh_approval_key and self._can_fetch_key:
                self._key = None
            self.buffer.put(
                Reconnecting(attempt=decision.attempt, delay=decision.delay, reason=decision.reason)
            )
        return decision

    def failure_cause(self, error: BaseException) -> str:
        """A connection failure in a few words: refused, DNS, TLS, a timeout, the approval key.

        Decided by the exception's type (and its module, for ``socket.gaierror`` and ``ssl``
        errors, which the core does not import).
        """
        where = f"{self.host}:{self.port}"
        # anyio and asyncio wrap the attempts' errors ("All connection attempts failed"): the
        # first underlying one says more.
        while isinstance(error.__cause__, BaseException) and str(error).startswith("All connection attempts"):
            cause = error.__cause__
            error = cause.exceptions[0] if isinstance(cause, BaseExceptionGroup) else cause
        module, name = type(error).__module__, type(error).__name__
        if isinstance(error, ConnectionRefusedError):
            return f"connection refused by {where} (nothing listens there?)"
        if name == "gaierror":
            return f"cannot resolve {self.host} (DNS): {getattr(error, 'strerror', None) or error}"
        if module == "ssl" or name.startswith("SSL"):
            return f"TLS failed with {self.host}: {error}"
        if isinstance(error, TimeoutError):
            return f"connecting to {where} timed out"
        if isinstance(error, OSError):
            return f"cannot connect to {where}: {error.strerror or error}"
        return str(error) or name

    # -- the application's side ---------------------------------------------------------------------
    def subscribe(self, tr_id: str, keys: str | Iterable[str], now: float) -> None:
        """Want (tr_id, key) for each key; requested now if connected, else on the next connection."""
        for key in [keys] if isinstance(keys, str) else list(keys):
            if self.registry.add(tr_id, key) and self._usable():
                assert self.conn is not None
                self.conn.subscribe(tr_id, key, now=now)
                self.registry.mark_sent(tr_id, key)

    def unsubscribe(self, tr_id: str, keys: str | Iterable[str], now: float) -> None:
        """Stop wanting (tr_id, key) for each key; released on the server if it holds it."""
        for key in [keys] if isinstance(keys, str) else list(keys):
            if self.registry.remove(tr_id, key) and self._usable():
                assert self.conn is not None
                try:
                    self.conn.unsubscribe(tr_id, key, now=now)
                except LocalProtocolError:
                    continue  # this connection never registered it: nothing to release

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
        return event

    def drain(self) -> list[FeedEvent]:
        """Every event waiting for the application, in order."""
        dropped = self.buffer.dropped
        events = self.buffer.drain()
        if dropped:
            for event in events:
                if isinstance(event, EventsDropped):
                    _log_drop(event)
        return events

    def _usable(self) -> bool:
        conn = self.conn
        return conn is not None and conn.state in (ConnState.CONNECTING, ConnState.OPEN)


def _close_cause(event: ConnectionClosed) -> str:
    """Why a connection ended, from its last event: who closed it, with which code and why."""
    if event.by_peer:
        text = f"closed by the server with code {event.code}"
        return f"{text}: {event.reason}" if event.reason else text
    return f"{event.reason} ({event.code})" if event.reason else f"closed with code {event.code}"


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
    return host, int(port_text) if port_text else 80, (slash + path) or "/tryitout"


def feed_core(
    url: str | None,
    *,
    credentials: Credentials | None,
    approval_key: str | None,
    config: KISConfig | None,
    policy: ReconnectPolicy,
    buffer_size: int,
) -> FeedCore:
    """The `FeedCore` for a transport's ``connect(...)`` arguments, checked the same way by both.

    The URL defaults to the credentials' environment; the config takes the URL's path and the
    credentials' custtype. Raises `LocalProtocolError` when there is no way to the server or no
    way to an approval key.
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
    return FeedCore(
        host=host,
        port=port,
        config=config,
        policy=policy,
        buffer_size=buffer_size,
        approval_key=approval_key,
        can_fetch_key=credentials is not None,
    )
