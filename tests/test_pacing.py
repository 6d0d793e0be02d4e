"""Subscribe and unsubscribe requests leave at a pace (issue 21): KIS's own client keeps 20/s, 2/s on paper.

The sans-IO connection paces when its config says so (`KISConfig.request_rate`), on the first
connect and on every restore; the transports' feeds default to KIS's pace. Against the simulator's
fault that drops a client sending faster than 10 requests a second, 41 subscriptions are restored
after each of five drops, every one accepted; the same client unpaced is dropped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import kis_anyio
import kis_asyncio
import kis_sim
import pytest

from kis_proto import Connected, Credentials, KISConfig, KISConnection, LocalProtocolError, Subscribed
from kis_proto.feed import PAPER_REQUEST_RATE, REQUEST_RATE, ReconnectPolicy, feed_core
from kis_proto.server import SubscriptionAdded

from .peers import HOST, PORT, WsprotoServer, connected_pair

if TYPE_CHECKING:
    from types import ModuleType

SYMBOLS = [f"{n:06d}" for n in range(100, 141)]  # 41 keys


def requested(server: WsprotoServer, client: KISConnection) -> list[tuple[str, str]]:
    """(tr_type, tr_key) of every request the client has sent since the last look."""
    before = len(server.texts)
    server.receive(client.data_to_send())
    return [(r["header"]["tr_type"], r["body"]["input"]["tr_key"]) for r in server.requests[before:]]


def test_requests_leave_evenly_spaced_once_open() -> None:
    client = KISConnection(
        approval_key="approval-key-0123", host=HOST, port=PORT, now=0.0, config=KISConfig(request_rate=10)
    )
    for key in SYMBOLS[:5]:
        client.subscribe("H0STCNT0", key, now=0.0)  # asked for while connecting
    server = WsprotoServer()
    server.receive(client.data_to_send())
    assert server.requests == []  # nothing before the handshake
    client.receive_data(server.accept(), now=1.0)
    assert [type(e) for e in client.events()] == [Connected]
    assert requested(server, client) == [("1", SYMBOLS[0])]  # one at once...
    assert client.timer() == pytest.approx(1.1)  # ...the next a tenth of a second later
    client.handle_timer(1.05)
    assert requested(server, client) == []  # not before its turn
    sent_at: list[float] = []
    now = 1.0
    while len(sent_at) < 4:
        deadline = client.timer()
        assert deadline is not None
        now = deadline
        client.handle_timer(now)
        sent_at += [now for _ in requested(server, client)]
    assert sent_at == pytest.approx([1.1, 1.2, 1.3, 1.4])
    assert client.subscriptions[("H0STCNT0", SYMBOLS[4])] == "pending"


def test_a_request_withdrawn_before_its_turn_is_never_sent_and_takes_no_turn() -> None:
    client, server = connected_pair(config=KISConfig(request_rate=2))
    client.subscribe("H0STCNT0", "005930", now=0.0)
    client.subscribe("H0STCNT0", "000660", now=0.0)
    client.subscribe("H0STCNT0", "035720", now=0.0)
    assert requested(server, client) == [("1", "005930")]
    client.unsubscribe("H0STCNT0", "000660", now=0.1)  # still queued: forgotten
    assert ("H0STCNT0", "000660") not in client.subscriptions
    client.unsubscribe("H0STCNT0", "005930", now=0.2)  # sent: its release waits its turn
    assert client.subscriptions[("H0STCNT0", "005930")] == "releasing"
    client.handle_timer(0.5)
    assert requested(server, client) == [("1", "035720")]  # the withdrawn one took no turn
    client.handle_timer(1.0)
    assert requested(server, client) == [("2", "005930")]
    assert client.timer() == pytest.approx(10.5)  # 035720's ack deadline: nothing left to pace


def test_no_rate_sends_at_once_and_close_drops_what_waits() -> None:
    client, server = connected_pair()  # a bare connection: no pacing unless asked
    for key in SYMBOLS[:3]:
        client.subscribe("H0STCNT0", key, now=0.0)
    assert len(requested(server, client)) == 3
    paced, paced_server = connected_pair(config=KISConfig(request_rate=1))
    for key in SYMBOLS[:3]:
        paced.subscribe("H0STCNT0", key, now=0.0)
    paced.close(now=0.1)
    paced.handle_timer(5.0)
    assert len(requested(paced_server, paced)) == 1  # the first; the rest never left


@pytest.mark.parametrize("rate", [0, -1.0, math.nan, "20", True])
def test_a_bad_rate_says_what_to_give(rate: object) -> None:
    with pytest.raises(LocalProtocolError, match="request_rate must be a positive number"):
        KISConfig(request_rate=rate)  # type: ignore[arg-type]


def test_the_feeds_default_to_kis_own_pace() -> None:
    policy = ReconnectPolicy(rand=lambda: 0.5)
    real = Credentials("PS" + "x" * 34, "s" * 180, env="real")
    paper = Credentials("PS" + "x" * 34, "s" * 180, env="paper")

    def rate(credentials: Credentials | None, config: KISConfig | None = None) -> float | None:
        core = feed_core(
            "ws://127.0.0.1:1",
            credentials=credentials,
            approval_key="k" if credentials is None else None,
            config=config,
            policy=policy,
            buffer_size=10,
        )
        return core.config.request_rate

    assert (REQUEST_RATE, PAPER_REQUEST_RATE) == (20.0, 2.0)
    assert rate(None) == rate(real) == REQUEST_RATE
    assert rate(paper) == PAPER_REQUEST_RATE
    assert rate(paper, KISConfig(request_rate=math.inf)) == math.inf  # the caller's choice stands


async def _restores(
    transport: ModuleType, sim: kis_sim.Simulator, config: KISConfig, drops: int
) -> tuple[list[int], int]:
    """Subscribe 41 keys, drop the session `drops` times once all are held; acks per connection."""
    acks: list[int] = []
    policy = ReconnectPolicy(rand=lambda: 0.5, retry_delay=0.05, max_delay=0.2)
    async with transport.connect(
        sim.url, approval_key=sim.approval_key, config=config, policy=policy
    ) as feed:
        await feed.subscribe("H0STCNT0", SYMBOLS)
        count = 0
        with anyio.fail_after(60):
            async for event in feed:
                if isinstance(event, Connected):
                    acks.append(count := 0)
                elif isinstance(event, Subscribed):
                    count += 1
                    acks[-1] = count
                    if count == len(SYMBOLS):
                        if len(acks) > drops:
                            break
                        [session] = sim.server.sessions
                        await session.drop()
    return acks, sim.server.accepted


# Five drops cost 26 s (41 requests at 9.5/s, six times): once on the stdlib transport; the anyio
# one (here on trio) shares the pacing core, and one drop shows its restore goes through it too.
RESTORES = [("kis_asyncio", "asyncio", 5), ("kis_anyio", "trio", 1)]


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = getattr(request, "param", "asyncio")
    return backend


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("transport", "anyio_backend", "drops"),
    [(kis_asyncio if t == "kis_asyncio" else kis_anyio, b, d) for t, b, d in RESTORES],
    ids=[f"{t}-{b}" for t, b, _ in RESTORES],
    indirect=["anyio_backend"],
)
async def test_41_subscriptions_restored_after_5_drops_against_a_10_per_second_server(
    transport: ModuleType, drops: int
) -> None:
    faults = kis_sim.Faults(max_rate=10)
    async with kis_sim.simulate(seed=21, tick=0.5, faults=faults) as sim:
        acks, sessions = await _restores(transport, sim, KISConfig(request_rate=9.5), drops=drops)
    assert acks == [41] * (drops + 1)  # the first connect and every restore, every request accepted
    assert sessions == drops + 1  # no session lost to the pace


@pytest.mark.anyio
async def test_the_same_client_unpaced_is_dropped_by_that_server() -> None:
    """The control: the fault is real, so the pacing is what passes it."""
    faults = kis_sim.Faults(max_rate=10)
    async with kis_sim.simulate(seed=22, tick=0.5, faults=faults) as sim:
        policy = ReconnectPolicy(rand=lambda: 0.5, retry_delay=0.05, max_delay=0.2)
        async with kis_anyio.connect(
            sim.url, approval_key=sim.approval_key, config=KISConfig(request_rate=math.inf), policy=policy
        ) as feed:
            await feed.subscribe("H0STCNT0", SYMBOLS)
            await sim.server.wait_for(lambda: sim.server.accepted >= 2, timeout=10)
    added = [e for s in [*sim.server.sessions] for e in s.events if isinstance(e, SubscriptionAdded)]
    assert len(added) < len(SYMBOLS)  # never all held
