"""kis_asyncio: the standard-library asyncio transport for kis_proto (no anyio, no trio).

Empty until the transports issue lands; it exists so the layering contract covers it from the start.
"""

from __future__ import annotations
