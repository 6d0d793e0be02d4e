"""kis_asyncio: the standard-library asyncio transport for kis_proto (no anyio, no trio).

``async with kis_asyncio.connect(credentials=creds) as feed:`` and the callback `WSClient`, the
same two faces as kis_anyio, over `asyncio` streams; `open_feed` opens a feed without a block,
for notebooks whose cells are separate tasks. `workers` is the callback clients' tasks and
threads on asyncio, for another asyncio `WSClient` (kis_nats's) to use.
"""

from __future__ import annotations

import logging

from ._client import Callback, Feed, WSClient, connect, fetch_approval_key, open_feed, workers

__all__ = ["Callback", "Feed", "WSClient", "connect", "fetch_approval_key", "open_feed", "workers"]

# A library logs and leaves the handlers to the application: configure logging to see warnings
# (refusals, server errors, records dropped) or pass on_error to WSClient.
logging.getLogger(__name__).addHandler(logging.NullHandler())
