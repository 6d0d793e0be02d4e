"""The original design's usage example (phase 5, 사용 예시), with kis-proto's names.

    KIS_APP_KEY=... KIS_APP_SECRET=... python docs/examples/price_callbacks.py

`tests/test_examples.py` runs `main` against the loopback server.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kis_asyncio import WSClient

from kis_proto import Credentials, Record


async def main(kis: Credentials | None, **where: Any) -> None:
    ws = WSClient(kis, **where)

    # 체결가 수신 콜백 (a price callback)
    async def on_price(data: Record) -> None:
        print(f"{data['symbol']}: {data['price']:,}원")

    # 구독 (subscribe)
    await ws.subscribe("H0STCNT0", ["005930", "000660"], on_price)

    # 실행 (run)
    try:
        await ws.run()
    except KeyboardInterrupt:
        await ws.close()


if __name__ == "__main__":
    credentials = Credentials(
        app_key=os.environ["KIS_APP_KEY"], app_secret=os.environ["KIS_APP_SECRET"], env="paper"
    )
    asyncio.run(main(credentials))
