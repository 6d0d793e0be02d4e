"""Recordings as Arrow tables and Parquet files, typed by kis_proto's layouts. Needs pyarrow.

Replaying a recording decodes every message again, on every run; its Parquet export is decoded
once, and reads a column of a day in milliseconds, typed as pandas and polars take it::

    from kis_data import parquet
    parquet.export("day.kisrec", "day/")                 # day/H0STCNT0.parquet, day/H0STASP0.parquet, ...
    tables = parquet.read_recording_arrow("day.kisrec")  # the same tables, in memory
    trades = tables["H0STCNT0"].to_pandas()

One table per TR and era, columns named by the official field names and typed from kis_proto's
layouts, plus ``t`` (arrival time, UTC) and ``tr_key``. The Parquet recorder (`ParquetRecorder`,
``kis-ws record --parquet DIR``) writes the same tables while recording, as parts that survive a
crash. `export_bars` writes a recording's bars beside its records (``kis-ws export --bars 1m``),
`bars_table` makes a table of any bars. Importing this module imports pyarrow (the ``data`` extra); `kis_data` itself does not.
"""

from __future__ import annotations

from ._bars import bars_table, export_bars, interval_label
from ._collect import ExportSummary
from ._tables import FORMAT, TableSpec, layout_schema
from ._write import ParquetRecorder, export, read_export, read_recording_arrow

__all__ = [
    "FORMAT",
    "ExportSummary",
    "ParquetRecorder",
    "TableSpec",
    "bars_table",
    "export",
    "export_bars",
    "interval_label",
    "layout_schema",
    "read_export",
    "read_recording_arrow",
]
