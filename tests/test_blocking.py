"""kis_anyio.blocking: the feed and the callback client for code with no async, over loopback sockets.

The simulator runs on an event loop of its own in a background thread (as a separate server
would), so a client that blocks its loop is seen by the server exactly as KIS would see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import kis_sim
import pytest
from anyio.from_thread import start_blocking_portal
from kis_anyio import blocking

from kis_proto import (
    Connected,
    ConnectionClosed,
    LocalProtocolError,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    SubscriptionError,
    records,
)
from kis_proto.feed import ReconnectPolicy
from kis_proto.server import KeepAliveAnswered, KISServerConfig, SubscriptionRemoved

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.from_thread import BlockingPortal

    from kis_proto.bars import Bar

ROOT = Path(__file__).resolve().parent.parent
KEY = "approval-key"


def quick_policy(**kwargs: Any) -> ReconnectPolicy:
    options: dict[str, Any] = {"rand": lambda: 0.5, "retry_delay": 0.05, "max_delay": 0.2}
    return ReconnectPolicy(**(options | kwargs))


@contextmanager
def simulator(**options: Any) -> Iterator[tuple[kis_sim.Simulator, BlockingPortal]]:
    """The simulator on its own loop in a background thread, and the portal to that loop."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(kis_sim.simulate(**options)) as sim,
    ):
        yield sim, portal


def keepalives(sim: kis_sim.Simulator) -> int:
    """PINGPONGs the client answered on the server's first live session (0 without one)."""
    sessions = list(sim.server.sessions)
    if not sessions:
        return 0
    return sum(isinstance(e, KeepAliveAnswered) for e in list(sessions[0].events))


# -- the acceptance: a blocking callback does not cost the session ---------------------------------


def test_a_callback_sleeping_3_s_per_record_keeps_a_strict_session() -> None:
    config = KISServerConfig(pingpong_interval=0.5, strict_pingpong=True)
    with simulator(config=config, seed=31, tick=0.05) as (sim, _):
        answered: list[int] = []
        ws = blocking.WSClient(
            url=sim.url, approval_key=KEY, policy=quick_policy(), sync_callbacks="per-subscription"
        )

        def slow(data: Record) -> None:
            time.sleep(3.0)  # a blocking call: pandas, an order over HTTP...
            answered.append(keepalives(sim))
            ws.close()

        ws.subscribe("H0STCNT0", "005930", slow)
        started = time.monotonic()
        ws.run_forever()
        elapsed = time.monotonic() - started
        assert answered, "the callback never ran"
        assert answered[0] >= 5  # six PINGPONG intervals passed during the sleep; all were echoed
        assert sim.server.accepted == 1  # never dropped, never reconnected
        assert elapsed < 8


def test_the_same_callback_inline_costs_the_session() -> None:
    """The control: run on the loop, the same kind of callback blocks the PINGPONG echo."""
    config = KISServerConfig(pingpong_interval=0.5, strict_pingpong=True)
    with simulator(config=config, seed=32, tick=0.05) as (sim, _):
        calls: list[int] = []
        ws = blocking.WSClient(url=sim.url, approval_key=KEY, policy=quick_policy(), sync_callbacks="inline")

        def slow(data: Record) -> None:
            calls.append(1)
            if len(calls) == 1:
                time.sleep(1.5)  # on the event loop: nothing else runs meanwhile
            elif sim.server.accepted >= 2:
                ws.close()  # on the loop too: run_forever ends once this returns

        ws.subscribe("H0STCNT0", "005930", slow)
        ws.run_forever()
        assert sim.server.accepted >= 2  # the strict server dropped the silent client


# -- the blocking feed ------------------------------------------------------------------------------


def test_a_plain_script_prints_ten_trades_and_exits_cleanly() -> None:
    with simulator(seed=33, tick=0.05) as (sim, portal):
        sessions: list[kis_sim.ServerSession] = []

        async def watch() -> None:
            while True:
                sessions.extend(s for s in sim.server.sessions if s not in sessions)
                await anyio.sleep(0.005)

        watcher = portal.start_task_soon(watch)
        script = ROOT / "docs" / "examples" / "blocking_trades.py"
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "transports"), str(ROOT)])}
        done = subprocess.run(  # noqa: S603 - our own example, run with this interpreter
            [sys.executable, "-X", "dev", str(script), sim.url],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        watcher.cancel()
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        lines = done.stdout.splitlines()
        assert len(lines) == 10
        assert all(" 005930 " in line and "원 x " in line for line in lines)
        [session] = sessions
        assert any(isinstance(e, SubscriptionRemoved) for e in session.events)  # it unsubscribed
        portal.call(sim.server.wait_for, lambda: not sim.server.sessions)  # and closed


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_feed_subscribe_iterate_and_close_from_another_thread(backend: blocking.Backend) -> None:
    threads_before = threading.active_count()
    with simulator(seed=34, tick=0.05) as (sim, _):
        with blocking.connect(sim.url, approval_key=KEY, policy=quick_policy(), backend=backend) as feed:
            ticket = feed.subscribe("H0STCNT0", "005930")
            subscribed = ticket.wait(timeout=5)
            assert isinstance(subscribed, Subscribed)
            assert ticket.answer == subscribed
            with pytest.raises(SubscriptionError, match="OPSP8991"):
                feed.subscribe("NOTATR00", "005930").wait(timeout=5)
            trades = 0
            seen: list[object] = []
            for event in feed:
                seen.append(event)
                if isinstance(event, records.H0STCNT0):
                    trades += 1
                    if trades == 3:
                        threading.Thread(target=feed.close).start()  # iteration ends after the close
            assert trades >= 3
            assert isinstance(seen[-1], ConnectionClosed)
            assert seen[-1].clean
            assert feed.next_event() is None  # ended: stays ended
            with pytest.raises(LocalProtocolError, match="closed"):
                feed.subscribe("H0STCNT0", "000660")
    assert threading.active_count() == threads_before  # no loop thread left behind


def test_next_event_takes_a_timeout_and_open_feed_pairs_with_close() -> None:
    with simulator(seed=35, tick=0.05) as (sim, _):
        feed = blocking.open_feed(sim.url, approval_key=KEY, policy=quick_policy())
        assert isinstance(feed.next_event(timeout=5), Connected)
        with pytest.raises(TimeoutError):
            feed.next_event(timeout=0.3)  # nothing subscribed: nothing more comes
        tickets = feed.subscribe("H0STCNT0", ["005930", "000660"])
        assert [t.wait(timeout=5).tr_key for t in tickets] == ["005930", "000660"]
        tickets[1].unsubscribe()
        feed.close()
        feed.close()  # twice is harmless
        events = list(feed)  # what came before the close, then the end
        assert isinstance(events[-1], ConnectionClosed)


def test_a_feed_that_gives_up_raises_connection_error() -> None:
    with simulator(seed=36) as (sim, _):
        port = sim.server.port
    with (
        blocking.connect(
            f"ws://127.0.0.1:{port}", approval_key=KEY, policy=quick_policy(max_retries=1)
        ) as feed,
        pytest.raises(ConnectionError, match="gave up"),
    ):
        for _ in feed:
            pass


# -- the blocking callback client ----------------------------------------------------------------


def test_wsclient_unknown_tr_reaches_on_error_in_a_thread_and_close_from_another_thread() -> None:
    with simulator(seed=37, tick=0.05) as (sim, _):
        errors: list[tuple[SubscribeFailed | ServerError, bool]] = []
        prices: list[int] = []
        main = threading.get_ident()

        def on_error(event: SubscribeFailed | ServerError) -> None:
            errors.append((event, threading.get_ident() != main))

        with blocking.WSClient(url=sim.url, approval_key=KEY, policy=quick_policy(), on_error=on_error) as ws:
            ws.subscribe("NOTATR00", "005930", lambda data: None)

            def stopper() -> None:
                deadline = time.monotonic() + 10
                while not (errors and prices) and time.monotonic() < deadline:
                    time.sleep(0.01)
                ws.subscribe("H0STCNT0", "000660", lambda data: prices.append(2))  # while running
                while prices.count(2) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                ws.close()

            ws.subscribe("H0STCNT0", "005930", lambda data: prices.append(1))
            thread = threading.Thread(target=stopper)
            thread.start()
            ws.run_forever()
            thread.join()
        [(error, in_a_thread)] = errors
        assert isinstance(error, SubscribeFailed)
        assert error.tr_id == "NOTATR00"
        assert in_a_thread
        assert prices.count(2) >= 2


def test_wsclient_run_forever_raises_when_reconnecting_gives_up() -> None:
    with simulator(seed=38) as (sim, _):
        port = sim.server.port
    ws = blocking.WSClient(
        url=f"ws://127.0.0.1:{port}", approval_key=KEY, policy=quick_policy(max_retries=1), backend="trio"
    )
    ws.subscribe("H0STCNT0", "005930", lambda data: None)
    with pytest.raises(ConnectionError, match="gave up"):
        ws.run_forever()


def test_wsclient_checks_what_it_is_given() -> None:
    ws = blocking.WSClient(url="ws://127.0.0.1:1", approval_key=KEY)
    with pytest.raises(LocalProtocolError, match="malformed"):
        ws.subscribe("H0STCNT0", "not a symbol!", lambda data: None)
    with pytest.raises(LocalProtocolError, match="hts_id"):
        ws.subscribe_notices(lambda data: None)
    assert "not running" in repr(ws)
    assert KEY not in repr(ws)


def test_wsclient_bar_callbacks_run_in_threads_in_order() -> None:
    """blocking.WSClient.subscribe_bars: plain callbacks, in a worker thread (the default), each
    bar once and in order; bad options raise at the call, not once running."""
    from kis_proto import LocalProtocolError

    with simulator(seed=33, tick=0.02) as (sim, _):
        got: list[tuple[Bar, str]] = []
        ws = blocking.WSClient(url=sim.url, approval_key=KEY, policy=quick_policy())
        with pytest.raises(LocalProtocolError, match="bar interval"):
            ws.subscribe_bars("005930", lambda bar: None, every="1x")

        def on_bar(bar: Bar) -> None:
            got.append((bar, threading.current_thread().name))
            if len(got) == 3:
                ws.close()

        ws.subscribe_bars(["005930", "000660"], on_bar, every=1, grace=0.1)
        ws.run_forever()
    bars = [bar for bar, _ in got]
    assert len(bars) >= 3
    assert {bar.symbol for bar in bars} <= {"005930", "000660"}
    assert all(name != threading.main_thread().name for _, name in got)
    for symbol in ("005930", "000660"):
        starts = [bar.start for bar in bars if bar.symbol == symbol]
        assert starts == sorted(starts)
