"""kis_anyio over real loopback sockets, on asyncio and on trio, against our server role."""

from __future__ import annotations

import random
import ssl
from typing import Any

import anyio
import kis_anyio
import kis_sim
import pytest
import trustme

from kis_proto import (
    ApprovalError,
    Connected,
    ConnectionClosed,
    Credentials,
    LocalProtocolError,
    Reconnecting,
    Record,
    Subscribed,
    records,
)
from kis_proto.feed import ReconnectPolicy
from kis_proto.server import KISServerConfig, SubscriptionAdded

from .helpers import VECTOR_PLAINTEXT, fields_of, sample

pytestmark = pytest.mark.anyio

TRADE = fields_of(sample("0|H0STCNT0"))
KEY = "approval-key"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def quick_policy(**kwargs: Any) -> ReconnectPolicy:
    options: dict[str, Any] = {
        "rand": random.Random(3).random,
        "retry_delay": 0.05,
        "max_delay": 0.2,
        "in_use_floor": 0.3,
    }
    return ReconnectPolicy(**(options | kwargs))


async def next_of(feed: kis_anyio.Feed, kind: type, timeout: float = 5.0) -> Any:
    """The next event of `kind`, skipping others."""
    with anyio.fail_after(timeout):
        async for event in feed:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the feed ended before a {kind.__name__}")


def trade(price: int) -> list[str]:
    row = list(TRADE)
    row[2] = str(price)
    return row


async def test_subscribe_receive_unsubscribe() -> None:
    async with kis_sim.serve(approval_ok=lambda k: k == KEY) as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await feed.subscribe("H0STCNT0", ["005930"])
            assert isinstance(await next_of(feed, Subscribed), Subscribed)
            await server.broadcast("H0STCNT0", [trade(70000), trade(70100)])
            first = await next_of(feed, records.H0STCNT0)
            second = await next_of(feed, records.H0STCNT0)
            assert (first.price, second.price) == (70000, 70100)
            assert first["price"] == 70000
            await feed.unsubscribe("H0STCNT0", "005930")
            await server.wait_for(lambda: not server.subscribed("H0STCNT0", "005930"))
        await server.wait_for(lambda: not server.sessions)  # the client closed cleanly


async def test_pingpong_is_answered_while_the_application_sleeps() -> None:
    config = KISServerConfig(pingpong_interval=0.1, strict_pingpong=True)
    async with kis_sim.serve(config=config) as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await next_of(feed, Connected)
            await anyio.sleep(1.0)  # the application does not read; the reader still echoes
            assert server.accepted == 1
            assert len(server.sessions) == 1  # strict mode would have dropped a silent client


async def test_every_subscription_is_restored_after_each_drop() -> None:
    async with kis_sim.serve() as server:
        async with kis_anyio.connect(
            server.url, approval_key=KEY, policy=quick_policy(max_retries=10)
        ) as feed:
            await feed.subscribe("H0STCNT0", ["005930", "000660"])
            await feed.subscribe("H0STASP0", "005930")
            wanted = [("H0STCNT0", "005930"), ("H0STCNT0", "000660"), ("H0STASP0", "005930")]
            for round_ in range(3):
                await server.wait_for(
                    lambda: len(server.sessions) == 1 and len(server.sessions[0].conn.subscriptions) == 3
                )
                assert server.sessions[0].conn.subscriptions == wanted
                await server.sessions[0].drop()
                reconnecting = await next_of(feed, Reconnecting)
                # Connections shorter than healthy_after (30 s) keep the count: the backoff grows.
                assert reconnecting.attempt == round_ + 1
                assert 0 <= reconnecting.delay <= min(0.2, 0.05 * 2**round_)
                assert server.accepted == round_ + 1
            await server.wait_for(lambda: server.accepted == 4 and len(server.sessions) == 1)
            await server.wait_for(lambda: len(server.sessions[0].conn.subscriptions) == 3)
            await server.broadcast("H0STCNT0", [trade(1)])
            assert (await next_of(feed, records.H0STCNT0)).price == 1


async def test_in_use_refusal_backs_off_long() -> None:
    async with kis_sim.serve() as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await server.wait_for(lambda: bool(server.sessions))
            await server.sessions[0].refuse_in_use()
            reconnecting = await next_of(feed, Reconnecting)
            assert reconnecting.delay >= 0.3
            assert "OPSP8996" in reconnecting.reason


async def test_gives_up_after_max_retries() -> None:
    async with kis_sim.serve() as server:
        port = server.port

    async def consume() -> None:
        policy = quick_policy(max_retries=2)
        async with kis_anyio.connect(f"ws://127.0.0.1:{port}", approval_key=KEY, policy=policy) as feed:
            with anyio.fail_after(10):
                async for _ in feed:
                    pass

    # Nothing listens there any more: every attempt fails.
    with pytest.raises(ConnectionError, match="gave up after 2"):
        await consume()


async def test_encrypted_notice_end_to_end() -> None:
    async with kis_sim.serve() as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await feed.subscribe("H0STCNI9", "myhtsid")
            subscribed = await next_of(feed, Subscribed)
            assert subscribed.encrypted
            [session] = server.sessions
            await session.send_records("H0STCNI9", [VECTOR_PLAINTEXT.split("^")])
            notice = await next_of(feed, records.H0STCNI0)
            assert notice.acnt_name == "홍길동"
            assert notice.tr_id == "H0STCNI9"


async def test_wsclient_as_in_the_original_design() -> None:
    received: list[tuple[str, int]] = []
    async with kis_sim.serve() as server:
        ws = kis_anyio.WSClient(None, url=server.url, approval_key=KEY, policy=quick_policy())

        async def on_price(data: Record) -> None:
            price = data["price"]  # the original design's dict access
            assert isinstance(price, int)
            received.append((str(data["symbol"]), price))
            if len(received) == 2:
                await ws.close()

        def broken(data: Record) -> None:
            raise RuntimeError("a callback bug must not stop the feed")

        await ws.subscribe("H0STCNT0", ["005930", "000660"], on_price)
        await ws.subscribe("H0STCNT0", ["005930"], broken)

        async def market() -> None:
            await server.wait_for(
                lambda: bool(server.sessions) and len(server.sessions[0].conn.subscriptions) == 2
            )
            await server.broadcast("H0STCNT0", [trade(70000)])
            row = trade(120000)
            row[0] = "000660"
            await server.broadcast("H0STCNT0", [row])

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            with anyio.fail_after(10):
                await ws.run()
    assert received == [("005930", 70000), ("000660", 120000)]


async def test_close_ends_iteration_and_leaves_nothing_running() -> None:
    async with kis_sim.serve() as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await next_of(feed, Connected)
            await feed.aclose()
            events = [event async for event in feed]
            assert isinstance(events[-1], ConnectionClosed)
            assert events[-1].clean
        await server.wait_for(lambda: not server.sessions)


async def test_connect_needs_a_way_to_the_server() -> None:
    with pytest.raises(LocalProtocolError, match="url"):
        async with kis_anyio.connect():
            pass
    with pytest.raises(LocalProtocolError, match="approval"):
        async with kis_anyio.connect("ws://127.0.0.1:1"):
            pass


async def test_server_sees_the_subscription_events() -> None:
    async with kis_sim.serve() as server:
        async with kis_anyio.connect(server.url, approval_key=KEY, policy=quick_policy()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await next_of(feed, Subscribed)
            [session] = server.sessions
            assert any(isinstance(e, SubscriptionAdded) for e in session.events)


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts from a throwaway CA: the approval key travels over real TLS."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_approval_key_over_tls_and_one_refresh_after_invalid_approval(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_tls, client_tls = tls_pair
    creds = Credentials(app_key="PSapp", app_secret="secret-value", env="real")
    async with kis_sim.serve(app_keys={"PSapp": "secret-value"}, approval_tls=server_tls) as server:
        assert server.approval_port is not None
        key = await kis_anyio.fetch_approval_key(
            creds, host="127.0.0.1", port=server.approval_port, ssl_context=client_tls
        )
        assert key in server.issued
        server.revoke_keys()  # count only the feed's own fetches from here on
        async with kis_anyio.connect(
            server.url,
            credentials=creds,
            approval_host="127.0.0.1",
            approval_port=server.approval_port,
            ssl_context=client_tls,
            policy=quick_policy(),
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await next_of(feed, Subscribed)
            assert len(server.issued) == 1  # fetched once, not per message
            server.revoke_keys()
            await server.sessions[0].drop()
            # The old key is refused (OPSP0011): the feed closes, fetches a new key once, reconnects.
            reconnecting = await next_of(feed, Reconnecting)
            assert reconnecting.reason == "the server closed the socket without a close frame (1006)"
            refused = await next_of(feed, Reconnecting)
            assert "OPSP0011" in refused.reason
            await next_of(feed, Subscribed)
            assert len(server.issued) == 1  # the fresh key


async def test_wrong_credentials_fail_fast(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_tls, client_tls = tls_pair
    creds = Credentials(app_key="PSapp", app_secret="wrong", env="real")
    async with kis_sim.serve(app_keys={"PSapp": "secret-value"}, approval_tls=server_tls) as server:
        with pytest.raises(ApprovalError, match="EGW00103") as info:
            await kis_anyio.fetch_approval_key(
                creds, host="127.0.0.1", port=server.approval_port, ssl_context=client_tls
            )
        assert "wrong" not in str(info.value)
        # An untrusted certificate is refused: verification is on by default.
        with pytest.raises(ApprovalError, match=r"SSL|certificate"):
            await kis_anyio.fetch_approval_key(creds, host="127.0.0.1", port=server.approval_port)


async def test_own_execution_notices_by_environment() -> None:
    creds = Credentials(app_key="PSapp", app_secret="s", env="paper", hts_id="myhtsid")
    assert creds.notice_subscription() == ("H0STCNI9", "myhtsid")
    assert creds.notice_subscription("overseas") == ("H0GSCNI9", "myhtsid")
    real = Credentials(app_key="PSapp", app_secret="s", hts_id="me")
    assert real.notice_subscription("overseas") == ("H0GSCNI0", "me")
    with pytest.raises(LocalProtocolError, match="hts_id"):
        Credentials(app_key="PSapp", app_secret="s").notice_subscription()
    notices: list[records.H0STCNI0] = []
    async with kis_sim.serve() as server:
        # Credentials and an approval key: no REST call, notices by the credentials' env.
        ws = kis_anyio.WSClient(creds, url=server.url, approval_key=KEY, policy=quick_policy())

        def on_fill(notice: Record) -> None:
            assert isinstance(notice, records.H0STCNI0)
            notices.append(notice)

        assert await ws.subscribe_notices(on_fill) == "H0STCNI9"

        async def fill() -> None:
            await server.wait_for(lambda: bool(server.subscribed("H0STCNI9", "myhtsid")))
            await server.sessions[0].send_records("H0STCNI9", [VECTOR_PLAINTEXT.split("^")])
            while not notices:
                await anyio.sleep(0.01)
            await ws.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fill)
            with anyio.fail_after(10):
                await ws.run()
    assert [n.cntg_qty for n in notices] == [10]


async def test_pingpong_answered_while_a_callback_takes_seconds() -> None:
    config = KISServerConfig(pingpong_interval=0.2, strict_pingpong=True)
    async with kis_sim.serve(config=config) as server:
        ws = kis_anyio.WSClient(None, url=server.url, approval_key=KEY, policy=quick_policy())
        calls: list[int] = []

        async def slow(data: Record) -> None:
            calls.append(1)
            await anyio.sleep(1.5)  # the application is slow; the reader must not be
            await ws.close()

        await ws.subscribe("H0STCNT0", "005930", slow)

        async def market() -> None:
            await server.wait_for(lambda: bool(server.subscribed("H0STCNT0", "005930")))
            await server.broadcast("H0STCNT0", [trade(1)])

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            with anyio.fail_after(10):
                await ws.run()
        assert calls == [1]
        assert server.accepted == 1  # never dropped: 7 PINGPONGs came and were echoed meanwhile
