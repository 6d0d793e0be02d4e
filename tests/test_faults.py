"""Each simulator fault against both transports, with the outcome a user should see."""

from __future__ import annotations

import random
import socket
from typing import Any

import anyio
import kis_anyio
import kis_asyncio
import kis_sim
import pytest
from kis_sim import krx_tick

from kis_proto import (
    ConnectionClosed,
    Credentials,
    DecodeFailure,
    KISConfig,
    LayoutDrift,
    MsgCode,
    Reconnecting,
    ServerError,
    Subscribed,
    UndecodableMessage,
    records,
)
from kis_proto.feed import ReconnectPolicy

pytestmark = pytest.mark.anyio
TRANSPORTS = pytest.mark.parametrize("transport", [kis_anyio, kis_asyncio], ids=["kis_anyio", "kis_asyncio"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def policy(**kwargs: Any) -> ReconnectPolicy:
    options: dict[str, Any] = {
        "rand": random.Random(7).random,
        "retry_delay": 0.05,
        "max_delay": 0.1,
        "in_use_floor": 0.3,
    }
    return ReconnectPolicy(**(options | kwargs))


async def collect(feed: Any, until: Any, timeout: float = 10.0) -> list[Any]:
    """Events until `until(events)` holds."""
    events: list[Any] = []
    with anyio.fail_after(timeout):
        async for event in feed:
            events.append(event)
            if until(events):
                return events
    return events


def count(events: list[Any], kind: type) -> int:
    return sum(isinstance(e, kind) for e in events)


@TRANSPORTS
async def test_dropped_socket_reconnects_and_restores(transport: Any) -> None:
    async with kis_sim.simulate(seed=1, tick=0.05, faults=kis_sim.Faults(drop=0.4)) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy(max_retries=None)) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(
                feed, lambda ev: count(ev, Subscribed) >= 2 and isinstance(ev[-1], records.H0STCNT0)
            )
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed[0].code == 1006
    assert count(events, Reconnecting) >= 1


@TRANSPORTS
async def test_garbage_is_reported_and_the_feed_goes_on(transport: Any) -> None:
    async with kis_sim.simulate(seed=2, tick=0.05, faults=kis_sim.Faults(garbage=2)) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(
                feed, lambda ev: count(ev, UndecodableMessage) >= 2 and count(ev, records.H0STCNT0) >= 2
            )
    bad = [e for e in events if isinstance(e, UndecodableMessage)]
    assert bad[0].failure is DecodeFailure.UNKNOWN_MESSAGE
    assert bad[0].raw == "garbage: not a KIS message"
    assert count(events, ConnectionClosed) == 0


@TRANSPORTS
@pytest.mark.parametrize(
    ("faults", "code"),
    [(kis_sim.Faults(utf8=3), 1007), (kis_sim.Faults(oversize=3), 1009)],
    ids=["utf8", "oversize"],
)
async def test_protocol_faults_close_with_their_code_and_reconnect(
    transport: Any, faults: kis_sim.Faults, code: int
) -> None:
    async with kis_sim.simulate(seed=3, tick=0.05, faults=faults) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(feed, lambda ev: count(ev, Reconnecting) >= 1)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed[0].code == code
    assert closed[0].error is not None


@TRANSPORTS
async def test_a_stalled_server_is_detected_by_liveness(transport: Any) -> None:
    config = KISConfig(idle_timeout=0.4)
    async with kis_sim.simulate(seed=4, tick=0.05, faults=kis_sim.Faults(stall=2.0)) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy(), config=config) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(feed, lambda ev: count(ev, Reconnecting) >= 1)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed[0].code == 1011


@TRANSPORTS
async def test_second_session_gets_in_use_and_backs_off(transport: Any) -> None:
    async with kis_sim.simulate(seed=5, tick=0.05, faults=kis_sim.Faults(in_use=True)) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy()) as first:
            await first.subscribe("H0STCNT0", "005930")
            await collect(first, lambda ev: count(ev, records.H0STCNT0) >= 1)
            async with transport.connect(sim.url, approval_key="k", policy=policy()) as second:
                await second.subscribe("H0STCNT0", "000660")
                events = await collect(second, lambda ev: count(ev, Reconnecting) >= 1)
    errors = [e for e in events if isinstance(e, ServerError)]
    assert errors[0].code is MsgCode.ALREADY_IN_USE_APPKEY
    reconnecting = next(e for e in events if isinstance(e, Reconnecting))
    assert reconnecting.delay >= 0.3


@TRANSPORTS
async def test_refused_approval_is_a_clear_error(transport: Any) -> None:
    creds = Credentials("PSsimulated-app-key", "secret", env="paper")
    async with kis_sim.simulate(seed=6, faults=kis_sim.Faults(refuse_approval=True)) as sim:
        port = sim.server.port

        async def run() -> None:
            async with transport.connect(
                sim.url,
                credentials=creds,
                approval_host="127.0.0.1",
                approval_port=port,
                approval_tls=False,
                policy=policy(),
            ) as feed:
                async for _ in feed:
                    pass

        with pytest.raises(ConnectionError, match="EGW00103"):
            with anyio.fail_after(10):
                await run()


@TRANSPORTS
async def test_closing_while_the_approval_key_is_on_its_way_does_not_wait(transport: Any) -> None:
    """Before there is a connection there is nothing to close cleanly: no close_timeout to sit out."""
    creds = Credentials("PSsimulated-app-key", "secret", env="paper")
    with socket.socket() as silent:  # accepts the approval request, never answers it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        feed = await transport.open_feed(
            f"ws://127.0.0.1:{port}",
            credentials=creds,
            approval_host="127.0.0.1",
            approval_port=port,
            approval_tls=False,
            policy=policy(),
        )
        await feed.subscribe("H0STCNT0", "005930")
        await anyio.sleep(0.3)  # the request is out, waiting
        started = anyio.current_time()
        with anyio.fail_after(5):
            await feed.aclose()
        took = anyio.current_time() - started
    assert took < 1.0  # the config's close_timeout is 10 s


@TRANSPORTS
async def test_approval_on_the_simulators_port(transport: Any) -> None:
    creds = Credentials("PSsimulated-app-key", "secret", env="paper")
    async with kis_sim.simulate(seed=7, tick=0.05) as sim:
        key = await transport.fetch_approval_key(creds, host="127.0.0.1", port=sim.server.port, tls=False)
        assert len(key) == 36


@TRANSPORTS
async def test_slow_accept_beyond_the_open_timeout_gives_up(transport: Any) -> None:
    config = KISConfig(open_timeout=0.2)
    async with kis_sim.simulate(seed=8, faults=kis_sim.Faults(slow_accept=1.0)) as sim:

        async def run() -> None:
            async with transport.connect(
                sim.url, approval_key="k", policy=policy(max_retries=1), config=config
            ) as feed:
                async for _ in feed:
                    pass

        with pytest.raises(ConnectionError, match="gave up"):
            with anyio.fail_after(10):
                await run()


def test_faults_parse_like_the_command_line() -> None:
    faults = kis_sim.Faults.parse("drop=5,garbage=20,utf8=7,in_use,refuse_approval=no,slow_accept=1.5")
    assert faults == kis_sim.Faults(drop=5.0, garbage=20, utf8=7, in_use=True, slow_accept=1.5)
    with pytest.raises(Exception, match="unknown fault"):
        kis_sim.Faults.parse("explode")


@TRANSPORTS
@pytest.mark.parametrize("layout", [1, -2])
async def test_newer_and_older_layouts_are_drift_not_loss(transport: Any, layout: int) -> None:
    # Widths no era of H0STCNT0 has (46 and 47 are known; the simulator speaks today's 47):
    # drift, reported once, nothing lost.
    sent = 47 + layout
    async with kis_sim.simulate(seed=9, tick=0.05, layout=layout) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(feed, lambda ev: count(ev, records.H0STCNT0) >= 3)
    drift = [e for e in events if isinstance(e, LayoutDrift)]
    assert drift == [LayoutDrift(tr_id="H0STCNT0", expected=47, received=sent, known=(46, 47))]
    trades = [e for e in events if isinstance(e, records.H0STCNT0)]
    assert all(type(t) is records.H0STCNT0 for t in trades)  # today's layout names the prefix
    assert all(t.price is not None for t in trades)
    assert all(len(t.raw) == sent for t in trades)


@TRANSPORTS
async def test_simulated_orders_give_an_acceptance_then_a_fill(transport: Any) -> None:
    async with kis_sim.simulate(seed=10, tick=0.05, notice_rate=1.0) as sim:
        async with transport.connect(sim.url, approval_key="k", policy=policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await feed.subscribe("H0STCNI9", "myhtsid")
            events = await collect(feed, lambda ev: count(ev, records.H0STCNI0) >= 2)
    acceptance, fill = [e for e in events if isinstance(e, records.H0STCNI0)][:2]
    assert (acceptance.tr_id, acceptance.tr_key, acceptance.symbol) == ("H0STCNI9", "myhtsid", "005930")
    assert (acceptance.cntg_yn, fill.cntg_yn) == ("1", "2")
    assert acceptance.oder_no == fill.oder_no
    assert fill.price is not None
    assert fill.price % krx_tick(fill.price) == 0


async def test_the_simulator_lists_the_trades_no_client_received() -> None:
    """`Simulator.unsent`: trades a fault frame replaced, and, with trade_while_away, those made
    while the client was reconnecting; the client's ACML_VOL shows exactly that volume missing."""
    faults = kis_sim.Faults(drop=0.3, garbage=5)
    async with kis_sim.simulate(seed=8, tick=0.02, faults=faults, trade_while_away=True) as sim:
        async with kis_anyio.connect(sim.url, approval_key="k", policy=policy(max_retries=None)) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            events = await collect(feed, lambda ev: count(ev, Subscribed) >= 3)
    whys = {u.why for u in sim.unsent}
    assert whys == {"away", "fault"}
    assert all(u.tr_id == "H0STCNT0" and u.tr_key == "005930" and u.volume > 0 for u in sim.unsent)
    trades = [e for e in events if isinstance(e, records.H0STCNT0)]
    received = sum(t.volume for t in trades)
    # The market's volume up to the last trade received (its ACML_VOL) is what was received and
    # what was not: unsent trades of earlier seconds, and perhaps some of the same second.
    last, when = trades[-1].acml_vol, sim_time(trades[-1])
    assert last is not None
    before = sum(u.volume for u in sim.unsent if u.at < when)
    same = sum(u.volume for u in sim.unsent if u.at == when)
    assert received + before <= last <= received + before + same


def sim_time(trade: records.H0STCNT0) -> Any:
    from datetime import datetime

    from kis_proto import KST

    day = trade.bsop_date
    assert day is not None
    return datetime.combine(day, trade.time.replace(tzinfo=None), KST)
