"""The gateway: KIS sessions (one per app key) shared through NATS, as docs/gateway.md specifies.

Each session is a `kis_asyncio` feed with every guarantee it has (reconnect with backoff, restore,
PINGPONG, the approval key fetched once); the gateway publishes one NATS message per record on
``kis.<env>.<TR_ID>.<KEY>``, puts decrypted execution notices into the JetStream stream
``KIS_NOTICES`` (holding them while NATS is away), answers the control requests, and keeps the
leader lease so that a standby gateway on the same app keys waits instead of fighting over them.
nats-py is asyncio-only, so the gateway runs on asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import kis_asyncio
from kis_nats import subjects

from kis_proto import (
    Connected,
    ConnectionClosed,
    Credentials,
    EventsDropped,
    LocalProtocolError,
    MsgCode,
    Reconnecting,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
)
from kis_proto.bars import TRADE_TRS, Bar, parse_interval
from kis_proto.layouts import tr_spec
from kis_proto.symbols import key_problem

from ._bars import GatewayBars
from ._lease import Lease, Verdict
from ._placement import Action, Place, Planner, Reply, StartBars, StopBars
from ._publish import Publisher
from ._stats import GatewayStats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from kis_proto.feed import FeedCounters

__all__ = ["Gateway", "SessionSpec"]

logger = logging.getLogger("kis_nats.gateway")

#: Seconds the leader key lives without renewal; the active gateway renews it every LEASE_RENEW.
LEADER_TTL = 10.0
LEADER_RENEW = 2.0
#: Subscriptions one client may hold unless the gateway is told otherwise: one app key's worth,
#: what the client would have from KIS directly.
CLIENT_LIMIT = 41
#: A client's control requests: per second, and the burst (a consumer of 41 keys starts at once).
CLIENT_RATE = (50.0, 200.0)
#: Clients holding demand at once.
MAX_CLIENTS = 1000
#: Status requests, all clients together: per second, and the burst.
STATUS_RATE = (20.0, 40.0)
#: The largest control request read; anything longer is a ``bad_request`` before it is parsed.
MAX_REQUEST = 4096
_DAY = 24 * 3600
#: Subjects (and widths) whose message prefix is kept; past it the cache starts again, whatever
#: keys a KIS-compatible server sends.
_HEADS_MAX = 10_000
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}\Z")
_SECRET = re.compile(r"[!-~]{16,128}\Z")
_DURABLE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_TR_ID = re.compile(r"[A-Z0-9]{1,16}\Z")
#: The notice TRs a gateway holds per HTS ID and env: domestic, then overseas.
_NOTICE_TRS = {
    "real": ("H0STCNI0", "H0GSCNI0"),
    "paper": ("H0STCNI9", "H0GSCNI9"),
    "sim": ("H0STCNI0", "H0GSCNI0"),
}
#: An ephemeral notice consumer goes away this long after its reader stopped fetching.
_EPHEMERAL_INACTIVE = 60.0
#: How long the server waits for a notice's ack before it delivers it again.
_NOTICE_ACK_WAIT = 10.0


class GatewayConfigError(RuntimeError):
    """The NATS cannot serve this gateway as configured (e.g. an old notice stream in the way)."""


@dataclass(frozen=True)
class SessionSpec:
    """One KIS session the gateway holds: an app key (its credentials), or a URL and approval key.

    `approval` (host, port, TLS) sends the approval request elsewhere than to KIS (the
    simulator's own endpoint, to try the whole credential path without KIS).
    """

    name: str
    credentials: Credentials | None = field(default=None, repr=False)
    url: str | None = None
    approval_key: str | None = field(default=None, repr=False)
    approval: tuple[str, int, bool] | None = None


@dataclass
class _Live:
    """A session while the gateway is active: its feed and counters."""

    spec: SessionSpec
    feed: kis_asyncio.Feed
    task: asyncio.Task[None] | None = None
    state: str = "connecting"
    reconnects: int = 0
    records: int = 0


class Gateway:
    """Share the KIS sessions of `sessions` through the NATS connection `nc` (see docs/gateway.md).

    ``await gateway.run()`` until cancelled or `stop`: it waits for the leader lease (standby), then
    opens the sessions and serves. `state_dir` keeps notices that could not be published yet.

    `hts_ids`: the HTS IDs whose execution notices the gateway takes from KIS (its own standing
    subscriptions, domestic, and overseas too with `overseas_notices`) and keeps in their
    JetStream streams; a consumer asking for notices of another ID is refused. `client_limit`,
    `client_rate` and `max_clients` bound what one client may ask (see `kis_nats._placement`).
    """

    def __init__(
        self,
        nc: NatsClient,
        env: str,
        sessions: list[SessionSpec],
        *,
        lease: float = 30.0,
        state_dir: Path | None = None,
        gateway_id: str | None = None,
        leader_ttl: float = LEADER_TTL,
        leader_renew: float = LEADER_RENEW,
        capacity: int = 41,
        hts_ids: list[str] | tuple[str, ...] = (),
        overseas_notices: bool = False,
        client_limit: int | None = CLIENT_LIMIT,
        client_rate: tuple[float, float] | None = CLIENT_RATE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if env not in ("real", "paper", "sim"):
            raise ValueError(f"env must be 'real', 'paper' or 'sim', not {env!r}")
        self.nc = nc
        self.env = env
        self.specs = sessions
        if gateway_id is not None and not _GATEWAY_ID.match(gateway_id):
            raise ValueError(
                f"gateway id {gateway_id!r}: use letters, digits, '-', '_' or '.' (it goes into the"
                f" {subjects.H_META} header and the leader lease)"
            )
        self.id = gateway_id or f"gw-{secrets.token_hex(3)}"
        self.role = "starting"
        self.planner = Planner(
            [s.name for s in sessions],
            capacity=capacity,
            lease=lease,
            client_limit=client_limit,
            rate=client_rate,
            max_clients=max_clients,
        )
        for hts_id in hts_ids:
            problem = key_problem(_NOTICE_TRS[env][0], hts_id)
            if problem is not None:
                raise ValueError(f"HTS ID {hts_id[:2]}***: {problem}")
        trs = _NOTICE_TRS[env] if overseas_notices else _NOTICE_TRS[env][:1]
        #: The gateway's standing notice subscriptions: (tr_id, HTS ID).
        self.notice_keys = [(tr_id, hts_id) for hts_id in dict.fromkeys(hts_ids) for tr_id in trs]
        self._status_budget = [STATUS_RATE[1], 0.0]  # tokens, when last refilled
        self.state_dir = state_dir
        self.leader_ttl, self.leader_renew = leader_ttl, leader_renew
        self.published = self.notices = self.dropped = self.bars_published = 0
        self._live: dict[str, _Live] = {}
        self._seq: dict[tuple[str, str], int] = {}
        # (TR, key), width -> the subject and what its messages of that width share (`Publisher.head`)
        self._heads: dict[tuple[tuple[str, str], int], tuple[str, tuple[bytes, str]]] = {}
        self._out = Publisher(nc, self.id)
        #: The bars computed for consumers (`StartBars`), once whatever the number of askers.
        self.bars = GatewayBars(env, self.id)
        self._era: dict[tuple[str, int], str] = {}  # (TR, width) -> the era of that layout, or ""
        self._held: list[tuple[str, bytes, dict[str, str]]] = []
        self._held_wake = asyncio.Event()
        self._seen_notices: dict[str, int] = {}
        self._ctl: list[Any] = []
        self._stopping = asyncio.Event()
        self._leader_lost = asyncio.Event()
        self._js: JetStreamContext | None = None
        #: What the gateway counts besides its feeds (`kis_gateway.gateway_collector` exports it).
        self.stats = GatewayStats()
        self._down_reason = ""

    def __repr__(self) -> str:
        return f"<Gateway {self.id} {self.env} {self.role} sessions={len(self.specs)}>"

    # -- running ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until `stop`: standby until the leader lease is ours, then active.

        Raises `GatewayConfigError` when the NATS cannot hold the notice streams.
        """
        self._js = self.nc.jetstream()
        self._warn_if_open()
        await self._ensure_streams()
        lease = Lease(await self._leader_bucket(), self.id)
        # Held notices are published whatever the role: a gateway that stood by while NATS was
        # away still holds what KIS sent it before.
        flusher = asyncio.create_task(self._flush_held())
        try:
            while not self._stopping.is_set():
                self.role = "standby"
                if not await self._acquire(lease):
                    return
                self.role = "active"
                self._leader_lost.clear()
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._keep_lead(lease))
                        tg.create_task(self._serve())
                except* _SteppedDownError:
                    logger.warning("gateway %s stands by (%s)", self.id, self._down_reason)
                finally:
                    self.stats.lease_in_doubt_since = None
                    # Stopped or cancelled with the key ours, the sessions closed by now: let a
                    # standby in at once rather than after the TTL (never before: KIS allows one
                    # session per key).
                    if not self._leader_lost.is_set():
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(lease.release(), 2)
        finally:
            flusher.cancel()

    def stop(self) -> None:
        """End `run` (from the gateway's loop): sessions closed, the leader key let go."""
        self._stopping.set()

    async def _serve(self) -> None:
        """Active: the sessions, the control subjects, lease expiry and held notices, until stopped.

        Notices held on disk (by this gateway, or by an active one that died, when they share the
        state dir) are published first.
        """
        self._load_held()
        for spec in self.specs:
            feed = await kis_asyncio.open_feed(
                spec.url,
                credentials=spec.credentials,
                approval_key=spec.approval_key,
                approval_host=spec.approval[0] if spec.approval else None,
                approval_port=spec.approval[1] if spec.approval else None,
                approval_tls=spec.approval[2] if spec.approval else True,
                max_retries=None,
            )
            live = _Live(spec, feed)
            live.task = asyncio.create_task(self._read(live), name=f"kis-session-{spec.name}")
            self._live[spec.name] = live
        for tr_id, hts_id in self.notice_keys:
            # The HTS ID's own app key, where one says so: KIS sends an account's notices there.
            prefer = next(
                (s.name for s in self.specs if s.credentials is not None and s.credentials.hts_id == hts_id),
                None,
            )
            reply = self.planner.stand(tr_id, hts_id, prefer)
            if not reply.ok:
                logger.error(
                    "gateway %s cannot take the notices of %s***: %s", self.id, hts_id[:2], reply.message
                )
            await self._apply(list(reply.actions))
        for verb, handler in (
            ("subscribe", self._on_subscribe),
            ("unsubscribe", self._on_unsubscribe),
            ("heartbeat", self._on_heartbeat),
            ("status", self._on_status),
        ):
            self._ctl.append(await self.nc.subscribe(subjects.ctl_subject(self.env, verb), cb=_safe(handler)))
        # Said once it answers: a consumer that starts on this line finds the control subjects.
        logger.info("gateway %s is active for %s (%d sessions)", self.id, self.env, len(self.specs))
        expiry = asyncio.create_task(self._expire_leases())
        clock = asyncio.create_task(self._bar_clock())
        try:
            stop = asyncio.create_task(self._stopping.wait())
            lost = asyncio.create_task(self._leader_lost.wait())
            await asyncio.wait([stop, lost], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            lost.cancel()
        finally:
            for sub in self._ctl:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            self._ctl.clear()
            expiry.cancel()
            clock.cancel()
            # All at once: each waits up to close_timeout for KIS to answer its close.
            await asyncio.gather(
                *(live.feed.aclose() for live in self._live.values()), return_exceptions=True
            )
            for live in self._live.values():
                if live.task is not None:
                    live.task.cancel()
            self._live.clear()
            # The bars being built end here, said to be incomplete; the next active gateway starts
            # them again when its consumers ask (they do at once: a new gateway id).
            with contextlib.suppress(Exception):
                await self._publish_bars(self.bars.flush(time.time()))
            for tr_id, tr_key, every in self.planner.bar_demand():
                self.bars.start(tr_id, tr_key, every)
        if self._leader_lost.is_set():
            raise _SteppedDownError

    # -- the leader lease ------------------------------------------------------------------------------
    async def _leader_bucket(self) -> KeyValue:
        from nats.js.errors import BucketNotFoundError

        assert self._js is not None
        bucket = f"KIS_GATEWAY_{self.env.upper()}"
        try:
            return await self._js.key_value(bucket)
        except BucketNotFoundError:
            return await self._js.create_key_value(bucket=bucket, ttl=self.leader_ttl, history=1)

    async def _acquire(self, lease: Lease) -> bool:
        """Wait until the leader key is ours (True), or False when stopped meanwhile.

        Right after NATS comes back it waits a little before trying: an active gateway that
        kept its KIS sessions through the outage renews its key first (docs/gateway.md, "Leader
        lease"), rather than lose it to a standby that would then meet ``ALREADY IN USE``.
        """
        announced: Verdict | None = None
        away = False
        while not self._stopping.is_set():
            if away and self.nc.is_connected:
                away = False
                if await self._pause(2 * self.leader_renew):
                    break
            verdict = await lease.take()
            if verdict is Verdict.OURS:
                return True
            if verdict is Verdict.UNKNOWN:
                away = True
            if verdict is not announced:
                if verdict is Verdict.TAKEN:
                    logger.info(
                        "gateway %s is on standby: gateway %s is active for %s; this one takes over when"
                        " it stops, or %.0f s after it dies",
                        self.id,
                        lease.holder if lease.holder != self.id else f"{self.id} (an earlier run of it)",
                        self.env,
                        self.leader_ttl,
                    )
                else:
                    logger.warning(
                        "gateway %s cannot reach the leader lease yet: NATS does not answer", self.id
                    )
                announced = verdict
            if await self._pause(self.leader_renew):
                break
        return False

    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when stopped: True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _keep_lead(self, lease: Lease) -> None:
        """Renew the leader key; stand by only when another gateway is known to hold it.

        A renewal NATS does not answer changes nothing: the KIS sessions stay, notices are held,
        and the renewal is tried again (more often, to be first when NATS is back). Once NATS
        answers: the key is renewed if it is ours, taken again if it expired meanwhile, and only
        if another gateway holds it are the held notices published and the sessions closed.
        """
        stats = self.stats
        while not await self._pause(self.leader_renew if stats.lease_in_doubt_since is None else 0.25):
            verdict = await lease.renew()
            if verdict is Verdict.OURS:
                if stats.lease_in_doubt_since is not None:
                    logger.warning(
                        "gateway %s renewed its leader lease after %.1f s: the KIS sessions were kept",
                        self.id,
                        time.monotonic() - stats.lease_in_doubt_since,
                    )
                    stats.lease_in_doubt_since = None
            elif verdict is Verdict.UNKNOWN:
                stats.lease_failures += 1
                if stats.lease_in_doubt_since is None:
                    stats.lease_in_doubt_since = time.monotonic()
                    logger.warning(
                        "gateway %s cannot renew its leader lease (NATS does not answer): keeping the"
                        " KIS sessions and holding notices until it does",
                        self.id,
                    )
            else:
                logger.warning(
                    "gateway %s: gateway %s holds the leader lease now: publishing held notices, then"
                    " standing by",
                    self.id,
                    lease.holder,
                )
                await self._drain_held(timeout=10.0)
                self._step_down("lease_taken")
                return

    def _step_down(self, reason: str) -> None:
        if not self._leader_lost.is_set():
            self._down_reason = reason
            self.stats.stepped_down(reason)
            self._leader_lost.set()

    def _in_use(self, name: str) -> None:
        """KIS refused `name`'s session as ``ALREADY IN USE``: while the lease is in doubt, another
        gateway took over (KIS is the arbiter); otherwise it is KIS's lock after a drop."""
        if self.stats.lease_in_doubt_since is not None:
            logger.warning(
                "session %s: KIS gives its app key to another client while this gateway cannot"
                " renew its lease: another gateway took over; standing by",
                name,
            )
            self._step_down("in_use")

    async def _drain_held(self, timeout: float) -> None:
        """Wait until the held notices are published, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._held and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: (ready, why) — active, every KIS session connected, NATS connected."""
        if self.role != "active":
            return False, f"{self.role}: not the active gateway"
        if not self.nc.is_connected:
            return False, "NATS is not connected"
        down = [name for name, live in self._live.items() if not live.feed.counters.connected]
        if down or len(self._live) < len(self.specs):
            return False, f"KIS sessions not connected: {', '.join(down) or 'starting'}"
        return True, "active"

    def session_counters(self) -> list[tuple[str, FeedCounters]]:
        """The counters of the KIS sessions this gateway holds now (none on standby)."""
        return [(name, live.feed.counters) for name, live in self._live.items()]

    # -- a session's events --------------------------------------------------------------------------
    async def _read(self, live: _Live) -> None:
        name = live.spec.name
        try:
            async for batch in live.feed.batches():
                # What the session read since the last batch (one socket read, or several when
                # this loop fell behind): its records are queued as they come, each with its seq,
                # and written to NATS together at the end, in order (docs/gateway.md, "What it costs").
                received_at = time.time()
                received = f"{received_at:.6f}"
                wanted = self.bars.wanted
                made: list[Bar] = []
                for event in batch:
                    if isinstance(event, Record):
                        live.records += 1
                        if _encrypted(event.tr_id):
                            await self._notice(event, received)
                        else:
                            self._publish(event, received)
                            if wanted and (event.tr_id, event.tr_key) in wanted:
                                made += self.bars.add(name, event, received_at)
                        continue
                    if wanted:
                        made += self.bars.event(name, event, received_at)
                    if isinstance(event, Connected):
                        live.state = "connected"
                        await self._apply(self.planner.connected(name, up=True))
                    elif isinstance(event, ConnectionClosed):
                        live.state = "reconnecting"
                        self.planner.connected(name, up=False)
                    elif isinstance(event, Reconnecting):
                        live.reconnects += 1
                        logger.warning(
                            "session %s: reconnecting in %.1f s (attempt %d): %s",
                            name,
                            event.delay,
                            event.attempt,
                            event.reason,
                        )
                    elif isinstance(event, Subscribed):
                        self.planner.subscribed(name, event.tr_id, event.tr_key)
                    elif isinstance(event, SubscribeFailed) and not event.timed_out:
                        await self._apply(
                            self.planner.refused(name, event.tr_id, event.tr_key, event.msg_cd, event.message)
                        )
                    elif isinstance(event, ServerError):
                        logger.warning(
                            "session %s: KIS server error %s %s", name, event.msg_cd, event.message
                        )
                        if event.msg_cd == MsgCode.ALREADY_IN_USE_APPKEY:
                            self._in_use(name)
                    elif isinstance(event, EventsDropped):
                        self.dropped += event.count
                if len(self._out):
                    started = time.time()
                    published, dropped = await self._out.flush()
                    self.published += published
                    self.dropped += dropped
                    self.stats.batch(received_at, started, time.time(), published)
                if made:
                    await self._publish_bars(made)
        except ConnectionError as exc:  # max_retries=None: only a definite refusal ends a feed
            live.state = f"failed: {exc}"
            logger.error("session %s failed: %s", name, exc)

    def _publish(self, rec: Record, received: str) -> None:
        """Queue `rec`'s message: its text as KIS sent it, ``Kis-Meta`` from its subject's prefix."""
        text = rec.text
        key = (rec.tr_id, rec.tr_key)
        width = text.count("^") + 1
        head = self._heads.get((key, width))
        if head is None:  # once per subject and width: the subject, the layout lookup
            if len(self._heads) >= _HEADS_MAX:
                self._heads.clear()
            subject = subjects.data_subject(self.env, rec.tr_id, rec.tr_key)
            head = self._heads[(key, width)] = (
                subject,
                self._out.head(subject, width, self._era_of(rec.tr_id, width)),
            )
        seq = self._seq[key] = self._seq.get(key, 0) + 1
        if not self._out.add(head[0], head[1], received, seq, text):
            self.dropped += 1

    def _era_of(self, tr_id: str, width: int) -> str:
        """The era of `tr_id`'s layout of `width` fields, or "" for a width no era has."""
        era = self._era.get((tr_id, width))
        if era is None:  # once per TR and width: the layout lookup is not per record
            known = tr_spec(tr_id)
            layout = known.layout_for_width(width) if known is not None else None
            era = self._era[(tr_id, width)] = layout.era if layout is not None else ""
        return era

    def _headers(self, rec: Record, received: str, seq: int) -> dict[str, str]:
        width = len(rec.raw)
        era = self._era_of(rec.tr_id, width)
        return {subjects.H_META: subjects.format_meta(width, era, received, seq, self.id)}

    async def _notice(self, rec: Record, received: str) -> None:
        """Into JetStream, deduplicated by content (a repeat of the same text gets a new id)."""
        text = rec.text
        digest = hashlib.sha256(f"{rec.tr_id}|{text}".encode()).hexdigest()[:32]
        repeat = self._seen_notices.get(digest, 0)
        self._seen_notices[digest] = repeat + 1
        key = (rec.tr_id, rec.tr_key)
        seq = self._seq[key] = self._seq.get(key, 0) + 1
        headers = self._headers(rec, received, seq) | {
            "Nats-Msg-Id": digest if not repeat else f"{digest}-{repeat}"
        }
        subject = subjects.notice_subject(self.env, rec.tr_id, rec.tr_key)
        self.notices += 1
        self._held.append((subject, text.encode(), headers))
        self._save_held()
        self._held_wake.set()

    async def _flush_held(self) -> None:
        """Publish held notices in order, retrying while NATS is away; never drop one."""
        assert self._js is not None
        holding = False
        while True:
            await self._held_wake.wait()
            self._held_wake.clear()
            while self._held:
                subject, payload, headers = self._held[0]
                try:
                    await self._js.publish(subject, payload, headers=headers, timeout=2.0)
                except Exception as exc:  # noqa: BLE001 - held, and tried again shortly
                    if not holding:  # once per outage, not every half second
                        logger.warning("notices held until NATS takes them (on disk too): %s", exc)
                        holding = True
                    await asyncio.sleep(0.5)
                    continue
                self._held.pop(0)
                self.stats.notices_published += 1
                self._save_held()
            if holding:
                logger.info("the held notices are in the stream")
                holding = False

    # -- control requests ----------------------------------------------------------------------------
    async def _on_subscribe(self, msg: Msg) -> None:
        request = _request(msg, "tr_id", "tr_key", "client", optional=("secret", "durable", "every"))
        if isinstance(request, Reply):
            await self._respond(msg, request)
            return
        tr_id, tr_key, client = request["tr_id"], request["tr_key"], request["client"]
        problem = key_problem(tr_id, tr_key)
        if problem is not None:
            await self._respond(msg, Reply(False, "invalid", problem))
            return
        if "every" in request:
            await self._subscribe_bars(msg, request)
            return
        if _encrypted(tr_id):
            await self._subscribe_notices(msg, request)
            return
        reply = self.planner.subscribe(client, tr_id, tr_key, time.monotonic(), request.get("secret"))
        await self._apply(list(reply.actions))
        extra = {"subject": subjects.data_subject(self.env, tr_id, tr_key)} if reply.ok else {}
        await self._respond(msg, reply, extra)

    async def _subscribe_bars(self, msg: Msg, request: dict[str, str]) -> None:
        """A consumer of bars: computed here once, however many ask; published on the bar subject."""
        tr_id, tr_key = request["tr_id"], request["tr_key"]
        every = _interval(request["every"], tr_id)
        if isinstance(every, Reply):
            await self._respond(msg, every)
            return
        reply = self.planner.subscribe_bars(
            request["client"], tr_id, tr_key, every, time.monotonic(), request.get("secret")
        )
        await self._apply(list(reply.actions))
        extra = (
            {"subject": subjects.bar_subject(self.env, every, tr_id, tr_key), "every": every}
            if reply.ok
            else {}
        )
        await self._respond(msg, reply, extra)

    async def _subscribe_notices(self, msg: Msg, request: dict[str, str]) -> None:
        """A reader of notices: its stream, and a pull consumer the gateway makes for it there.

        Notices are the gateway's standing subscriptions, not client demand: asking for them takes
        no slot. The consumer is made here, not by the reader: a reader allowed to make consumers
        could make a push consumer that delivers its notices onto any subject.
        """
        tr_id, hts_id, client = request["tr_id"], request["tr_key"], request["client"]
        if (tr_id, hts_id) not in self.notice_keys:
            await self._respond(
                msg,
                Reply(
                    False,
                    "invalid",
                    f"this gateway takes no {tr_id} notices of {hts_id[:2]}***: its operator starts it with "
                    "--hts-id for that HTS ID (or hts_id in the credentials file)",
                ),
            )
            return
        reply = self.planner.touch(client, time.monotonic(), request.get("secret"))
        if not reply.ok:
            await self._respond(msg, reply)
            return
        stream = subjects.notice_stream(self.env, hts_id)
        try:
            consumer = await self._notice_consumer(stream, tr_id, hts_id, request.get("durable"))
        except Exception as exc:  # noqa: BLE001 - JetStream refused: said to the reader, logged once here
            logger.warning("could not make a notice consumer on %s: %s", stream, exc)
            await self._respond(
                msg, Reply(False, "unavailable", f"JetStream refused a consumer on {stream}: {exc}")
            )
            return
        extra = {
            "subject": subjects.notice_subject(self.env, tr_id, hts_id),
            "stream": stream,
            "consumer": consumer,
        }
        await self._respond(msg, Reply(True), extra)

    async def _notice_consumer(self, stream: str, tr_id: str, hts_id: str, durable: str | None) -> str:
        """The name of a pull consumer of `tr_id`'s notices on `stream`: a durable one kept, else a new one."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        assert self._js is not None
        if durable is not None:
            name = f"{durable}-{tr_id}"
            try:
                await self._js.consumer_info(stream, name)
            except NotFoundError:
                pass
            else:
                return name  # as it was: a durable consumer resumes where it stopped
        else:
            name = f"e-{secrets.token_hex(8)}-{tr_id}"
        # A new consumer starts with the next notice; an ephemeral one ends a minute after its
        # reader stopped fetching.
        config = ConsumerConfig(
            name=name,
            durable_name=name if durable is not None else None,
            filter_subject=subjects.notice_subject(self.env, tr_id, hts_id),
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=_NOTICE_ACK_WAIT,
            inactive_threshold=None if durable is not None else _EPHEMERAL_INACTIVE,
        )
        await self._js.add_consumer(stream, config)
        return name

    async def _on_unsubscribe(self, msg: Msg) -> None:
        request = _request(msg, "tr_id", "tr_key", "client", optional=("secret", "every"))
        if isinstance(request, Reply):
            await self._respond(msg, request)
            return
        if "every" in request:
            every = _interval(request["every"], request["tr_id"])
            if isinstance(every, Reply):
                await self._respond(msg, every)
                return
            reply = self.planner.unsubscribe_bars(
                request["client"],
                request["tr_id"],
                request["tr_key"],
                every,
                time.monotonic(),
                request.get("secret"),
            )
            await self._apply(list(reply.actions))
            await self._respond(msg, reply)
            return
        if _encrypted(request["tr_id"]):  # notices take no slot: nothing to release
            await self._respond(msg, Reply(True))
            return
        reply = self.planner.unsubscribe(
            request["client"], request["tr_id"], request["tr_key"], time.monotonic(), request.get("secret")
        )
        await self._apply(list(reply.actions))
        await self._respond(msg, reply)

    async def _on_heartbeat(self, msg: Msg) -> None:
        request = _request(msg, "client")
        if isinstance(request, Reply):
            await self._respond(msg, request)
            return
        client = request["client"]
        reply = self.planner.heartbeat(client, time.monotonic())
        extra = {"lease": self.planner.lease, "subscriptions": self.planner.held(client)} if reply.ok else {}
        await self._respond(msg, reply, extra)

    async def _on_status(self, msg: Msg) -> None:
        limited = self._status_limited(time.monotonic())
        if limited is not None:
            await self._respond(msg, limited)
            return
        body = json.dumps(_fit(self.status(), max(4096, self.nc.max_payload - 512)), ensure_ascii=False)
        if msg.reply:
            await msg.respond(body.encode())

    def _status_limited(self, now: float) -> Reply | None:
        per_second, burst = STATUS_RATE
        budget = self._status_budget
        budget[0] = min(burst, budget[0] + (now - budget[1]) * per_second)
        budget[1] = now
        if budget[0] >= 1.0:
            budget[0] -= 1.0
            return None
        wait = round((1.0 - budget[0]) / per_second, 3)
        return Reply(False, "rate_limited", f"status is asked too often: wait {wait:g} s", retry_after=wait)

    async def _respond(self, msg: Msg, reply: Reply, extra: dict[str, Any] | None = None) -> None:
        """The JSON reply of the contract; every reply names this gateway."""
        if not msg.reply:
            return
        if reply.ok:
            body: dict[str, Any] = {"ok": True, **(extra or {})}
        else:
            body = {"ok": False, "error": reply.error, "message": reply.message}
            if reply.retry_after is not None:
                body["retry_after"] = reply.retry_after
        body["gateway"] = self.id
        await msg.respond(json.dumps(body, ensure_ascii=False).encode())

    def status(self) -> dict[str, Any]:
        """What `kis-ws gateway status` shows (docs/gateway.md)."""
        status = self.planner.status(time.monotonic())
        for session in status["sessions"]:
            live = self._live.get(session["name"])
            session["state"] = live.state if live is not None else self.role
            session["reconnects"] = live.reconnects if live is not None else 0
            session["records"] = live.records if live is not None else 0
        return {
            "ok": True,
            "gateway": self.id,
            "env": self.env,
            "role": self.role,
            **status,
            "notice_streams": sorted({subjects.notice_stream(self.env, h) for _, h in self.notice_keys}),
            "published": self.published,
            "notices": self.notices,
            "notices_held": len(self._held),
            "dropped": self.dropped,
            "bar_aggregators": self.bars.status()["aggregators"],
            "bars_published": self.bars_published,
        }

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartBars):
                self.bars.start(action.tr_id, action.tr_key, action.every)
                continue
            if isinstance(action, StopBars):
                self.bars.stop(action.tr_id, action.tr_key, action.every)
                continue
            live = self._live.get(action.session)
            if live is None:
                continue
            if isinstance(action, Place):
                await live.feed.subscribe(action.tr_id, action.tr_key)
            else:
                await live.feed.unsubscribe(action.tr_id, action.tr_key)

    async def _bar_clock(self) -> None:
        """Close the time bars on the clock, a quiet key's too: at each bar's end + grace."""
        while True:
            due = self.bars.timer()
            wait = 1.0 if due is None else max(0.01, min(1.0, due - time.time()))
            await asyncio.sleep(wait)
            made = self.bars.tick(time.time())
            if made:
                await self._publish_bars(made)

    async def _publish_bars(self, bars: list[Bar]) -> None:
        """Publish bars (rare: one per key and interval), each with its subject's seq."""
        received = f"{time.time():.6f}"
        for bar in bars:
            subject, headers, payload = self.bars.message(bar, received)
            try:
                await self.nc.publish(subject, payload, headers=headers)
            except Exception as exc:  # noqa: BLE001 - NATS away: the consumers see the seq gap
                self.dropped += 1
                logger.debug("a bar of %s was not published: %s", subject, exc)
            else:
                self.bars_published += 1

    async def _expire_leases(self) -> None:
        """Let go of the demand of clients whose lease ran out; not while NATS is away.

        No client can renew its lease through a NATS that is away: the time NATS was away is
        added to every lease, so an outage does not unsubscribe what every consumer still wants.
        """
        away_since: float | None = None
        while True:
            due = self.planner.next_expiry()
            await asyncio.sleep(1.0 if due is None else max(0.05, min(1.0, due - time.monotonic())))
            now = time.monotonic()
            if not self.nc.is_connected:
                away_since = away_since or now
                continue
            if away_since is not None:
                self.planner.extend(now - away_since)
                away_since = None
            await self._apply(self.planner.expire(now))

    # -- held notices on disk --------------------------------------------------------------------------
    def _held_path(self) -> Path | None:
        return self.state_dir / f"held-notices-{self.env}.jsonl" if self.state_dir is not None else None

    def _save_held(self) -> None:
        path = self._held_path()
        if path is None:
            return
        lines = [
            json.dumps({"subject": s, "payload": p.decode(), "headers": h}, ensure_ascii=False)
            for s, p, h in self._held
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.chmod(0o600)  # the user's own orders
        tmp.replace(path)

    def _load_held(self) -> None:
        path = self._held_path()
        if path is None or not path.exists():
            return
        self._held.clear()
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            self._held.append((item["subject"], item["payload"].encode(), item["headers"]))
        if self._held:
            logger.info("%d notices held from an earlier run will be published", len(self._held))
            self._held_wake.set()

    def _warn_if_open(self) -> None:
        """Say so when the NATS lets anyone in: every client may then forge prices and read fills."""
        info = getattr(self.nc, "_server_info", None) or {}  # nats-py keeps the server's INFO here
        if not info.get("auth_required"):
            logger.warning(
                "the NATS this gateway uses asks no client to authenticate: any client can publish "
                "prices that consumers take for KIS's, read execution notices and control this gateway "
                "(docs/gateway.md, Security: run it with `kis-ws gateway nats-config`)"
            )

    async def _ensure_streams(self) -> None:
        """A JetStream stream per HTS ID of `notice_keys` (file storage, 30 days, de-duplicated)."""
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        assert self._js is not None
        for hts_id in dict.fromkeys(h for _, h in self.notice_keys):
            name = subjects.notice_stream(self.env, hts_id)
            wanted = subjects.notice_stream_subjects(self.env, hts_id)
            config = StreamConfig(
                name=name,
                subjects=[wanted],
                storage=StorageType.FILE,
                max_age=30 * _DAY,
                duplicate_window=2 * 60.0,
                max_consumers=256,  # readers' consumers; ephemeral ones go a minute after use
            )
            try:
                await self._js.add_stream(config)
            except BadRequestError as exc:
                if "overlap" in str(exc).lower():
                    raise GatewayConfigError(
                        f"the NATS has a stream whose subjects overlap {wanted} (the stream "
                        "KIS_NOTICES of an earlier kis-proto?): read what you need from it, then delete it "
                        "(nats stream rm KIS_NOTICES)"
                    ) from None
                await self._js.stream_info(name)  # it exists (another gateway made it): keep its settings


class _SteppedDownError(Exception):
    """The leader lease was lost: the sessions are closed, back to standby."""


@functools.lru_cache(maxsize=256)  # asked once per record; bounded, whatever TR ids a server sends
def _encrypted(tr_id: str) -> bool:
    spec = tr_spec(tr_id)
    return spec is not None and spec.encrypted


#: What each field of a control request must look like, and the words that say so.
_FIELDS: dict[str, tuple[re.Pattern[str], str]] = {
    "tr_id": (_TR_ID, "1 to 16 upper-case letters and digits"),
    "tr_key": (re.compile(r"[0-9A-Za-z._-]{1,32}\Z"), "1 to 32 of 0-9 A-Z a-z . _ -"),
    "client": (_CLIENT_ID, "1 to 128 of A-Z a-z 0-9 . _ : @ -"),
    "secret": (_SECRET, "16 to 128 printable ASCII characters, no space"),
    "durable": (_DURABLE, "1 to 64 of A-Z a-z 0-9 _ -"),
    "every": (re.compile(r"[0-9]{1,5}[smh]?\Z"), "an interval like 30s, 1m or 1h"),
}


def _interval(text: str, tr_id: str) -> int | Reply:
    """The seconds of a bar request's ``every`` (``"1m"``, ``"30s"``, ``"60"``), or the refusal."""
    if tr_id not in TRADE_TRS:
        return Reply(
            False, "invalid", f"bars are made from the trade TRs {', '.join(TRADE_TRS)}, not {tr_id}"
        )
    try:
        return parse_interval(text)
    except LocalProtocolError as exc:
        return Reply(False, "bad_request", f'"every": {exc}')


def _request(msg: Msg, *names: str, optional: tuple[str, ...] = ()) -> dict[str, str] | Reply:
    """The fields of a JSON control request, each checked; else the ``bad_request`` reply saying why.

    Bounded before parsing (`MAX_REQUEST` bytes, so no nesting deep enough to matter) and after:
    every field a string of its own form; unknown fields are ignored (a later consumer may add one).
    """
    data = msg.data or b"{}"
    if len(data) > MAX_REQUEST:
        return Reply(
            False, "bad_request", f"a control request is at most {MAX_REQUEST} bytes, not {len(data)}"
        )
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        fields = ", ".join(f'"{n}"' for n in names)
        return Reply(False, "bad_request", f"send a JSON object with the strings {fields}")
    out: dict[str, str] = {}
    for name in (*names, *optional):
        value = body.get(name)
        if value is None and name in optional:
            continue
        pattern, form = _FIELDS[name]
        if not isinstance(value, str) or not pattern.match(value):
            shown = "missing" if value is None else f"not {form}"
            return Reply(False, "bad_request", f'"{name}" is {shown}: send {form}')
        out[name] = value
    return out


def _fit(status: dict[str, Any], limit: int) -> dict[str, Any]:
    """`status` within `limit` bytes of JSON: its longest lists cut (said in ``truncated``) until it fits.

    However many clients and subscriptions there are, the reply stays within the NATS's payload
    limit, so `kis-ws gateway status` keeps working.
    """
    while len(json.dumps(status, ensure_ascii=False).encode()) > limit:
        lists = [k for k in ("clients", "subscriptions") if len(status.get(k) or ()) > 1]
        if not lists:
            break
        name = max(lists, key=lambda k: len(status[k]))
        total = status.get("truncated", {}).get(name, len(status[name]))
        status[name] = status[name][: len(status[name]) // 2]
        status["truncated"] = {**status.get("truncated", {}), name: total}
    return status


def _safe(handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """A NATS callback that logs instead of raising (one bad request must not stop the gateway)."""

    async def run(msg: Msg) -> None:
        try:
            await handler(msg)
        except Exception:
            logger.exception("a control request on %s failed", msg.subject)

    return run
