"""Metrics and health probes for kis-ws's long-running commands (the ``metrics`` extra).

``kis-ws gateway --metrics HOST:PORT`` and ``kis-ws record --metrics HOST:PORT`` serve
``/metrics`` (the Prometheus text format, `prometheus_client`), ``/healthz`` (alive) and
``/readyz`` (ready to serve: connected, active). A program of its own exports a feed's counters
with `FeedCollector` in a `prometheus_client` registry, and `serve_metrics` serves it.
"""

from __future__ import annotations

from ._feed import FeedCollector
from ._server import MetricsServer, is_loopback, parse_listen, serve_metrics

__all__ = ["FeedCollector", "MetricsServer", "is_loopback", "parse_listen", "serve_metrics"]
