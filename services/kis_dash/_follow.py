"""Drive a `DashState` from a live feed: its events, its bars (`kis_anyio.bars`), a gateway's status."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import kis_anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from kis_proto import FeedEvent

    from ._state import DashState

__all__ = ["GATEWAY_STATUS_INTERVAL", "follow"]

logger = logging.getLogger("kis_dash")

#: Seconds between two status requests to a gateway.
GATEWAY_STATUS_INTERVAL = 2.0


class _Tap:
    """The feed as the bars read it, each event noted into the state on the way.

    Cancel-safe as the feed is: an event is noted only once it was taken.
    """

    def __init__(
        self, feed: AsyncIterator[FeedEvent], state: DashState, also: Callable[[FeedEvent], None]
    ) -> None:
        self._feed = feed
        self._state = state
        self._also = also

    def __aiter__(self) -> _Tap:
        return self

    async def __anext__(self) -> FeedEvent:
        event = await self._feed.__anext__()
        self._state.add(event)
        self._also(event)
        return event


async def follow(
    feed: Any,
    state: DashState,
    *,
    on_event: Callable[[FeedEvent], None] | None = None,
) -> None:
    """Feed `state` from `feed` until the feed ends (or the caller cancels).

    `feed` is any kis feed (`kis_anyio`, `kis_asyncio` or `kis_nats`): an async iterator of feed
    events whose wait may be cancelled without losing one. Its trades go to
    `state.aggregator` through `kis_anyio.bars` (the wall clock, and the aggregator's timer, so a
    quiet key's bar closes on time) and each bar to `DashState.add_bar`. A feed with a ``status()``
    coroutine (a gateway's consumer) is asked for the gateway's status every
    `GATEWAY_STATUS_INTERVAL` seconds. `on_event` sees every event too (the command line's status
    lines).
    """
    tap = _Tap(feed.__aiter__(), state, on_event or (lambda event: None))
    status: Callable[[], Awaitable[dict[str, Any]]] | None = getattr(feed, "status", None)
    async with anyio.create_task_group() as tasks:
        if callable(status):
            tasks.start_soon(_poll_status, status, state)
        if state.aggregator is None:
            async for _ in tap:
                pass
        else:
            async for bar in kis_anyio.bars(tap, state.aggregator):
                state.add_bar(bar)
        tasks.cancel_scope.cancel()


async def _poll_status(status: Callable[[], Awaitable[dict[str, Any]]], state: DashState) -> None:
    while True:
        try:
            report = await status()
        except (ConnectionError, TimeoutError, OSError) as exc:
            logger.debug("the gateway gave no status: %s", exc)
            report = None
        state.set_gateway(report if isinstance(report, dict) and report.get("ok", True) else None)
        await anyio.sleep(GATEWAY_STATUS_INTERVAL)
