"""kis_data: `kis-ws record` recordings as research data — replayed, or typed Parquet for backtests.

`read_recording(path)` gives every event of a recording with its arrival time, as a live feed
gave it (the standard library only); `kis_data.parquet` exports recordings to typed Parquet and
reads them back as Arrow tables (it needs pyarrow, the ``data`` extra, and is imported only when
used). No transport is imported. Logs on the ``kis_data`` logger.
"""

from __future__ import annotations

import logging

from ._recording import read_recording

__all__ = ["read_recording"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
