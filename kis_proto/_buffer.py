"""The bounded event buffer between a transport's reader and a slow application.

The reader must keep draining the socket and answering PINGPONG whatever the application does,
so events cannot wait for the application: they go into this buffer. It holds at most
`maxsize` market-data records; past that the oldest market data is dropped and the loss is
reported in stream order as one `EventsDropped` event. Execution notices and every non-record
event (acks, errors, reconnects, the close) are never dropped, so the buffer can exceed
`maxsize` by those alone.

Pure: the transports wrap it with their own wake-up primitive (an anyio or asyncio event).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._events import Event
from ._fields import Record
from .records import TRS

__all__ = ["EventBuffer", "EventsDropped", "FeedEvent", "Reconnecting"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped:
    """The application fell behind: `count` market-data records were dropped, oldest first."""

    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting:
    """The connection ended; the transport connects again after `delay` seconds (attempt `attempt`)."""

    attempt: int
    delay: float
    reason: str


#: What a transport's feed yields: the core's events plus the transport's own.
FeedEvent = Event | EventsDropped | Reconnecting

# Market-data record classes (and plain Record, for TRs this version does not know): droppable.
_DROPPABLE: frozenset[type] = frozenset(
    {layout.record_class for spec in TRS.values() if not spec.encrypted for layout in spec.layouts} | {Record}
)


def is_droppable(event: object) -> bool:
    """Market-data records may be dropped under overload; notices and everything else may not."""
    return type(event) in _DROPPABLE


class EventBuffer:
    """A FIFO of events that drops the oldest market data beyond `maxsize`."""

    __slots__ = ("_droppable", "_dropped", "_items", "maxsize")

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise LocalProtocolError(f"maxsize must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[tuple[FeedEvent, bool]] = deque()  # (event, droppable)
        self._droppable = 0  # droppable events in the buffer
        self._dropped = 0  # dropped since the last EventsDropped was handed out

    @property
    def dropped(self) -> int:
        """Records dropped and not yet reported by an `EventsDropped`."""
        return self._dropped

    def __len__(self) -> int:
        """Events waiting, counting a pending `EventsDropped` report as one."""
        return len(self._items) + (1 if self._dropped else 0)

    def put(self, event: FeedEvent) -> None:
        """Add `event`; drop the oldest market data while there is more than `maxsize` of it."""
        droppable = type(event) in _DROPPABLE  # is_droppable, inlined: once per record
        self._items.append((event, droppable))
        if droppable:
            self._droppable += 1
            if self._droppable > self.maxsize:
                self._drop_oldest()

    def get(self) -> FeedEvent | None:
        """The next event, `EventsDropped` first where records were lost; None when empty."""
        if not self._items:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return EventsDropped(count=count)
            return None
        event, droppable = self._items[0]
        if droppable and self._dropped:
            # Report the loss where it happened: before the first surviving market record.
            count, self._dropped = self._dropped, 0
            return EventsDropped(count=count)
        self._items.popleft()
        if droppable:
            self._droppable -= 1
        return event

    def drain(self) -> list[FeedEvent]:
        """Every waiting event, in order (with `EventsDropped` where records were lost)."""
        if not self._dropped:
            events = [event for event, _ in self._items]
            self._items.clear()
            self._droppable = 0
            return events
        out: list[FeedEvent] = []
        while (event := self.get()) is not None:
            out.append(event)
        return out

    def _drop_oldest(self) -> None:
        # The oldest market record is near the front: only undroppable events can precede it.
        for index, (_, droppable) in enumerate(self._items):
            if droppable:
                del self._items[index]
                self._droppable -= 1
                self._dropped += 1
                return
