"""A session that stays up for days renews its approval key before it expires (issue 21).

KIS's approval keys last 24 h; the feed fetches a new one `KISConfig.approval_key_renew_after`
(23 h) after the last, while the session stays up, and later requests carry the new key. Tested
with a one-second lifetime against a server that accepts only the keys its endpoint issued.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import anyio
import kis_anyio
import kis_asyncio
import kis_sim
import pytest

from kis_proto import Credentials, KISConfig, Subscribed, SubscribeFailed
from kis_proto.feed import FeedCore, ReconnectPolicy

if TYPE_CHECKING:
    from types import ModuleType

pytestmark = pytest.mark.anyio
CASES = [("kis_anyio", "asyncio"), ("kis_anyio", "trio"), ("kis_asyncio", "asyncio")]
CREDS = Credentials(app_key="PSapp", app_secret="secret-value", env="real")


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


async def answer(feed: Any, key: str) -> Subscribed | SubscribeFailed:
    with anyio.fail_after(10):
        async for event in feed:
            if isinstance(event, Subscribed | SubscribeFailed) and event.tr_key == key:
                return event
    raise AssertionError("no answer")


async def test_the_key_is_renewed_while_the_session_stays_up(case: tuple[str, str]) -> None:
    transport: ModuleType = kis_anyio if case[0] == "kis_anyio" else kis_asyncio
    async with kis_sim.serve(app_keys={"PSapp": "secret-value"}) as server:
        policy = ReconnectPolicy(rand=random.random, retry_delay=0.05, max_delay=0.2)
        async with transport.connect(
            server.url,
            credentials=CREDS,
            approval_host="127.0.0.1",
            approval_port=server.port,
            approval_tls=False,
            config=KISConfig(approval_key_renew_after=0.5),
            policy=policy,
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            assert isinstance(await answer(feed, "005930"), Subscribed)
            [first] = server.issued
            with anyio.fail_after(10):
                while len(server.issued) < 3:  # renewed, twice
                    await anyio.sleep(0.05)
            server.issued.remove(first)  # the first key expires: only a renewed one is valid now
            await feed.subscribe("H0STCNT0", "000660")
            assert isinstance(await answer(feed, "000660"), Subscribed)  # sent with the new key
            assert server.accepted == 1  # one session all along


def test_a_given_key_is_never_renewed() -> None:
    core = FeedCore(
        host="h", port=1, config=KISConfig(approval_key_renew_after=1.0),
        policy=ReconnectPolicy(rand=random.random), approval_key="given-key-0123",
    )  # fmt: skip
    assert core.renew_at() is None
    assert not core.key_is_due(1e9)


def test_a_fetched_key_is_due_after_its_lifetime() -> None:
    core = FeedCore(
        host="h", port=1, config=KISConfig(approval_key_renew_after=60.0),
        policy=ReconnectPolicy(rand=random.random), can_fetch_key=True,
    )  # fmt: skip
    assert core.key_is_due(0.0)  # none yet
    core.set_approval_key("fetched-key-0123", 100.0)
    assert core.renew_at() == 160.0
    assert not core.key_is_due(159.0)
    assert core.key_is_due(160.0)
