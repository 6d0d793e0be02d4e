"""The bars the gateway computes once for every consumer that asks (docs/gateway.md, "Bars").

Pure: no I/O and no clock (``now`` is passed in). The gateway tells it which (TR, key, interval)
some client wants (`start`, `stop`: the planner's `StartBars` and `StopBars`), hands it each
session's events, and publishes what it returns as messages (`message`).

One `kis_proto.bars.BarAggregator` per (session, interval): a session's reconnect or lost frames
mark a gap in the bars of that session's keys only. Only the keys some client wants go in, so a
gateway with bars on 3 keys spends nothing on the other 120. A key whose trades start coming from
another session (KIS moved it: ``MAX SUBSCRIBE OVER``) is dropped from the old session's
aggregators, so no interval is published twice.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from kis_nats import subjects

from kis_proto.bars import Bar, BarAggregator

if TYPE_CHECKING:
    from kis_proto import FeedEvent, Record

__all__ = ["GatewayBars"]

#: How long past its end a bar waits for its trades before the clock closes it (as `kis-ws bars`).
GRACE = 2.0


class GatewayBars:
    """Time bars of the (TR, key, interval)s clients want, cut by `kis_proto.bars.BarAggregator`."""

    def __init__(self, env: str, gateway: str, *, grace: float = GRACE) -> None:
        self.env = env
        self.gateway = gateway
        self.grace = grace
        #: (tr_id, tr_key) -> the intervals (seconds) wanted of it. Checked for every record.
        self.wanted: dict[tuple[str, str], set[int]] = {}
        #: Bars made so far (each revision counts).
        self.made = 0
        self._aggregators: dict[tuple[str, int], BarAggregator] = {}
        self._where: dict[tuple[str, str], str] = {}  # the session a key's trades last came from
        self._seq: dict[str, int] = {}  # bar subject -> its last seq

    def __repr__(self) -> str:
        return f"<GatewayBars {sum(len(v) for v in self.wanted.values())} bar streams>"

    # -- demand --------------------------------------------------------------------------------------
    def start(self, tr_id: str, tr_key: str, every: int) -> None:
        """Compute the `every`-second bars of (tr_id, tr_key) from its next trade on."""
        self.wanted.setdefault((tr_id, tr_key), set()).add(every)

    def stop(self, tr_id: str, tr_key: str, every: int) -> None:
        """Stop them: the open bar is dropped (nobody wants it), the subject's seq starts again."""
        intervals = self.wanted.get((tr_id, tr_key))
        if intervals is None:
            return
        intervals.discard(every)
        if not intervals:
            del self.wanted[(tr_id, tr_key)]
            self._where.pop((tr_id, tr_key), None)
        for (_, size), aggregator in self._aggregators.items():
            if size == every:
                aggregator.forget(tr_id, tr_key)
        self._seq.pop(subjects.bar_subject(self.env, every, tr_id, tr_key), None)

    # -- the feed ------------------------------------------------------------------------------------
    def add(self, session: str, record: Record, now: float) -> list[Bar]:
        """A trade record of a wanted key, from `session`, received at `now`: the bars it completed."""
        key = (record.tr_id, record.tr_key)
        intervals = self.wanted.get(key)
        if not intervals:
            return []
        before = self._where.get(key)
        if before != session:
            if before is not None:
                for every in intervals:
                    old = self._aggregators.get((before, every))
                    if old is not None:
                        old.forget(*key)
            self._where[key] = session
        out: list[Bar] = []
        for every in intervals:
            out += self._aggregator(session, every).add(record, now)
        return self._count(out)

    def event(self, session: str, event: FeedEvent, now: float) -> list[Bar]:
        """Anything else `session` said (connects, closes, drops, acks): what it means for its bars."""
        key = getattr(event, "tr_key", None)
        intervals: set[int] | None = None
        if key is not None:  # an ack of one key: only that key's bars (no state for keys not wanted)
            intervals = self.wanted.get((getattr(event, "tr_id", ""), key))
            if not intervals:
                return []
        out: list[Bar] = []
        for (name, every), aggregator in self._aggregators.items():
            if name == session and (intervals is None or every in intervals):
                out += aggregator.add(event, now)
        return self._count(out)

    def timer(self) -> float | None:
        """When `tick` next has a bar to close (unix seconds), or None."""
        deadline = min(
            (t for a in self._aggregators.values() if (t := a.timer()) is not None), default=math.inf
        )
        return None if deadline == math.inf else deadline

    def tick(self, now: float) -> list[Bar]:
        """The clock reached `now`: the bars whose end + grace passed, even of a quiet key."""
        out: list[Bar] = []
        for aggregator in self._aggregators.values():
            out += aggregator.handle_timer(now)
        return self._count(out)

    def flush(self, now: float) -> list[Bar]:
        """The gateway stops being active: every open bar, marked as a gap (nothing more is watched)."""
        out: list[Bar] = []
        for aggregator in self._aggregators.values():
            out += aggregator.flush(now)
        self._aggregators.clear()
        self._where.clear()
        return self._count(out)

    # -- the wire ------------------------------------------------------------------------------------
    def message(self, bar: Bar, received: str) -> tuple[str, dict[str, str], bytes]:
        """The subject, headers and payload of `bar`: `Bar.to_dict` as JSON, ``Kis-Meta`` with its seq."""
        assert isinstance(bar.size, int)
        subject = subjects.bar_subject(self.env, bar.size, bar.tr_id, bar.symbol)
        seq = self._seq[subject] = self._seq.get(subject, 0) + 1
        payload = json.dumps(bar.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        return subject, {subjects.H_META: subjects.format_bar_meta(received, seq, self.gateway)}, payload

    def status(self) -> dict[str, int]:
        """Counts for the gateway's status: aggregators, bar streams, bars made."""
        return {
            "aggregators": len(self._aggregators),
            "streams": sum(len(v) for v in self.wanted.values()),
            "made": self.made,
        }

    # -- internals -----------------------------------------------------------------------------------
    def _aggregator(self, session: str, every: int) -> BarAggregator:
        aggregator = self._aggregators.get((session, every))
        if aggregator is None:
            aggregator = self._aggregators[(session, every)] = BarAggregator(every=every, grace=self.grace)
        return aggregator

    def _count(self, bars: list[Bar]) -> list[Bar]:
        # A bar of a key nobody wants any more (stopped while its aggregator held it) is not sent.
        out = [b for b in bars if b.size in self.wanted.get((b.tr_id, b.symbol), ())]
        self.made += len(out)
        return out
