"""mojito2 0.1.6 against the simulator, through its ``KoreaInvestmentWS`` process and its queue.

Pointing it at the simulator: the approval request goes to ``self.base_url``, an instance attribute
(set here after construction, to the simulator's plain-HTTP address). The WebSocket URL is a local
variable of ``KoreaInvestmentWS.ws_client`` (``ws://ops.koreainvestment.com:21000``), so this
runner replaces the ``websockets`` module that ``mojito.koreainvestment`` imported by a stand-in
whose ``connect`` opens the simulator's URL instead (patched at runtime, before the fork).

``KoreaInvestmentWS`` is a ``multiprocessing.Process``: it subscribes H0STCNT0 and H0STASP0 for each
symbol and H0STCNI0 for ``user_id``, then puts ``['체결', record]``, ``['호가', book]`` and
``['체잔', notice]`` on its queue, which this runner drains. mojito has no rejection path: an
exception ends the process (counted as an error and a disconnect). It reads trades as 46-field
records at fixed offsets, books and notices as one record, and notices with a 23-name list.
"""

from __future__ import annotations

import queue
import time
import types
from typing import Any

import mojito  # type: ignore[import-not-found]
import mojito.koreainvestment  # type: ignore[import-not-found]
import websockets

from ._runner import Options, Tally, run

CLIENT, DISTRIBUTION = "mojito2", "mojito2"


def main(options: Options, tally: Tally) -> None:
    if options.env != "real":
        raise ValueError("mojito subscribes the real notice TR (H0STCNI0) only")
    symbol, hts_id = options.symbol, options.hts_id

    def connect(uri: str, **kwargs: Any) -> Any:
        return websockets.connect(options.url, **kwargs)

    mojito.koreainvestment.websockets = types.SimpleNamespace(connect=connect)
    tally.note("patched mojito.koreainvestment.websockets.connect (the URL is a local variable)")
    feed = mojito.KoreaInvestmentWS(
        "sim-app-key", "sim-app-secret", ["H0STCNT0", "H0STASP0"], [symbol], user_id=hts_id
    )
    feed.base_url = options.rest_url
    feed.start()
    deadline = time.monotonic() + options.duration
    while (left := deadline - time.monotonic()) > 0:
        try:
            kind, record = feed.queue.get(timeout=min(left, 0.2))
        except queue.Empty:
            if not feed.is_alive():
                tally.problem("errors", f"the feed process ended (exit code {feed.exitcode})")
                tally.problem("disconnects", "the feed process ended")
                break
            continue
        if kind == "체결":
            tally.count("trades")
            if record.get("유가증권단축종목코드") != symbol:
                tally.problem(
                    "misparsed", f"trade record starting {record.get('유가증권단축종목코드')!r}", of="trades"
                )
        elif kind == "호가":
            tally.count("books")
            if record.get("유가증권 단축 종목코드") != symbol:
                tally.problem("misparsed", f"book for {record.get('유가증권 단축 종목코드')!r}", of="books")
        elif kind == "체잔":
            tally.notice(record.get("체결여부", ""))
            price = record.get("주문가격", "")
            if record.get("고객ID") != hts_id or not price.isdigit():
                tally.problem(
                    "misparsed", f"notice: 고객ID {record.get('고객ID')!r}, 주문가격 {price!r}", of="notices"
                )
    tally.stopping()
    feed.terminate()
    feed.join(5)


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
