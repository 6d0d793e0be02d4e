"""kis_anyio: the anyio transport for kis_proto (runs on trio and asyncio) and the ``kis-ws`` CLI.

The network client arrives with the transports issue; today the package holds the CLI's
``decode`` command (``kis-ws decode FILE``), which turns recorded KIS text messages into readable
records with the sans-IO codec.
"""

from __future__ import annotations
