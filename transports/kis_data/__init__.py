"""kis_data: `kis-ws record` recordings as Arrow tables and Parquet files, for backtests.

Replaying a recording decodes every message again, on every run; its Parquet export is decoded
once, and reads a column of a day in milliseconds, typed as pandas and polars take it::

    import kis_data
    kis_data.export("day.kisrec", "day/")                 # day/H0STCNT0.parquet, day/H0STASP0.parquet, ...
    tables = kis_data.read_recording_arrow("day.kisrec")  # the same tables, in memory
    trades = tables["H0STCNT0"].to_pandas()

One table per TR and era, columns named by the official field names and typed from kis_proto's
layouts, plus ``t`` (arrival time, UTC) and ``tr_key``. The Parquet recorder (`ParquetRecorder`,
``kis-ws record --parquet DIR``) writes the same tables while recording, as parts that survive a
crash. Needs pyarrow (the ``data`` extra); no transport is imported. Logs on the ``kis_data`` logger.
"""

from __future__ import annotations

import logging

from ._collect import ExportSummary
from ._tables import FORMAT, TableSpec, layout_schema
from ._write import ParquetRecorder, export, read_export, read_recording_arrow

__all__ = [
    "FORMAT",
    "ExportSummary",
    "ParquetRecorder",
    "TableSpec",
    "export",
    "layout_schema",
    "read_export",
    "read_recording_arrow",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
