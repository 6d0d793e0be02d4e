"""kis_anyio: the anyio transport for kis_proto (runs on trio and asyncio).

``async with kis_anyio.connect(credentials=creds) as feed:`` subscribes and iterates a live feed
that reconnects by itself; `open_feed` opens one without a block (notebooks); `WSClient` is the
original design's callback face on the same loop; `bars(feed, every="1m")` gives a feed's bars as
they complete (and `WSClient.subscribe_bars` by callback); `blocking` is both faces for code with
no ``async`` at all. The simulator is `kis_sim`.
"""

from __future__ import annotations

import logging

from . import blocking
from ._bars import BarStream, bars
from ._client import Callback, Feed, WSClient, connect, fetch_approval_key, open_feed

__all__ = [
    "BarStream",
    "Callback",
    "Feed",
    "WSClient",
    "bars",
    "blocking",
    "connect",
    "fetch_approval_key",
    "open_feed",
]

# A library logs and leaves the handlers to the application: configure logging to see warnings
# (refusals, server errors, records dropped) or pass on_error to WSClient.
logging.getLogger(__name__).addHandler(logging.NullHandler())
