"""The gateway's Prometheus metrics, read at scrape time (the ``metrics`` extra: prometheus_client).

Its sessions' families are `kis_metrics.FeedCollector`'s (one ``session`` label per app key,
never the key); the gateway's own are ``kis_gateway_*``: its role, what it published, held and
dropped, its consumers' leases, NATS, and two histograms of its own delay. Labels stay bounded:
no symbol, no client id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kis_metrics import FeedCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from ._gateway import Gateway
    from ._stats import Histogram

__all__ = ["GatewayCollector"]

_ROLES = ("starting", "standby", "active")


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=histogram.buckets(), sum_value=histogram.sum)


class GatewayCollector(Collector):
    """The metrics of one `Gateway`: its sessions' (`FeedCollector`) and its own."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._feeds = FeedCollector(gateway.session_counters)

    def collect(self) -> Iterator[Metric]:
        gw = self._gateway
        stats = gw.stats
        yield from self._feeds.collect()
        role = GaugeMetricFamily("kis_gateway_role", "1 for the gateway's current role", labels=["role"])
        for name in _ROLES:
            role.add_metric([name], 1.0 if gw.role == name else 0.0)
        yield role
        yield GaugeMetricFamily(
            "kis_gateway_nats_connected",
            "1 while the gateway's NATS connection is up",
            value=float(gw.nc.is_connected),
        )
        yield GaugeMetricFamily(
            "kis_gateway_lease_in_doubt",
            "1 while the active gateway cannot renew its leader lease (NATS does not answer)",
            value=1.0 if stats.lease_in_doubt_since is not None else 0.0,
        )
        yield CounterMetricFamily(
            "kis_gateway_lease_failures",
            "Renewals of the leader lease NATS did not answer",
            value=stats.lease_failures,
        )
        downs = CounterMetricFamily(
            "kis_gateway_step_downs", "Times the active gateway stood by, by why", labels=["reason"]
        )
        for reason, count in sorted(stats.step_downs.items()):
            downs.add_metric([reason], float(count))
        yield downs
        yield CounterMetricFamily(
            "kis_gateway_records_published", "Market-data records handed to NATS", value=gw.published
        )
        yield CounterMetricFamily(
            "kis_gateway_records_dropped",
            "Market-data records not published (NATS away or its buffer full; the gateway behind KIS)",
            value=gw.dropped,
        )
        yield CounterMetricFamily(
            "kis_gateway_notices_received",
            "Execution notices taken from KIS (held, then stored)",
            value=gw.notices,
        )
        yield CounterMetricFamily(
            "kis_gateway_notices_published",
            "Execution notices JetStream confirmed",
            value=stats.notices_published,
        )
        yield GaugeMetricFamily(
            "kis_gateway_notices_held",
            "Notices waiting for JetStream (on disk too)",
            value=float(len(gw._held)),
        )
        yield GaugeMetricFamily(
            "kis_gateway_consumers",
            "Consumers holding a lease on subscriptions",
            value=float(gw.planner.clients),
        )
        yield CounterMetricFamily(
            "kis_gateway_consumer_leases_expired",
            "Consumer leases that ran out (a consumer stopped without unsubscribing)",
            value=gw.planner.expired,
        )
        yield _histogram(
            "kis_gateway_publish_seconds",
            "Seconds a batch of records takes to hand to nats-py",
            stats.publish_seconds,
        )
        yield _histogram(
            "kis_gateway_publish_lag_seconds",
            "Seconds from a record's receive stamp to its hand-over to NATS (per record)",
            stats.lag_seconds,
        )
