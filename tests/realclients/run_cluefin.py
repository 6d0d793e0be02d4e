"""cluefin-openapi 1.0.0 against the simulator, through ``SocketClient`` and ``DomesticRealtimeQuote``.

Pointing it at the simulator: ``Auth`` keeps its REST base in the instance attribute ``url``
(set here after construction, to the simulator's plain-HTTP address; it hard-codes the https KIS
hosts). ``SocketClient`` takes its WebSocket URL from the class constants ``WS_URL_PROD`` /
``WS_URL_DEV``: this runner patches ``WS_URL_PROD`` at runtime. ``DomesticRealtimeQuote`` works only
with ``env="prod"`` and subscribes the unified trade TR (H0UNCNT0), H0STASP0 and H0STCNI0.

The socket client only splits frames; the application parses them with the quote class's static
parsers (46 trade fields, at least 62 book fields, 26 notice fields per record), which raise
``ValueError`` for a payload too short: counted as rejected. The socket client neither decrypts
notices nor hands the application the key and IV of the subscribe reply.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from cluefin_openapi.kis._auth import Auth  # type: ignore[import-not-found]
from cluefin_openapi.kis._domestic_realtime_quote import (  # type: ignore[import-not-found]
    DomesticRealtimeQuote,
)
from cluefin_openapi.kis._socket_client import SocketClient  # type: ignore[import-not-found]
from pydantic import SecretStr  # type: ignore[import-not-found]

from ._runner import Options, Tally, run

CLIENT, DISTRIBUTION = "cluefin-openapi", "cluefin-openapi"
#: What the socket client reports, as an "error" event, when the server drops the connection.
LOST = (asyncio.IncompleteReadError, ConnectionError)


def main(options: Options, tally: Tally) -> None:
    if options.env != "real":
        raise ValueError("cluefin's real-time quotes and notices work with env='prod' only")
    symbol, hts_id = options.symbol, options.hts_id
    secret = SecretStr("sim-app-secret")
    auth = Auth(app_key="sim-app-key", secret_key=secret, env="prod", cache_dir=tempfile.mkdtemp())
    auth.url = options.rest_url
    SocketClient.WS_URL_PROD = options.url
    tally.note("set Auth.url; patched SocketClient.WS_URL_PROD")
    approval_key = auth.approve().approval_key

    def tally_records(kind: str, items: list[Any], key: str, expected: str) -> None:
        tally.count(kind, len(items))
        for item in items:
            if getattr(item, key) != expected:
                tally.problem("misparsed", f"{kind[:-1]} with {key} {getattr(item, key)!r}", of=kind)

    async def stream() -> None:
        async with SocketClient(
            approval_key=approval_key, app_key="sim-app-key", secret_key=secret
        ) as client:
            quote = DomesticRealtimeQuote(client)
            await quote.subscribe_execution(symbol)
            await quote.subscribe_orderbook(symbol)
            await quote.subscribe_execution_notification(hts_id)
            try:
                async with asyncio.timeout(options.duration):
                    async for event in client.events():
                        if event.event_type == "error" and isinstance(event.error, LOST):
                            tally.problem("disconnects", repr(event.error))
                        elif event.event_type == "error":
                            tally.problem("errors", repr(event.error))
                        elif event.event_type == "disconnected":
                            tally.problem("disconnects", "disconnected")
                        elif event.event_type == "data":
                            on_data(event.tr_id, event.data["values"])
            except TimeoutError:
                pass
            tally.stopping()

    def on_data(tr_id: str, values: list[str]) -> None:
        try:
            if tr_id == quote_class.TR_ID_EXECUTION:
                items = quote_class.parse_execution_data(values)
                tally_records("trades", items, "mksc_shrn_iscd", symbol)
            elif tr_id == quote_class.TR_ID_ORDERBOOK:
                items = quote_class.parse_orderbook_data(values)
                tally_records("books", items, "mksc_shrn_iscd", symbol)
            elif tr_id == quote_class.TR_ID_EXECUTION_NOTIFICATION:
                items = quote_class.parse_execution_notification_data(values)
                for item in items:
                    tally.notice(item.cntg_yn)
                    if item.cust_id != hts_id:
                        tally.problem("misparsed", f"notice for {item.cust_id!r}", of="notices")
        except ValueError as exc:
            tally.problem("rejected", f"{tr_id}: {str(exc).partition('. First field')[0]}")

    quote_class = DomesticRealtimeQuote
    asyncio.run(stream())


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
