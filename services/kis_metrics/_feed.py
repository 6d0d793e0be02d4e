"""A feed's counters (`kis_proto.feed.FeedCounters`) as Prometheus metrics, read at scrape time.

Nothing is counted twice: the feed counts as it goes (a dict increment per record), and this
collector turns the counts into metric families when Prometheus asks, so an unscraped process
pays nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from prometheus_client.core import Metric

    from kis_proto.feed import FeedCounters

__all__ = ["FeedCollector"]


class FeedCollector(Collector):
    """Metrics of the feeds `feeds()` names: ``(session label, counters)`` pairs, read per scrape.

    Families (labels bounded: a session per app key, a TR id per subscribed TR, a reason from a
    fixed set): ``kis_session_up``, ``kis_subscriptions``, ``kis_records_received_total``,
    ``kis_connects_total``, ``kis_reconnects_total{reason}``, ``kis_decode_failures_total``,
    ``kis_layout_drift_total``, ``kis_records_dropped_total``, ``kis_subscriptions_refused_total``.
    """

    def __init__(self, feeds: Callable[[], Iterable[tuple[str, FeedCounters]]]) -> None:
        self._feeds = feeds

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kis_session_up", "1 while the KIS session is connected", labels=["session"])
        subs = GaugeMetricFamily(
            "kis_subscriptions", "Registrations the KIS session holds (KIS allows 41)", labels=["session"]
        )
        records = CounterMetricFamily(
            "kis_records_received", "Records received from KIS", labels=["session", "tr_id"]
        )
        connects = CounterMetricFamily("kis_connects", "WebSocket sessions opened", labels=["session"])
        reconnects = CounterMetricFamily(
            "kis_reconnects", "Reconnects, by the reason the session ended", labels=["session", "reason"]
        )
        undecodable = CounterMetricFamily(
            "kis_decode_failures", "Messages that could not be decoded", labels=["session"]
        )
        drift = CounterMetricFamily(
            "kis_layout_drift", "Records whose width matched no known layout", labels=["session"]
        )
        dropped = CounterMetricFamily(
            "kis_records_dropped", "Records dropped because the application fell behind", labels=["session"]
        )
        refused = CounterMetricFamily(
            "kis_subscriptions_refused", "Subscriptions the server refused", labels=["session"]
        )
        for name, counters in self._feeds():
            up.add_metric([name], 1.0 if counters.connected else 0.0)
            subs.add_metric([name], float(counters.subscriptions))
            for tr_id, count in sorted(counters.records.items()):
                records.add_metric([name, tr_id], float(count))
            connects.add_metric([name], float(counters.connects))
            for reason, count in sorted(counters.reconnects.items()):
                reconnects.add_metric([name, reason], float(count))
            undecodable.add_metric([name], float(counters.decode_failures))
            drift.add_metric([name], float(counters.layout_drift))
            dropped.add_metric([name], float(counters.dropped))
            refused.add_metric([name], float(counters.refused))
        yield from (up, subs, records, connects, reconnects, undecodable, drift, dropped, refused)
