"""kis_dash: a live web dashboard of a feed — quotes, 호가창, candles, the feed's health, notices.

``kis-ws dash`` runs it (docs/dashboard.md). A program of its own keeps a `DashState` up to date
from a feed with `follow` and serves it with `serve`: a page on 127.0.0.1 behind a random token,
its assets (TradingView's lightweight-charts among them) shipped in the package, so it works
offline, and one WebSocket per page carrying each widget's latest state at most ten times a
second. Needs the ``dash`` extra (aiohttp): ``pip install 'kis-proto[dash]'``.
"""

from __future__ import annotations

import logging

from ._follow import GATEWAY_STATUS_INTERVAL, follow
from ._server import SEND_INTERVAL, DashServer, Outbox, new_token, serve
from ._state import BOOK_LEVELS, DashState, book_key, chart_key

__all__ = [
    "BOOK_LEVELS",
    "GATEWAY_STATUS_INTERVAL",
    "SEND_INTERVAL",
    "DashServer",
    "DashState",
    "Outbox",
    "book_key",
    "chart_key",
    "follow",
    "new_token",
    "serve",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
