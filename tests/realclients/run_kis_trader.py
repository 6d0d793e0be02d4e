"""kis-trader 0.12.2 against the simulator, through its typed real-time API.

Pointing it at the simulator: the WebSocket URL is an argument of ``RealtimeClient`` (configuration).
The approval key comes from ``fetch_approval_key``, which posts to a REST base kis-trader
hard-codes per environment (``kis_trader._internal._endpoints._BASE_URL_BY_ENVIRONMENT``, the https
KIS hosts): this runner patches that table to the simulator's plain-HTTP address at runtime.

Subscriptions: ``rt.domestic.stock(symbol).trades()`` (H0STCNT0), ``.order_book()`` (H0STASP0) and
``rt.domestic.execution_notices.stock(hts_id)`` (H0STCNI0 with ``--env real``, H0STCNI9 with
``--env paper``). kis-trader checks every record's width exactly (47 trade fields and 63 book
fields, KIS's widths since 2026-09-14; 26 notice fields) and drops a frame that does not match with
a "drop frame …" warning on the ``kis_trader.realtime`` logger: those are counted as rejected.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kis_trader._internal import _endpoints  # type: ignore[import-not-found]
from kis_trader.realtime import RealtimeClient, fetch_approval_key  # type: ignore[import-not-found]

from ._runner import Options, Tally, run, watch_logger

CLIENT, DISTRIBUTION = "kis-trader", "kis-trader"


def classify(record: logging.LogRecord) -> str | None:
    message = record.getMessage()
    if message.startswith("drop "):
        return "rejected"
    if "연결 끊김" in message:
        return "disconnects"
    return "errors" if record.levelno >= logging.WARNING else None


def main(options: Options, tally: Tally) -> None:
    _endpoints._BASE_URL_BY_ENVIRONMENT[options.env] = options.rest_url
    tally.note(f"patched kis_trader._internal._endpoints._BASE_URL_BY_ENVIRONMENT[{options.env!r}]")
    watch_logger("kis_trader.realtime", tally, classify)

    symbol, hts_id = options.symbol, options.hts_id

    def on_trade(tick: Any) -> None:
        tally.count("trades")
        if tick.symbol != symbol or len(tick._raw) != 47:
            tally.problem("misparsed", f"trade {tick.symbol} with {len(tick._raw)} fields", of="trades")

    def on_book(book: Any) -> None:
        tally.count("books")
        if book.symbol != symbol or not book.best_ask > book.best_bid:
            tally.problem(
                "misparsed", f"book {book.symbol} ask {book.best_ask} bid {book.best_bid}", of="books"
            )

    def on_notice(notice: Any) -> None:
        tally.notice(notice.fill_status)
        if notice.customer_id != hts_id or notice.symbol != symbol:
            tally.problem("misparsed", f"notice for {notice.customer_id} on {notice.symbol}", of="notices")

    approval_key = fetch_approval_key("sim-app-key", "sim-app-secret", options.env)
    client = RealtimeClient(approval_key, options.url, environment=options.env)
    client.domestic.stock(symbol).trades(on=on_trade)
    client.domestic.stock(symbol).order_book(on=on_book)
    client.domestic.execution_notices.stock(hts_id, on=on_notice)
    client.start(timeout=10.0)
    time.sleep(options.duration)
    tally.stopping()
    client.stop()  # takes its full 5 s timeout and logs a warning, against any server (a client bug)


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
