"""The documented examples run, against the loopback server."""

from __future__ import annotations

import asyncio
import importlib.util
import random
from pathlib import Path
from typing import TYPE_CHECKING

import kis_sim
import pytest

from kis_proto.feed import ReconnectPolicy

from .helpers import fields_of, sample

if TYPE_CHECKING:
    from types import ModuleType

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_original_designs_usage_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("price_callbacks")
    row = fields_of(sample("0|H0STCNT0"))
    other = list(row)
    other[0], other[2] = "000660", "120000"
    async with kis_sim.serve() as server:
        policy = ReconnectPolicy(rand=random.Random(1).random, retry_delay=0.05)
        task = asyncio.create_task(example.main(None, url=server.url, approval_key="key", policy=policy))
        await server.wait_for(
            lambda: bool(server.sessions) and len(server.sessions[0].conn.subscriptions) == 2
        )
        await server.broadcast("H0STCNT0", [row])
        await server.broadcast("H0STCNT0", [other])
        out = ""
        async with asyncio.timeout(5):
            while out.count("원") < 2:
                await asyncio.sleep(0.01)
                out += capsys.readouterr().out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert out.splitlines() == ["005930: 62,700원", "000660: 120,000원"]
