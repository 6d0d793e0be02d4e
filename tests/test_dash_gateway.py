"""The dashboard fed by a gateway (issue 22): a real nats-server, the gateway on the simulator, a kis_nats feed."""

from __future__ import annotations

import json
from typing import Any

import anyio
import kis_sim
import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")
aiohttp = pytest.importorskip(
    "aiohttp", reason="the dashboard needs the dash extra: pip install 'kis-proto[dash]'"
)
kis_dash = pytest.importorskip("kis_dash")

import kis_nats
from kis_gateway import SessionSpec

from kis_proto.bars import BarAggregator

from .nats_fixture import NatsProcess, nats_server_fixture
from .test_gateway import running_gateway

__all__ = ["nats_server_fixture"]  # the fixture, used by name

pytestmark = pytest.mark.anyio
KEYS = ("005930", "000660")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


async def test_a_page_on_a_gateway_shows_its_prices_sessions_and_consumers(nats_server: NatsProcess) -> None:
    async with (
        kis_sim.simulate(seed=5, tick=0.05) as sim,
        running_gateway(nats_server, [SessionSpec("app1", url=sim.url, approval_key="k1")]) as gateway,
        kis_nats.connect(nats_server.url, env="sim", client="dash-1", nats_creds=nats_server.creds()) as feed,
    ):
        state = kis_dash.DashState(
            keys=[("H0STCNT0", key) for key in KEYS],
            books=[("H0STASP0", key) for key in KEYS],
            aggregator=BarAggregator(every=1, grace=0.5, tr_ids=["H0STCNT0"]),
            subscribed=lambda: len(feed.subscriptions),
            source="kis-ws gateway (sim)",
        )
        for tr_id in ("H0STCNT0", "H0STASP0"):
            await feed.subscribe(tr_id, list(KEYS))
        async with (
            kis_dash.serve(state) as server,
            anyio.create_task_group() as tasks,
            aiohttp.ClientSession() as http,
        ):
            tasks.start_soon(kis_dash.follow, feed, state)
            url, token = server.url.partition("?")[0], server.url.partition("token=")[2]
            health: dict[str, Any] = {}
            watchlist: dict[str, Any] = {}
            async with http.ws_connect(f"{url}ws?token={token}") as ws:
                with anyio.move_on_after(8):
                    async for message in ws:
                        data = json.loads(message.data)
                        if data["type"] == "health":
                            health = data
                        elif data["type"] == "watchlist":
                            watchlist = data
                        if (health.get("gateway") or {}).get("sessions") and all(
                            row["last"] is not None for row in watchlist.get("rows", [{"last": None}])
                        ):
                            break
            tasks.cancel_scope.cancel()
    assert [row["symbol"] for row in watchlist["rows"]] == list(KEYS)
    assert all(row["last"] for row in watchlist["rows"]), watchlist
    shown = health["gateway"]
    assert shown["gateway"] == gateway.id
    assert shown["role"] == "active"
    assert [s["name"] for s in shown["sessions"]] == ["app1"]
    assert shown["sessions"][0]["subscriptions"] == 4
    assert [c["client"] for c in shown["clients"]] == ["dash-1"]
    assert health["subscriptions"] == 4
    assert health["connection"] == "connected"
    assert "k1" not in json.dumps(health)  # the approval key never reaches the page
