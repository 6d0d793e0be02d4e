"""The callback client and subscription tickets on both transports, over loopback sockets.

`WSClient` has one home (`kis_proto.feed.CallbackClient`); these tests hold both transports' clients
to it: refusals reach the log and `on_error`, sync callbacks in threads keep per-subscription
order, and `Feed.subscribe` gives tickets whose answer can be awaited, also across a reconnect.
The notebook test opens, iterates and closes a feed in three different tasks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import kis_anyio
import kis_asyncio
import kis_sim
import pytest

from kis_proto import (
    ConnectionClosed,
    LocalProtocolError,
    Reconnecting,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    SubscriptionError,
    records,
)
from kis_proto.feed import CallbackClient, ReconnectPolicy, SubState

from .helpers import fields_of, sample

if TYPE_CHECKING:
    from types import ModuleType

    from kis_proto.bars import Bar

pytestmark = pytest.mark.anyio

TRADE = fields_of(sample("0|H0STCNT0"))
KEY = "approval-key"
CASES = [("kis_anyio", "asyncio"), ("kis_anyio", "trio"), ("kis_asyncio", "asyncio")]


@pytest.fixture(params=CASES, ids=["-".join(case) for case in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def transport(case: tuple[str, str]) -> ModuleType:
    return kis_anyio if case[0] == "kis_anyio" else kis_asyncio


def quick_policy(**kwargs: Any) -> ReconnectPolicy:
    options: dict[str, Any] = {"rand": random.Random(11).random, "retry_delay": 0.05, "max_delay": 0.2}
    return ReconnectPolicy(**(options | kwargs))


def trade(price: int, symbol: str = "005930") -> list[str]:
    row = list(TRADE)
    row[0], row[2] = symbol, str(price)
    return row


def price_of(data: Record) -> int:
    price = data["price"]
    assert isinstance(price, int)
    return price


async def next_of(feed: Any, kind: type, timeout: float = 5.0) -> Any:
    with anyio.fail_after(timeout):
        async for event in feed:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the feed ended before a {kind.__name__}")


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def test_both_clients_are_the_one_callback_client() -> None:
    assert issubclass(kis_anyio.WSClient, CallbackClient)
    assert issubclass(kis_asyncio.WSClient, CallbackClient)
    with pytest.raises(LocalProtocolError, match="sync_callbacks"):
        kis_asyncio.WSClient(None, url="ws://127.0.0.1:1", approval_key=KEY, sync_callbacks="threads")  # type: ignore[arg-type]


# -- no silent failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("async_on_error", [False, True], ids=["sync_on_error", "async_on_error"])
async def test_an_unknown_tr_is_logged_and_reaches_on_error(
    transport: ModuleType, async_on_error: bool, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[SubscribeFailed | ServerError] = []
    prices: list[int] = []
    caplog.set_level(logging.WARNING)

    def note(event: SubscribeFailed | ServerError) -> None:
        errors.append(event)

    async def note_async(event: SubscribeFailed | ServerError) -> None:
        await anyio.lowlevel.checkpoint()
        errors.append(event)

    async with kis_sim.simulate(seed=21, tick=0.05) as sim:
        ws = transport.WSClient(
            None,
            url=sim.url,
            approval_key=KEY,
            policy=quick_policy(),
            on_error=note_async if async_on_error else note,
        )

        def on_price(data: Record) -> None:
            prices.append(price_of(data))

        await ws.subscribe("NOTATR00", "005930", on_price)
        await ws.subscribe("H0STCNT0", "005930", on_price)

        async def stop_when_answered() -> None:
            await wait_until(lambda: bool(errors) and len(prices) >= 2)
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_answered)
            with anyio.fail_after(10):
                await ws.run()

    [error] = errors
    assert isinstance(error, SubscribeFailed)
    assert (error.tr_id, error.tr_key, error.msg_cd) == ("NOTATR00", "005930", "OPSP8991")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "NOTATR00" in r.getMessage()]
    assert [r.name for r in warnings] == [transport.__name__]
    assert "OPSP8991" in warnings[0].getMessage()


async def test_a_server_error_is_logged_without_the_key_and_reaches_on_error(
    transport: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stale_key = "0b6f3f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"  # approval keys are UUID-shaped
    errors: list[SubscribeFailed | ServerError] = []
    # A long reconnect delay: the client is closed before it tries the refused key again.
    policy = quick_policy(rand=lambda: 0.99, retry_delay=5.0, max_delay=5.0)
    async with kis_sim.serve(approval_ok=lambda key: False) as server:
        ws = transport.WSClient(None, url=server.url, approval_key=stale_key, policy=policy)
        ws.on_error = errors.append
        await ws.subscribe("H0STCNT0", "005930", lambda data: None)

        async def stop_when_answered() -> None:
            await wait_until(lambda: bool(errors))
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_answered)
            with anyio.fail_after(10):
                await ws.run()
    assert isinstance(errors[0], ServerError)
    assert errors[0].msg_cd == "OPSP0011"
    logged = [r for r in caplog.records if r.name == transport.__name__ and r.levelno == logging.WARNING]
    assert any("OPSP0011" in r.getMessage() for r in logged)
    assert stale_key not in caplog.text


async def test_a_raising_on_error_is_logged_and_the_feed_goes_on(
    transport: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    prices: list[int] = []
    async with kis_sim.simulate(seed=22, tick=0.05) as sim:

        def broken(event: SubscribeFailed | ServerError) -> None:
            raise RuntimeError("an on_error bug must not stop the feed")

        ws = transport.WSClient(None, url=sim.url, approval_key=KEY, policy=quick_policy(), on_error=broken)
        await ws.subscribe("NOTATR00", "005930", lambda data: None)
        await ws.subscribe("H0STCNT0", "005930", lambda data: prices.append(price_of(data)))

        async def stop() -> None:
            await wait_until(lambda: "on_error callback raised" in caplog.text and len(prices) >= 3)
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            with anyio.fail_after(10):
                await ws.run()
    assert len(prices) >= 3


async def test_a_malformed_tr_id_fails_at_subscribe(transport: ModuleType) -> None:
    ws = transport.WSClient(None, url="ws://127.0.0.1:1", approval_key=KEY)
    with pytest.raises(LocalProtocolError, match="malformed"):
        await ws.subscribe("not a tr", "005930", lambda data: None)


# -- sync callbacks in threads --------------------------------------------------------------------


async def test_thread_mode_keeps_order_per_subscription_and_a_slow_one_holds_back_only_itself(
    transport: ModuleType,
) -> None:
    slow: list[int] = []
    fast: list[int] = []
    fast_done_when_slow_had: list[int] = []
    threads: set[int] = set()
    loop_thread = threading.get_ident()

    def on_slow(data: Record) -> None:
        threads.add(threading.get_ident())
        time.sleep(0.15)  # blocks its worker thread, not the loop
        slow.append(price_of(data))

    def on_fast(data: Record) -> None:
        threads.add(threading.get_ident())
        fast.append(price_of(data))
        if len(fast) == 20:
            fast_done_when_slow_had.append(len(slow))

    async with kis_sim.serve() as server:
        ws = transport.WSClient(
            None, url=server.url, approval_key=KEY, policy=quick_policy(), sync_callbacks="per-subscription"
        )
        await ws.subscribe("H0STCNT0", "005930", on_slow)
        await ws.subscribe("H0STCNT0", "000660", on_fast)

        async def market() -> None:
            await server.wait_for(
                lambda: bool(server.sessions) and len(server.sessions[0].conn.subscriptions) == 2
            )
            for n in range(20):
                if n < 5:
                    await server.broadcast("H0STCNT0", [trade(1000 + n, "005930")])
                await server.broadcast("H0STCNT0", [trade(2000 + n, "000660")])
            await wait_until(lambda: len(slow) == 5)
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            with anyio.fail_after(10):
                await ws.run()
    assert slow == [1000 + n for n in range(5)]
    assert fast == [2000 + n for n in range(20)]
    # The fast subscription was served while the slow one still had records waiting.
    assert fast_done_when_slow_had[0] < 5
    assert loop_thread not in threads


async def test_inline_mode_is_the_default_and_runs_callbacks_on_the_loop(transport: ModuleType) -> None:
    seen: list[tuple[int, int]] = []
    loop_thread = threading.get_ident()
    async with kis_sim.serve() as server:
        ws = transport.WSClient(None, url=server.url, approval_key=KEY, policy=quick_policy())
        assert ws.sync_callbacks == "inline"

        def on_price(data: Record) -> None:
            seen.append((price_of(data), threading.get_ident()))
            ws.close_nowait()  # plain code on the loop: run closes once the callback returns

        await ws.subscribe("H0STCNT0", "005930", on_price)

        async def market() -> None:
            await server.wait_for(lambda: bool(server.subscribed("H0STCNT0", "005930")))
            await server.broadcast("H0STCNT0", [trade(7)])

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            with anyio.fail_after(10):
                await ws.run()
        await server.wait_for(lambda: not server.sessions)
    assert seen == [(7, loop_thread)]


async def test_a_lane_that_falls_behind_drops_the_oldest_and_says_so(
    transport: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    started = threading.Event()

    def on_price(data: Record) -> None:
        seen.append(price_of(data))
        if len(seen) == 1:
            started.set()
            time.sleep(0.5)  # meanwhile nine more records arrive; the lane keeps the newest two

    async with kis_sim.serve() as server:
        ws = transport.WSClient(
            None,
            url=server.url,
            approval_key=KEY,
            policy=quick_policy(),
            sync_callbacks="per-subscription",
            buffer_size=2,
        )
        await ws.subscribe("H0STCNT0", "005930", on_price)

        async def market() -> None:
            await server.wait_for(lambda: bool(server.subscribed("H0STCNT0", "005930")))
            await server.broadcast("H0STCNT0", [trade(1)])
            await wait_until(started.is_set)
            for price in range(2, 11):
                await server.broadcast("H0STCNT0", [trade(price)])
                await anyio.sleep(0.01)  # one at a time: the lane, not the feed's buffer, is what drops
            await wait_until(lambda: seen[-1:] == [10])
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            with anyio.fail_after(10):
                await ws.run()
    assert seen == [1, 9, 10]
    assert "005930 fell behind: 7 records dropped" in caplog.text


# -- subscription tickets -------------------------------------------------------------------------


async def test_subscribe_returns_tickets_answered_by_the_server(transport: ModuleType) -> None:
    async with kis_sim.serve() as server:
        async with transport.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            ticket = await feed.subscribe("H0STCNT0", "005930")
            subscribed = await ticket.wait()
            assert isinstance(subscribed, Subscribed)
            assert (subscribed.tr_id, subscribed.tr_key) == ("H0STCNT0", "005930")
            assert server.subscribed("H0STCNT0", "005930")
            # A key the server already holds is answered at once.
            again = await feed.subscribe("H0STCNT0", "005930")
            assert again.answer == subscribed
            tickets = await feed.subscribe("H0STCNT0", ["000660", "035720"])
            assert [t.tr_key for t in tickets] == ["000660", "035720"]
            assert [(await t.wait()).tr_key for t in tickets] == ["000660", "035720"]

            refused = await feed.subscribe("NOTATR00", "005930")
            with pytest.raises(SubscriptionError, match=r"NOTATR00 005930.*OPSP8991") as info:
                await refused.wait()
            assert info.value.event.msg_cd == "OPSP8991"
            assert "refused OPSP8991" in repr(refused)

            await ticket.unsubscribe()
            await server.wait_for(lambda: not server.subscribed("H0STCNT0", "005930"))
            assert server.subscribed("H0STCNT0", "000660")


async def test_a_ticket_made_while_disconnected_is_answered_after_the_reconnect(
    transport: ModuleType,
) -> None:
    policy = quick_policy(rand=lambda: 0.99, retry_delay=0.3, max_delay=0.3)  # a reconnect delay to act in
    async with kis_sim.serve() as server:
        async with transport.connect(server.url, approval_key=KEY, policy=policy) as feed:
            await (await feed.subscribe("H0STCNT0", "005930")).wait()
            await server.sessions[0].drop()
            await next_of(feed, Reconnecting)
            ticket = await feed.subscribe("H0STCNT0", "000660")
            assert feed._core.registry.state("H0STCNT0", "000660") is SubState.WANTED  # not sent yet
            assert ticket.answer is None
            with anyio.fail_after(5):
                subscribed = await ticket.wait()
            assert subscribed.tr_key == "000660"
            assert server.accepted == 2
            assert server.sessions[0].conn.subscriptions == [("H0STCNT0", "005930"), ("H0STCNT0", "000660")]


async def test_a_ticket_never_answered_says_why(transport: ModuleType) -> None:
    # The server takes seconds to accept: nothing is answered before the feed closes.
    async with kis_sim.simulate(seed=23, faults=kis_sim.Faults(slow_accept=5.0)) as sim:
        async with transport.connect(sim.url, approval_key=KEY, policy=quick_policy()) as feed:
            released = await feed.subscribe("H0STCNT0", "005930")
            await feed.unsubscribe("H0STCNT0", "005930")
            with pytest.raises(LocalProtocolError, match="unsubscribed before KIS answered"):
                await released.wait()
            pending = await feed.subscribe("H0STCNT0", "000660")

            async def close_soon() -> None:
                await anyio.sleep(0.1)
                await feed.aclose()

            async with anyio.create_task_group() as tg:
                tg.start_soon(close_soon)
                with pytest.raises(ConnectionError, match="ended before KIS answered"), anyio.fail_after(5):
                    await pending.wait()


# -- notebooks: each cell is a task of its own ----------------------------------------------------


async def in_a_task_of_its_own(fn: Any) -> Any:
    """Run `fn()` in a new task that ends before this returns, as a notebook cell does."""
    result: list[Any] = []

    async def cell() -> None:
        result.append(await fn())

    async with anyio.create_task_group() as tg:
        tg.start_soon(cell)
    return result[0]


async def test_open_iterate_and_close_in_three_tasks(transport: ModuleType) -> None:
    async with kis_sim.serve() as server:

        async def open_cell() -> Any:
            feed = await transport.open_feed(server.url, approval_key=KEY, policy=quick_policy())
            await feed.subscribe("H0STCNT0", "005930")
            return feed

        feed = await in_a_task_of_its_own(open_cell)
        await server.wait_for(lambda: bool(server.subscribed("H0STCNT0", "005930")))
        await server.broadcast("H0STCNT0", [trade(70000), trade(70100)])

        async def iterate_cell() -> list[int]:
            prices = []
            with anyio.fail_after(5):
                async for event in feed:
                    if isinstance(event, records.H0STCNT0):
                        prices.append(event.price)
                        if len(prices) == 2:
                            break
            return prices

        assert await in_a_task_of_its_own(iterate_cell) == [70000, 70100]

        async def close_cell() -> None:
            await feed.aclose()

        await in_a_task_of_its_own(close_cell)
        assert feed._finished.is_set()  # the reader is over, not left running
        rest = [event async for event in feed]
        assert isinstance(rest[-1], ConnectionClosed)
        assert rest[-1].clean
        await server.wait_for(lambda: not server.sessions)


# -- bars by callback ---------------------------------------------------------------------------


async def test_bar_callbacks_get_the_simulators_bars_and_a_quiet_symbols_bar_closes_on_time(
    transport: ModuleType,
) -> None:
    """`subscribe_bars`: the bars of the key's trades, in order, each once; when the simulator goes
    quiet (a 4 s stall after 1 s) the open bar still closes, by the clock, not by a later trade."""
    records_at: list[float] = []
    got: list[tuple[float, Bar]] = []
    async with kis_sim.simulate(seed=23, tick=0.02, faults=kis_sim.Faults(stall=4.0)) as sim:
        ws = transport.WSClient(None, url=sim.url, approval_key=KEY, policy=quick_policy())

        async def on_bar(bar: Bar) -> None:  # async, awaited on the loop
            await anyio.lowlevel.checkpoint()
            got.append((time.time(), bar))

        await ws.subscribe("H0STCNT0", "005930", lambda data: records_at.append(time.time()))
        await ws.subscribe_bars(["005930"], on_bar, every=1, grace=0.2)
        with pytest.raises(LocalProtocolError, match="trade TRs"):
            await ws.subscribe_bars(["005930"], on_bar, tr_id="H0STASP0", every=1)

        async def stop() -> None:
            # The last trade's bar ends up to 1 s after it arrived, and closes `grace` after that.
            await wait_until(lambda: bool(records_at) and time.time() - records_at[-1] > 1.8, timeout=10)
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            with anyio.fail_after(15):
                await ws.run()
    assert len(got) >= 1
    bars = [bar for _, bar in got]
    assert all(bar.symbol == "005930" and bar.kind == "time" and bar.trades > 0 for bar in bars)
    assert [bar.start for bar in bars] == sorted({bar.start for bar in bars})  # in order, each once
    assert sum(bar.trades for bar in bars) == len(records_at)  # every trade received is in a bar
    last_at, last = got[-1]
    assert last_at - records_at[-1] > 0.15  # closed while nothing came: by the clock
    assert last.end.timestamp() + 0.2 <= last_at < last.end.timestamp() + 1.0
    assert last.complete
