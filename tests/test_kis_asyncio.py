"""kis_asyncio over real loopback sockets (the server is kis_anyio's, on the same asyncio loop)."""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Any

import kis_asyncio
import kis_sim
import pytest
import trustme

from kis_proto import (
    ApprovalError,
    Connected,
    ConnectionClosed,
    Credentials,
    Reconnecting,
    Record,
    Subscribed,
    records,
)
from kis_proto.feed import ReconnectPolicy
from kis_proto.server import KISServerConfig

from .helpers import VECTOR_PLAINTEXT, fields_of, sample

pytestmark = pytest.mark.anyio

TRADE = fields_of(sample("0|H0STCNT0"))
KEY = "approval-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def quick_policy(**kwargs: Any) -> ReconnectPolicy:
    options: dict[str, Any] = {"rand": random.Random(5).random, "retry_delay": 0.05, "max_delay": 0.2}
    return ReconnectPolicy(**(options | kwargs))


async def next_of(feed: kis_asyncio.Feed, kind: type, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        async for event in feed:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the feed ended before a {kind.__name__}")


def trade(price: int, symbol: str = "005930") -> list[str]:
    row = list(TRADE)
    row[0], row[2] = symbol, str(price)
    return row


async def test_subscribe_receive_and_restore_after_drops() -> None:
    async with kis_sim.serve() as server:
        async with kis_asyncio.connect(
            server.url, approval_key=KEY, policy=quick_policy(max_retries=10)
        ) as feed:
            await feed.subscribe("H0STCNT0", ["005930", "000660"])
            assert isinstance(await next_of(feed, Subscribed), Subscribed)
            await server.broadcast("H0STCNT0", [trade(70000), trade(70100)])
            assert (await next_of(feed, records.H0STCNT0)).price == 70000
            assert (await next_of(feed, records.H0STCNT0)).price == 70100
            for _ in range(3):
                await server.wait_for(
                    lambda: len(server.sessions) == 1 and len(server.sessions[0].conn.subscriptions) == 2
                )
                await server.sessions[0].drop()
                assert isinstance(await next_of(feed, Reconnecting), Reconnecting)
            await server.wait_for(
                lambda: len(server.sessions) == 1 and len(server.sessions[0].conn.subscriptions) == 2
            )
            assert server.sessions[0].conn.subscriptions == [("H0STCNT0", "005930"), ("H0STCNT0", "000660")]
            await feed.unsubscribe("H0STCNT0", "000660")
            await server.wait_for(lambda: server.sessions[0].conn.subscriptions == [("H0STCNT0", "005930")])


async def test_pingpong_answered_while_the_application_sleeps() -> None:
    async with kis_sim.serve(config=KISServerConfig(pingpong_interval=0.1, strict_pingpong=True)) as server:
        async with kis_asyncio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await next_of(feed, Connected)
            await asyncio.sleep(1.0)
            assert (server.accepted, len(server.sessions)) == (1, 1)


async def test_notice_and_clean_close() -> None:
    async with kis_sim.serve() as server:
        async with kis_asyncio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await feed.subscribe("H0STCNI0", "myhtsid")
            await next_of(feed, Subscribed)
            await server.sessions[0].send_records("H0STCNI0", [VECTOR_PLAINTEXT.split("^")])
            assert (await next_of(feed, records.H0STCNI0)).acnt_name == "홍길동"
            await feed.aclose()
            rest = [event async for event in feed]
            assert isinstance(rest[-1], ConnectionClosed)
            assert rest[-1].clean
        await server.wait_for(lambda: not server.sessions)


async def test_gives_up_after_max_retries() -> None:
    async with kis_sim.serve() as server:
        port = server.port

    async def consume() -> None:
        async with kis_asyncio.connect(
            f"ws://127.0.0.1:{port}", approval_key=KEY, policy=quick_policy(max_retries=2)
        ) as feed:
            async with asyncio.timeout(10):
                async for _ in feed:
                    pass

    with pytest.raises(ConnectionError, match="gave up after 2"):
        await consume()


async def test_wsclient_as_in_the_original_design() -> None:
    prices: list[int] = []
    async with kis_sim.serve() as server:
        ws = kis_asyncio.WSClient(None, url=server.url, approval_key=KEY, policy=quick_policy())

        def on_price(data: Record) -> None:  # a plain callback this time
            price = data["price"]
            assert isinstance(price, int)
            prices.append(price)

        await ws.subscribe("H0STCNT0", ["005930"], on_price)

        async def market() -> None:
            await server.wait_for(
                lambda: bool(server.sessions) and bool(server.sessions[0].conn.subscriptions)
            )
            await server.broadcast("H0STCNT0", [trade(1), trade(2), trade(3)])
            while len(prices) < 3:
                await asyncio.sleep(0.01)
            await ws.close()

        async with asyncio.timeout(10):
            await asyncio.gather(ws.run(), market())
    assert prices == [1, 2, 3]


async def test_approval_key_over_tls() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    creds = Credentials(app_key="PSapp", app_secret="secret-value", env="paper")
    async with kis_sim.serve(app_keys={"PSapp": "secret-value"}, approval_tls=server_tls) as server:
        port = server.approval_port
        key = await kis_asyncio.fetch_approval_key(creds, host="127.0.0.1", port=port, ssl_context=client_tls)
        assert key in server.issued
        wrong = Credentials(app_key="PSapp", app_secret="nope")
        with pytest.raises(ApprovalError, match="EGW00103"):
            await kis_asyncio.fetch_approval_key(wrong, host="127.0.0.1", port=port, ssl_context=client_tls)
