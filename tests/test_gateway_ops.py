"""The gateway for its operator (issue 21): its metrics and probes, and a NATS outage that keeps KIS.

Real parts only: the simulator, a real nats-server (stopped and started again on the same port
and store), gateways on it, `kis_nats` consumers, a `kis-ws watch --gateway` process, and
``/metrics`` scraped over loopback and read with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import kis_sim
import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")
pytest.importorskip("prometheus_client", reason="metrics need the metrics extra")

import kis_metrics
import kis_nats
from kis_gateway import Gateway, SessionSpec, gateway_collector
from kis_sim import Faults
from prometheus_client import CollectorRegistry

from kis_proto import Record

from .nats_fixture import nats_server_fixture
from .test_gateway import running_gateway
from .test_metrics import get, value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from .nats_fixture import NatsProcess

pytestmark = pytest.mark.anyio
__all__ = ["nats_server_fixture"]  # the fixture, used by name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


@contextlib.asynccontextmanager
async def scraped(gateway: Gateway) -> AsyncIterator[str]:
    """The gateway's metrics served on loopback, as ``kis-ws gateway --metrics`` serves them: the URL."""
    registry = CollectorRegistry()
    registry.register(gateway_collector(gateway))
    async with kis_metrics.serve_metrics("127.0.0.1", 0, registry=registry, ready=gateway.ready) as server:
        yield server.url


async def scrape(url: str) -> str:
    status, text = await get(url, "/metrics")
    assert status == 200
    return text


async def until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_the_gateways_metrics_move_and_readyz_follows_the_lead(nats_server: NatsProcess) -> None:
    async with kis_sim.simulate(seed=21, tick=0.05, faults=Faults(in_use=True)) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with (
            running_gateway(nats_server, [spec], gateway_id="first", lease=2.0) as first,
            scraped(first) as url,
        ):
            nc = await nats_server.client("gateway")
            standby = Gateway(nc, "sim", [spec], gateway_id="second", leader_renew=0.1)
            task = asyncio.create_task(standby.run())
            try:
                async with scraped(standby) as standby_url:
                    await until(lambda: _true(standby.role == "standby"))
                    assert await get(standby_url, "/healthz") == (200, "alive\n")
                    assert (await get(standby_url, "/readyz"))[0] == 503
                    text = await scrape(standby_url)
                    assert value(text, "kis_gateway_role", role="standby") == 1
                    assert "kis_session_up{" not in text  # a standby holds no session

                    async with kis_nats.connect(
                        nats_server.url, env="sim", client="c1", lease=2.0, nats_creds=nats_server.creds()
                    ) as feed:
                        await feed.subscribe("H0STCNT0", "005930")
                        async with asyncio.timeout(10):
                            async for event in feed:
                                if isinstance(event, Record):
                                    break
                        assert (await get(url, "/readyz")) == (200, "active\n")
                        text = await scrape(url)
                        assert value(text, "kis_session_up", session="app1") == 1
                        assert value(text, "kis_gateway_role", role="active") == 1
                        assert value(text, "kis_gateway_nats_connected") == 1
                        assert value(text, "kis_gateway_consumers") == 1
                        assert value(text, "kis_subscriptions", session="app1") == 1
                        before = value(text, "kis_records_received_total", session="app1", tr_id="H0STCNT0")
                        published = value(text, "kis_gateway_records_published_total")
                        assert before > 0
                        assert published > 0
                        assert value(text, "kis_gateway_publish_lag_seconds_count") == published
                        assert value(text, "kis_gateway_publish_seconds_count") > 0
                        assert value(text, "kis_gateway_publish_lag_seconds_bucket", le="+Inf") == published
                        assert 'kis_gateway_publish_lag_seconds_bucket{le="0.001"}' in text

                        await sim.server.sessions[0].drop()  # forced: the session reconnects

                        async def reconnected() -> bool:
                            text = await scrape(url)
                            return value(
                                text, "kis_reconnects_total", session="app1", reason="dropped"
                            ) == 1 and (value(text, "kis_session_up", session="app1") == 1)

                        await until(reconnected)
                        await asyncio.sleep(0.3)
                        text = await scrape(url)
                        assert value(text, "kis_connects_total", session="app1") == 2
                        assert (
                            value(text, "kis_records_received_total", session="app1", tr_id="H0STCNT0")
                            > before
                        )
                        assert value(text, "kis_gateway_records_published_total") > published
                    # The consumer went without unsubscribing? It closed: its lease is let go at
                    # once, or it runs out after 2 s; either way no consumer is left.
                    await until(lambda: _scraped_is(url, "kis_gateway_consumers", 0))

                    first.stop()  # the standby takes over at once (the key is deleted)
                    await until(lambda: _ready(standby_url))
                    text = await scrape(standby_url)
                    assert value(text, "kis_gateway_role", role="active") == 1
                    assert value(text, "kis_session_up", session="app1") == 1
                    assert (await get(url, "/readyz"))[0] == 503  # the stopped one is not
            finally:
                standby.stop()
                await asyncio.wait_for(task, 15)
                await nc.close()


async def _true(flag: bool) -> bool:
    return flag


async def _ready(url: str) -> bool:
    return (await get(url, "/readyz"))[0] == 200


async def _scraped_is(url: str, name: str, wanted: float) -> bool:
    return value(await scrape(url), name) == wanted


class Lines:
    """A child process's stdout lines, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)


def spawn(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


OUTAGE = 30.0


async def test_a_30_s_nats_outage_keeps_the_kis_session_and_loses_no_notice(
    nats_server: NatsProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notice about every second (an order: its acceptance and its fill), trades every 50 ms.
    async with kis_sim.simulate(seed=22, tick=0.05, notice_rate=0.02, faults=Faults(in_use=True)) as sim:
        sent: list[int] = []
        order_notices = sim.market.order_notices

        def counted(*args: Any) -> list[dict[str, str]]:
            notices = order_notices(*args)
            sent.append(int(notices[0]["ODER_NO"]))
            return notices

        monkeypatch.setattr(sim.market, "order_notices", counted)
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(
            nats_server, [spec], gateway_id="gw", hts_ids=["myhtsid"], state_dir=tmp_path, lease=5.0
        ) as gateway:
            got: list[tuple[int, str]] = []
            argv = ["-m", "kis_ws", "watch", "--gateway", nats_server.url, "--gateway-env", "sim"]
            argv += ["--nats-creds", str(nats_server.creds()), "--plain", "005930"]
            watcher = spawn(argv)
            lines = Lines(watcher)
            try:
                async with kis_nats.connect(
                    nats_server.url,
                    env="sim",
                    client="book",
                    notices_durable="book",
                    retry_delay=0.2,
                    nats_creds=nats_server.creds("notices", "myhtsid"),
                ) as feed:

                    async def collect() -> None:
                        async for event in feed:
                            if isinstance(event, Record) and event.tr_id == "H0STCNI0":
                                got.append((int(event.raw[2]), event.raw[13]))  # noqa: PERF401

                    collector = asyncio.create_task(collect())
                    await feed.subscribe_notices("myhtsid", tr_id="H0STCNI0")
                    # The durable consumer reads what is published after it was made (one in flight aside).
                    first_order = len(sent) + 2
                    await until(lambda: _true(len(got) >= 2 and len(lines.lines) >= 5), 20)
                    counters = gateway.session_counters()[0][1]
                    assert counters.connects == 1

                    nats_server.stop()
                    stopped = time.monotonic()
                    await asyncio.sleep(OUTAGE / 2)
                    assert gateway.role == "active"
                    assert gateway.stats.lease_in_doubt_since is not None
                    assert gateway.ready() == (False, "NATS is not connected")
                    seen_during = len(lines.lines)
                    await asyncio.sleep(OUTAGE / 2)
                    held = len(gateway._held)
                    assert held >= 10  # about one order a second, two notices each, kept on disk
                    assert (tmp_path / "held-notices-sim.jsonl").read_text().count("\n") == held
                    nats_server.start()  # the same port and store
                    back = time.monotonic()
                    await until(
                        lambda: _true(not gateway._held and gateway.stats.lease_in_doubt_since is None), 20
                    )
                    orders = len(sent)
                    await until(lambda: _true({n for n, _ in got} >= set(range(first_order, orders + 1))), 15)
                    await until(lambda: _true(len(lines.lines) > seen_during + 5), 15)  # watch resumed
                    collector.cancel()
                assert watcher.poll() is None  # it waited for NATS, as it should
                assert gateway.role == "active"
                assert counters.connects == 1  # the KIS session stayed up all along
                assert sim.server.accepted == 1
                assert counters.reconnects == {}
                assert gateway.stats.step_downs == {}
                assert gateway.stats.lease_failures >= 1
            finally:
                watcher.terminate()
                _, stderr = watcher.communicate(timeout=10)
    assert back - stopped >= OUTAGE
    assert len(got) == len(set(got)), "a notice delivered twice"
    wanted = {(n, kind) for n in range(first_order, orders + 1) for kind in ("1", "2")}
    assert wanted <= set(got)
    assert "closed for good" not in stderr
    assert "Traceback" not in stderr, stderr
    # One line per change of state: NATS lost, NATS back.
    assert stderr.count("reconnecting in") == 1, stderr
    # Besides: market data the gateway could not hand to NATS meanwhile, if nats-py's buffer
    # filled (at most once by design), told as a gap.
    others = [
        line for line in stderr.splitlines() if "warning" in line and "were lost on the way" not in line
    ]
    assert others == [], stderr
    assert stderr.count("connected   nats://") == 2, stderr


async def test_the_lease_is_taken_back_only_by_its_own_process(nats_server: NatsProcess) -> None:
    from kis_gateway._lease import Lease, Verdict  # the rule itself, on a real NATS

    nc = await nats_server.client("gateway")
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="KIS_GATEWAY_SIM", ttl=10.0, history=1)
        first, second, again = Lease(kv, "a"), Lease(kv, "b"), Lease(kv, "a")
        assert await first.take() is Verdict.OURS
        assert await second.take() is Verdict.TAKEN
        assert second.holder == "a"
        assert await again.take() is Verdict.TAKEN  # the same id, another process: it waits
        assert await first.take() is Verdict.OURS  # its own key, renewals lost: taken back
        assert await first.renew() is Verdict.OURS
        await kv.delete("leader")  # as the TTL does while NATS is away
        assert await first.renew() is Verdict.OURS  # free again: taken back at once
        await kv.delete("leader")
        assert await second.take() is Verdict.OURS
        assert await first.renew() is Verdict.TAKEN  # another holds it: only now does it stand by
        assert first.holder == "b"
    finally:
        await nc.close()


class Partition:
    """A TCP relay between one client and NATS that can be cut: the network between them failing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cut = False
        self.url = ""
        self._writers: list[asyncio.StreamWriter] = []
        self._relays: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        self.url = f"nats://127.0.0.1:{self._port}"
        return self

    async def heal(self) -> None:
        """The network is back: the relay listens on its port again."""
        self.cut = False
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self._port)

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.split()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    def split(self) -> None:
        """Connections broken, new ones refused (nothing listens: nats-py's attempts fail cleanly)."""
        self.cut = True
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        up_writer = None
        try:
            if self.cut:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
            self._writers += [writer, up_writer]
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                if each is not None:
                    each.close()
                    with contextlib.suppress(Exception):
                        await each.wait_closed()
            self._relays.discard(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


async def test_cut_off_from_nats_the_active_one_keeps_kis_until_it_sees_another_holds_the_lead(
    nats_server: NatsProcess, tmp_path: Path
) -> None:
    import nats

    async with kis_sim.simulate(seed=23, tick=0.05, notice_rate=0.2, faults=Faults(in_use=True)) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        options: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.2}
        async with Partition(nats_server.port) as partition:
            nc_a = await nats.connect(partition.url, **nats_server.options("gateway"), **options)
            nc_b = await nats_server.client("gateway", **options)
            timing: dict[str, Any] = {"leader_ttl": 2.0, "leader_renew": 0.2}
            first = Gateway(
                nc_a, "sim", [spec], gateway_id="a", hts_ids=["myhtsid"], state_dir=tmp_path, **timing
            )
            second = Gateway(nc_b, "sim", [spec], gateway_id="b", hts_ids=["myhtsid"], **timing)
            tasks = [asyncio.create_task(first.run())]
            try:
                await until(lambda: _true(first.ready()[0]))
                tasks.append(asyncio.create_task(second.run()))
                await until(lambda: _true(second.role == "standby"))
                partition.split()  # a's NATS is away; b's is not
                await until(lambda: _true(second.role == "active"), 15)  # after the TTL
                await until(lambda: _true(bool(first._held)), 10)  # notices KIS sends a: held
                assert first.role == "active"  # it does not know b took over: it keeps KIS
                assert sim.server.sessions[0].conn.subscriptions  # a's session, still subscribed
                await until(lambda: _true(second.session_counters()[0][1].reconnects.get("in_use", 0) >= 1))
                assert second.role == "active"  # refused by KIS, it keeps trying
                await partition.heal()  # the network is back: a sees b's key
                await until(lambda: _true(first.role == "standby"), 15)
                assert first.stats.step_downs == {"lease_taken": 1}
                assert not first._held  # published before it let go of KIS
                assert first.stats.notices_published >= 1
            finally:
                for gateway in (first, second):
                    gateway.stop()
                await asyncio.wait_for(asyncio.gather(*tasks), 15)
                await nc_a.close()
                await nc_b.close()
