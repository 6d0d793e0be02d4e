"""kis-agent 1.6.1 against the simulator, through ``KISClient`` (approval) and ``WSAgent`` (stream).

Pointing it at the simulator, by configuration only: ``KISConfig(base_url=...)`` for the REST side
(``KISClient`` issues an access token from ``/oauth2/tokenP`` as it is constructed, then
``get_ws_approval_key()`` posts ``/oauth2/Approval``) and ``WSAgent(url=...)`` for the WebSocket.
Its token cache (``KIS_TOKEN_PATH``, by default a file inside the installed package) goes to a
temporary file, so runs do not share tokens.

One runtime patch, not of a URL: ``WSAgent.connect`` refuses to connect after 15:30 KST and at
weekends (``kis_agent.websocket.ws_agent._is_after_market_close``, except 16:00-20:00); the
simulator trades at any hour, so the runner makes that check answer "open".

``WSAgent`` hands each handler one list per frame: the ``^``-split payload, all records of a
multi-record frame in one list; notices still encrypted (it tests the record count, not the first
field, for encryption, and never stores a notice key). Such lists are counted as misparsed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from typing import Any

from ._runner import Options, Tally, run, watch_logger

CLIENT, DISTRIBUTION = "kis-agent", "kis-agent"
#: The narrowest trade and book records KIS has sent: a list twice as long holds several records.
TRADE_WIDTH, BOOK_WIDTH = 46, 59


def classify(record: logging.LogRecord) -> str | None:
    message = record.getMessage()
    if "연결 종료" in message and record.levelno >= logging.WARNING:
        return "disconnects"
    return "errors" if record.levelno >= logging.WARNING else None


def main(options: Options, tally: Tally) -> None:
    os.environ["KIS_TOKEN_PATH"] = os.path.join(tempfile.mkdtemp(prefix="kis-agent-"), "token.json")
    from kis_agent.core.client import KISClient  # type: ignore[import-not-found]
    from kis_agent.core.config import KISConfig  # type: ignore[import-not-found]
    from kis_agent.websocket import SubscriptionType, WSAgent, ws_agent  # type: ignore[import-not-found]

    ws_agent._is_after_market_close = lambda has_night_session=False: False
    tally.note("patched kis_agent.websocket.ws_agent._is_after_market_close (a market-hours gate)")
    watch_logger("kis_agent", tally, classify)
    symbol, hts_id = options.symbol, options.hts_id
    notice_tr = "STOCK_NOTICE" if options.env == "real" else "STOCK_NOTICE_AH"

    config = KISConfig(
        app_key="sim-app-key",
        app_secret="sim-app-secret",
        base_url=options.rest_url,
        account_no="50123456",
        account_code="01",
    )
    client = KISClient(svr="prod", config=config)
    approval_key = client.get_ws_approval_key()
    if not approval_key:
        raise RuntimeError("KISClient.get_ws_approval_key() returned no key")
    agent = WSAgent(approval_key, url=options.url, client=client)

    def on_trade(values: list[str], metadata: Any) -> None:
        tally.count("trades")
        if len(values) >= 2 * TRADE_WIDTH or values[0] != symbol:
            tally.problem(
                "misparsed", f"a trade of {len(values)} fields starting {values[0][:20]!r}", of="trades"
            )

    def on_book(values: list[str], metadata: Any) -> None:
        tally.count("books")
        if len(values) >= 2 * BOOK_WIDTH or values[0] != symbol:
            tally.problem(
                "misparsed", f"a book of {len(values)} fields starting {values[0][:20]!r}", of="books"
            )

    def on_notice(values: list[str], metadata: Any) -> None:
        tally.notice(values[13] if len(values) == 26 else "")
        if len(values) != 26 or values[0] != hts_id:
            tally.problem(
                "misparsed", f"a notice of {len(values)} fields starting {values[0][:20]!r}", of="notices"
            )

    # Handlers per subscription type: a handler per subscription is found by the frame's first
    # field, which for a notice is still ciphertext, so it would never see one.
    notices = getattr(SubscriptionType, notice_tr)
    agent.register_handler(SubscriptionType.STOCK_TRADE, on_trade)
    agent.register_handler(SubscriptionType.STOCK_ASK_BID, on_book)
    agent.register_handler(notices, on_notice)
    agent.subscribe(SubscriptionType.STOCK_TRADE, symbol)
    agent.subscribe(SubscriptionType.STOCK_ASK_BID, symbol)
    agent.subscribe(notices, hts_id)

    async def stream() -> None:
        task = asyncio.create_task(agent.connect())
        await asyncio.sleep(options.duration)
        tally.stopping()
        await agent.disconnect()
        await asyncio.wait_for(task, 10)

    asyncio.run(stream())


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
