"""The official KIS sample client against the simulator: ``examples_user/kis_auth.py`` ``KISWebSocket``.

It is not on the package index and not in this repository: ``$KIS_OFFICIAL_SAMPLE_DIR`` names a
checkout of koreainvestment/open-trading-api, which this runner imports from (``examples_user`` and
``examples_user/domestic_stock``). It needs Python 3.12 or newer (``kis_auth.py`` nests quotes in an
f-string) with pandas, requests, websockets, PyYAML and pycryptodome (`peers.OFFICIAL`).

Pointing it at the simulator, by configuration only: ``kis_auth`` reads
``~/KIS/config/kis_devlp.yaml`` when imported, so the runner sets ``HOME`` to a temporary directory
and writes that file there, with ``prod``/``vps`` (REST) and ``ops``/``vops`` (WebSocket) naming the
simulator. Then it does what ``domestic_stock_examples_ws.py`` does: ``ka.auth()`` (access token),
``ka.auth_ws()`` (approval key), ``KISWebSocket(api_url="/tryitout")``, ``subscribe`` with
``ccnl_krx``, ``asking_price_krx`` and ``ccnl_notice`` (HTS ID), ``start(on_result=...)``.

``KISWebSocket`` reads each payload with ``pandas.read_csv(names=columns)`` and ignores the record
count; an exception in its receive loop ends the session (it prints "Connection exception >>" and
reconnects, up to 3 times): the runner counts those prints (through the module's ``print``) as
errors and disconnects. Records whose first column is not the subscribed symbol (or HTS ID) are
counted as misparsed; records the server sent (the counts in the frames it logs on receipt) that
never reached ``on_result`` are counted as lost.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._runner import Options, Tally, run

CLIENT, DISTRIBUTION = "official", None


def write_config(home: Path, options: Options) -> None:
    config = {
        "my_app": "sim-app-key",
        "my_sec": "sim-app-secret",
        "paper_app": "sim-paper-app-key",
        "paper_sec": "sim-paper-app-secret",
        "my_htsid": options.hts_id,
        "my_acct_stock": "50123456",
        "my_acct_future": "60123456",
        "my_paper_stock": "50654321",
        "my_paper_future": "60654321",
        "my_prod": "01",
        "prod": options.rest_url,
        "ops": options.url,
        "vps": options.rest_url,
        "vops": options.url,
        "my_token": "",
        "my_agent": "kis-proto-realclients",
    }
    folder = home / "KIS" / "config"
    folder.mkdir(parents=True)
    lines = [f'{key}: "{value}"' for key, value in config.items()]
    (folder / "kis_devlp.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(options: Options, tally: Tally) -> None:
    root = Path(os.environ["KIS_OFFICIAL_SAMPLE_DIR"]) / "examples_user"
    home = Path(tempfile.mkdtemp(prefix="kis-official-"))
    write_config(home, options)
    os.environ["HOME"] = str(home)
    tally.note(f"HOME={home} with KIS/config/kis_devlp.yaml naming the simulator")
    sys.path[:0] = [str(root), str(root / "domestic_stock")]
    import kis_auth as ka  # type: ignore[import-not-found]
    from domestic_stock_functions_ws import (  # type: ignore[import-not-found]
        asking_price_krx,
        ccnl_krx,
        ccnl_notice,
    )

    tally.version = "examples_user/kis_auth.py"
    symbol, hts_id = options.symbol, options.hts_id
    svr, env_dv = ("prod", "real") if options.env == "real" else ("vps", "demo")

    def observed_print(*args: Any, **kwargs: Any) -> None:
        text = " ".join(str(arg) for arg in args)
        if text.startswith("Connection exception"):
            tally.problem("errors", text)
            tally.problem("disconnects", "the session ended")
        sys.stderr.write(text + "\n")

    ka.print = observed_print  # the module's own prints report its failures

    class Received(logging.Handler):
        """KISWebSocket logs every message it receives: the record counts the server sent."""

        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("received message >> ") and text[20:21] in ("0", "1"):
                parts = text[20:].split("|", 3)
                if len(parts) == 4 and parts[2].isdigit():
                    sent[parts[1]] = sent.get(parts[1], 0) + int(parts[2])

    sent: dict[str, int] = {}
    logging.getLogger().addHandler(Received())
    logging.getLogger().setLevel(logging.INFO)

    def on_result(ws: Any, tr_id: str, frame: Any, info: Any) -> None:
        if tr_id == "H0STCNT0":
            kind, column, expected = "trades", "MKSC_SHRN_ISCD", symbol
        elif tr_id == "H0STASP0":
            kind, column, expected = "books", "MKSC_SHRN_ISCD", symbol
        elif tr_id in ("H0STCNI0", "H0STCNI9"):
            kind, column, expected = "notices", "CUST_ID", hts_id
        else:
            return
        rows = frame.to_dict("records")
        for row in rows:
            if kind == "notices":
                tally.notice(str(row.get("CNTG_YN", "")))
            else:
                tally.count(kind)
            if row.get(column) != expected:
                tally.problem("misparsed", f"{tr_id} row with {column}={row.get(column)!r}")

    ka.auth(svr=svr)
    ka.auth_ws(svr=svr)
    socket = ka.KISWebSocket(api_url="/tryitout")
    socket.subscribe(request=ccnl_krx, data=[symbol], kwargs={"env_dv": env_dv})
    socket.subscribe(request=asking_price_krx, data=[symbol], kwargs={"env_dv": env_dv})
    socket.subscribe(request=ccnl_notice, data=[hts_id], kwargs={"env_dv": env_dv})
    threading.Thread(target=socket.start, kwargs={"on_result": on_result}, daemon=True).start()
    time.sleep(options.duration)
    tally.stopping()
    delivered = {"H0STCNT0": tally.trades, "H0STASP0": tally.books}
    tally.lost = sum(max(0, sent.get(tr_id, 0) - n) for tr_id, n in delivered.items())


if __name__ == "__main__":
    run(CLIENT, DISTRIBUTION, main)
