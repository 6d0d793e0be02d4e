"""The gateway when things die: consumers killed, the active gateway killed or stopped, a standby.

Real processes and a real nats-server: a consumer in its own process killed with SIGKILL, and two
`kis-ws gateway` processes on the same simulated app key, the active one killed mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import kis_sim
import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import kis_nats
from kis_gateway import Gateway, SessionSpec
from kis_sim import Faults

from kis_proto import Record

from .nats_fixture import nats_server_fixture
from .test_gateway import running_gateway

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from .nats_fixture import NatsProcess

pytestmark = pytest.mark.anyio
__all__ = ["nats_server_fixture"]  # the fixture, used by name

SYMBOLS = ["005930", "000660", "035420", "051910", "005380"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


def test_a_gateway_id_is_one_header_token() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        Gateway(
            cast("Any", None), "sim", [SessionSpec("a", url="ws://x", approval_key="k")], gateway_id="gw a"
        )
    gw = Gateway(
        cast("Any", None), "sim", [SessionSpec("a", url="ws://x", approval_key="k")], gateway_id="gw-1.b"
    )
    assert gw.id == "gw-1.b"


async def status_of(server: NatsProcess) -> dict[str, Any]:
    nc = await server.client()
    try:
        return cast(
            "dict[str, Any]", json.loads((await nc.request("kis.sim.ctl.status", b"{}", timeout=2)).data)
        )
    finally:
        await nc.close()


def refcounts(status: dict[str, Any]) -> dict[str, int]:
    return {s["tr_key"]: s["clients"] for s in status["subscriptions"] if s["tr_id"] == "H0STCNT0"}


DOOMED = """
import asyncio, sys
import kis_nats
from kis_proto import Record

async def main() -> None:
    async with kis_nats.connect(sys.argv[1], nats_creds=sys.argv[2], env="sim", client="doomed", lease=2.0) as feed:
        await feed.subscribe("H0STCNT0", sys.argv[3:])
        async for event in feed:
            if isinstance(event, Record):
                print("streaming", flush=True)
                break
        await asyncio.Event().wait()  # until killed, without unsubscribing

asyncio.run(main())
"""


@contextlib.contextmanager
def child(
    *argv: str, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, *argv], stdout=stdout, stderr=stderr, text=True)  # noqa: S603
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


async def test_ten_consumers_share_counted_demand_and_a_killed_one_lets_go(nats_server: NatsProcess) -> None:
    async with kis_sim.simulate(seed=5, tick=0.05) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(nats_server, [spec], lease=2.0), contextlib.AsyncExitStack() as stack:
            wants: dict[str, list[str]] = {}
            counts: dict[str, dict[str, int]] = {}
            feeds = []
            for i in range(9):  # overlapping: each wants two neighbours of SYMBOLS
                name = f"c{i}"
                wants[name] = [SYMBOLS[i % 5], SYMBOLS[(i + 1) % 5]]
                feed = await stack.enter_async_context(
                    kis_nats.connect(nats_server.url, env="sim", client=name, nats_creds=nats_server.creds())
                )
                await feed.subscribe("H0STCNT0", wants[name])
                feeds.append(feed)
                counts[name] = dict.fromkeys(wants[name], 0)

            async def count(name: str, feed: Any) -> None:
                async for event in feed:
                    if isinstance(event, Record):
                        counts[name][event.tr_key] += 1

            tasks = [asyncio.create_task(count(name, feed)) for name, feed in zip(wants, feeds, strict=True)]
            wants["doomed"] = ["005930", "000660", "035720"]  # the last one is nobody else's
            with child("-c", DOOMED, nats_server.url, str(nats_server.creds()), *wants["doomed"]) as doomed:
                assert doomed.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(doomed.stdout.readline), 20)
                assert line == "streaming\n"
                expected = {k: sum(k in keys for keys in wants.values()) for k in [*SYMBOLS, "035720"]}
                assert refcounts(await status_of(nats_server)) == expected
                assert expected["005930"] == 4  # overlapping indeed: c0, c4, c8 and the doomed
                doomed.send_signal(signal.SIGKILL)
                doomed.wait(5)
                killed_at = time.monotonic()
            del wants["doomed"]
            expected = {k: sum(k in keys for keys in wants.values()) for k in SYMBOLS}
            async with asyncio.timeout(10):  # the doomed's lease (2 s) runs out; its slots go
                while refcounts(status := await status_of(nats_server)) != expected:
                    await asyncio.sleep(0.1)
            released_after = time.monotonic() - killed_at
            assert "doomed" not in {c["client"] for c in status["clients"]}
            assert not sim.server.subscribed("H0STCNT0", "035720")  # let go at KIS too
            assert sim.server.subscribed("H0STCNT0", "005930")
            # Everyone else keeps their data: fresh records for every key each one wants.
            before = {name: dict(c) for name, c in counts.items()}
            async with asyncio.timeout(10):
                while any(counts[n][k] <= before[n][k] for n in wants for k in wants[n]):
                    await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
    assert 1.0 < released_after < 6.0  # after the lease, not at once and not much later


async def test_a_stopped_gateway_lets_its_standby_in_at_once(
    nats_server: NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kis_nats")
    async with kis_sim.simulate(seed=6, tick=0.05, faults=Faults(in_use=True)) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(nats_server, [spec], gateway_id="first") as first:
            nc = await nats_server.client("gateway")
            standby = Gateway(nc, "sim", [spec], gateway_id="second", leader_renew=0.1)
            task = asyncio.create_task(standby.run())
            try:
                await asyncio.sleep(0.5)
                assert (first.role, standby.role) == ("active", "standby")
                assert "gateway second is on standby: gateway first is active for sim" in caplog.text
                first.stop()  # the lease's TTL is 10 s: deleting the key lets the standby in sooner
                started = time.monotonic()
                async with asyncio.timeout(5):
                    while standby.role != "active":
                        await asyncio.sleep(0.02)
                took = time.monotonic() - started
                assert (await status_of(nats_server))["gateway"] == "second"
            finally:
                standby.stop()
                await asyncio.wait_for(task, 15)
                await nc.close()
    assert took < 2.0


@contextlib.asynccontextmanager
async def gateway_process(
    server: NatsProcess, sim_url: str, state: Path, gateway_id: str
) -> AsyncIterator[subprocess.Popen[str]]:
    log = (state.parent / f"{gateway_id}.log").open("w")
    argv = ["-m", "kis_ws", "gateway", "--nats", server.url, "--nats-creds", str(server.creds("gateway"))]
    argv += ["--url", sim_url, "--state-dir", str(state), "--hts-id", "myhtsid"]
    with log, child(*argv, "--id", gateway_id, "--lease", "3", stdout=log, stderr=log) as process:
        yield process


async def active_gateway(server: NatsProcess) -> str | None:
    with contextlib.suppress(Exception):
        return cast("str", (await status_of(server))["gateway"])
    return None


async def test_the_standby_takes_over_from_a_killed_gateway_and_no_notice_is_lost_or_doubled(
    nats_server: NatsProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"  # shared, as two gateways on one machine would share it
    async with kis_sim.simulate(seed=7, tick=0.1, notice_rate=1.0, faults=Faults(in_use=True)) as sim:
        created: dict[int, float] = {}  # order number -> when the simulator sent its notices
        order_notices = sim.market.order_notices

        orders_stopped = False

        def stamped(*args: Any) -> list[dict[str, str]]:
            if orders_stopped:
                return []
            notices = order_notices(*args)
            created[int(notices[0]["ODER_NO"])] = time.monotonic()
            return notices

        monkeypatch.setattr(sim.market, "order_notices", stamped)
        most_sessions = 0

        async def watch_sessions() -> None:  # one app key: never two sessions at once
            nonlocal most_sessions
            while True:
                most_sessions = max(most_sessions, sum(not s.conn.closed for s in sim.server.sessions))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch_sessions())
        async with (
            gateway_process(nats_server, sim.url, state, "gw-a") as first,
            gateway_process(nats_server, sim.url, state, "gw-b") as second,
        ):
            async with asyncio.timeout(20):
                while (await active_gateway(nats_server)) is None:
                    await asyncio.sleep(0.1)
            active = await active_gateway(nats_server)
            killed, standby = (first, second) if active == "gw-a" else (second, first)
            got: list[tuple[int, str]] = []
            async with kis_nats.connect(
                nats_server.url,
                env="sim",
                client="book",
                notices_durable="book",
                lease=3.0,
                retry_delay=0.2,
                nats_creds=nats_server.creds("notices", "myhtsid"),
            ) as feed:

                async def collect() -> None:
                    async for event in feed:
                        if isinstance(event, Record) and event.tr_id == "H0STCNI0":
                            got.append((int(event.raw[2]), event.raw[13]))  # noqa: PERF401 - read as they come

                collector = asyncio.create_task(collect())
                # The gateway takes its HTS ID's notices from its start; a new durable consumer
                # reads those published after it was made.
                await feed.subscribe_notices("myhtsid", tr_id="H0STCNI0")
                subscribed_at = time.monotonic()
                async with asyncio.timeout(10):
                    while len(got) < 10:
                        await asyncio.sleep(0.02)
                killed.send_signal(signal.SIGKILL)  # mid-stream: a notice may be on its way
                killed_at = time.monotonic()
                killed.wait(5)
                async with asyncio.timeout(20):  # the lease's TTL (10 s), then the standby
                    while (await active_gateway(nats_server)) in (None, active):
                        await asyncio.sleep(0.1)
                took_over = time.monotonic()
                seen = len(got)
                async with asyncio.timeout(10):  # the consumer repeats its demand to the new gateway
                    while len(got) < seen + 10:
                        await asyncio.sleep(0.02)
                # No more orders: what KIS sent is delivered. (Unsubscribing would not stop KIS:
                # the gateway holds notices of its HTS IDs whoever reads them.)
                orders_stopped = True
                sent = sim.market.orders
                # Lost may be only what KIS sent to the gateway in its last moments, or to its dead socket.
                in_flight = {n for n, at in created.items() if killed_at - 0.25 < at < took_over}
                after = {n for n, at in created.items() if at > subscribed_at}
                wanted = {(n, kind) for n in after if n not in in_flight for kind in ("1", "2")}
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        while not wanted <= set(got):
                            await asyncio.sleep(0.02)
                collector.cancel()
            standby.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(standby.wait, 20) == 0  # a clean stop
        watcher.cancel()
    log = (tmp_path / f"{'gw-b' if active == 'gw-a' else 'gw-a'}.log").read_text()
    assert "OPSP8996" not in log, log
    assert f"is on standby: gateway {active} is active for sim" in log  # it said what it was doing
    assert "Traceback" not in log, log
    assert most_sessions == 1
    assert len(got) == len(set(got)), "a notice delivered twice"
    assert sorted(wanted - set(got)) == []
    delivered = {n for n, _ in got}
    assert len(in_flight - delivered) <= 3
    assert max(created) == sent
    assert len(delivered) >= 10
    assert any(created[n] > took_over for n in delivered)  # and from the standby, once it took over


def test_ctrl_c_in_a_terminal_stops_the_gateway_and_its_embedded_nats_cleanly(tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's whole foreground group: the embedded nats-server must not die
    first (the gateway still closes its sessions and lets go of its lease through it)."""
    argv = ["-m", "kis_ws", "gateway", "--state-dir", str(tmp_path), "--nats-port", "0"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, *argv], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stderr is not None
    try:
        said = []
        for line in process.stderr:
            said.append(line)
            if "is active for sim" in line:
                break
        url = next(line.split(" at ", 1)[1].strip() for line in said if line.startswith("NATS (embedded"))
        os.killpg(process.pid, signal.SIGINT)  # as the terminal does
        said += process.stderr.readlines()
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        process.stderr.close()
    text = "".join(said)
    assert "Traceback" not in text, text
    assert "error" not in text.lower(), text
    assert "lost NATS" not in text, text  # its own close is not news
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # the embedded server is gone with it
        socket.create_connection(("127.0.0.1", port), 1).close()
