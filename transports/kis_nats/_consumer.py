"""The gateway's consumer: a `Feed` over NATS with the face of `kis_asyncio.Feed`, and `WSClient`.

``async with kis_nats.connect("nats://host:4222", env="real") as feed:``, then
``await feed.subscribe("H0STCNT0", "005930")`` and ``async for event in feed`` — the same code as
against KIS directly, but the KIS session is the gateway's, shared with every other consumer.

What it does, by the contract of docs/gateway.md:

* ``subscribe`` listens on the data subject, then asks the gateway (``kis.<env>.ctl.subscribe``)
  to place the key on a KIS session. The gateway's refusal (capacity, invalid, …) answers the
  returned ticket and is a `SubscribeFailed` event in the feed, as KIS's refusals are.
* Each message is one record; its payload is decoded into the record class of its width's era
  by kis_proto's own decoder, with a `LayoutDrift` event once per (TR, width) no era has.
* A gap in the ``seq`` of ``Kis-Meta`` (messages lost between the gateway and this process, e.g. while NATS was
  away) is an `EventsDropped` event with the number lost; the feed's own bounded buffer drops the
  oldest market data when the application falls behind and reports it the same way.
* What it is given is checked (behind the NATS permissions, which are the real guard): a message
  on another subject than the one subscribed, without a well-formed ``Kis-Meta``, from a gateway
  that no control reply named, or with a ``seq`` jump no gateway could make is not delivered as
  KIS's; `Feed.rejected` counts them and the first of each kind is logged.
* The demand is a lease: a heartbeat renews it every third of the lease (the smaller of
  `lease` and the gateway's). After a NATS reconnect, or when the gateway comes back or changes
  (a standby took over), every subscription is requested again.
* The NATS connection going away and coming back are `Reconnecting` and `Connected` events;
  `aclose` ends the feed with `ConnectionClosed`.
* Execution notices come from the JetStream stream of their HTS ID (``KIS_NOTICES_<ENV>_<ID>``)
  through a pull consumer the gateway makes on request, durable when `notices_durable` is given
  (a consumer that was down gets every notice it missed), ephemeral otherwise. A notice is
  acknowledged when the feed hands it to the application; one still waiting in the feed when the
  feed closes is given back (a negative ack) and comes first to the durable consumer's next run.
* NATS credentials: ``nats_creds`` (a credential file of the gateway's roles, or a NATS ``.creds``
  file), else the local consumer credential of ``kis-ws gateway`` for a NATS on this machine
  (`kis_nats.discover`); ``tls`` for a TLS connection.

asyncio only: nats-py runs on asyncio (under trio, use kis_anyio against KIS, or a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import secrets
import socket
import ssl
import time
from collections import deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, overload

import nats
import nats.aio.client
import nats.errors
import nats.js.errors
from kis_asyncio import workers

from kis_proto import (
    Connected,
    ConnectionClosed,
    Credentials,
    DecodeFailure,
    Event,
    EventsDropped,
    FeedEvent,
    LocalProtocolError,
    MessageDecoder,
    Reconnecting,
    SubscribeFailed,
    SubscriptionError,
    UndecodableMessage,
)
from kis_proto.bars import TRADE_TRS, Bar, parse_interval
from kis_proto.feed import Callback, CallbackClient, EventBuffer, SyncCallbacks, Workers, check_subscription
from kis_proto.layouts import tr_spec

from ._auth import CredentialError, NatsCredential, default_state_dir, discover, read_credential
from .subjects import (
    H_META,
    bar_subject,
    ctl_subject,
    data_subject,
    interval_token,
    meta_sequence,
    notice_stream,
    notice_subject,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from nats.aio.client import Client as NATSClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NATSSubscription
    from nats.js import JetStreamContext

    from kis_proto.feed import ErrorCallback

__all__ = [
    "DEFAULT_URL",
    "Feed",
    "GatewayForbiddenError",
    "GatewayRefusedError",
    "GatewaySubscription",
    "GatewayUnavailableError",
    "WSClient",
    "connect",
    "login",
    "open_feed",
]

T = TypeVar("T")

logger = logging.getLogger("kis_nats")

#: Where `connect` looks when given no URL: the gateway's embedded server on this machine.
DEFAULT_URL = "nats://127.0.0.1:4222"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}\Z")
# How long one pull request for notices waits on the server before the next one is sent; closing
# waits for the one in flight (see `Feed._give_back_notices`).
_PULL_WAIT = 1.0
_USERINFO = re.compile(r"(?<=//)[^/@]*@")
# nats.connect options the feed sets itself: its state events and reconnect settings hang on them.
_OURS = frozenset(
    {"servers", "disconnected_cb", "reconnected_cb", "closed_cb", "error_cb", "max_reconnect_attempts"}
    | {"reconnect_time_wait", "allow_reconnect"}
)
# nats.connect options that log in: given any, the feed looks for no credential of its own.
_AUTH_OPTIONS = frozenset({"user", "password", "token", "user_credentials", "nkeys_seed", "nkeys_seed_str"})
#: What nats-py reports as an error when the connection goes away (`_on_disconnected` says that).
_CONNECTION_LOST = (nats.errors.StaleConnectionError, ConnectionResetError, BrokenPipeError)
# A seq jump is believed up to this many messages, plus this many per second since the subject's
# last message: a NATS outage of an hour on the busiest key stays within it, seq=10^9 does not.
_GAP_BASE, _GAP_RATE = 10_000, 100_000
# Messages of a gateway no control reply has named yet, held until one does (then delivered or
# rejected): a standby that took over may publish before this feed has heard from it.
_UNCONFIRMED_MAX = 10_000
#: The longest one try of a control request waits for its answer (`Feed._control` tries again).
_ATTEMPT = 2.0
#: Bars waiting for `Feed.bars` to take them; past it the oldest go (counted in `Feed.bars_lost`).
_BARS_MAX = 10_000
#: Notices remembered as handed to the application (their stream sequences), against redeliveries.
_HANDED_MAX = 10_000
_NOTICE_TRS = {"domestic": ("H0STCNI0", "H0STCNI9"), "overseas": ("H0GSCNI0", "H0GSCNI9")}


class GatewayUnavailableError(ConnectionError):
    """No gateway answered a control request in time: none runs on this NATS and env, or only a standby."""


class GatewayForbiddenError(ConnectionError):
    """NATS refused this client something its credential's role does not allow; the text names the subject.

    E.g. a read-only credential sending a control request, or a consumer credential reading notices:
    connect with the credential of the role that may (docs/gateway.md, "Roles and permissions").
    """


class GatewayRefusedError(SubscriptionError):
    """The gateway refused a subscription; `error` is its code, `event` the `SubscribeFailed`.

    Codes (docs/gateway.md): ``capacity`` (every KIS session is full), ``invalid`` (an unknown TR
    or a malformed key), ``refused`` (KIS refused it: the message has the OPSP code),
    ``bad_request``, ``standby``; ``bad_reply`` when the reply was not the contract's JSON.
    A `SubscriptionError`, so code written for a direct KIS feed catches it unchanged.
    """

    def __init__(self, event: SubscribeFailed) -> None:
        super().__init__(event)
        key = f"{event.tr_id} {_shown(event.tr_id, event.tr_key)}"
        self.args = (f"the gateway refused {key}: {event.msg_cd}: {event.message}",)

    @property
    def error(self) -> str:
        """The gateway's error code."""
        return self.event.msg_cd


class GatewaySubscription:
    """One (tr_id, key) asked of the gateway with `Feed.subscribe`: its answer, and its release.

    The counterpart of `kis_proto.Subscription`. The gateway answers at once, so the answer is
    known when ``subscribe`` returns: `ok` and `refusal` say which; ``await sub.wait()`` returns
    the ticket or raises `GatewayRefusedError`. Ok means the gateway placed the key on a KIS session;
    KIS's own acknowledgement follows there (a refusal by KIS shows in the gateway's status).
    """

    __slots__ = ("_feed", "every", "refusal", "subject", "tr_id", "tr_key")

    def __init__(
        self,
        feed: Feed,
        tr_id: str,
        tr_key: str,
        subject: str,
        refusal: SubscribeFailed | None = None,
        every: int = 0,
    ) -> None:
        self._feed = feed
        self.tr_id = tr_id
        self.tr_key = tr_key
        #: The NATS subject the records (notices, bars) arrive on.
        self.subject = subject
        #: The gateway's refusal, or None when it placed the key.
        self.refusal = refusal
        #: The bar interval in seconds (`Feed.subscribe_bars`); 0 for records and notices.
        self.every = every

    def __repr__(self) -> str:
        state = "placed" if self.refusal is None else f"refused {self.refusal.msg_cd}"
        bars = f" bars every {interval_token(self.every)}" if self.every else ""
        return f"<GatewaySubscription {self.tr_id} {_shown(self.tr_id, self.tr_key)}{bars} {state}>"

    @property
    def ok(self) -> bool:
        """True when the gateway placed the key."""
        return self.refusal is None

    async def wait(self) -> GatewaySubscription:
        """This ticket when the gateway placed the key; raises `GatewayRefusedError` when it refused it."""
        if self.refusal is not None:
            raise GatewayRefusedError(self.refusal)
        return self

    async def unsubscribe(self) -> None:
        """Release the key (the same as the feed's ``unsubscribe``, or ``unsubscribe_bars``)."""
        if self.every:
            await self._feed.unsubscribe_bars(self.tr_id, self.tr_key, every=self.every)
        else:
            await self._feed.unsubscribe(self.tr_id, self.tr_key)


#: The kinds of message `Feed` does not deliver, as its log line names them.
_REJECTIONS = {
    "subject": "not on a subject this feed subscribed, or a JetStream delivery",
    "meta": f"no well-formed {H_META} header",
    "gateway": "from a gateway that is not the one serving this feed",
    "seq": "a seq jump no gateway can make",
    "notice": "a notice the gateway did not publish",
    "bar": "a bar message that is not the contract's JSON",
}


def _is_notice(tr_id: str) -> bool:
    spec = tr_spec(tr_id)
    return spec is not None and spec.encrypted


def _shown(tr_id: str, key: str) -> str:
    """A key as logs show it: an HTS ID (the key of notices) masked."""
    return key[:2] + "***" if _is_notice(tr_id) else key


def _shown_url(url: str) -> str:
    """A NATS URL without its user and password."""
    return _USERINFO.sub("", url)


def _default_client() -> str:
    """A client id that reads well in the gateway's status: host, process, and a random suffix."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def _parse_reply(data: bytes, *, need_ok: bool = True) -> dict[str, Any]:
    """A control reply as a dict with a bool ``ok``; anything else becomes a ``bad_reply`` refusal.

    The status reply of the contract has no ``ok``: `need_ok` False takes any JSON object.
    """
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict) or (need_ok and not isinstance(reply.get("ok"), bool)):
        shown = data[:200].decode("utf-8", errors="replace")
        return {"ok": False, "error": "bad_reply", "message": f"not a reply of the contract: {shown!r}"}
    return reply


class _Want:
    """One key this feed wants: where it arrives, and the NATS (or JetStream) subscription reading it."""

    __slots__ = ("consumer", "every", "key", "notice", "puller", "stream", "sub", "subject", "tr_id", "wire")

    def __init__(self, tr_id: str, key: str, subject: str, notice: bool, every: int = 0) -> None:
        self.tr_id = tr_id
        #: Bars of this interval (seconds) the gateway computes; 0: records or notices.
        self.every = every
        self.key = key
        self.subject = subject
        #: The subject as the NATS protocol carries it (what `_Client` dispatches on).
        self.wire = subject.encode()
        self.notice = notice
        self.sub: NATSSubscription | JetStreamContext.PullSubscription | None = None
        #: The task fetching notices (notice keys only).
        self.puller: asyncio.Task[None] | None = None
        #: Notice keys: the stream, and the pull consumer the gateway made there.
        self.stream: str | None = None
        self.consumer: str | None = None


#: A data message's header block as the gateway writes it: this, the value, an empty line.
_META_BLOCK = f"NATS/1.0\r\n{H_META}: ".encode()
_META_END = b"\r\n\r\n"


def _direct_ok() -> bool:
    """Does this nats-py hand messages to ``Client._process_msg`` as 2.16 does (`_Client` needs it)?"""
    method = getattr(nats.aio.client.Client, "_process_msg", None)
    if not inspect.iscoroutinefunction(method):
        return False
    names = list(inspect.signature(method).parameters)
    return names == ["self", "sid", "subject", "reply", "data", "headers"] and hasattr(
        nats.aio.client.Client(), "_subs"
    )


class _Client(nats.aio.client.Client):
    """nats-py's client, with a short way for the feed's data messages (docs/decisions.md).

    nats-py's parser hands every message to ``_process_msg``, which parses its header block into a
    dict, builds a ``Msg``, queues it and wakes the subscription's task to call its callback:
    half of what a typed record cost this process. A data subject of the feed registered in
    `direct` is handled right there instead, by a function that reads the one ``Kis-Meta`` header
    of the gateway's messages from the header block; anything it does not take (another header
    block: a forgery, a later gateway's) goes the whole way, to the subscription's callback, which
    checks it as before. `_process_msg` is nats-py's, not its public API: `_direct_ok` checks its
    shape once, and without it the feed uses the callbacks alone.
    """

    def __init__(self) -> None:
        super().__init__()
        #: Data subjects (as the protocol carries them) -> their handler.
        self.direct: dict[bytes, Callable[[bytes, bytes, bytes, bytes | None], bool]] = {}

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self.direct.get(subject)
        if handler is not None and sid in self._subs and handler(subject, reply, data, headers):
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            return
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]


_DIRECT = _direct_ok()


class _Held(NamedTuple):
    """A message of a gateway no control reply has named yet."""

    subject: str
    tr_id: str
    data: bytes
    gateway: str
    seq: int


class Feed:
    """Records from the gateway over NATS: the face of `kis_asyncio.Feed`. Made by `connect`.

    ``await feed.subscribe(tr_id, key_or_keys)``, ``await feed.unsubscribe(...)``,
    ``await feed.subscribe_notices(hts_id)``, ``async for event in feed``, ``feed.batches()``,
    ``await feed.aclose()``; ``await feed.status()`` is the gateway's status.
    """

    def __init__(
        self,
        *,
        url: str | Sequence[str],
        env: str,
        client: str,
        lease: float,
        buffer_size: int,
        notices_durable: str | None,
        credentials: Credentials | None,
        retry_delay: float,
        request_timeout: float,
    ) -> None:
        self.env = env
        #: This consumer's id in the gateway's leases and status.
        self.client = client
        self.lease = lease
        self.notices_durable = notices_durable
        #: Messages not delivered as KIS's (a wrong subject, no or a malformed ``Kis-Meta``, an
        #: unknown gateway, an impossible ``seq``): forged, or from something that is not the gateway.
        self.rejected = 0
        self._urls = [url] if isinstance(url, str) else list(url)
        self._credentials = credentials
        self._retry_delay = retry_delay
        self._request_timeout = request_timeout
        # Binds our client id at the gateway: only this process may release our demand. Sent with
        # subscribes and unsubscribes, never with heartbeats.
        self._secret = secrets.token_urlsafe(24)
        self._buffer = EventBuffer(buffer_size)
        self._decoder = MessageDecoder()
        self._nc: NATSClient | None = None
        self._js: JetStreamContext | None = None
        self._wants: dict[tuple[str, str], _Want] = {}
        self._bar_wants: dict[tuple[str, str, int], _Want] = {}
        self._bars: deque[Bar] = deque()
        self._bars_ready = asyncio.Event()
        #: Bars this feed knows it did not deliver: lost on the way (a ``seq`` gap), or dropped
        #: because `bars` was not read (more than 10,000 waiting).
        self.bars_lost = 0
        self._data: dict[str, _Want] = {}  # data subject -> its want: what `_on_data` accepts
        # subject -> (gateway, last seq of Kis-Meta, when it came: time.monotonic())
        self._seq: dict[str, tuple[str, int, float]] = {}
        self._gateway: str | None = None  # the id of the gateway its control replies named
        self._unconfirmed: deque[_Held] = deque()
        self._gateway_lease: float | None = None
        self._stale = False  # the gateway may not know our demand: repeat every subscribe
        self._away = False  # the last heartbeat got no answer
        self._check_consumers = False  # after a NATS reconnect: do the notice consumers still exist?
        self._unacked: dict[int, int] = {}  # id(last event of a notice) -> its stream sequence
        self._unacked_msgs: dict[int, Msg] = {}  # stream sequence -> the message to ack
        # (stream, sequence) of the notices handed to the application, the latest _HANDED_MAX:
        # one delivered again (its ack lost when NATS died) is acked and not handed out twice.
        self._handed: dict[tuple[str, int], None] = {}
        self._denied: set[str] = set()  # subjects NATS refused us (lower case, as nats-py reports them)
        self._denial = asyncio.Event()  # set at each refusal: requests waiting on it look
        self._said: set[str] = set()  # kinds of rejected message already logged
        self._refused_login = False  # NATS said "authorization violation"
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # the lease keeper: act now
        self._finished = asyncio.Event()
        self._closing = False
        self._error: BaseException | None = None
        self._keeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        where = ", ".join(_shown_url(u) for u in self._urls)
        state = "closed" if self._finished.is_set() else "closing" if self._closing else "open"
        return f"<kis_nats.Feed {where} env={self.env} client={self.client} {len(self._wants)} keys, {state}>"

    @property
    def closing(self) -> bool:
        """True once `aclose` was called (or the NATS connection closed for good)."""
        return self._closing or self._finished.is_set()

    @property
    def subscriptions(self) -> list[tuple[str, str]]:
        """Every (tr_id, key) this feed wants, in the order first subscribed."""
        return list(self._wants)

    @property
    def bar_subscriptions(self) -> list[tuple[str, str, int]]:
        """Every (tr_id, key, every) of bars this feed wants (`subscribe_bars`)."""
        return list(self._bar_wants)

    @property
    def gateway(self) -> str | None:
        """The id of the gateway serving this feed, as its control replies name it (None before one)."""
        return self._gateway

    # -- connecting --------------------------------------------------------------------------------
    async def _connect(self, max_retries: int | None, nats_options: Mapping[str, Any]) -> None:
        options: dict[str, Any] = {
            "name": f"kis_nats {self.client}",
            "reconnect_time_wait": self._retry_delay,
            # nats-py's first connect tries until the attempts run out (forever for -1): give it a
            # bound, so a wrong URL is an error at once; reconnects get `max_retries` below.
            "max_reconnect_attempts": 1,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "error_cb": self._on_error,
        }
        options.update(nats_options)
        shown = ", ".join(_shown_url(u) for u in self._urls)
        nc = _Client() if _DIRECT else nats.aio.client.Client()
        try:
            await nc.connect(self._urls, **options)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):  # what a failed connect left open
                # Bounded: nats-py's close waits forever after a failed TLS handshake.
                await asyncio.wait_for(nc.close(), 1.0)
            if self._refused_login or "authorization violation" in str(exc).lower():
                raise GatewayForbiddenError(
                    f"the NATS at {shown} refused this client's credentials (authorization violation): give the "
                    "gateway's consumer credential (nats_creds=, or --nats-creds FILE; on the gateway's machine "
                    f"{default_state_dir() / 'credentials' / 'consumer.json'})"
                ) from None
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise ConnectionError(
                    f"cannot connect to NATS at {shown}: its TLS certificate does not verify ({exc.verify_message}): "
                    "trust the CA that signed it (tls=kis_nats.tls_context(ca=...), or --nats-tls-ca FILE)"
                ) from None
            raise ConnectionError(f"cannot connect to NATS at {shown}: {exc or type(exc).__name__}") from None
        self._nc = nc
        # Read by nats-py at each reconnect (`Client.options` is its public settings dict).
        self._nc.options["max_reconnect_attempts"] = -1 if max_retries is None else max_retries
        self._js = self._nc.jetstream()
        logger.info("connected to NATS at %s as client %s (env %s)", self._server(), self.client, self.env)
        self._put(Connected(path=self._server()))
        self._keeper = asyncio.create_task(self._keep_leases(), name=f"kis_nats lease keeper {self.client}")

    def _server(self) -> str:
        """The NATS server connected to, as ``nats://host:port`` (never with credentials)."""
        url = self._nc.connected_url if self._nc is not None else None
        if url is None:
            return _shown_url(self._urls[0])
        return f"{url.scheme}://{url.hostname}:{url.port}"

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        reason = f"lost the connection to NATS at {self._server()}"
        # INFO, as kis_asyncio's reconnects: the `Reconnecting` event says it to the application.
        logger.info("%s; reconnecting every %.1f s", reason, self._retry_delay)
        self._put(Reconnecting(attempt=1, delay=self._retry_delay, reason=reason))

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS at %s: repeating the subscriptions", self._server())
        self._put(Connected(path=self._server()))
        self._stale = self._check_consumers = True
        self._wake.set()

    async def _on_closed(self) -> None:
        if not self._closing:
            self._error = ConnectionError(
                f"the NATS connection to {self._server()} closed for good (reconnecting gave up)"
            )
            logger.error("%s", self._error)
            self._closing = True
            self._finish()

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        if self._nc is None and isinstance(exc, ssl.SSLError):
            # A certificate that does not verify will not verify on the next try either, and
            # nats-py would try forever (the TCP connect succeeds): end the first connect now.
            raise exc
        if isinstance(exc, nats.errors.SlowConsumerError):
            logger.warning("NATS dropped messages of %s: this process reads too slowly", exc.subject)
        elif "permissions violation" in text.lower():
            # nats-py reports it lower-cased: 'nats: permissions violation for publish to "kis.sim.ctl.x"'
            subject = text.rsplit(" ", 1)[-1].strip("'\"")
            if subject not in self._denied:
                logger.warning(
                    "NATS refused this client %s: the role of its credential does not allow it", text[6:]
                )
            self._denied.add(subject)
            self._denial.set()
        elif "authorization violation" in text.lower():
            self._refused_login = True
            if self._nc is not None:  # at a reconnect: the server's users changed under us
                logger.warning(
                    "NATS at %s refused this client's credentials (authorization violation)", self._server()
                )
        elif self._nc is None or self._nc.is_reconnecting or isinstance(exc, _CONNECTION_LOST):
            # The connection going away is said once, by `_on_disconnected`.
            logger.debug("a NATS connect attempt failed: %s", exc)
        else:
            logger.warning("NATS error: %s", exc or type(exc).__name__)

    async def _guarded(self, subject: str, what: str, action: Awaitable[T]) -> T:
        """`action`, unless NATS refuses `subject` to this client first: then `GatewayForbiddenError`.

        A refused publish is not answered, only reported; without this a request would wait out
        its timeout and then blame the gateway.
        """
        task = asyncio.ensure_future(action)
        lowered = subject.lower()
        try:
            while not task.done():
                if lowered in self._denied:
                    raise GatewayForbiddenError(
                        f"NATS does not let this client {what} ({subject}): its credential's role does not "
                        "allow it; connect with a credential of a role that may (docs/gateway.md, Roles)"
                    )
                self._denial.clear()
                denial = asyncio.ensure_future(self._denial.wait())
                try:
                    await asyncio.wait({task, denial}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    denial.cancel()
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # -- the control requests ----------------------------------------------------------------------
    async def _control(self, verb: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a control request; the reply as a dict (``ok`` a bool).

        No responders, a standby's ``standby`` reply or ``rate_limited`` is retried until `timeout`
        (a gateway starting, a standby taking over, a burst); then `GatewayUnavailableError`.
        A subject this client may not publish raises `GatewayForbiddenError`.
        """
        nc = self._nc
        if nc is None or nc.is_closed:
            raise GatewayUnavailableError("the NATS connection is closed")
        subject = ctl_subject(self.env, verb)
        payload = json.dumps(body).encode()
        loop = asyncio.get_running_loop()
        timeout = self._request_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        why = "no answer"
        while (remaining := deadline - loop.time()) > 0:
            pause = 0.25
            try:
                # Each try waits at most _ATTEMPT: a request sent before the gateway listened, to
                # a subject something else also reads (no "no responders" then), is sent again.
                # Every control request is idempotent at the gateway.
                msg = await self._guarded(
                    subject,
                    f"send {verb} requests",
                    nc.request(subject, payload, timeout=min(remaining, _ATTEMPT)),
                )
            except nats.errors.NoRespondersError:
                why = "no gateway listens there"
            except nats.errors.TimeoutError:
                why = "no answer"
                pause = 0.0
            except nats.errors.Error as exc:
                why = str(exc) or type(exc).__name__
                break
            else:
                reply = _parse_reply(msg.data, need_ok=verb != "status")
                error = reply.get("error")
                if error not in ("standby", "rate_limited"):
                    self._heard_from(reply.get("gateway"))
                    return reply
                if error == "rate_limited":
                    why = "the gateway asked to slow down"
                    wait = reply.get("retry_after")
                    if isinstance(wait, int | float) and not isinstance(wait, bool):
                        pause = min(max(float(wait), 0.01), 5.0)
                else:
                    why = "only a standby gateway answered"
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        raise GatewayUnavailableError(
            f"no gateway answered {subject} within {timeout:.1f} s ({why}): is `kis-ws gateway` running "
            f"for env {self.env!r} on the NATS at {self._server()}?"
        )

    async def status(self) -> dict[str, Any]:
        """The gateway's status reply (sessions, subscriptions, clients, counts; docs/gateway.md).

        The reply of whichever gateway answered first; its ``role`` says which. A reply that is
        not a JSON object comes back as ``{"ok": False, "error": "bad_reply", ...}``.
        """
        self._check_open()
        return await self._control("status", {})

    # -- subscribing -------------------------------------------------------------------------------
    # A str is also an Iterable[str]; the first overload wins for it, as the code does.
    @overload
    async def subscribe(self, tr_id: str, keys: str) -> GatewaySubscription: ...  # type: ignore[overload-overlap]
    @overload
    async def subscribe(self, tr_id: str, keys: Iterable[str]) -> list[GatewaySubscription]: ...
    async def subscribe(
        self, tr_id: str, keys: str | Iterable[str]
    ) -> GatewaySubscription | list[GatewaySubscription]:
        """Subscribe `tr_id` for each key through the gateway; kept across NATS reconnects.

        Returns a `GatewaySubscription` per key (a list for a list of keys). A refusal by the
        gateway answers the ticket (``await sub.wait()`` raises `GatewayRefusedError`) and is a
        `SubscribeFailed` event in the feed; the key is then not wanted any more. A notice TR
        (``H0STCNI0``…, the key your HTS ID) reads the notice stream, as `subscribe_notices`.
        Raises `LocalProtocolError` for a malformed tr_id or key, `GatewayUnavailableError` when no
        gateway answers within the request timeout (the key is then not kept), and
        `GatewayForbiddenError` when this client's credential may not do it.
        """
        self._check_open()
        wanted = [keys] if isinstance(keys, str) else list(keys)
        for key in wanted:
            check_subscription(tr_id, key)
        tickets = [await self._subscribe_one(tr_id, key) for key in wanted]
        return tickets[0] if isinstance(keys, str) else tickets

    async def subscribe_notices(
        self, hts_id: str | None = None, tr_id: str | None = None
    ) -> GatewaySubscription:
        """Your execution notices for `hts_id` (default: the credentials'), from its notice stream.

        `tr_id` defaults to the domestic notice TR of the env (``H0STCNI9`` on paper, else
        ``H0STCNI0``); overseas notices are ``H0GSCNI0`` / ``H0GSCNI9``. With `notices_durable`,
        notices published while this process was down are delivered when it subscribes again.
        The gateway must hold that HTS ID's notices (``--hts-id``) and this client must connect with
        its notice reader credential (``notices-<ID>.json``), else it is refused.
        """
        if hts_id is None:
            if self._credentials is None or self._credentials.hts_id is None:
                raise LocalProtocolError(
                    "give the HTS ID whose notices you want (or Credentials with hts_id)"
                )
            hts_id = self._credentials.hts_id
        tr_id = tr_id or _notice_tr("domestic", self.env)
        if not _is_notice(tr_id):
            raise LocalProtocolError(f"{tr_id} is not an execution-notice TR (H0STCNI0, H0STCNI9, H0GSCNI0…)")
        return await self.subscribe(tr_id, hts_id)

    async def unsubscribe(self, tr_id: str, keys: str | Iterable[str]) -> None:
        """Stop receiving `tr_id` for each key and release it at the gateway.

        A release the gateway does not answer is logged: the lease releases the key anyway. A
        durable notice consumer is kept on the server: it goes on collecting your notices.
        """
        for key in [keys] if isinstance(keys, str) else list(keys):
            want = self._wants.pop((tr_id, key), None)
            if want is None:
                continue
            await self._stop_listening(want)
            await self._release(want, self._request_timeout)

    # A str is also an Iterable[str]; the first overload wins for it, as the code does.
    @overload
    async def subscribe_bars(  # type: ignore[overload-overlap]
        self, tr_id: str, keys: str, *, every: int | str = "1m"
    ) -> GatewaySubscription: ...
    @overload
    async def subscribe_bars(
        self, tr_id: str, keys: Iterable[str], *, every: int | str = "1m"
    ) -> list[GatewaySubscription]: ...
    async def subscribe_bars(
        self, tr_id: str, keys: str | Iterable[str], *, every: int | str = "1m"
    ) -> GatewaySubscription | list[GatewaySubscription]:
        """The gateway's time bars of `tr_id` for each key, every `every` (``"1m"``, ``"30s"``, 60).

        Computed once by the gateway for every consumer that asks, and read from `bars` as typed
        `kis_proto.bars.Bar` objects; leased and kept across NATS reconnects like `subscribe`.
        `tr_id` is a trade TR (``H0STCNT0``…). Raises `LocalProtocolError` for another TR, a bad
        interval or key; a refusal by the gateway answers the ticket, as `subscribe` does.
        """
        self._check_open()
        if tr_id not in TRADE_TRS:
            raise LocalProtocolError(f"bars are made from the trade TRs {', '.join(TRADE_TRS)}, not {tr_id}")
        seconds = parse_interval(every)
        wanted = [keys] if isinstance(keys, str) else list(keys)
        for key in wanted:
            check_subscription(tr_id, key)
        tickets = [await self._subscribe_one(tr_id, key, seconds) for key in wanted]
        return tickets[0] if isinstance(keys, str) else tickets

    async def unsubscribe_bars(
        self, tr_id: str, keys: str | Iterable[str], *, every: int | str = "1m"
    ) -> None:
        """Stop receiving those bars and release them at the gateway (the lease would, too)."""
        seconds = parse_interval(every)
        for key in [keys] if isinstance(keys, str) else list(keys):
            want = self._bar_wants.pop((tr_id, key, seconds), None)
            if want is None:
                continue
            await self._stop_listening(want)
            await self._release(want, self._request_timeout)

    async def bars(self) -> AsyncIterator[Bar]:
        """The bars of `subscribe_bars`, as the gateway publishes them: ``async for bar in feed.bars()``.

        A bar that took late trades comes again with a higher `Bar.revision`. Ends when the feed
        closes. Read it from one task; events (records, reconnects) still come from iterating the feed.
        """
        while True:
            while self._bars:
                yield self._bars.popleft()
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                return
            self._bars_ready.clear()
            await self._bars_ready.wait()

    def _body(self, want: _Want) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tr_id": want.tr_id,
            "tr_key": want.key,
            "client": self.client,
            "secret": self._secret,
        }
        if want.every:
            body["every"] = interval_token(want.every)
        if want.notice and self.notices_durable is not None:
            body["durable"] = self.notices_durable
        return body

    async def _subscribe_one(self, tr_id: str, key: str, every: int = 0) -> GatewaySubscription:
        """Ask the gateway for (tr_id, key): its records, its notices, or (`every` seconds) its bars."""
        notice = not every and _is_notice(tr_id)
        if every:
            subject = bar_subject(self.env, every, tr_id, key)
        else:
            subject = notice_subject(self.env, tr_id, key) if notice else data_subject(self.env, tr_id, key)
        table: dict[Any, _Want] = self._bar_wants if every else self._wants
        slot = (tr_id, key, every) if every else (tr_id, key)
        want = table.get(slot)
        new = want is None
        if want is None:
            want = _Want(tr_id, key, subject, notice, every)
            if not notice:
                # Listen first: the gateway may publish as soon as it has placed the key.
                await self._listen(want)
            table[slot] = want
        try:
            reply = await self._control("subscribe", self._body(want))
            if reply["ok"] and notice and want.sub is None:
                # After the reply: the gateway makes the stream's consumer for us (see `_bind`).
                await self._bind(want, reply)
        except BaseException:
            if new:
                table.pop(slot, None)
                await self._stop_listening(want)
            raise
        if reply["ok"]:
            if reply.get("subject") not in (None, subject):
                logger.warning(
                    "the gateway names %s for %s, the contract %s", reply.get("subject"), tr_id, subject
                )
            logger.debug("subscribed %s %s", tr_id, _shown(tr_id, key))
            self._start_keeper()
            return GatewaySubscription(self, tr_id, key, subject, every=every)
        refusal = await self._refused(want, reply)
        return GatewaySubscription(self, tr_id, key, subject, refusal, every=every)

    async def _refused(self, want: _Want, reply: dict[str, Any]) -> SubscribeFailed:
        """The gateway refused `want`: forget it, log it, and tell the application with an event."""
        if self._still_wanted(want):
            if want.every:
                del self._bar_wants[(want.tr_id, want.key, want.every)]
            else:
                del self._wants[(want.tr_id, want.key)]
        await self._stop_listening(want)
        event = SubscribeFailed(
            tr_id=want.tr_id,
            tr_key=want.key,
            msg_cd=str(reply.get("error") or "error"),
            message=str(reply.get("message") or ""),
        )
        logger.warning(
            "the gateway refused %s %s: %s: %s",
            want.tr_id,
            _shown(want.tr_id, want.key),
            event.msg_cd,
            event.message,
        )
        self._put(event)
        return event

    async def _listen(self, want: _Want) -> None:
        """Subscribe the data subject of `want` (market data; notices are bound by `_bind`)."""
        assert self._nc is not None
        self._seq.pop(want.subject, None)  # no gap across a time we did not listen
        self._data[want.subject] = want
        if isinstance(self._nc, _Client):
            # Before the subscribe: no message of it may take the long way and come after later ones.
            self._nc.direct[want.wire] = lambda subject, reply, data, headers: self._on_wire(
                want, reply, data, headers
            )
        try:
            want.sub = await self._guarded(
                want.subject,
                f"subscribe to {want.tr_id}",
                self._nc.subscribe(want.subject, cb=self._on_data),
            )
        except BaseException:
            await self._stop_listening(want)
            raise

    async def _bind(self, want: _Want, reply: dict[str, Any]) -> None:
        """Read notices through the pull consumer the gateway made for `want` (its reply names it).

        A pull consumer: the server hands out a notice only against a pending fetch, so none goes
        to a process that has just left. Made by the gateway, not here: this client's role may only
        fetch, ack and ask about consumers of its own HTS ID's stream.
        """
        assert self._js is not None
        stream, consumer = reply.get("stream"), reply.get("consumer")
        if not isinstance(stream, str) or not isinstance(consumer, str):
            stream, consumer = notice_stream(self.env, want.key), None
        if consumer is None or stream != notice_stream(self.env, want.key):
            raise GatewayUnavailableError(
                f"the gateway's reply names no notice consumer of {want.tr_id} on {notice_stream(self.env, want.key)}: "
                "is it a gateway of this version?"
            )
        what = f"read the notices of {want.key[:2]}*** (connect with that HTS ID's notice reader credential)"
        try:
            sub = await self._js.pull_subscribe_bind(consumer, stream)
            # One question on the consumer: a role that may not read this stream is refused here,
            # at subscribe time, rather than by fetches that would never return anything.
            await self._guarded(f"$JS.API.CONSUMER.INFO.{stream}.{consumer}", what, sub.consumer_info())
        except GatewayForbiddenError:
            raise
        except (nats.errors.Error, TimeoutError) as exc:
            raise GatewayUnavailableError(
                f"cannot read notices of {want.tr_id} from {stream}: {exc or type(exc).__name__}"
            ) from None
        want.sub, want.stream, want.consumer = sub, stream, consumer
        want.puller = asyncio.create_task(self._pull(want, sub), name=f"kis_nats notices {want.tr_id}")

    async def _pull(self, want: _Want, sub: JetStreamContext.PullSubscription) -> None:
        """Fetch notices one at a time (each fetch returns as soon as one is there) while wanted."""
        while want.sub is sub and not self._closing:
            try:
                msgs = await sub.fetch(1, timeout=_PULL_WAIT)
            except TimeoutError:
                continue  # nothing came: ask again
            except (nats.errors.Error, OSError) as exc:
                if self._closing or want.sub is not sub:
                    return
                logger.debug("fetching notices of %s failed (%s); trying again", want.tr_id, exc)
                await asyncio.sleep(max(self._retry_delay, 0.1))
                continue
            for msg in msgs:
                await self._on_notice(want, msg)

    async def _stop_listening(self, want: _Want, *, finish_fetch: bool = False) -> None:
        """Stop reading `want`; `finish_fetch` lets a notice fetch in flight end first.

        A pull request left behind on the server (a fetch cancelled mid-way) can still be handed
        a notice, which then waits out the ack wait before anyone else gets it.
        """
        sub, want.sub = want.sub, None
        puller, want.puller = want.puller, None
        if self._data.get(want.subject) is want:
            del self._data[want.subject]
            if isinstance(self._nc, _Client):
                self._nc.direct.pop(want.wire, None)
        if puller is not None and puller is not asyncio.current_task():
            if finish_fetch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(puller), _PULL_WAIT + 1.0)
            puller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await puller
        if sub is not None and self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _release(self, want: _Want, timeout: float) -> None:
        """Tell the gateway we no longer want `want` (best effort: the lease releases it anyway)."""
        try:
            reply = await self._control("unsubscribe", self._body(want), timeout)
        except (GatewayUnavailableError, GatewayForbiddenError) as exc:
            logger.warning("could not release %s %s: %s", want.tr_id, _shown(want.tr_id, want.key), exc)
            return
        if not reply["ok"]:
            logger.warning(
                "the gateway did not release %s %s: %s: %s",
                want.tr_id,
                _shown(want.tr_id, want.key),
                reply.get("error"),
                reply.get("message"),
            )

    def _check_open(self) -> None:
        if self.closing:
            raise LocalProtocolError("this feed is closed")

    # -- the lease ---------------------------------------------------------------------------------
    def _interval(self) -> float:
        lease = self.lease if self._gateway_lease is None else min(self.lease, self._gateway_lease)
        return lease / 3

    def _start_keeper(self) -> None:
        # The first heartbeat goes out at once: it tells the gateway's lease, which may be shorter.
        if self._gateway_lease is None:
            self._wake.set()

    async def _keep_leases(self) -> None:
        """Renew the lease every third of it; repeat every subscribe when the gateway may have lost them."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._interval()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_at - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            started = loop.time()
            next_at = started + self._interval()
            if not self._wants and not self._bar_wants and not self._unconfirmed:
                continue
            try:
                if self._stale:
                    await self._renew_all(timeout=min(self._request_timeout, self._interval()))
                else:
                    await self._heartbeat(timeout=min(self._request_timeout, self._interval()))
            except Exception:
                logger.exception("renewing the lease failed; trying again in %.1f s", self._interval())
            # A third of the lease from this one (the reply may have told a shorter lease), and
            # never at once again, however long this one took.
            next_at = max(started + self._interval(), loop.time() + 0.05)

    async def _heartbeat(self, timeout: float) -> bool:
        """One heartbeat; False when no gateway answered (the subscriptions are then repeated later).

        The reply says how many subscriptions the gateway holds for us: fewer than we want (it
        lost them: a restart, a takeover, an unsubscribe not ours) means asking again at once.
        """
        try:
            reply = await self._control("heartbeat", {"client": self.client}, timeout)
        except GatewayUnavailableError as exc:
            if not self._away and self._nc is not None and self._nc.is_connected:  # else NATS is away: said
                logger.warning(
                    "%s; our leases run out unless it comes back: the subscriptions are repeated when it does",
                    exc,
                )
            self._away = self._stale = True
            return False
        if self._away:
            logger.info("the gateway answers again")
            self._away = False
        if not reply["ok"]:
            logger.warning(
                "the gateway refused a heartbeat: %s: %s", reply.get("error"), reply.get("message")
            )
            self._stale = True
            return False
        lease = reply.get("lease")
        if isinstance(lease, int | float) and not isinstance(lease, bool) and lease > 0:
            if lease != self._gateway_lease:
                logger.debug("the gateway's lease is %.1f s", lease)
            self._gateway_lease = float(lease)
        held = reply.get("subscriptions")
        wanted = sum(1 for w in self._wants.values() if not w.notice) + len(self._bar_wants)
        if isinstance(held, int) and not isinstance(held, bool) and held < wanted and not self._stale:
            logger.warning(
                "the gateway holds %d of this feed's %d subscriptions: asking for them again", held, wanted
            )
            self._stale = True
            self._wake.set()
        return True

    def _heard_from(self, gateway: object) -> None:
        """A control reply named `gateway`: the one serving us now. A new one does not know our demand.

        Messages held for a gateway not yet named are delivered if it is this one, else rejected.
        """
        if isinstance(gateway, str) and gateway and gateway != self._gateway:
            if self._gateway is not None:
                logger.warning("gateway %s replaced %s: repeating the subscriptions", gateway, self._gateway)
                self._stale = True
                self._wake.set()
            self._gateway = gateway
        if self._unconfirmed and self._gateway is not None:
            held, self._unconfirmed = self._unconfirmed, deque()
            for item in held:
                if item.gateway == self._gateway:
                    self._deliver(item)
                else:
                    self._reject(
                        "gateway", f"{item.subject} from gateway {item.gateway}, not {self._gateway}"
                    )
            self._ready.set()

    async def _renew_all(self, timeout: float) -> None:
        """Request every wanted key again (idempotent at the gateway); stays stale if it cannot.

        Notice keys take no slot at the gateway: only a notice consumer that is gone is asked for again.
        """
        if not await self._heartbeat(timeout):
            return
        check, self._check_consumers = self._check_consumers, False
        renewed = 0
        for want in [*self._wants.values(), *self._bar_wants.values()]:
            if not self._still_wanted(want):
                continue  # unsubscribed meanwhile
            if want.notice:
                if (check or want.sub is None) and not await self._consumer_alive(want):
                    await self._rebind(want, timeout)
                continue
            try:
                reply = await self._control("subscribe", self._body(want), timeout)
            except (GatewayUnavailableError, GatewayForbiddenError) as exc:
                logger.warning("repeating the subscriptions stopped: %s", exc)
                self._check_consumers = self._check_consumers or check
                return
            if reply["ok"]:
                renewed += 1
            else:
                await self._refused(want, reply)
        self._stale = False
        logger.info("repeated %d subscriptions at the gateway", renewed)

    def _still_wanted(self, want: _Want) -> bool:
        """Is `want` still this feed's (not unsubscribed, nor replaced, since it was listed)?"""
        if want.every:
            return self._bar_wants.get((want.tr_id, want.key, want.every)) is want
        return self._wants.get((want.tr_id, want.key)) is want

    async def _consumer_alive(self, want: _Want) -> bool:
        """Does the notice consumer of `want` still exist (a new server, an expired one)?"""
        sub = want.sub
        if not isinstance(sub, nats.js.JetStreamContext.PullSubscription):
            return False
        try:
            await sub.consumer_info()
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            logger.debug("could not check the notice consumer: %s", exc)
        return True

    async def _rebind(self, want: _Want, timeout: float) -> None:
        """Ask the gateway for a notice consumer again and read through it."""
        logger.warning("the notice consumer of %s was gone: asking the gateway for another", want.tr_id)
        await self._stop_listening(want)
        try:
            reply = await self._control("subscribe", self._body(want), timeout)
            if reply["ok"]:
                await self._bind(want, reply)
            else:
                await self._refused(want, reply)
        except (GatewayUnavailableError, GatewayForbiddenError) as exc:
            logger.warning("%s", exc)
            self._check_consumers = True

    # -- receiving ---------------------------------------------------------------------------------
    def _put(self, event: FeedEvent) -> None:
        self._buffer.put(event)
        self._ready.set()

    def _reject(self, kind: str, detail: str) -> None:
        """Count a message not delivered as KIS's; log the first of each kind."""
        self.rejected += 1
        if kind not in self._said:
            self._said.add(kind)
            logger.warning(
                "a message not delivered as KIS's (%s): %s; later ones are counted in Feed.rejected",
                _REJECTIONS[kind],
                detail,
            )

    def _decode(self, tr_id: str, data: bytes) -> list[Event]:
        """One message's payload as events: kis_proto's decoder, so width → era and drift are its own."""
        try:
            payload = data.decode("utf-8")
        except UnicodeDecodeError:
            raw = data.decode("utf-8", errors="replace")
            return [
                UndecodableMessage(
                    failure=DecodeFailure.BAD_FRAME, reason="the payload is not UTF-8", raw=raw, tr_id=tr_id
                )
            ]
        # One record, framed as KIS frames it (count "001": the decoder's one-record fast path),
        # so the decoder picks the class by width.
        return self._decoder.decode(f"0|{tr_id}|001|{payload}")

    def _on_wire(self, want: _Want, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """A data message of `want` straight from nats-py's parser (`_Client`); False: not taken.

        Taken: no reply subject and exactly the gateway's header block, ``Kis-Meta`` alone. The
        rest goes nats-py's whole way to `_on_data`, which checks and rejects as it always did.
        """
        if reply or headers is None or not headers.startswith(_META_BLOCK) or not headers.endswith(_META_END):
            return False
        value = headers[len(_META_BLOCK) : -len(_META_END)]
        if b"\r\n" in value or not value.isascii():  # more header lines, or nats-py's decoding to follow
            return False
        self._accept(want, data, value.decode("ascii").strip())
        return True

    async def _on_data(self, msg: Msg) -> None:
        subject = msg.subject
        want = self._data.get(subject)
        if want is None or msg.reply:
            # Not one of our exact subjects, or a JetStream delivery (it has a reply to ack): not a
            # publication of the gateway's.
            self._reject("subject", f"{subject} (reply {msg.reply or 'none'})")
            return
        meta = msg.headers.get(H_META) if msg.headers else None
        self._accept(want, msg.data, meta)

    def _accept(self, want: _Want, data: bytes, meta: str | None) -> None:
        """A data message on `want`'s subject with `meta` its ``Kis-Meta``: checked, then delivered or held."""
        if not meta:
            self._reject("meta", f"{want.subject} has no {H_META} header")
            return
        try:
            gateway, seq = meta_sequence(meta)
        except ValueError as exc:
            self._reject("meta", f"{want.subject}: {exc}")
            return
        if gateway != self._gateway:
            # A gateway no control reply has named (a standby that took over, or a forgery): held
            # until the next heartbeat, asked for now, says who serves us.
            if len(self._unconfirmed) >= _UNCONFIRMED_MAX:
                self._unconfirmed.popleft()
                self._put(EventsDropped(count=1))
            self._unconfirmed.append(_Held(want.subject, want.tr_id, data, gateway, seq))
            self._wake.set()
            return
        if want.every:
            if self._track_seq(want.subject, gateway, seq, bars=True):
                self._put_bar(want, data)
            return
        if self._track_seq(want.subject, gateway, seq):
            for event in self._decode(want.tr_id, data):
                self._buffer.put(event)
        self._ready.set()

    def _deliver(self, item: _Held) -> None:
        """Into the buffer, after the ``seq`` check (a gap is `EventsDropped`, an impossible one a rejection)."""
        want = self._data.get(item.subject)
        if want is not None and want.every:
            if self._track_seq(item.subject, item.gateway, item.seq, bars=True):
                self._put_bar(want, item.data)
            return
        if not self._track_seq(item.subject, item.gateway, item.seq):
            return
        for event in self._decode(item.tr_id, item.data):
            self._buffer.put(event)

    def _put_bar(self, want: _Want, data: bytes) -> None:
        """A bar message's JSON as a typed `Bar`, for `bars`; anything else is a rejection."""
        try:
            bar = Bar.from_dict(json.loads(data))
        except (ValueError, RecursionError, AttributeError, LocalProtocolError) as exc:
            self._reject("bar", f"{want.subject}: {exc}")
            return
        if (bar.tr_id, bar.symbol, bar.kind, bar.size) != (want.tr_id, want.key, "time", want.every):
            self._reject(
                "bar", f"{want.subject} carried a bar of {bar.tr_id} {bar.symbol} {bar.kind}={bar.size}"
            )
            return
        if len(self._bars) >= _BARS_MAX:
            self._bars.popleft()
            self.bars_lost += 1
        self._bars.append(bar)
        self._bars_ready.set()

    def _track_seq(self, subject: str, gateway: str, seq: int, *, bars: bool = False) -> bool:
        """Report a gap in a subject's ``seq`` as `EventsDropped`; False for a jump no gateway makes.

        A gateway numbers each subject's messages from 1 per run; between two messages it can lose
        at most what it published meanwhile, and it publishes no faster than `_GAP_RATE` a second.
        """
        now = time.monotonic()
        last = self._seq.get(subject)
        if last is not None and last[0] == gateway and seq > last[1] + 1:
            lost = seq - last[1] - 1
            if lost > _GAP_BASE + _GAP_RATE * (now - last[2]):
                self._reject("seq", f"{subject} jumped from seq {last[1]} to {seq}")
                return False
            logger.warning(
                "%d messages of %s were lost on the way (seq %d after %d)", lost, subject, seq, last[1]
            )
            if bars:
                self.bars_lost += lost
            else:
                self._buffer.put(EventsDropped(count=lost))
        self._seq[subject] = (gateway, seq, now)
        return True

    async def _on_notice(self, want: _Want, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if (msg.metadata.stream, seq) in self._handed:
            # The application has it: its ack did not stick (a nats-server killed before it
            # stored the consumer's state). Acked again, not handed out twice.
            logger.info(
                "notice %d of %s delivered again after its ack: acked, not repeated", seq, msg.metadata.stream
            )
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.ack()
            return
        if seq in self._unacked_msgs:
            # Delivered again (the application has not taken it yet): ack the newest delivery later.
            self._unacked_msgs[seq] = msg
            return
        meta = msg.headers.get(H_META) if msg.headers else None
        problem = None
        if msg.subject != want.subject:
            problem = f"{msg.subject} in the stream of {want.subject}"
        elif not meta:
            problem = f"a notice of {want.tr_id} without {H_META}"
        else:
            try:
                meta_sequence(meta)
            except ValueError as exc:
                problem = f"a notice of {want.tr_id}: {exc}"
        if problem is not None:
            self._reject("notice", problem)
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.term()  # never delivered again
            return
        events = self._decode(want.tr_id, msg.data)
        for event in events:
            self._buffer.put(event)
        self._unacked[id(events[-1])] = seq
        self._unacked_msgs[seq] = msg
        self._ready.set()

    async def _handed_out(self, events: Iterable[FeedEvent]) -> None:
        """Acknowledge the notices among `events`, now that the application has them."""
        for event in events:
            seq = self._unacked.pop(id(event), None)
            if seq is None:
                continue
            msg = self._unacked_msgs.pop(seq)
            self._handed[msg.metadata.stream, seq] = None
            if len(self._handed) > _HANDED_MAX:
                del self._handed[next(iter(self._handed))]
            if self._nc is None or self._nc.is_closed:
                continue  # delivered again to a durable consumer next time
            try:
                await msg.ack()
            except (nats.errors.Error, OSError) as exc:
                logger.warning("could not acknowledge a notice (%s): it may be delivered again", exc)

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> FeedEvent:
        while True:
            dropped = self._buffer.dropped
            event = self._buffer.get()
            if event is not None:
                if dropped and not self._buffer.dropped:
                    # The buffer's own report (gaps upstream are logged where they are found).
                    _log_drop(EventsDropped(count=dropped))
                if self._unacked:
                    await self._handed_out((event,))
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
            dropped = self._buffer.dropped
            batch = self._buffer.drain()
            if batch:
                if dropped:
                    _log_drop(EventsDropped(count=dropped))
                if self._unacked:
                    await self._handed_out(batch)
                yield batch
                continue
            if self._finished.is_set():
                if self._error is not None:
                    raise self._error
                return
            self._ready.clear()
            await self._ready.wait()

    # -- closing -----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Release the subscriptions at the gateway, close the NATS connection; iteration then ends.

        The events that came before can still be iterated; the last one is `ConnectionClosed`.
        Durable notice subscriptions are kept at the gateway and on the server: notices that come
        while this process is away wait for it. Notices not yet taken from the feed are not
        acknowledged: a durable consumer delivers them again.
        """
        if self._closing:
            if not self._finished.is_set():
                await self._finished.wait()
            return
        self._closing = True
        self._wake.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        nc = self._nc
        try:
            await self._give_back_notices()
            if nc is not None and nc.is_connected:
                release = [
                    w for w in self._wants.values() if not (w.notice and self.notices_durable is not None)
                ]
                release += self._bar_wants.values()
                timeout = min(1.0, self._request_timeout)
                await asyncio.gather(*(self._release(want, timeout) for want in release))
        finally:
            self._wants.clear()
            self._bar_wants.clear()
            if nc is not None and not nc.is_closed:
                with contextlib.suppress(nats.errors.Error, OSError):
                    await nc.close()
            self._put(ConnectionClosed(code=1000, reason="closed by the application", clean=True))
            self._finish()

    async def _give_back_notices(self) -> None:
        """Stop the notice consumers; notices not yet handed out go back to the server at once.

        Without the negative ack the server would deliver them again only when their ack wait
        (30 s) has passed; with it, the next fetch of a durable consumer gets them first.
        """
        notices = [want for want in self._wants.values() if want.notice]
        await asyncio.gather(*(self._stop_listening(want, finish_fetch=True) for want in notices))
        unacked, self._unacked_msgs = self._unacked_msgs, {}
        self._unacked.clear()
        if self._nc is None or not self._nc.is_connected:
            return
        try:
            # A round trip: the server has processed our unsubscribes before the negative acks.
            await self._nc.flush(timeout=max(1, round(self._request_timeout)))
        except (nats.errors.Error, TimeoutError) as exc:
            logger.debug("could not flush before closing: %s", exc)
        for msg in unacked.values():
            try:
                await msg.nak()
            except (nats.errors.Error, OSError) as exc:
                logger.debug("could not give back a notice: %s", exc)

    def _finish(self) -> None:
        self._finished.set()
        self._ready.set()
        self._bars_ready.set()
        self._wake.set()


def _log_drop(event: EventsDropped) -> None:
    logger.warning(
        "the application fell behind: %d market-data records dropped, oldest first "
        "(notices are never dropped; raise buffer_size or consume faster)",
        event.count,
    )


def _notice_tr(market: Literal["domestic", "overseas"], env: str) -> str:
    real, paper = _NOTICE_TRS[market]
    return paper if env == "paper" else real


def login(
    nats_url: str | Sequence[str] | None,
    nats_creds: str | os.PathLike[str] | NatsCredential | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    nats_options: Mapping[str, Any] | None = None,
    role: Literal["gateway", "consumer", "notices", "readonly"] = "consumer",
    hts_id: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The URLs and ``nats.connect`` options that log in to the gateway's NATS: one rule for every face.

    `nats_creds`: a credential of the gateway's roles (a `NatsCredential` or its file), or a NATS
    ``.creds`` file (JWT and NKEY seed, for servers with decentralized auth; nats-py needs the
    ``nkeys`` package for it). Without one, and without login options in `nats_options`, the
    local credential of `role` in `state_dir` (`discover`: only for a NATS on this machine), whose
    recorded URL also stands in for a missing `nats_url`. `tls` is the client's TLS context (`tls_context`);
    ``tls://`` URLs use TLS with the system's CAs without one. Raises `CredentialError` for a
    credential file that cannot be used.
    """
    options: dict[str, Any] = dict(nats_options or {})
    urls = [nats_url] if isinstance(nats_url, str) else list(nats_url or [])
    if not (set(options) & _AUTH_OPTIONS):
        credential: NatsCredential | None
        if isinstance(nats_creds, NatsCredential):
            credential = nats_creds
        elif nats_creds is not None:
            path = Path(nats_creds).expanduser()
            try:
                head = path.read_bytes()[:4096]
            except OSError as exc:
                raise CredentialError(f"cannot read {path}: {exc.strerror or exc}") from None
            if b"BEGIN NATS USER JWT" in head:
                options["user_credentials"] = str(path)
                credential = None
            else:
                credential = read_credential(path)
        else:
            credential = discover(urls[0] if urls else None, role, hts_id, state_dir)
        if credential is not None:
            options.update(credential.connect_options())
            if not urls and credential.url:
                urls = [credential.url]
    if tls is not None:
        options["tls"] = tls
    return urls or [DEFAULT_URL], options


async def _open(
    nats_url: str | Sequence[str] | None,
    *,
    env: str,
    client: str | None,
    lease: float,
    buffer_size: int,
    notices_durable: str | None,
    credentials: Credentials | None,
    max_retries: int | None,
    retry_delay: float,
    request_timeout: float,
    nats_creds: str | os.PathLike[str] | NatsCredential | None,
    tls: ssl.SSLContext | None,
    nats_options: Mapping[str, Any] | None,
) -> Feed:
    try:
        ctl_subject(env, "subscribe")
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None
    client = _default_client() if client is None else client
    if not isinstance(client, str) or not _CLIENT_ID.match(client):
        raise LocalProtocolError(
            f"client must be 1 to 128 of A-Z a-z 0-9 . _ : @ - (the gateway's form), not {client!r}"
        )
    if notices_durable is not None and not _NAME.match(notices_durable):
        raise LocalProtocolError(
            f"notices_durable must be 1 to 64 letters, digits, '-' or '_', not {notices_durable!r}"
        )
    taken = sorted(set(nats_options or {}) & _OURS)
    if taken:
        raise LocalProtocolError(
            f"nats_options may not set {', '.join(taken)}: the feed needs its own (use max_retries, retry_delay)"
        )
    if not lease > 0 or not request_timeout > 0 or not retry_delay >= 0:
        raise LocalProtocolError("lease and request_timeout must be positive, retry_delay not negative")
    hts_id = credentials.hts_id if credentials is not None else None
    try:
        urls, options = login(nats_url, nats_creds, tls=tls, nats_options=nats_options, hts_id=hts_id)
    except CredentialError as exc:
        raise LocalProtocolError(str(exc)) from None
    feed = Feed(
        url=urls,
        env=env,
        client=client,
        lease=lease,
        buffer_size=buffer_size,
        notices_durable=notices_durable,
        credentials=credentials,
        retry_delay=retry_delay,
        request_timeout=request_timeout,
    )
    await feed._connect(max_retries, options)
    return feed


@asynccontextmanager
async def connect(
    nats_url: str | Sequence[str] | None = None,
    *,
    env: str = "sim",
    client: str | None = None,
    lease: float = 30.0,
    buffer_size: int = 10_000,
    notices_durable: str | None = None,
    credentials: Credentials | None = None,
    max_retries: int | None = None,
    retry_delay: float = 2.0,
    request_timeout: float = 5.0,
    nats_creds: str | os.PathLike[str] | NatsCredential | None = None,
    tls: ssl.SSLContext | None = None,
    nats_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[Feed]:
    """``async with kis_nats.connect(url, env="real") as feed:`` a `Feed` from the gateway (asyncio).

    `nats_url`: a NATS URL or a list of a cluster's (default: the URL in the local credential,
    else `DEFAULT_URL`, the gateway's embedded server on this machine). `env`: ``real``,
    ``paper`` or ``sim``, as the gateway's. `client`: this consumer's id in the gateway's leases
    and status (default: host, pid and a random suffix). `lease`: seconds; the heartbeat renews
    it every third (or a third of the gateway's lease, if shorter). `buffer_size`: market records
    held for a slow application. `notices_durable`: the name of a durable consumer for notices
    (see `Feed.subscribe_notices`). `credentials`: only their `hts_id` is used, for notices.
    `max_retries`: NATS reconnect attempts before the feed ends with `ConnectionError` (None:
    forever), `retry_delay` seconds apart. `request_timeout`: how long a control request waits.
    `nats_creds`, `tls`: how to log in (see `login`; default: the local consumer credential of
    ``kis-ws gateway``, or that HTS ID's notice reader credential). `nats_options`: passed to
    ``nats.connect`` as they are. Raises `ConnectionError` when NATS cannot be reached,
    `GatewayForbiddenError` when it refuses the credentials, `LocalProtocolError` for a
    credential file that cannot be used.
    """
    feed = await _open(
        nats_url,
        env=env,
        client=client,
        lease=lease,
        buffer_size=buffer_size,
        notices_durable=notices_durable,
        credentials=credentials,
        max_retries=max_retries,
        retry_delay=retry_delay,
        request_timeout=request_timeout,
        nats_creds=nats_creds,
        tls=tls,
        nats_options=nats_options,
    )
    try:
        yield feed
    finally:
        await feed.aclose()


async def open_feed(
    nats_url: str | Sequence[str] | None = None,
    *,
    env: str = "sim",
    client: str | None = None,
    lease: float = 30.0,
    buffer_size: int = 10_000,
    notices_durable: str | None = None,
    credentials: Credentials | None = None,
    max_retries: int | None = None,
    retry_delay: float = 2.0,
    request_timeout: float = 5.0,
    nats_creds: str | os.PathLike[str] | NatsCredential | None = None,
    tls: ssl.SSLContext | None = None,
    nats_options: Mapping[str, Any] | None = None,
) -> Feed:
    """``feed = await kis_nats.open_feed(...)`` without a block (notebooks); later ``await feed.aclose()``.

    The arguments are `connect`'s.
    """
    return await _open(
        nats_url,
        env=env,
        client=client,
        lease=lease,
        buffer_size=buffer_size,
        notices_durable=notices_durable,
        credentials=credentials,
        max_retries=max_retries,
        retry_delay=retry_delay,
        request_timeout=request_timeout,
        nats_creds=nats_creds,
        tls=tls,
        nats_options=nats_options,
    )


class WSClient(CallbackClient[Feed]):
    """The original design's callback client, fed by the gateway over NATS (asyncio).

    ``ws = kis_nats.WSClient("nats://host:4222", env="real")``;
    ``await ws.subscribe("H0STCNT0", ["005930"], on_trade)``; ``await ws.run()`` until
    ``await ws.close()``: the same as `kis_asyncio.WSClient`, the gateway holding the KIS session.
    `sync_callbacks` and `on_error` are as there (a gateway's refusal reaches `on_error` as a
    `SubscribeFailed` whose ``msg_cd`` is the gateway's error code). The other keyword options
    are `connect`'s (`client`, `lease`, `buffer_size`, `notices_durable`, `nats_options`…).
    `run` raises `ConnectionError` when NATS is lost for good (`max_retries` reconnects; None,
    the default, tries forever) and `GatewayUnavailableError` when no gateway answers a subscribe.
    """

    _log = logger

    def __init__(
        self,
        nats_url: str | None = None,
        *,
        env: str = "sim",
        credentials: Credentials | None = None,
        max_retries: int | None = None,
        retry_delay: float = 2.0,
        sync_callbacks: SyncCallbacks = "inline",
        on_error: ErrorCallback | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            credentials,
            max_retries,
            retry_delay,
            url=nats_url,
            sync_callbacks=sync_callbacks,
            on_error=on_error,
            env=env,
            **options,
        )

    def _connect(self, url: str | None, **options: Any) -> AbstractAsyncContextManager[Feed]:
        options.pop("approval_key", None)  # the gateway holds the approval keys
        return connect(url, **options)

    async def subscribe_notices(
        self,
        callback: Callback,
        market: Literal["domestic", "overseas"] = "domestic",
        *,
        hts_id: str | None = None,
    ) -> str:
        """Call `callback` with execution notices of `hts_id` (default: the credentials'); returns the TR id.

        The TR follows the env (paper: ``H0STCNI9`` / ``H0GSCNI9``). The notices come from the
        gateway's JetStream stream; give ``notices_durable=`` to get those sent while away.
        """
        if hts_id is None:
            return await super().subscribe_notices(callback, market)
        if market not in _NOTICE_TRS:
            raise LocalProtocolError(f"market must be 'domestic' or 'overseas', not {market!r}")
        tr_id = _notice_tr(market, self._options["env"])
        await self.subscribe(tr_id, [hts_id], callback)
        return tr_id

    def _workers(self) -> AbstractAsyncContextManager[Workers]:
        return workers("kis_nats-callback")
