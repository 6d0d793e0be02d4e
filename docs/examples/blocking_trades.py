"""Ten trades of Samsung Electronics from a plain script: no ``async`` anywhere (`kis_anyio.blocking`).

Against the simulator (it accepts any approval key)::

    kis-ws sim &        # prints: KIS simulator on ws://127.0.0.1:PORT ...
    python docs/examples/blocking_trades.py ws://127.0.0.1:PORT

Against KIS's paper server (trades come only while the market is open)::

    KIS_APP_KEY=... KIS_APP_SECRET=... python docs/examples/blocking_trades.py

`tests/test_blocking.py` runs it against the simulator.
"""

from __future__ import annotations

import os
import sys

from kis_anyio import blocking

from kis_proto import Credentials, records


def main(url: str | None) -> None:
    credentials = None
    if url is None:
        credentials = Credentials(
            app_key=os.environ["KIS_APP_KEY"], app_secret=os.environ["KIS_APP_SECRET"], env="paper"
        )
    # The simulator takes any approval key; with credentials one is fetched over HTTPS.
    approval_key = "simulator" if url is not None else None
    with blocking.connect(url, credentials=credentials, approval_key=approval_key) as feed:
        trades = feed.subscribe("H0STCNT0", "005930")
        trades.wait(timeout=10)  # KIS's answer: raises SubscriptionError if it refused
        count = 0
        for event in feed:
            if isinstance(event, records.H0STCNT0):
                print(f"{event.time} {event.symbol} {event.price}원 x {event.volume}")
                count += 1
                if count == 10:
                    break
        trades.unsubscribe()
    # Leaving the block closed the connection and stopped the background thread.


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
