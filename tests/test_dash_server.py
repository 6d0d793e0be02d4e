"""The dashboard's server without a browser (issue 22): the token, the JSON messages, the coalescing.

A real simulator feeds a real `kis_anyio` feed into `kis_dash.DashState`; the server listens on
loopback and aiohttp's client is the page. tests/test_dash.py drives the page in Chromium.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import kis_anyio
import kis_sim
import pytest

from kis_proto.bars import BarAggregator

aiohttp = pytest.importorskip(
    "aiohttp", reason="the dashboard needs the dash extra: pip install 'kis-proto[dash]'"
)
kis_dash = pytest.importorskip("kis_dash")

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

KEYS = ("005930", "000660")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def dashboard(tick: float = 0.01) -> AsyncIterator[tuple[Any, Any]]:
    """A simulator at `tick`, a feed of two keys' trades and books, the dashboard serving them."""
    async with (
        kis_sim.simulate(seed=3, tick=tick) as sim,
        kis_anyio.connect(sim.url, approval_key=sim.approval_key) as feed,
    ):
        state = kis_dash.DashState(
            keys=[("H0STCNT0", key) for key in KEYS],
            books=[("H0STASP0", key) for key in KEYS],
            aggregator=BarAggregator(every=1, grace=0.5, tr_ids=["H0STCNT0"]),
            counters=feed.counters,
            source="simulator",
        )
        for tr_id in ("H0STCNT0", "H0STASP0"):
            await feed.subscribe(tr_id, list(KEYS))
        async with kis_dash.serve(state) as server, anyio.create_task_group() as tasks:
            tasks.start_soon(kis_dash.follow, feed, state)
            yield sim, server
            tasks.cancel_scope.cancel()


def base(server: Any) -> str:
    url: str = server.url
    return url.partition("?")[0]


def token(server: Any) -> str:
    url: str = server.url
    return url.partition("token=")[2]


async def collect(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every message of `seconds`, each parsed as JSON (a non-JSON one fails the test)."""
    out: list[dict[str, Any]] = []
    with anyio.move_on_after(seconds):
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.TEXT
            out.append({**json.loads(message.data), "_at": time.monotonic()})
    return out


async def test_every_request_needs_the_token() -> None:
    async with dashboard(tick=0.25) as (_, server), aiohttp.ClientSession() as http:
        right = token(server)
        for path in ("/", "/static/dash.js", "/static/vendor/lightweight-charts.standalone.production.js"):
            for query in ("", "?token=", "?token=" + "x" * len(right), "?token=" + right[:-1]):
                async with http.get(base(server).rstrip("/") + path + query) as response:
                    assert response.status == 403, (path, query)
                    assert right not in await response.text()
            async with http.get(f"{base(server).rstrip('/')}{path}?token={right}") as response:
                assert response.status == 200, path
                assert "Content-Security-Policy" in response.headers
                body = await response.text()
                assert "cdn" not in body.lower() or path.endswith("production.js")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{base(server)}ws?token=wrong")
        assert refused.value.status == 403
        async with http.get(f"{base(server)}static/../__init__.py?token={right}") as response:
            assert response.status in (403, 404)
        async with http.get(f"{base(server)}static/nothing.js?token={right}") as response:
            assert response.status == 404
        assert server.refused >= 13
        assert server.url.startswith("http://127.0.0.1:")


async def test_messages_are_json_one_widget_each_at_most_ten_a_second() -> None:
    """The simulator sends ~100 trades a second per key; each widget reaches the page ≤ 10 times a second."""
    async with dashboard(tick=0.01) as (_, server), aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base(server)}ws?token={token(server)}") as ws:
            messages = await collect(ws, 2.0)
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "hello"
    assert [s["symbol"] for s in messages[0]["symbols"]] == list(KEYS)
    assert messages[0]["symbols"][0]["name"] == "삼성전자"
    watchlists = [m for m in messages if m["type"] == "watchlist"]
    books = [m for m in messages if m["type"] == "book"]
    charts = [m for m in messages if m["type"] == "chart"]
    healths = [m for m in messages if m["type"] == "health"]
    for series in (watchlists, books, charts):
        assert 8 <= len(series) <= 22, (series[0]["type"], len(series))  # 2 s at ≤ 10/s, a tick of slack
        times = [m["_at"] for m in series]
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= 12  # timer-driven: ~10 in any second, whatever the feed's rate
    last = healths[-1]
    assert last["connection"] == "connected"
    assert last["subscriptions"] == 4
    assert last["limit"] == 41
    assert last["records"] > 5 * len(watchlists)  # many trades, one message per tick
    rows = watchlists[-1]["rows"]
    assert [row["symbol"] for row in rows] == list(KEYS)
    assert all(isinstance(row["last"], int) and row["last"] > 0 for row in rows)
    assert rows[1]["name"] == "SK하이닉스"
    book = books[-1]
    assert book["symbol"] == KEYS[0]
    assert len(book["asks"]) == 10
    assert len(book["bids"]) == 10
    assert book["asks"][0][0] > book["bids"][0][0]
    assert charts[0]["full"] is True  # a page's first chart is whole; the rest are tails
    assert all(not c["full"] for c in charts[1:])
    assert charts[-1]["open"] is not None


async def test_a_page_chooses_its_key_and_a_closed_page_costs_nothing() -> None:
    async with dashboard(tick=0.05) as (_, server), aiohttp.ClientSession() as http:
        async with (
            http.ws_connect(f"{base(server)}ws?token={token(server)}") as first,
            http.ws_connect(f"{base(server)}ws?token={token(server)}") as second,
        ):
            await second.send_str(json.dumps({"show": KEYS[1]}))
            await second.send_str("not json")  # ignored: bad input never breaks a page
            await second.send_str(json.dumps({"show": "999999"}))  # not on the list: ignored
            await second.send_bytes(b"\x00")
            mine = await collect(second, 1.0)
            theirs = await collect(first, 0.3)
            assert server.pages == 2
            assert server.pending <= 2 * 6  # at most one message per widget and page
        shown = [m for m in mine if m["type"] in ("book", "chart")]
        assert {m["symbol"] for m in shown[-4:]} == {KEYS[1]}
        assert any(m["type"] == "chart" and m["full"] and m["symbol"] == KEYS[1] for m in mine)
        assert {m["symbol"] for m in theirs if m["type"] == "book"} == {KEYS[0]}
        with anyio.fail_after(2):
            while server.pages:
                await anyio.sleep(0.02)
        assert server.pending == 0
        sent = dict(server.sent)
        await anyio.sleep(0.3)
        assert server.sent == sent  # nobody watching: nothing rendered, nothing queued
        # A page that sends more than a page's request is closed; the server goes on.
        async with http.ws_connect(f"{base(server)}ws?token={token(server)}") as rude:
            await rude.send_str("x" * 10_000)
            await collect(rude, 1.0)
            assert rude.closed
        async with http.ws_connect(f"{base(server)}ws?token={token(server)}") as polite:
            assert any(m["type"] == "watchlist" for m in await collect(polite, 0.5))


async def test_a_feed_drop_shows_as_a_reconnect_and_the_page_goes_on() -> None:
    async with dashboard(tick=0.05) as (sim, server), aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base(server)}ws?token={token(server)}") as ws:
            await collect(ws, 0.5)
            for session in list(sim.server.sessions):
                await session.drop()
            messages = await collect(ws, 2.5)
    healths = [m for m in messages if m["type"] == "health"]
    assert any(m["connection"] != "connected" for m in healths)
    assert healths[-1]["connection"] == "connected"
    assert healths[-1]["reconnects"] == 1
    assert healths[-1]["reasons"]
    after = [m["_at"] for m in messages if m["type"] == "watchlist"]
    assert after[-1] > healths[0]["_at"]  # prices still came after the drop


def test_an_outbox_keeps_one_message_per_widget_the_newest() -> None:
    box = kis_dash.Outbox()
    for n in range(1000):
        box.put("watchlist", f"w{n}")
        box.put("book", f"b{n}")
    box.put("chart", "whole", whole=True)
    box.put("chart", "tail")  # a partial chart never replaces a whole one not yet sent
    assert len(box) == 3
    assert box.take() == ["w999", "b999", "whole"]
    assert len(box) == 0
    box.put("chart", "tail")
    assert box.take() == ["tail"]


def test_kis_ws_dash_without_the_extra_says_how_to_get_it() -> None:
    program = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if it were not installed\n"
        "from kis_ws.__main__ import main\n"
        "raise SystemExit(main(['dash', '005930']))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'kis-proto[dash]'" in result.stderr
