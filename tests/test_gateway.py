"""The gateway against a real nats-server: KIS sessions shared through NATS by the documented contract."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import TYPE_CHECKING, Any

import kis_sim
import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import kis_asyncio
import kis_nats
from kis_gateway import Gateway, SessionSpec
from kis_gateway import _publish as publish_mod

from kis_proto import Record
from kis_proto.feed import ReconnectPolicy
from kis_proto.server import KISServerConfig

from .nats_fixture import nats_server_fixture

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .nats_fixture import NatsProcess

pytestmark = pytest.mark.anyio
__all__ = ["nats_server_fixture"]  # the fixture, used by name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


@contextlib.asynccontextmanager
async def running_gateway(
    server: NatsProcess, specs: list[SessionSpec], **options: Any
) -> AsyncIterator[Gateway]:
    """A gateway on `server`, logged in as the gateway role, active when the block starts."""
    nc = await server.client("gateway", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    gateway = Gateway(nc, "sim", specs, **options)
    task = asyncio.create_task(gateway.run())
    try:
        async with asyncio.timeout(10):
            while gateway.role != "active":
                await asyncio.sleep(0.02)
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(15):
            await task
        await nc.close()


def rows(symbol: str, n: int) -> list[list[str]]:
    """`n` trades of `symbol` with distinct prices, 47 fields each (today's layout)."""
    out = []
    for i in range(n):
        row = ["0"] * 47
        row[0], row[1], row[2], row[12], row[46] = symbol, "093000", str(70_000 + i * 100), str(i + 1), "2"
        out.append(row)
    return out


async def test_records_through_the_gateway_equal_the_direct_ones(nats_server: NatsProcess) -> None:
    # One KIS server broadcasts the same frames to the gateway's session and to a direct client.
    async with kis_sim.serve() as server:
        spec = SessionSpec("app1", url=server.url, approval_key="k1")
        async with running_gateway(nats_server, [spec]) as gateway:
            policy = ReconnectPolicy(rand=random.Random(1).random, retry_delay=0.05)
            async with kis_asyncio.connect(server.url, approval_key="k2", policy=policy) as direct:
                async with kis_nats.connect(
                    nats_server.url, env="sim", client="t", nats_creds=nats_server.creds()
                ) as shared:
                    await direct.subscribe("H0STCNT0", "005930")
                    ticket = await shared.subscribe("H0STCNT0", "005930")
                    await server.wait_for(lambda: len(server.subscribed("H0STCNT0", "005930")) == 2)
                    del ticket
                    sent = rows("005930", 6)
                    await server.broadcast("H0STCNT0", sent[:1])  # one-record frames and a 5-record one
                    await server.broadcast("H0STCNT0", sent[1:])
                    got_direct = await records(direct, 6)
                    got_shared = await records(shared, 6)
            status = gateway.status()
    assert [r.raw for r in got_shared] == [r.raw for r in got_direct] == [tuple(r) for r in sent]
    assert [type(r) for r in got_shared] == [type(r) for r in got_direct]
    assert [r["price"] for r in got_shared] == [70_000 + i * 100 for i in range(6)]
    assert status["published"] >= 6


async def records(feed: Any, n: int) -> list[Record]:
    out: list[Record] = []
    async with asyncio.timeout(10):
        async for event in feed:
            if isinstance(event, Record):
                out.append(event)
                if len(out) == n:
                    return out
    return out


async def test_three_app_keys_carry_100_subscriptions_and_refuse_the_124th(nats_server: NatsProcess) -> None:
    async with contextlib.AsyncExitStack() as stack:
        specs = []
        for n in range(3):
            sim = await stack.enter_async_context(
                kis_sim.simulate(seed=n, tick=0.1, config=KISServerConfig())
            )
            specs.append(SessionSpec(f"sim{n}", url=sim.url, approval_key=f"key{n}"))
        gateway = await stack.enter_async_context(running_gateway(nats_server, specs))
        nc = await nats_server.client()
        stack.push_async_callback(nc.close)
        symbols = [f"{i:06d}" for i in range(1, 125)]

        async def ask(n: int) -> dict[str, Any]:
            # 41 per client, the default client limit: three strategies fill three app keys.
            body = {"tr_id": "H0STCNT0", "tr_key": symbols[n], "client": f"bulk{n // 41}"}
            reply = await nc.request("kis.sim.ctl.subscribe", json.dumps(body).encode(), timeout=5)
            answer: dict[str, Any] = json.loads(reply.data)
            return answer

        answers = [await ask(n) for n in range(123)]
        assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:3]
        refused = await ask(123)
        assert refused["ok"] is False
        assert refused["error"] == "capacity"
        assert "at most 41 each" in refused["message"]
        # 100 of them stream: a record of each arrives through NATS.
        seen: set[str] = set()
        done = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            seen.add(msg.subject.rsplit(".", 1)[1])  # kis.sim.H0STCNT0.<key>: symbols need no escape
            if len(seen) >= 100:
                done.set()

        sub = await nc.subscribe("kis.sim.H0STCNT0.>", cb=on_msg)
        async with asyncio.timeout(20):
            await done.wait()
        await sub.unsubscribe()
        # Requests leave at KIS's pace (20/s per session): the last acks may still be on their way.
        async with asyncio.timeout(10):
            while not all(p["state"] == "active" for p in gateway.status()["subscriptions"]):
                await asyncio.sleep(0.05)
        status = gateway.status()
        assert sorted(s["subscriptions"] for s in status["sessions"]) == [41, 41, 41]
        assert all(s["state"] == "connected" for s in status["sessions"])


async def test_status_and_bad_requests_answer_by_the_contract(nats_server: NatsProcess) -> None:
    async with kis_sim.simulate(seed=1, tick=0.1) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(nats_server, [spec], gateway_id="gw-test") as gateway:
            nc = await nats_server.client()
            try:
                for body, error in (
                    (b"not json", "bad_request"),
                    (b'{"tr_id": "H0STCNT0"}', "bad_request"),
                    (
                        json.dumps({"tr_id": "FOOBAR00", "tr_key": "005930", "client": "c"}).encode(),
                        "invalid",
                    ),
                    (json.dumps({"tr_id": "H0STCNT0", "tr_key": "5930", "client": "c"}).encode(), "invalid"),
                ):
                    reply = json.loads((await nc.request("kis.sim.ctl.subscribe", body, timeout=5)).data)
                    assert (reply["ok"], reply["error"]) == (False, error), reply
                    assert reply["message"]
                ok = json.loads(
                    (
                        await nc.request(
                            "kis.sim.ctl.subscribe",
                            json.dumps({"tr_id": "H0STCNT0", "tr_key": "005930", "client": "c"}).encode(),
                            timeout=5,
                        )
                    ).data
                )
                assert ok == {"ok": True, "subject": "kis.sim.H0STCNT0.005930", "gateway": "gw-test"}
                beat = json.loads(
                    (await nc.request("kis.sim.ctl.heartbeat", b'{"client": "c"}', timeout=5)).data
                )
                assert beat == {"ok": True, "lease": 30.0, "gateway": "gw-test", "subscriptions": 1}
                status = json.loads((await nc.request("kis.sim.ctl.status", b"{}", timeout=5)).data)
            finally:
                await nc.close()
            assert gateway.id == "gw-test"
    assert status["gateway"] == "gw-test"
    assert status["role"] == "active"
    assert status["capacity"] == {"used": 1, "total": 41}
    assert status["clients"][0]["client"] == "c"
    assert status["subscriptions"][0]["tr_key"] == "005930"
    assert {"published", "notices", "notices_held", "dropped"} <= set(status)


async def test_a_subscription_acked_by_kis_is_active(nats_server: NatsProcess) -> None:
    async with kis_sim.serve() as server:
        spec = SessionSpec("app1", url=server.url, approval_key="k")
        async with running_gateway(nats_server, [spec]) as gateway:
            async with kis_nats.connect(
                nats_server.url, env="sim", client="t", nats_creds=nats_server.creds()
            ) as feed:
                await feed.subscribe("H0STASP0", "005930")
                await server.wait_for(lambda: bool(server.subscribed("H0STASP0", "005930")))
                async with asyncio.timeout(5):
                    while gateway.status()["subscriptions"][0]["state"] != "active":
                        await asyncio.sleep(0.02)


async def read_stream(server: NatsProcess, hts_id: str = "myhtsid") -> list[Any]:
    """Every message of the HTS ID's notice stream, read with plain nats-py as the gateway role."""
    nc = await server.client("gateway")
    try:
        js = nc.jetstream()
        stream = f"KIS_NOTICES_SIM_{hts_id}"
        info = await js.stream_info(stream)
        sub = await js.pull_subscribe(f"kis.sim.notice.*.{hts_id}", durable=None, stream=stream)
        msgs: list[Any] = []
        while len(msgs) < info.state.messages:
            msgs += await sub.fetch(info.state.messages - len(msgs), timeout=5)
        return msgs
    finally:
        await nc.close()


def orders_of(msgs: list[Any]) -> list[tuple[str, str]]:
    """(order number, 1 acceptance / 2 fill) of each H0STCNI0 notice payload, read by position."""
    fields = [m.data.decode().split("^") for m in msgs]
    return [(f[2], f[13]) for f in fields]


async def test_nats_restarted_under_the_gateway(nats_server: NatsProcess) -> None:
    async with kis_sim.simulate(seed=3, tick=0.05, notice_rate=1.0) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(nats_server, [spec], hts_ids=["myhtsid"]) as gateway:
            async with kis_nats.connect(
                nats_server.url,
                env="sim",
                client="t",
                retry_delay=0.2,
                nats_creds=nats_server.creds("notices", "myhtsid"),
            ) as feed:
                await feed.subscribe("H0STCNT0", "005930")
                await feed.subscribe_notices("myhtsid", tr_id="H0STCNI0")
                await records(feed, 3)
                nats_server.stop()
                async with asyncio.timeout(10):  # notices keep coming from KIS: held, not dropped
                    while gateway.status()["notices_held"] < 4:
                        await asyncio.sleep(0.05)
                nats_server.start()  # the same port and store
                async with asyncio.timeout(20):  # held notices delivered, market data resumes
                    while gateway.status()["notices_held"]:
                        await asyncio.sleep(0.05)
                await records(feed, 3)
            orders_sent = sim.market.orders
        assert gateway.status()["notices_held"] == 0
    # Every notice KIS sent while the gateway was up is in the stream, once.
    received = orders_of(await read_stream(nats_server))
    assert len(received) == len(set(received))
    numbers = sorted({int(n) for n, _ in received})
    assert numbers[0] == 1
    assert len(numbers) >= orders_sent - 1  # the last order may be in flight as the gateway stops
    assert set(range(1, len(numbers) + 1)) == set(numbers)
    assert all((f"{n:010d}", kind) in set(received) for n in numbers[:-1] for kind in ("1", "2"))


async def test_a_consumer_with_nats_py_alone_reads_trades_by_the_contract(nats_server: NatsProcess) -> None:
    """No kis_proto in the consumer: the subjects, headers and payload of docs/gateway.md suffice."""
    async with kis_sim.simulate(seed=4, tick=0.05) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(nats_server, [spec]) as gateway:
            nc = await nats_server.client()
            try:
                trades: list[tuple[str, int, int]] = []
                got = asyncio.Event()

                async def on_trade(msg: Any) -> None:
                    fields = msg.data.decode().split("^")
                    meta = dict(item.split("=", 1) for item in msg.headers["Kis-Meta"].split())
                    assert len(fields) == int(meta["width"])
                    assert msg.subject.split(".")[2] == "H0STCNT0"
                    assert meta["era"] == "2026-09"
                    assert float(meta["received"]) > 1.7e9
                    trades.append((fields[0], int(fields[2]), int(meta["seq"])))
                    if len(trades) >= 5:
                        got.set()

                await nc.subscribe("kis.sim.H0STCNT0.000660", cb=on_trade)
                request = {"tr_id": "H0STCNT0", "tr_key": "000660", "client": "plain-nats"}
                reply = json.loads(
                    (await nc.request("kis.sim.ctl.subscribe", json.dumps(request).encode())).data
                )
                assert reply == {"ok": True, "subject": "kis.sim.H0STCNT0.000660", "gateway": gateway.id}
                async with asyncio.timeout(10):
                    await got.wait()
            finally:
                await nc.close()
    assert {symbol for symbol, _, _ in trades} == {"000660"}
    assert all(price > 100_000 for _, price, _ in trades)  # SK하이닉스 near its real level
    seqs = [seq for _, _, seq in trades]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap


# -- the hot path: the text as KIS sent it, a batch at a time ----------------------------------------
@pytest.mark.parametrize("writes", ["raw", "publish"])
async def test_frames_are_published_as_the_text_kis_sent_in_order_with_seq_contiguous(
    nats_server: NatsProcess, writes: str
) -> None:
    """Each record's message is its part of the frame, byte for byte, whatever its fields hold; the
    records of frames arriving in one read go out together, in order, their seq without a gap.
    `writes`: the gateway's own commands below nats-py's publish, or publish itself (its fallback)."""
    odd = ["005930", "093000", "71500", "2", "", "한글", *["0"] * 39, " x ", "2"]  # empty, non-ASCII, spaces
    frames = [
        "0|H0STCNT0|003|" + "^".join("^".join(row) for row in rows("005930", 3)),
        "0|H0STCNT0|001|" + "^".join(odd),
        "0|H0STCNT0|002|" + "^".join(["^".join(odd), "^".join([*rows("005930", 1)[0]])]),
        "0|H0STCNT0|001|" + "^".join([*odd, "appended", ""]),  # a width no era has: as sent too
        *("0|H0STCNT0|050|" + "^".join("^".join(row) for row in rows("005930", 50)) for _ in range(4)),
    ]
    sent = [record for frame in frames for record in split_records(frame)]
    async with kis_sim.serve() as server:
        spec = SessionSpec("app1", url=server.url, approval_key="k1")
        async with running_gateway(nats_server, [spec]) as gateway:
            assert publish_mod.raw_writes(gateway.nc)  # this nats-py has the write path the gateway uses
            if writes == "publish":
                gateway._out = publish_mod.Publisher(gateway.nc, gateway.id, force_publish=True)
            nc = await nats_server.client()
            try:
                got: list[Any] = []
                done = asyncio.Event()

                async def on_msg(msg: Any) -> None:
                    got.append(msg)
                    if len(got) == len(sent):
                        done.set()

                await nc.subscribe("kis.sim.H0STCNT0.005930", cb=on_msg)
                request = {"tr_id": "H0STCNT0", "tr_key": "005930", "client": "plain-nats"}
                await nc.request("kis.sim.ctl.subscribe", json.dumps(request).encode())
                await server.wait_for(lambda: bool(server.subscribed("H0STCNT0", "005930")))
                [session] = server.subscribed("H0STCNT0", "005930")
                for frame in frames:  # one write: the gateway reads them at once, or nearly
                    session.conn.send_text(frame)
                await session.flush()
                async with asyncio.timeout(10):
                    await done.wait()
            finally:
                await nc.close()
            status = gateway.status()
    assert [msg.data for msg in got] == [text.encode() for text in sent]
    metas = [dict(item.split("=", 1) for item in msg.headers["Kis-Meta"].split()) for msg in got]
    assert all(list(msg.headers) == ["Kis-Meta"] for msg in got)
    assert [int(meta["seq"]) for meta in metas] == list(range(1, len(sent) + 1))
    assert [int(meta["width"]) for meta in metas] == [text.count("^") + 1 for text in sent]
    assert {meta["era"] for meta, text in zip(metas, sent, strict=True) if text.count("^") == 46} == {
        "2026-09"
    }
    assert {meta["era"] for meta, text in zip(metas, sent, strict=True) if text.count("^") == 48} == {""}
    assert {meta["gateway"] for meta in metas} == {gateway.id}
    assert len({meta["received"] for meta in metas}) < len(sent)  # stamped per read, not per record
    assert status["published"] == len(sent)
    assert status["dropped"] == 0


def split_records(frame: str) -> list[str]:
    """The records' texts of a frame, cut from it as KIS laid them out (no kis_proto involved)."""
    _, _, count, payload = frame.split("|", 3)
    fields = payload.split("^")
    width = len(fields) // int(count)
    return ["^".join(fields[i : i + width]) for i in range(0, len(fields), width)]


async def test_raw_commands_are_what_nats_py_publish_writes(nats_server: NatsProcess) -> None:
    """The gateway's own HPUB command for a message equals the one nats-py's publish builds for it."""
    nc = await nats_server.client()
    try:
        out = publish_mod.Publisher(nc, "gw-1")
        for text in ("005930^093000^71500", "005930^한글^", "x"):
            subject = "kis.sim.H0STCNT0.005930"
            head = out.head(subject, text.count("^") + 1, "2026-09")
            assert out.add(subject, head, "1764035000.123456", 812, text)
            [ours] = out._commands
            out._commands.clear()
            meta = f"width={text.count('^') + 1} era=2026-09 received=1764035000.123456 seq=812 gateway=gw-1"
            await nc.publish(subject, text.encode(), headers={"Kis-Meta": meta})
            theirs = nc._pending[-1]  # queued, not written yet: the flusher runs when this test yields
            line, rest = ours.split(b"\r\n", 1)
            their_line, their_rest = theirs.split(b"\r\n", 1)
            assert line.split() == their_line.split()  # nats-py writes an empty reply as a second space
            assert rest == their_rest
        assert not out.add(subject, head, "1.000000", 1, "x" * (nc.max_payload + 1))  # NATS would refuse it
        assert len(out) == 0
    finally:
        await nc.close()
