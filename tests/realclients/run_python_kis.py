"""python-kis 2.1.6 against the simulator, through ``PyKis.websocket.on(id, key, callback)``.

Pointing it at the simulator: python-kis hard-codes its hosts. The WebSocket base is imported into
``pykis.client.websocket`` (``WEBSOCKET_REAL_DOMAIN``, to which it appends ``/tryitout``) and the
REST base into ``pykis.kis`` (``REAL_DOMAIN``, https): this runner patches both module constants
at runtime. The app key must be 36 characters and the secret 180 (python-kis checks the lengths).

python-kis requests a fresh approval key for every subscribe message, checks each record's width
exactly (46 trade fields, 59 book fields, 23 notice fields: the layouts before 2026-09-14, and a
notice layout older than KIS's 26 fields) and logs "RTC Failed to parse message" for a frame that
does not match: those are counted as rejected. Its 23-field notice class is its own known bug.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykis.client.websocket  # type: ignore[import-not-found]
import pykis.kis  # type: ignore[import-not-found]

from ._runner import Options, Tally, run, watch_logger

REJECTED = ("RTC Failed to parse message", "RTC Failed to decrypt message", "RTC No encryption key")

CLIENT, DISTRIBUTION = "python-kis", "python-kis"


def classify(record: logging.LogRecord) -> str | None:
    message = record.getMessage()
    if message.startswith(REJECTED):
        return "rejected"
    if message.startswith("RTC Disconnected"):
        return "disconnects"
    return "errors" if record.levelno >= logging.WARNING else None


def main(options: Options, tally: Tally) -> None:
    if options.env != "real":
        raise ValueError("this runner drives python-kis's real-domain client only")
    pykis.client.websocket.WEBSOCKET_REAL_DOMAIN = options.url
    pykis.kis.REAL_DOMAIN = options.rest_url
    tally.note("patched pykis.client.websocket.WEBSOCKET_REAL_DOMAIN and pykis.kis.REAL_DOMAIN")
    watch_logger("pykis", tally, classify)

    symbol, hts_id = options.symbol, options.hts_id
    kis = pykis.kis.PyKis(
        id=hts_id,
        account="50123456-01",
        appkey="P" * 36,
        secretkey="S" * 180,
        keep_token=False,
    )

    def on_trade(sender: Any, event: Any) -> None:
        tally.count("trades")
        if event.response.symbol != symbol:
            tally.problem("misparsed", f"trade for {event.response.symbol}", of="trades")

    def on_book(sender: Any, event: Any) -> None:
        tally.count("books")
        if event.response.symbol != symbol:
            tally.problem("misparsed", f"book for {event.response.symbol}", of="books")

    def on_notice(sender: Any, event: Any) -> None:
        data = event.response.__data__
        tally.notice(data[13] if len(data) > 13 else "")
        if data[0] != hts_id:
            tally.problem("misparsed", f"notice for {data[0]}", of="notices")

    tickets = [
        kis.websocket.on("H0STCNT0", symbol, on_trade),
        kis.websocket.on("H0STASP0", symbol, on_book),
        kis.websocket.on("H0STCNI0", hts_id, on_notice),
    ]
    kis.websocket.ensure_connected(timeout=10)
    time.sleep(options.duration)
    tally.stopping()
    for ticket in tickets:
        ticket.unsubscribe()
    kis.websocket.disconnect()


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
