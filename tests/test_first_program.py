"""The first program a newcomer writes does what it says (issue 18).

`close()` inside the 50th callback means 50 callbacks, on every transport and in every mode of
`sync_callbacks`; the blocking client's callbacks run one at a time in arrival order, so a plain
counter is exact; the simulator starts in one line from asyncio, trio and blocking code; and the
command line checks what it is given before it connects, warns of invented listings, says what
it recorded on Ctrl-C and judges a file that is not a recording the same way in decode and replay.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import kis_anyio
import kis_asyncio
import kis_sim
import pytest
import trio
from kis_anyio import blocking
from kis_ws.__main__ import main

from kis_proto import Record, records
from kis_proto.feed import ReconnectPolicy

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

    from kis_proto.feed import CallbackClient, SyncCallbacks

MODES: list[SyncCallbacks] = ["inline", "worker", "per-subscription"]
CASES = [("kis_anyio", "asyncio"), ("kis_anyio", "trio"), ("kis_asyncio", "asyncio")]
QUEUED = re.compile(r"closed: (\d+) records? still queued (?:was|were) not handed to callbacks")


def quick_policy() -> ReconnectPolicy:
    return ReconnectPolicy(rand=lambda: 0.5, retry_delay=0.05, max_delay=0.2)


def queued_in_log(caplog: pytest.LogCaptureFixture) -> int:
    """The number the close's log line gives (the test fails without that line)."""
    [count] = [int(m[1]) for r in caplog.records if (m := QUEUED.search(r.getMessage()))]
    return count


# -- close() inside the 50th callback: exactly 50 ---------------------------------------------------


def _fifty(ws_close: Any, seen: list[Record], stall: Any) -> Any:
    """A callback that stalls on the first record (so records queue up) and closes at the 50th."""

    def on_trade(rec: Record) -> None:
        seen.append(rec)
        if len(seen) == 1:
            stall()
        if len(seen) == 50:
            ws_close()

    return on_trade


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_close_in_the_50th_callback_means_50(
    case: tuple[str, str], mode: SyncCallbacks, caplog: pytest.LogCaptureFixture
) -> None:
    transport: ModuleType = kis_anyio if case[0] == "kis_anyio" else kis_asyncio
    caplog.set_level(logging.INFO)
    seen: list[Record] = []

    async def program() -> None:
        async with kis_sim.simulate(seed=18, tick=0.005) as sim:
            ws: CallbackClient[Any] = transport.WSClient(
                url=sim.url, approval_key=sim.approval_key, policy=quick_policy(), sync_callbacks=mode
            )
            # The stall makes a backlog: inline it blocks the loop (records pile up in the socket
            # and arrive as one batch), in a worker it holds the queue.
            await ws.subscribe("H0STCNT0", "005930", _fifty(ws.close_nowait, seen, lambda: time.sleep(0.3)))
            with anyio.fail_after(20):
                await ws.run()

    if case[1] == "trio":
        trio.run(program)
    else:
        asyncio.run(program())
    assert len(seen) == 50
    assert queued_in_log(caplog) > 0  # the backlog the stall made, not handed out and counted


def test_await_close_from_an_async_callback_means_50(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    seen: list[Record] = []

    async def program() -> None:
        async with kis_sim.simulate(seed=19, tick=0.005) as sim:
            ws = kis_asyncio.WSClient(url=sim.url, approval_key=sim.approval_key, policy=quick_policy())

            async def on_trade(rec: Record) -> None:
                seen.append(rec)
                if len(seen) == 1:
                    time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop on purpose: a batch piles up
                if len(seen) == 50:
                    await ws.close()

            await ws.subscribe("H0STCNT0", "005930", on_trade)
            await asyncio.wait_for(ws.run(), 20)

    asyncio.run(program())
    assert len(seen) == 50
    assert queued_in_log(caplog) > 0


@pytest.mark.parametrize("mode", ["worker", "per-subscription"])
def test_blocking_close_in_the_50th_callback_means_50(
    mode: SyncCallbacks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seen: list[Record] = []
    with kis_sim.running(seed=20, tick=0.005) as sim:
        ws = blocking.WSClient(
            url=sim.url, approval_key=sim.approval_key, policy=quick_policy(), sync_callbacks=mode
        )
        ws.subscribe("H0STCNT0", "005930", _fifty(ws.close, seen, lambda: time.sleep(0.3)))
        ws.run_forever()
    assert len(seen) == 50
    assert queued_in_log(caplog) > 0


# -- the blocking client's default: one at a time, in arrival order --------------------------------


def test_a_blocking_programs_plain_counter_is_exact_by_default() -> None:
    symbols = ["005930", "000660", "035720"]
    count = dict.fromkeys(symbols, 0)
    running = 0
    overlapped = False
    threads: set[int] = set()
    volumes: dict[str, list[int]] = {s: [] for s in symbols}
    with kis_sim.running(seed=21, tick=0.005) as sim:
        ws = blocking.WSClient(url=sim.url, approval_key=sim.approval_key, policy=quick_policy())
        loop_thread: list[int] = []

        def on_trade(rec: records.H0STCNT0) -> None:
            nonlocal running, overlapped
            running += 1
            overlapped |= running > 1
            threads.add(threading.get_ident())
            value = count[rec.symbol]  # a plain read-modify-write, with room for a race
            time.sleep(0.0005)
            count[rec.symbol] = value + 1
            volumes[rec.symbol].append(rec["ACML_VOL"])  # type: ignore[arg-type]
            running -= 1
            if sum(count.values()) == 150:
                ws.close()

        ws.subscribe(records.H0STCNT0, symbols, on_trade)
        ws.subscribe("H0STCNT0", "005930", lambda rec: loop_thread.append(threading.get_ident()))
        ws.run_forever()
    assert sum(count.values()) == 150  # exact: no update lost, none after close
    assert not overlapped
    assert len(threads) == 1  # one worker thread...
    assert set(loop_thread) == threads  # ...for every callback, not one per subscription
    assert threading.get_ident() not in threads  # and never the caller's thread
    for series in volumes.values():  # each key's records in the order KIS sent them
        assert series == sorted(series)


def test_per_subscription_workers_run_in_parallel() -> None:
    """The explicit option: a slow subscription does not hold back another one."""
    fast: list[float] = []
    with kis_sim.running(seed=22, tick=0.01) as sim:
        ws = blocking.WSClient(
            url=sim.url,
            approval_key=sim.approval_key,
            policy=quick_policy(),
            sync_callbacks="per-subscription",
        )
        started = time.monotonic()

        def slow(rec: Record) -> None:
            time.sleep(5.0)

        def quick(rec: Record) -> None:
            fast.append(time.monotonic() - started)
            if len(fast) == 20:
                ws.close()

        ws.subscribe("H0STCNT0", "005930", slow)
        ws.subscribe("H0STCNT0", "000660", quick)
        ws.run_forever()
    assert len(fast) == 20
    assert fast[-1] < 4.0  # did not wait for the slow callback


# -- the simulator, one line away -------------------------------------------------------------------


async def _one_trade_anyio(url: str, key: str) -> records.H0STCNT0:
    async with kis_anyio.connect(url, approval_key=key) as feed:
        await feed.subscribe("H0STCNT0", "005930")
        with anyio.fail_after(10):
            async for event in feed:
                if isinstance(event, records.H0STCNT0):
                    return event
    raise AssertionError("no trade")


def test_the_simulator_in_one_line_from_asyncio() -> None:
    async def program() -> records.H0STCNT0:
        async with kis_sim.simulate() as sim:
            async with kis_asyncio.connect(sim.url, approval_key=sim.approval_key) as feed:
                await feed.subscribe("H0STCNT0", "005930")
                async for event in feed:
                    if isinstance(event, records.H0STCNT0):
                        return event
        raise AssertionError("no trade")

    trade = asyncio.run(asyncio.wait_for(program(), 20))
    assert trade.symbol == "005930"
    assert trade.price > 0


def test_the_simulator_in_one_line_from_trio() -> None:
    async def program() -> records.H0STCNT0:
        async with kis_sim.simulate() as sim:
            return await _one_trade_anyio(sim.url, sim.approval_key)

    trade = trio.run(program)
    assert trade.symbol == "005930"


def test_the_simulator_in_one_line_from_blocking_code() -> None:
    with kis_sim.running() as sim, blocking.connect(sim.url, approval_key=sim.approval_key) as feed:
        feed.subscribe("H0STCNT0", "005930").wait(timeout=10)
        trade = next(event for event in feed if isinstance(event, records.H0STCNT0))
    assert trade.symbol == "005930"


def test_kis_asyncio_stays_stdlib_only() -> None:
    """kis_sim may use anyio; a program of kis_asyncio alone never imports it."""
    code = "import sys, kis_asyncio; sys.exit('anyio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], check=False)  # noqa: S603 - our own interpreter
    assert done.returncode == 0


# -- the command line: inputs checked, listings, summaries -------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    for name in [k for k in os.environ if k.startswith("KIS_")]:
        monkeypatch.delenv(name)
    out = io.StringIO()
    code = main(args, out=out)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, out.getvalue(), err


def test_watch_warns_of_a_listing_it_does_not_know(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(
        ["watch", "999999", "005930", "DNASZZZZ", "--count", "3", "--jsonl"], capsys, monkeypatch
    )
    assert code == 0
    warned = [line for line in err.splitlines() if "not a listing kis-ws knows" in line]
    assert [line.split()[1] for line in warned] == ["999999", "DNASZZZZ"]  # not 005930
    assert all("invents its prices" in line for line in warned)
    assert len(out.splitlines()) == 3  # and it streams


def test_no_listing_warning_with_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With real credentials the key goes to KIS as it is: KIS decides, kis-ws does not guess."""
    with kis_sim.running(seed=3, tick=0.02) as sim:
        for name in [k for k in os.environ if k.startswith("KIS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("KIS_APP_KEY", "PSxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
        monkeypatch.setenv("KIS_APP_SECRET", "s" * 180)
        out = io.StringIO()
        code = main(
            [
                "watch",
                "999999",
                "--url",
                sim.url,
                "--approval-url",
                sim.url.replace("ws://", "http://"),
                "--count",
                "1",
                "--jsonl",
            ],
            out=out,
        )
        err = capsys.readouterr().err
    assert code == 0
    assert "not a listing" not in err
    assert len(out.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["watch", "--url", "ws://127.0.0.1:99999", "005930"], "port"),
        (["watch", "--url", "ws://127.0.0.1:0", "005930"], "port"),
        (["watch", "--gateway", "notaurl", "005930"], "is not a NATS URL"),
        (["watch", "--gateway", "nats://127.0.0.1:99999", "005930"], "is not a NATS URL"),
        (["record", "x.kisrec", "--url", "ws://127.0.0.1:70000", "005930"], "port"),
        (["gateway", "status", "--nats", "http://127.0.0.1:4222"], "is not a NATS URL"),
        (["gateway", "--nats", "127.0.0.1:4222"], "is not a NATS URL"),
    ],
)
def test_a_bad_url_exits_2_at_once(
    args: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytest.importorskip("nats", reason="--gateway and gateway need the nats extra")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    started = time.monotonic()
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 2
    assert time.monotonic() - started < 2.0  # nothing connected, nothing retried
    assert says in err
    assert "e.g." in err  # and what a valid one looks like
    assert "streaming from" not in err  # no claim about a server it never reached
    assert out == ""
    assert not (tmp_path / "x.kisrec").exists()


def test_record_says_what_it_recorded_on_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "day.kisrec"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "kis_ws", "record", str(path), "005930", "--seed", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 4):
            time.sleep(0.1)
        assert path.exists(), "record wrote nothing within 25 s"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=25)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    [summary] = [line for line in err.splitlines() if line.startswith("recorded ")]
    written = int(summary.split()[1])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert written == len(lines) - 1 >= 3  # every message line it counted, after the header
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "content",
    ["# my notes\nhello\nworld\n", "buy 005930 at 70000\n"],
    ids=["prose", "one-line"],
)
def test_decode_and_replay_judge_a_non_recording_alike(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(content, encoding="utf-8")
    lines = {}
    for command in ("decode", "replay"):
        code, out, err = run([command, str(path)], capsys, monkeypatch)
        assert (code, out) == (2, "")
        lines[command] = next(text for text in err.splitlines() if text.startswith("kis-ws:"))
    # The same line but for what each reads: the same file, the same judgement.
    assert re.sub(
        r"is (neither KIS messages nor a kis-ws recording|not a kis-ws recording)", "", lines["decode"]
    ) == (
        re.sub(
            r"is (neither KIS messages nor a kis-ws recording|not a kis-ws recording)", "", lines["replay"]
        )
    )
