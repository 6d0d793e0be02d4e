"""kis_asyncio: the standard-library asyncio transport for kis_proto (no anyio, no trio).

``async with kis_asyncio.connect(credentials=creds) as feed:`` and the callback `WSClient`, the
same two faces as kis_anyio, over `asyncio` streams.
"""

from __future__ import annotations

from ._client import Callback, Feed, WSClient, connect, fetch_approval_key

__all__ = ["Callback", "Feed", "WSClient", "connect", "fetch_approval_key"]
