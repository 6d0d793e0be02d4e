"""Bars computed once by the gateway (issue 20, item 4): demand, subjects, and the wire against a real NATS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import kis_nats
import kis_sim
from kis_gateway import SessionSpec
from kis_gateway._bars import GatewayBars
from kis_gateway._placement import BARS, Place, Planner, Release, StartBars, StopBars
from kis_nats import subjects

from kis_proto import LocalProtocolError, MessageDecoder, Record, Subscribed
from kis_proto.bars import Bar, BarAggregator

from .nats_fixture import nats_server_fixture
from .test_gateway import running_gateway

if TYPE_CHECKING:
    from .nats_fixture import NatsProcess

__all__ = ["nats_server_fixture"]  # the fixture, used by name


# -- demand: the planner ---------------------------------------------------------------------------


def test_bars_are_counted_across_clients_and_started_and_stopped_once() -> None:
    planner = Planner(["a"])
    first = planner.subscribe_bars("c1", "H0STCNT0", "005930", 60, now=0.0)
    assert first.ok
    assert first.actions == (Place("a", "H0STCNT0", "005930"), StartBars("H0STCNT0", "005930", 60))
    again = planner.subscribe_bars("c2", "H0STCNT0", "005930", 60, now=0.0)
    assert again.ok
    assert again.actions == ()
    assert planner.subscribe_bars("c2", "H0STCNT0", "005930", 60, now=0.0).actions == ()  # idempotent
    assert planner.status(0.0)["bars"] == [
        {"tr_id": "H0STCNT0", "tr_key": "005930", "every": 60, "clients": 2}
    ]
    assert planner.unsubscribe_bars("c1", "H0STCNT0", "005930", 60, now=1.0).actions == ()
    last = planner.unsubscribe_bars("c2", "H0STCNT0", "005930", 60, now=1.0)
    assert last.actions == (StopBars("H0STCNT0", "005930", 60), Release("a", "H0STCNT0", "005930"))
    assert planner.status(1.0)["bars"] == []
    assert planner.placements() == []


def test_bars_and_trades_of_one_key_share_its_subscription() -> None:
    planner = Planner(["a"])
    assert planner.subscribe("trader", "H0STCNT0", "005930", now=0.0).actions == (
        Place("a", "H0STCNT0", "005930"),
    )
    # The bars need no second subscription, and two intervals of the key need one between them.
    assert planner.subscribe_bars("charts", "H0STCNT0", "005930", 60, now=0.0).actions == (
        StartBars("H0STCNT0", "005930", 60),
    )
    assert planner.subscribe_bars("charts", "H0STCNT0", "005930", 10, now=0.0).actions == (
        StartBars("H0STCNT0", "005930", 10),
    )
    # The trader lets go of the trades: the bars still need them.
    assert planner.unsubscribe("trader", "H0STCNT0", "005930", now=1.0).actions == ()
    (placement,) = planner.placements()
    assert placement.clients == {BARS}
    assert planner.status(1.0)["subscriptions"][0]["bars"] is True
    assert planner.unsubscribe_bars("charts", "H0STCNT0", "005930", 10, now=1.0).actions == (
        StopBars("H0STCNT0", "005930", 10),
    )
    assert planner.unsubscribe_bars("charts", "H0STCNT0", "005930", 60, now=1.0).actions == (
        StopBars("H0STCNT0", "005930", 60),
        Release("a", "H0STCNT0", "005930"),
    )


def test_a_lease_that_runs_out_stops_the_bars_of_its_client() -> None:
    planner = Planner(["a"], lease=30.0)
    planner.subscribe_bars("gone", "H0STCNT0", "000660", 60, now=0.0)
    planner.subscribe_bars("alive", "H0STCNT0", "005930", 60, now=0.0)
    planner.heartbeat("alive", now=25.0)
    assert planner.expire(now=31.0) == [
        StopBars("H0STCNT0", "000660", 60),
        Release("a", "H0STCNT0", "000660"),
    ]
    assert planner.bar_demand() == [("H0STCNT0", "005930", 60)]
    assert planner.held("gone") == 0


def test_a_bar_stream_takes_a_slot_of_the_client_limit_and_checks_the_secret() -> None:
    planner = Planner(["a"], client_limit=1)
    assert planner.subscribe("c", "H0STCNT0", "005930", now=0.0, secret="s" * 16).ok
    refused = planner.subscribe_bars("c", "H0STCNT0", "005930", 60, now=0.0, secret="s" * 16)
    assert (refused.ok, refused.error) == (False, "limit")
    forged = planner.unsubscribe_bars("c", "H0STCNT0", "005930", 60, now=0.0, secret="x" * 16)
    assert (forged.ok, forged.error) == (False, "forbidden")


def test_bars_of_a_key_kis_refused_are_refused() -> None:
    planner = Planner(["a"])
    planner.connected("a", up=True)
    planner.subscribe("c", "H0STCNT0", "999999", now=0.0)
    planner.refused("a", "H0STCNT0", "999999", "OPSP0011", "invalid tr_key")
    reply = planner.subscribe_bars("d", "H0STCNT0", "999999", 60, now=0.0)
    assert (reply.ok, reply.error) == (False, "refused")
    assert "OPSP0011" in reply.message
    assert planner.bar_demand() == []


# -- subjects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "token"),
    [(1, "1s"), (30, "30s"), (60, "1m"), (90, "90s"), (300, "5m"), (3600, "1h"), (5400, "90m")],
)
def test_every_interval_has_one_spelling(seconds: int, token: str) -> None:
    assert subjects.interval_token(seconds) == token
    assert subjects.parse_interval_token(token) == seconds
    subject = subjects.bar_subject("real", seconds, "H0STCNT0", "005930")
    assert subject == f"kis.real.bar.{token}.H0STCNT0.005930"
    assert subjects.parse_subject(subject) == subjects.ParsedSubject(
        "real", "bar", "H0STCNT0", "005930", every=seconds
    )


@pytest.mark.parametrize("token", ["60s", "0s", "01m", "1d", "24h1", "", "1M", "25h", "3600s"])
def test_other_spellings_are_not_bar_subjects(token: str) -> None:
    with pytest.raises(ValueError, match="bar interval token"):
        subjects.parse_interval_token(token)
    with pytest.raises(ValueError, match=r"token|subject"):
        subjects.parse_subject(f"kis.real.bar.{token}.H0STCNT0.005930")


@given(st.integers(min_value=1, max_value=subjects.BAR_INTERVAL_MAX), st.text(min_size=1, max_size=12))
def test_bar_subjects_round_trip(seconds: int, key: str) -> None:
    try:
        subject = subjects.bar_subject("sim", seconds, "HDFSCNT0", key)
    except ValueError:
        return  # a key that is not valid Unicode
    parsed = subjects.parse_subject(subject)
    assert (parsed.kind, parsed.every, parsed.key, parsed.tr_id) == ("bar", seconds, key, "HDFSCNT0")


# -- the gateway's aggregators (pure) --------------------------------------------------------------


def trade(symbol: str, hhmmss: str, price: int, volume: int, cumulative: int) -> Record:
    row = ["0"] * 47
    row[0], row[1], row[2], row[12], row[13], row[21], row[46] = (
        symbol,
        hhmmss,
        str(price),
        str(volume),
        str(cumulative),
        "1",
        "2",
    )
    (record,) = MessageDecoder().decode(f"0|H0STCNT0|001|{'^'.join(row)}")
    assert isinstance(record, Record)
    return record


# 2026-12-07 09:00:00 KST as unix time.
NINE = 1_796_601_600.0


def test_only_wanted_keys_go_in_and_a_key_that_moves_session_is_cut_once() -> None:
    bars = GatewayBars("sim", "gw-1")
    assert bars.add("a", trade("005930", "090001", 70_000, 10, 10), NINE + 1) == []
    assert bars.status()["aggregators"] == 0  # nobody wants 005930: nothing kept
    bars.start("H0STCNT0", "005930", 60)
    bars.event(
        "a",
        Subscribed(tr_id="H0STCNT0", tr_key="000660", msg_cd="OPSP0000", message="", encrypted=False),
        NINE,
    )
    bars.add("a", trade("005930", "090001", 70_000, 10, 10), NINE + 1)
    bars.add("a", trade("005930", "090002", 70_100, 5, 15), NINE + 2)
    # KIS moved the key to session b: its bar goes on there, session a's is dropped unsent.
    bars.add("b", trade("005930", "090030", 70_200, 1, 16), NINE + 30)
    made = bars.tick(NINE + 63)
    assert [(b.open, b.close, b.volume) for b in made] == [(70_200, 70_200, 1)]
    assert made[0].gap  # session b did not see the bar's start
    subject, headers, payload = bars.message(made[0], "1.0")
    assert subject == "kis.sim.bar.1m.H0STCNT0.005930"
    assert headers == {"Kis-Meta": "received=1.0 seq=1 gateway=gw-1"}
    assert Bar.from_dict(json.loads(payload)) == made[0]
    assert subjects.meta_sequence(bars.message(made[0], "1.0")[1]["Kis-Meta"]) == ("gw-1", 2)


def test_stopped_bars_are_dropped_unsent() -> None:
    bars = GatewayBars("sim", "gw-1")
    bars.start("H0STCNT0", "005930", 60)
    bars.add("a", trade("005930", "090001", 70_000, 10, 10), NINE + 1)
    bars.stop("H0STCNT0", "005930", 60)
    assert bars.tick(NINE + 120) == []
    assert bars.flush(NINE + 120) == []
    assert bars.wanted == {}


def test_forget_drops_a_key_and_only_it() -> None:
    aggregator = BarAggregator(every=60)
    aggregator.add(trade("005930", "090001", 70_000, 10, 10), NINE + 1)
    aggregator.add(trade("000660", "090001", 200_000, 1, 1), NINE + 1)
    assert aggregator.forget("H0STCNT0", "005930") is True
    assert aggregator.forget("H0STCNT0", "005930") is False
    assert [b.symbol for b in aggregator.handle_timer(NINE + 63)] == ["000660"]


# -- against a real NATS: computed once for every consumer -----------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


async def collect(feed: kis_nats.Feed, n: int) -> list[Bar]:
    out: list[Bar] = []
    async with asyncio.timeout(20):
        async for bar in feed.bars():
            out.append(bar)
            if len(out) >= n:
                break
    return out


@pytest.mark.anyio
async def test_ten_consumers_get_the_same_bars_computed_once(nats_server: NatsProcess) -> None:
    keys = ["005930", "000660"]
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(kis_sim.simulate(seed=7, tick=0.05))
        spec = SessionSpec("app1", url=sim.url, approval_key="k1")
        gateway = await stack.enter_async_context(running_gateway(nats_server, [spec]))
        feeds = [
            await stack.enter_async_context(
                kis_nats.connect(nats_server.url, env="sim", client=f"c{i}", nats_creds=nats_server.creds())
            )
            for i in range(10)
        ]
        # A consumer in another language: a bare NATS client with the read-only role reads the JSON.
        raw = await nats_server.client("readonly")
        stack.push_async_callback(raw.close)
        wire: list[tuple[str, dict[str, str], bytes]] = []

        async def on_bar(msg: Any) -> None:
            wire.append((msg.subject, dict(msg.headers or {}), msg.data))

        await raw.subscribe("kis.sim.bar.>", cb=on_bar)
        # One of them also takes the trades, to cut the same bars itself.
        await feeds[0].subscribe("H0STCNT0", keys)
        for feed in feeds:
            tickets = await feed.subscribe_bars("H0STCNT0", keys, every="1s")
            assert all(t.ok and t.every == 1 for t in tickets)
        status = gateway.status()
        assert sorted((b["tr_key"], b["every"], b["clients"]) for b in status["bars"]) == [
            ("000660", 1, 10),
            ("005930", 1, 10),
        ]
        assert len(sim.server.subscribed("H0STCNT0", "005930")) == 1  # one KIS subscription for all
        local = BarAggregator(every=1, grace=2.0)
        local_bars: list[Bar] = []

        async def cut_locally() -> None:
            loop_time = asyncio.get_running_loop().time
            start = loop_time()
            async for event in feeds[0]:
                local_bars.extend(local.add(event, time.time()))
                if loop_time() - start > 30:
                    break

        cutter = asyncio.create_task(cut_locally())
        stack.callback(cutter.cancel)
        got = await asyncio.gather(*(collect(feed, 8) for feed in feeds))
        # Computed once: one aggregator (one session, one interval) for the ten, each bar made
        # once and published once, whoever asked.
        after = gateway.status()
        assert after["bar_aggregators"] == 1
        assert gateway.bars.made == gateway.bars_published == after["bars_published"]
    # Every consumer got the same bars, in the same order from the first bar all of them waited for.
    first = max(bars[0].end for bars in got)
    same = [[b.to_dict() for b in bars if b.end > first][:4] for bars in got]
    assert all(s == same[0] for s in same)
    assert len(same[0]) == 4
    # Each bar went over the wire once (the bare subscriber saw every publication).
    on_wire = [json.loads(payload) for _, _, payload in wire]
    assert len({(b["symbol"], b["start"], b["revision"]) for b in on_wire}) == len(on_wire)
    # Typed, complete, and what the trades say: the consumer's own cut of the same trades agrees
    # on every bar both saw whole.
    mine = {(b.symbol, b.start): b for b in local_bars if b.complete}
    both = [b for b in got[0] if b.complete and (b.symbol, b.start) in mine]
    assert both, "no bar complete on both sides"
    for bar in both:
        other = mine[(bar.symbol, bar.start)]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades, bar.buy_volume) == (
            other.open,
            other.high,
            other.low,
            other.close,
            other.volume,
            other.trades,
            other.buy_volume,
        )
    # The wire is the documented one: JSON of the dict format, Kis-Meta with seq and gateway.
    subject, headers, payload = wire[0]
    parsed = subjects.parse_subject(subject)
    assert (parsed.kind, parsed.every, parsed.tr_id) == ("bar", 1, "H0STCNT0")
    assert subjects.meta_sequence(headers["Kis-Meta"])[0] == gateway.id
    assert Bar.from_dict(json.loads(payload)).symbol == parsed.key


@pytest.mark.anyio
async def test_the_last_consumer_leaving_stops_the_bars_and_the_subscription(
    nats_server: NatsProcess,
) -> None:
    async with kis_sim.simulate(seed=3, tick=0.05) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k1")
        async with running_gateway(nats_server, [spec]) as gateway:
            async with kis_nats.connect(
                nats_server.url, env="sim", client="solo", nats_creds=nats_server.creds()
            ) as feed:
                ticket = await feed.subscribe_bars("H0STCNT0", "005930", every="1s")
                assert "bars every 1s" in repr(ticket)
                await sim.server.wait_for(lambda: len(sim.server.subscribed("H0STCNT0", "005930")) == 1)
                await collect(feed, 1)
                with pytest.raises(LocalProtocolError, match="trade TRs"):
                    await feed.subscribe_bars("H0STASP0", "005930", every="1s")
                with pytest.raises(LocalProtocolError, match="interval"):
                    await feed.subscribe_bars("H0STCNT0", "005930", every="1 minute")
                await ticket.unsubscribe()
                assert feed.bar_subscriptions == []
                await sim.server.wait_for(lambda: not sim.server.subscribed("H0STCNT0", "005930"))
                assert gateway.status()["bars"] == []
                assert gateway.bars.wanted == {}


@pytest.mark.anyio
async def test_bar_requests_the_gateway_refuses(nats_server: NatsProcess) -> None:
    async with kis_sim.simulate(seed=3, tick=0.2) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k1")
        async with running_gateway(nats_server, [spec]):
            nc = await nats_server.client()
            try:

                async def ask(**body: str) -> dict[str, Any]:
                    body = {"tr_id": "H0STCNT0", "tr_key": "005930", "client": "raw", **body}
                    reply = await nc.request("kis.sim.ctl.subscribe", json.dumps(body).encode(), timeout=5)
                    answer: dict[str, Any] = json.loads(reply.data)
                    return answer

                for every, error in (("2d", "bad_request"), ("0s", "bad_request"), ("90000", "bad_request")):
                    answer = await ask(every=every)
                    assert (answer["ok"], answer["error"]) == (False, error), answer
                book = await ask(every="1m", tr_id="H0STASP0")
                assert (book["ok"], book["error"]) == (False, "invalid")
                assert "trade TRs" in book["message"]
                ok = await ask(every="60")
                assert ok["ok"]
                assert ok["subject"] == "kis.sim.bar.1m.H0STCNT0.005930"
                assert ok["every"] == 60
            finally:
                await nc.close()
