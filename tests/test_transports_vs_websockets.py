"""Both transports against an independent server written with the `websockets` library."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import kis_anyio
import kis_asyncio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from kis_proto import PingPong, Subscribed, records
from kis_proto.feed import ReconnectPolicy

from .helpers import sample
from .peers import ack

pytestmark = pytest.mark.anyio
KEEPALIVE = '{"header":{"tr_id":"PINGPONG","datetime":"20260101000000"}}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def kis_like(ws: ServerConnection, echoes: list[str]) -> None:
    """Answer one subscribe, send a trade and a PINGPONG, record the echo."""
    request = json.loads(await ws.recv())
    tr = request["body"]["input"]
    assert request["header"]["approval_key"] == "key"
    await ws.send(ack(tr["tr_id"], tr["tr_key"]))
    await ws.send(sample("0|H0STCNT0"))
    await ws.send(KEEPALIVE)
    echoes.append(str(await ws.recv()))
    await ws.wait_closed()


@pytest.mark.parametrize("transport", [kis_anyio, kis_asyncio], ids=["kis_anyio", "kis_asyncio"])
async def test_transport_against_a_websockets_server(transport: Any) -> None:
    echoes: list[str] = []
    async with serve(lambda ws: kis_like(ws, echoes), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        policy = ReconnectPolicy(rand=random.Random(2).random, retry_delay=0.05)
        async with transport.connect(f"ws://127.0.0.1:{port}", approval_key="key", policy=policy) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            seen: list[Any] = []
            async with asyncio.timeout(5):
                async for event in feed:
                    seen.append(event)
                    if isinstance(event, PingPong):
                        break
            assert [type(e) for e in seen[-3:]] == [Subscribed, records.H0STCNT0_2026_08, PingPong]
            async with asyncio.timeout(5):
                while not echoes:
                    await asyncio.sleep(0.01)
    assert echoes == [KEEPALIVE]
