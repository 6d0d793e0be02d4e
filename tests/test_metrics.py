"""Metrics and probes (issue 21): the HTTP side on loopback, a feed's counters moving as it runs.

The counters are read through a real scrape of ``/metrics`` (the Prometheus text format, parsed
with prometheus_client's own parser), against the simulator, with a forced drop.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import kis_asyncio
import kis_sim
import pytest

from kis_proto import KISConfig, Record, Subscribed
from kis_proto.feed import FeedCounters, ReconnectPolicy

prometheus_client = pytest.importorskip("prometheus_client", reason="metrics need the metrics extra")
kis_metrics = pytest.importorskip("kis_metrics", reason="metrics need the metrics extra")
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One GET in a thread, with the standard library's client: an independent peer."""

    def fetch() -> tuple[int, str]:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    return await asyncio.to_thread(fetch)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), math.nan)


async def test_the_probes_and_a_wrong_path() -> None:
    registry = prometheus_client.CollectorRegistry()
    state = {"ready": False}
    async with kis_metrics.serve_metrics(
        "127.0.0.1", 0, registry=registry, ready=lambda: (state["ready"], "standby")
    ) as server:
        assert await get(server.url, "/healthz") == (200, "alive\n")
        assert await get(server.url, "/readyz") == (503, "standby\n")
        state["ready"] = True
        assert (await get(server.url, "/readyz"))[0] == 200
        assert (await get(server.url, "/nope"))[0] == 404
        assert (await get(server.url, "/metrics"))[0] == 200


async def test_a_token_guards_the_metrics_not_the_probes() -> None:
    registry = prometheus_client.CollectorRegistry()
    async with kis_metrics.serve_metrics("127.0.0.1", 0, registry=registry, token="s3cret") as server:
        assert (await get(server.url, "/metrics"))[0] == 401
        assert (await get(server.url, "/metrics", {"Authorization": "Bearer nope"}))[0] == 401
        assert (await get(server.url, "/metrics", {"Authorization": "Bearer s3cret"}))[0] == 200
        assert (await get(server.url, "/healthz"))[0] == 200


async def test_beyond_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="give a token"):
        async with kis_metrics.serve_metrics("0.0.0.0", 0, registry=prometheus_client.CollectorRegistry()):  # noqa: S104
            pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9464", ("127.0.0.1", 9464)), (":0", ("127.0.0.1", 0)), ("[::1]:9000", ("::1", 9000))],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert kis_metrics.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000", "x:-1"])
def test_bad_listen_addresses_say_what_a_good_one_is(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("e.g. 127.0.0.1:9464")):
        kis_metrics.parse_listen(text)


async def test_a_feeds_counters_move_as_it_runs_and_reconnects() -> None:
    async with kis_sim.simulate(seed=31, tick=0.02) as sim:
        policy = ReconnectPolicy(rand=lambda: 0.5, retry_delay=0.05, max_delay=0.2)
        async with kis_asyncio.connect(
            sim.url, approval_key=sim.approval_key, policy=policy, config=KISConfig(request_rate=math.inf)
        ) as feed:
            counters: FeedCounters = feed.counters
            registry = prometheus_client.CollectorRegistry()
            registry.register(kis_metrics.FeedCollector(lambda: [("sim", counters)]))
            async with kis_metrics.serve_metrics("127.0.0.1", 0, registry=registry) as server:
                await feed.subscribe("H0STCNT0", ["005930", "000660"])
                seen = await take(feed, 20)
                _, first = await get(server.url, "/metrics")
                assert value(first, "kis_session_up", session="sim") == 1.0
                assert value(first, "kis_subscriptions", session="sim") == 2.0
                received = value(first, "kis_records_received_total", session="sim", tr_id="H0STCNT0")
                assert received >= len(seen)  # every record the application took was counted
                [session] = sim.server.sessions
                await session.drop()
                await take(feed, 10, after_reconnect=True)
                _, second = await get(server.url, "/metrics")
                assert value(second, "kis_connects_total", session="sim") == 2.0
                assert value(second, "kis_reconnects_total", session="sim", reason="dropped") == 1.0
                assert value(second, "kis_records_received_total", session="sim", tr_id="H0STCNT0") > received


async def take(feed: Any, n: int, *, after_reconnect: bool = False) -> list[Record]:
    out: list[Record] = []
    acked = not after_reconnect
    async with asyncio.timeout(20):
        async for event in feed:
            if isinstance(event, Subscribed):
                acked = True
            elif isinstance(event, Record) and acked:
                out.append(event)
                if len(out) == n:
                    return out
    return out


def test_kis_ws_record_serves_its_metrics(tmp_path: Path) -> None:
    path = tmp_path / "day.kisrec"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "kis_ws",
            "record",
            str(path),
            "005930",
            "--seed",
            "5",
            "--metrics",
            "127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("KIS_")},
    )
    try:
        assert process.stderr is not None
        url = ""
        deadline = time.monotonic() + 25
        while not url and time.monotonic() < deadline:
            line = process.stderr.readline()
            if line.startswith("metrics on "):
                url = line.split()[2].removesuffix("/metrics")
        assert url, "record never said where its metrics are"
        texts: list[str] = []
        while len(texts) < 2 or value(
            texts[-1], "kis_records_received_total", session="record", tr_id="H0STCNT0"
        ) <= value(texts[0], "kis_records_received_total", session="record", tr_id="H0STCNT0"):
            assert time.monotonic() < deadline, "the records counter did not move"
            texts.append(asyncio.run(get(url, "/metrics"))[1])
            time.sleep(0.3)
        assert asyncio.run(get(url, "/readyz"))[0] == 200
        assert value(texts[-1], "kis_session_up", session="record") == 1.0
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=25)


def test_record_refuses_metrics_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "kis_ws",
            "record",
            str(tmp_path / "x"),
            "005930",
            "--metrics",
            "0.0.0.0:9464",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "need a token" in done.stderr
    assert not (tmp_path / "x").exists()
