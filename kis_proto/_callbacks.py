"""The callbacks of a `WSClient`, by (tr_id, key): the part of both transports' clients that is not I/O."""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._fields import Record

__all__ = ["Callback", "CallbackTable"]

logger = logging.getLogger("kis_proto.callbacks")

#: A record callback: plain or async.
Callback: TypeAlias = "Callable[[Record], Awaitable[None]] | Callable[[Record], None]"


class CallbackTable:
    """Callbacks per (tr_id, key), several per key, in the order they were added."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: dict[tuple[str, str], list[Callback]] = defaultdict(list)

    def add(self, tr_id: str, keys: str | Iterable[str], callback: Callback) -> list[str]:
        """Call `callback` for records of `tr_id` with these keys; returns the keys as a list."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        for key in keys:
            self._callbacks[(tr_id, key)].append(callback)
        return keys

    def remove(self, tr_id: str, keys: str | Iterable[str]) -> list[str]:
        """Forget every callback of these keys; returns the keys as a list."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        for key in keys:
            self._callbacks.pop((tr_id, key), None)
        return keys

    def subscriptions(self) -> list[tuple[str, str]]:
        """Every (tr_id, key) with a callback, in the order first added."""
        return list(self._callbacks)

    def call(self, record: Record) -> list[Awaitable[Any]]:
        """Call the record's callbacks; return what async ones gave, for the transport to await.

        A callback that raises is logged and the others still run: one bug must not stop the feed.
        """
        pending: list[Awaitable[Any]] = []
        for callback in self._callbacks.get((record.tr_id, record.tr_key), ()):
            try:
                result = callback(record)
            except Exception:
                logger.exception("a callback for %s %s raised; the feed goes on", record.tr_id, record.tr_key)
                continue
            # Plain callbacks return None: skip the awaitable test for them.
            if result is not None and inspect.isawaitable(result):
                pending.append(result)
        return pending
