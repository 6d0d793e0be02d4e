"""The one place kis_data imports pyarrow, an optional dependency (the ``data`` extra).

pyarrow ships no type information, so its modules are typed `Any` here and everywhere they are used.
"""

from __future__ import annotations

try:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "kis_data needs pyarrow: install the data extra, e.g. pip install 'kis-proto[data]'"
    ) from exc

__all__ = ["pa", "pc", "pcsv", "pq"]
