"""The NATS consumer (`kis_nats.connect`, `WSClient`) against a fake gateway that follows docs/gateway.md.

The fake gateway below is written from the contract with plain nats-py (its own subject escaping,
its own headers), on a real nats-server: it is the independent peer of the consumer. The first
test reads trades from it with nothing but nats-py, by the documented contract, so the fake is
itself checked against the document.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import string
import time
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import kis_nats
import kis_nats._consumer as consumer_module
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from kis_proto import (
    Connected,
    ConnectionClosed,
    Credentials,
    EventsDropped,
    LayoutDrift,
    Reconnecting,
    Record,
    SubscribeFailed,
    SubscriptionError,
    records,
)

from .helpers import VECTOR_PLAINTEXT
from .nats_fixture import HTS_IDS, nats_server_fixture  # noqa: F401 - the fixture nats_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client as NATSClient
    from nats.aio.msg import Msg

    from kis_proto import FeedEvent

    from .nats_fixture import NatsProcess

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the fake gateway, from the contract ---------------------------------------------------------
SAFE = set(string.ascii_letters + string.digits + "-_")


def contract_token(key: str) -> str:
    """docs/gateway.md: bytes outside A-Z a-z 0-9 - _ of the key's UTF-8 become ~ and two hex digits."""
    return "".join(ch if ch in SAFE else "".join(f"~{b:02X}" for b in ch.encode()) for ch in key)


def trade(key: str, price: int = 71500, width: int = 47) -> list[str]:
    """A trade record of `width` fields (H0STCNT0: symbol, time, price, sign, change, rate…)."""
    head = [key, "093015", str(price), "2", "500", "0.70"]
    return head + ["0"] * (width - len(head))


def notice_fields(order: str) -> list[str]:
    fields = VECTOR_PLAINTEXT.split("^")
    fields[1] = order  # ODER_NO: tells the notices apart
    return fields


class FakeGateway:
    """The gateway's side of the contract: control replies, leased demand, records and notices."""

    def __init__(
        self, server: NatsProcess, *, env: str = "sim", lease: float = 30.0, gateway_id: str = "gw-test"
    ) -> None:
        self.server = server
        self.env = env
        self.lease = lease
        self.gateway_id = gateway_id
        self.demand: dict[tuple[str, str], dict[str, float]] = {}  # (tr, key) -> client -> lease end
        self.requests: list[tuple[str, dict[str, Any], float]] = []  # (verb, body, monotonic time)
        #: Notice keys whose pull consumer exists (made before the reply names it).
        self.bound: set[tuple[str, str]] = set()
        self.refuse: dict[tuple[str, str], tuple[str, str]] = {}  # (tr, key) -> (error, message)
        self.expired: list[tuple[str, str, str]] = []
        self.seq: dict[str, int] = {}
        self.nc: NATSClient | None = None

    async def start(self) -> FakeGateway:
        self.nc = await self.server.client("gateway", reconnect_time_wait=0.05, max_reconnect_attempts=-1)
        for verb in ("subscribe", "unsubscribe", "heartbeat", "status"):
            await self.nc.subscribe(f"kis.{self.env}.ctl.{verb}", cb=self._control)
        for hts_id in HTS_IDS:  # a stream per HTS ID, as docs/gateway.md says
            stream = StreamConfig(
                name=self.stream(hts_id),
                subjects=[f"kis.{self.env}.notice.*.{contract_token(hts_id)}"],
                storage=StorageType.FILE,
                max_age=30 * 86400,
                duplicate_window=120,
            )
            await self.nc.jetstream().add_stream(stream)
        await self.nc.flush()
        return self

    def stream(self, hts_id: str) -> str:
        return f"KIS_NOTICES_{self.env.upper()}_{contract_token(hts_id)}"

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    def subject(self, tr_id: str, key: str) -> str:
        return f"kis.{self.env}.{tr_id}.{contract_token(key)}"

    def expire(self) -> None:
        now = time.monotonic()
        for (tr_id, key), clients in list(self.demand.items()):
            for client, until in list(clients.items()):
                if until < now:
                    del clients[client]
                    self.expired.append((tr_id, key, client))
            if not clients:
                del self.demand[(tr_id, key)]

    def demanded(self, tr_id: str, key: str) -> bool:
        self.expire()
        return (tr_id, key) in self.demand

    def verbs(self, verb: str) -> list[dict[str, Any]]:
        return [body for v, body, _ in self.requests if v == verb]

    async def _control(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[1]
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = None
        self.requests.append((verb, body, time.monotonic()))
        self.expire()
        answer = self._answer(verb, body)
        if answer.get("notice_consumer"):
            answer = await self._notice_consumer(answer, body)
            self.bound.add((body["tr_id"], body["tr_key"]))
        await msg.respond(json.dumps(answer | {"gateway": self.gateway_id}).encode())

    async def _notice_consumer(self, answer: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """A notice reader is given a pull consumer the gateway makes on its HTS ID's stream."""
        assert self.nc is not None
        stream = self.stream(body["tr_key"])
        durable = body.get("durable")
        name = f"{durable}-{body['tr_id']}" if durable else f"e-{len(self.requests)}-{body['tr_id']}"
        config = ConsumerConfig(
            name=name,
            durable_name=name if durable else None,
            filter_subject=answer["subject"],
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=10,
            inactive_threshold=None if durable else 60,
        )
        try:
            await self.nc.jetstream().consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            await self.nc.jetstream().add_consumer(stream, config)
        del answer["notice_consumer"]
        return answer | {"stream": stream, "consumer": name}

    def _answer(self, verb: str, body: Any) -> dict[str, Any]:
        bad = {"ok": False, "error": "bad_request", "message": "not the JSON of docs/gateway.md"}
        if not isinstance(body, dict):
            return bad
        if verb == "status":
            return {
                "gateway": self.gateway_id,
                "env": self.env,
                "role": "active",
                "published": sum(self.seq.values()),
            }
        client = body.get("client")
        if not isinstance(client, str):
            return bad
        now = time.monotonic()
        if verb == "heartbeat":
            held = 0
            for (wanted, _), clients in self.demand.items():
                if client in clients:
                    clients[client] = now + self.lease
                    held += not wanted.startswith(("H0STCNI", "H0GSCNI"))
            return {"ok": True, "lease": self.lease, "subscriptions": held}
        tr_id, key = body.get("tr_id"), body.get("tr_key")
        if not isinstance(tr_id, str) or not isinstance(key, str):
            return bad
        if verb == "subscribe":
            if (tr_id, key) in self.refuse:
                error, message = self.refuse[(tr_id, key)]
                return {"ok": False, "error": error, "message": message}
            self.demand.setdefault((tr_id, key), {})[client] = now + self.lease
            notice = tr_id.startswith(("H0STCNI", "H0GSCNI"))
            subject = (
                f"kis.{self.env}.notice.{tr_id}.{contract_token(key)}" if notice else self.subject(tr_id, key)
            )
            return {"ok": True, "subject": subject, **({"notice_consumer": True} if notice else {})}
        clients = self.demand.get((tr_id, key), {})
        clients.pop(client, None)
        if not clients:
            self.demand.pop((tr_id, key), None)
        return {"ok": True}

    def headers(
        self, tr_id: str, key: str, fields: list[str], subject: str, seq: int | None
    ) -> dict[str, str]:
        known = records.LAYOUTS_BY_ID.get(tr_id, (Record, {}))[1]
        cls = known.get(len(fields))
        self.seq[subject] = seq if seq is not None else self.seq.get(subject, 0) + 1
        era = (cls.era or "") if cls is not None else ""
        # Spelled out as docs/gateway.md does, not with kis_nats' own format_meta.
        meta = f"width={len(fields)} era={era} received={time.time():.6f}"
        return {"Kis-Meta": f"{meta} seq={self.seq[subject]} gateway={self.gateway_id}"}

    async def publish(self, tr_id: str, key: str, fields: list[str], *, seq: int | None = None) -> bool:
        """Publish one record if some client wants (tr_id, key), as the gateway does; True if it did."""
        if not self.demanded(tr_id, key):
            return False
        assert self.nc is not None
        subject = self.subject(tr_id, key)
        headers = self.headers(tr_id, key, fields, subject, seq)
        await self.nc.publish(subject, "^".join(fields).encode(), headers=headers)
        await self.nc.flush()
        return True

    async def notice(self, tr_id: str, hts_id: str, fields: list[str], msg_id: str) -> None:
        """Publish one notice into JetStream (always: the gateway never drops a notice)."""
        assert self.nc is not None
        subject = f"kis.{self.env}.notice.{tr_id}.{contract_token(hts_id)}"
        headers = self.headers(tr_id, hts_id, fields, subject, None) | {"Nats-Msg-Id": msg_id}
        await self.nc.jetstream().publish(subject, "^".join(fields).encode(), headers=headers)


@pytest.fixture
async def gateway(nats_server: NatsProcess) -> Any:
    fake = await FakeGateway(nats_server).start()
    try:
        yield fake
    finally:
        await fake.stop()


async def take(
    feed: kis_nats.Feed, until: Callable[[list[FeedEvent]], bool], timeout: float = 5.0
) -> list[FeedEvent]:
    """Events of `feed` until `until(events)` holds."""
    events: list[FeedEvent] = []
    async with asyncio.timeout(timeout):
        async for event in feed:
            events.append(event)
            if until(events):
                return events
    return events


def of(kind: type, events: list[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


# -- the contract, read with nats-py alone -------------------------------------------------------
async def test_an_independent_consumer_reads_trades_by_the_documented_contract(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    nc = await nats_server.client()
    try:
        got: asyncio.Queue[Msg] = asyncio.Queue()
        await nc.subscribe("kis.sim.HDFSCNT0.DNASBRK~2EB", cb=got.put)
        request = {"tr_id": "HDFSCNT0", "tr_key": "DNASBRK.B", "client": "plain-nats"}
        reply = json.loads((await nc.request("kis.sim.ctl.subscribe", json.dumps(request).encode(), 2)).data)
        assert reply == {"ok": True, "subject": "kis.sim.HDFSCNT0.DNASBRK~2EB", "gateway": "gw-test"}
        beat = json.loads((await nc.request("kis.sim.ctl.heartbeat", b'{"client": "plain-nats"}', 2)).data)
        assert beat["ok"] is True
        assert beat["lease"] > 0
        assert await gateway.publish("HDFSCNT0", "DNASBRK.B", ["DNASBRK.B", "093015", "412.5"])
        msg = await asyncio.wait_for(got.get(), 2)
        assert msg.data.decode().split("^") == ["DNASBRK.B", "093015", "412.5"]
        assert msg.headers is not None
        meta = dict(item.split("=", 1) for item in msg.headers["Kis-Meta"].split())
        assert meta["width"] == "3"
        assert meta["seq"] == "1"
        assert meta["gateway"] == gateway.gateway_id
        assert abs(float(meta["received"]) - time.time()) < 60
        bad = json.loads((await nc.request("kis.sim.ctl.subscribe", b"[1]", 2)).data)
        assert bad["ok"] is False
        assert bad["error"] == "bad_request"
        released = json.loads(
            (await nc.request("kis.sim.ctl.unsubscribe", json.dumps(request).encode(), 2)).data
        )
        assert released == {"ok": True, "gateway": "gw-test"}
        assert not await gateway.publish("HDFSCNT0", "DNASBRK.B", ["DNASBRK.B"])  # nobody wants it now
    finally:
        await nc.close()


# -- the feed ------------------------------------------------------------------------------------
async def test_records_arrive_decoded_by_the_era_of_their_width(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds(), client="strategy-1") as feed:
        sub = await feed.subscribe("H0STCNT0", "005930")
        assert sub.ok
        assert sub.subject == "kis.sim.H0STCNT0.005930"
        assert await sub.wait() is sub
        [body] = gateway.verbs("subscribe")
        secret = body.pop("secret")
        assert body == {"tr_id": "H0STCNT0", "tr_key": "005930", "client": "strategy-1"}
        assert len(secret) >= 16
        assert await gateway.publish("H0STCNT0", "005930", trade("005930", 71500))
        assert await gateway.publish("H0STCNT0", "005930", trade("005930", 71600, width=46))
        events = await take(feed, lambda ev: len(of(Record, ev)) == 2)
        assert isinstance(events[0], Connected)
        today, older = of(Record, events)
        assert type(today) is records.H0STCNT0
        assert type(older) is records.H0STCNT0_2026_08
        assert (today.tr_key, today.price, older.price) == ("005930", 71500, 71600)
        assert not of(LayoutDrift, events)
    assert gateway.demand == {}  # aclose released it


async def test_keys_with_dots_travel_escaped(nats_server: NatsProcess, gateway: FakeGateway) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        sub = await feed.subscribe("HDFSCNT0", "DNASBRK.B")
        assert sub.subject == "kis.sim.HDFSCNT0.DNASBRK~2EB" == gateway.subject("HDFSCNT0", "DNASBRK.B")
        assert await gateway.publish("HDFSCNT0", "DNASBRK.B", ["DNASBRK.B", "093015"])
        [record] = of(Record, await take(feed, lambda ev: bool(of(Record, ev))))
        assert record.tr_id == "HDFSCNT0"
        assert record.raw[:2] == ("DNASBRK.B", "093015")


async def test_a_width_no_era_has_is_reported_once_and_still_delivered(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        await feed.subscribe("H0STCNT0", ["005930", "000660"])
        for key in ("005930", "000660", "005930"):
            assert await gateway.publish("H0STCNT0", key, trade(key, width=50))
        events = await take(feed, lambda ev: len(of(Record, ev)) == 3)
        [drift] = of(LayoutDrift, events)
        assert (drift.tr_id, drift.expected, drift.received, drift.known) == ("H0STCNT0", 47, 50, (46, 47))
        assert events.index(drift) < events.index(of(Record, events)[0])
        assert [len(r.raw) for r in of(Record, events)] == [50, 50, 50]
        assert of(Record, events)[0].extra == ("0", "0", "0")


async def test_a_gap_in_kis_seq_is_events_dropped_and_a_new_gateway_gets_the_demand_again(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        await feed.subscribe("H0STCNT0", "005930")
        for seq in (1, 2, 5):
            assert await gateway.publish("H0STCNT0", "005930", trade("005930", 70000 + seq), seq=seq)
        events = await take(feed, lambda ev: len(of(Record, ev)) == 3)
        kinds = [type(e).__name__ for e in events if not isinstance(e, Connected)]
        assert kinds == ["H0STCNT0", "H0STCNT0", "EventsDropped", "H0STCNT0"]
        assert of(EventsDropped, events)[0].count == 2
        # A standby took over: its numbering starts again, which is no gap, and it has not heard of
        # our demand, so the feed repeats the subscribe.
        gateway.gateway_id = "gw-standby"
        assert await gateway.publish("H0STCNT0", "005930", trade("005930"), seq=1)
        events = await take(feed, lambda ev: bool(of(Record, ev)))
        assert not of(EventsDropped, events)
        await eventually(lambda: len(gateway.verbs("subscribe")) == 2)


@pytest.mark.parametrize("short_way", [True, False])
async def test_the_short_way_past_nats_py_checks_and_delivers_as_its_callbacks_do(
    nats_server: NatsProcess, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, short_way: bool
) -> None:
    """The gateway's messages are read straight from nats-py's parser (`_Client`); everything else,
    and everything when nats-py is not the one it was written for, through nats-py's callbacks.
    Both deliver and reject alike: gaps, forgeries, JetStream deliveries, header blocks not the gateway's."""
    assert consumer_module._DIRECT  # this nats-py hands its messages over as the short way needs
    monkeypatch.setattr(consumer_module, "_DIRECT", short_way)
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        assert isinstance(feed._nc, consumer_module._Client) is short_way
        await feed.subscribe("H0STCNT0", "005930")
        await gateway.publish("H0STCNT0", "005930", trade("005930", 70_000), seq=1)  # names the gateway
        await take(feed, lambda ev: bool(of(Record, ev)))
        assert gateway.nc is not None
        subject, payload = "kis.sim.H0STCNT0.005930", "^".join(trade("005930", 1)).encode()
        forged: list[dict[str, str] | None] = [
            None,  # no Kis-Meta
            {"Kis-Meta": "width=47 era=2026-09"},  # no seq, no gateway
            {"Kis-Meta": "width=47 era=2026-09 received=1.0 seq=1000000000 gateway=gw-test"},  # a jump
            {"Kis-Meta": "received=1.0 seq=999999999 gateway=gw-test", "X-Other": "1"},  # the long way
        ]
        for headers in forged:
            await gateway.nc.publish(subject, payload, headers=headers)
        await gateway.nc.publish(subject, payload, headers={"kis-meta": "seq=2 gateway=gw-test"})  # not ours
        await gateway.nc.flush()
        await eventually(lambda: feed.rejected == 5)
        for seq in (2, 3, 6):
            await gateway.publish("H0STCNT0", "005930", trade("005930", 70_000 + seq), seq=seq)
        events = await take(feed, lambda ev: len(of(Record, ev)) == 3)
        # A gateway that adds a header of its own (a later version): its messages take the long way.
        extra = f"width=47 era=2026-09 received={time.time():.6f} seq=7 gateway=gw-test"
        await gateway.nc.publish(subject, payload, headers={"Kis-Meta": extra, "Kis-Later": "x"})
        [later] = of(Record, await take(feed, lambda ev: bool(of(Record, ev))))
    assert feed.rejected == 5
    assert [e.price for e in of(Record, events)] == [70_002, 70_003, 70_006]
    assert [e.count for e in of(EventsDropped, events)] == [2]
    assert later.price == 1


async def test_a_refusal_answers_the_ticket_and_is_an_event(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    gateway.refuse[("H0STCNT0", "000660")] = ("capacity", "123 subscriptions on 3 app keys, at most 41 each")
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        placed, refused = await feed.subscribe("H0STCNT0", ["005930", "000660"])
        assert placed.ok
        assert not refused.ok
        with pytest.raises(SubscriptionError, match="capacity: 123 subscriptions") as caught:
            await refused.wait()
        assert isinstance(caught.value, kis_nats.GatewayRefusedError)
        assert caught.value.error == "capacity"
        [event] = of(SubscribeFailed, await take(feed, lambda ev: bool(of(SubscribeFailed, ev))))
        assert (event.tr_key, event.msg_cd) == ("000660", "capacity")
        assert feed.subscriptions == [("H0STCNT0", "005930")]


async def test_status_is_the_gateways_reply(nats_server: NatsProcess, gateway: FakeGateway) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        status = await feed.status()
        assert (status["gateway"], status["env"], status["role"]) == ("gw-test", "sim", "active")


async def test_no_gateway_is_a_clear_error_and_the_key_is_not_kept(nats_server: NatsProcess) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds(), request_timeout=0.4) as feed:
        with pytest.raises(
            kis_nats.GatewayUnavailableError, match=r"kis\.sim\.ctl\.subscribe.*no gateway listens"
        ):
            await feed.subscribe("H0STCNT0", "005930")
        assert feed.subscriptions == []


async def test_no_nats_is_a_clear_connection_error() -> None:
    with pytest.raises(ConnectionError, match=r"cannot connect to NATS at nats://127\.0\.0\.1:1") as caught:
        async with kis_nats.connect("nats://user:secret@127.0.0.1:1", retry_delay=0.05):
            pass
    assert "secret" not in str(caught.value)


async def test_misuse_is_refused_at_once(nats_server: NatsProcess) -> None:
    from kis_proto import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="env"):
        await kis_nats.open_feed(nats_server.url, nats_creds=nats_server.creds(), env="Sim.x")
    with pytest.raises(LocalProtocolError, match="error_cb"):
        await kis_nats.open_feed(
            nats_server.url, nats_creds=nats_server.creds(), nats_options={"error_cb": None}
        )
    with pytest.raises(LocalProtocolError, match="notices_durable"):
        await kis_nats.open_feed(nats_server.url, nats_creds=nats_server.creds(), notices_durable="a.b")
    feed = await kis_nats.open_feed(nats_server.url, nats_creds=nats_server.creds())
    try:
        with pytest.raises(LocalProtocolError, match="tr_key"):
            await feed.subscribe("H0STCNT0", "has space")
        with pytest.raises(LocalProtocolError, match="HTS ID"):
            await feed.subscribe_notices()
    finally:
        await feed.aclose()
    with pytest.raises(LocalProtocolError, match="closed"):
        await feed.subscribe("H0STCNT0", "005930")
    assert isinstance(of(ConnectionClosed, feed._buffer.drain())[-1], ConnectionClosed)


@pytest.mark.parametrize(("client_lease", "gateway_lease"), [(0.6, 30.0), (30.0, 0.6)])
async def test_the_heartbeat_renews_the_lease_every_third_of_the_shorter_one(
    nats_server: NatsProcess, client_lease: float, gateway_lease: float
) -> None:
    fake = await FakeGateway(nats_server, lease=gateway_lease).start()
    try:
        async with kis_nats.connect(
            nats_server.url, nats_creds=nats_server.creds(), lease=client_lease
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await asyncio.sleep(1.5)
            assert fake.demanded("H0STCNT0", "005930")
        beats = [t for verb, _, t in fake.requests if verb == "heartbeat"]
        gaps = [b - a for a, b in itertools.pairwise(beats[1:])]  # after the first, sent at once
        assert 4 <= len(beats) <= 9, beats
        assert all(0.12 < gap < 0.45 for gap in gaps), gaps
        assert fake.expired == []
        assert all(body == {"client": feed.client} for body in fake.verbs("heartbeat"))
    finally:
        await fake.stop()


@pytest.mark.parametrize("lease", [0.6, 30.0], ids=["the-lease-ran-out", "the-gateway-forgot"])
async def test_the_feed_comes_back_after_a_nats_restart_and_subscribes_again(
    nats_server: NatsProcess, lease: float
) -> None:
    """Short leases run out while NATS is down; with long ones the gateway restarted too and forgot.

    Either way the gateway no longer has the key when NATS is back: the feed must ask again (with
    30 s leases the next heartbeat is 10 s away, so only the reconnect itself can bring it back).
    """
    fake = await FakeGateway(nats_server, lease=lease).start()
    try:
        async with kis_nats.connect(
            nats_server.url,
            lease=lease,
            retry_delay=0.05,
            request_timeout=1.0,
            nats_creds=nats_server.creds(),
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            assert await fake.publish("H0STCNT0", "005930", trade("005930", 70001))
            await take(feed, lambda ev: bool(of(Record, ev)))
            await asyncio.to_thread(nats_server.stop)
            await asyncio.sleep(0.8)  # longer than the short lease
            if lease > 1:
                fake.demand.clear()
            assert not fake.demanded("H0STCNT0", "005930")
            await asyncio.to_thread(nats_server.start)
            await eventually(lambda: fake.demanded("H0STCNT0", "005930"), timeout=3)
            assert await fake.publish("H0STCNT0", "005930", trade("005930", 70002))
            events = await take(feed, lambda ev: bool(of(Record, ev)))
            assert [type(e) for e in events if not isinstance(e, Record)][:2] == [Reconnecting, Connected]
            assert of(records.H0STCNT0, events)[0].price == 70002
            assert not of(EventsDropped, events)  # nothing was published for it meanwhile
    finally:
        await fake.stop()


async def test_batches_and_unsubscribe(nats_server: NatsProcess, gateway: FakeGateway) -> None:
    async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
        sub = await feed.subscribe("H0STCNT0", "005930")
        for price in (1, 2, 3):
            assert await gateway.publish("H0STCNT0", "005930", trade("005930", price))
        got: list[records.H0STCNT0] = []
        async with asyncio.timeout(5):
            async for batch in feed.batches():
                got += of(records.H0STCNT0, batch)
                if len(got) == 3:
                    break
        assert [r.price for r in got] == [1, 2, 3]
        await sub.unsubscribe()
        [released] = gateway.verbs("unsubscribe")
        assert released == gateway.verbs("subscribe")[0]  # the same client and secret
        assert not gateway.demanded("H0STCNT0", "005930")
        assert feed.subscriptions == []


# -- notices -------------------------------------------------------------------------------------
async def test_notices_through_a_durable_consumer_survive_the_consumer_being_away(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    def orders(events: list[Any]) -> list[str]:
        return [r.raw[1] for r in of(records.H0STCNI0, events)]

    async with kis_nats.connect(
        nats_server.url, notices_durable="strategy-1", nats_creds=nats_server.creds("notices", "myhtsid")
    ) as feed:
        sub = await feed.subscribe_notices("myhtsid")
        assert sub.subject == "kis.sim.notice.H0STCNI0.myhtsid"
        for order in ("1", "2"):
            await gateway.notice("H0STCNI0", "myhtsid", notice_fields(order), msg_id=f"n{order}")
        events = await take(feed, lambda ev: len(orders(ev)) == 1)  # takes 1; 2 is not taken
        assert orders(events) == ["1"]
        assert type(of(Record, events)[0]) is records.H0STCNI0
        await eventually(lambda: len(feed._buffer) > 0)  # 2 has come, and waits in the feed
    assert ("H0STCNI0", "myhtsid") in gateway.demand  # a durable notice subscription is not released
    for order in ("3", "4"):
        await gateway.notice("H0STCNI0", "myhtsid", notice_fields(order), msg_id=f"n{order}")
    # The same notice again (a gateway publishing what it held): the stream drops the duplicate.
    await gateway.notice("H0STCNI0", "myhtsid", notice_fields("3"), msg_id="n3")
    async with kis_nats.connect(
        nats_server.url, notices_durable="strategy-1", nats_creds=nats_server.creds("notices", "myhtsid")
    ) as feed:
        await feed.subscribe_notices("myhtsid")
        events = await take(feed, lambda ev: len(orders(ev)) == 3)
        assert orders(events) == ["2", "3", "4"]  # the one not taken, then those sent while away
        await asyncio.sleep(0.2)
        assert orders(feed._buffer.drain()) == []  # each once


async def test_ephemeral_notices_and_the_callback_client(
    nats_server: NatsProcess, gateway: FakeGateway
) -> None:
    trades: list[Record] = []
    notices: list[Record] = []
    errors: list[Any] = []
    ws = kis_nats.WSClient(
        nats_server.url,
        nats_creds=nats_server.creds("notices", "myhtsid"),
        credentials=Credentials(app_key="k", app_secret="s", hts_id="myhtsid"),
        on_error=errors.append,
        sync_callbacks="per-subscription",
    )
    gateway.refuse[("H0STCNT0", "000660")] = ("invalid", "no such symbol")
    await ws.subscribe("H0STCNT0", ["005930", "000660"], trades.append)
    assert await ws.subscribe_notices(notices.append) == "H0STCNI0"
    runner = asyncio.create_task(ws.run())
    try:
        # The client subscribes in the background once it runs: the trade's key, and the notice
        # consumer (which starts with the next notice: published before it exists, one is missed).
        await eventually(
            lambda: (
                gateway.demanded("H0STCNT0", "005930")
                and len(errors) == 1
                and ("H0STCNI0", "myhtsid") in gateway.bound
            )
        )
        assert isinstance(errors[0], SubscribeFailed)
        assert errors[0].msg_cd == "invalid"
        assert await gateway.publish("H0STCNT0", "005930", trade("005930", 70100))
        await gateway.notice("H0STCNI0", "myhtsid", notice_fields("7"), msg_id="n7")
        await eventually(lambda: len(trades) == 1 and len(notices) == 1)
        assert trades[0]["price"] == 70100
        assert notices[0].tr_key == "myhtsid"
    finally:
        await ws.close()
        await asyncio.wait_for(runner, 5)
    assert gateway.demand == {}  # released on close (an ephemeral notice consumer included)


@pytest.mark.parametrize("mode", ["inline", "worker", "per-subscription"])
async def test_the_callback_client_starts_no_callback_after_close(
    nats_server: NatsProcess, gateway: FakeGateway, mode: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """close() in the 50th callback: 50 callbacks, and the records still queued are counted (issue 18)."""
    caplog.set_level(logging.INFO)
    seen: list[Record] = []
    loop = asyncio.get_running_loop()
    ws = kis_nats.WSClient(nats_server.url, nats_creds=nats_server.creds("consumer"), sync_callbacks=mode)

    def on_trade(rec: Record) -> None:
        seen.append(rec)
        if len(seen) == 50:
            if mode == "inline":
                ws.close_nowait()  # on the loop
            else:  # in a worker thread: stop the callbacks here, close on the loop, as documented
                ws.close_nowait()
                asyncio.run_coroutine_threadsafe(ws.close(), loop)

    await ws.subscribe("H0STCNT0", "005930", on_trade)
    runner = asyncio.create_task(ws.run())
    try:
        await eventually(lambda: gateway.demanded("H0STCNT0", "005930"))
        published = 0
        for n in range(80):
            published += await gateway.publish("H0STCNT0", "005930", trade("005930", 70000 + n))
        await asyncio.wait_for(runner, 10)
    finally:
        if not runner.done():
            await ws.close()
            await asyncio.wait_for(runner, 5)
    assert published >= 50
    assert [rec["price"] for rec in seen] == list(range(70000, 70050))
    [queued] = [m for r in caplog.records if (m := re.search(r"closed: (\d+) records?", r.getMessage()))]
    assert 0 <= int(queued[1]) <= published - 50
