"""What the gateway counts for its operator, beyond its feeds' own counters: plain numbers.

Updated on the gateway's loop as it goes (an add, a `bisect` per batch of records), turned into
Prometheus families only when scraped (`kis_gateway.gateway_collector`), so the gateway needs no
prometheus_client to run and an unscraped one pays next to nothing (docs/decisions.md, "The
gateway's metrics").
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["LAG_BUCKETS", "PUBLISH_BUCKETS", "GatewayStats", "Histogram"]

#: Seconds a batch's hand-over to nats-py takes (a buffer append, or a flush when the loop is idle).
PUBLISH_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
#: Seconds from a record's receive stamp to its batch's hand-over: the gateway's own delay.
LAG_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    """Counts of values per bucket (`bounds`, upper bounds inclusive, as Prometheus's ``le``)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, weight: int = 1) -> None:
        """`weight` observations of `value` (a batch's records share one lag: one call for all)."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.sum += value * weight
        self.count += weight

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last: what `HistogramMetricFamily` takes."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass(eq=False)
class GatewayStats:
    """The gateway's own counts (its sessions' are each feed's `FeedCounters`)."""

    #: Notices JetStream confirmed it stored.
    notices_published: int = 0
    #: Times the active gateway stood by, by why: ``lease_taken`` (another gateway holds the
    #: leader key), ``in_use`` (KIS gave the session to another while the lease was in doubt),
    #: ``lease_lost`` (the key could not be kept, NATS reachable).
    step_downs: dict[str, int] = field(default_factory=dict)
    #: Renewals of the leader key that failed (NATS away or slow).
    lease_failures: int = 0
    #: Since when (time.monotonic) the lease could not be renewed; None while it is renewed.
    lease_in_doubt_since: float | None = None
    #: Seconds each batch's hand-over to nats-py took.
    publish_seconds: Histogram = field(default_factory=lambda: Histogram(PUBLISH_BUCKETS))
    #: Seconds from each record's receive stamp to its hand-over to nats-py.
    lag_seconds: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))

    def batch(self, received: float, started: float, done: float, records: int) -> None:
        """A batch of `records` stamped `received`, handed to nats-py from `started` to `done`."""
        # Both observations inlined: this runs once per batch on the gateway's hot path.
        took, lag = done - started, done - received
        publish, delay = self.publish_seconds, self.lag_seconds
        publish.counts[bisect_left(publish.bounds, took)] += 1
        publish.sum += took
        publish.count += 1
        delay.counts[bisect_left(delay.bounds, lag)] += records
        delay.sum += lag * records
        delay.count += records

    def stepped_down(self, reason: str) -> None:
        self.step_downs[reason] = self.step_downs.get(reason, 0) + 1
