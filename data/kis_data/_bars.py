"""Bars as Arrow tables and Parquet files: ``kis-ws export REC --bars 1m``. Needs pyarrow.

The bars are `kis_proto.bars.bars_from` of the recording (its receive times are the clock), one
row per emission, in the order they were emitted: a bar emitted again with a late trade is a row
of its own with a higher `revision` (keep the highest per tr_id, symbol, session, start).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kis_proto.bars import Bar, bars_from, parse_interval

from ._arrow import pa, pq
from ._recording import read_recording
from ._write import make_private_dir, open_private

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["bars_table", "export_bars", "interval_label"]

_KST = "Asia/Seoul"
_WHEN = pa.timestamp("us", tz=_KST)
_VWAP = pa.decimal128(38, 6)
_PRICES = ("open", "high", "low", "close", "value")


def interval_label(every: int | str) -> str:
    """``"10s"``, ``"1m"``, ``"1h"``: the interval as a file name says it (``H0STCNT0.bars-1m``)."""
    seconds = parse_interval(every)
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number_type(values: list[int | Decimal]) -> Any:
    """int64 when every value is an int (won), else a decimal wide enough for every value's scale."""
    decimals = [v for v in values if isinstance(v, Decimal)]
    if not decimals:
        return pa.int64()
    scale = max(0, *(-int(d.as_tuple().exponent) for d in decimals))
    return pa.decimal128(38, scale)


def bars_table(bars: Iterable[Bar]) -> Any:
    """Bars as one Arrow table, typed: times KST-aware, prices int64 (won) or decimal as the bars
    hold them, VWAP decimal(38, 6), `complete` and `gap` booleans, the session by its label."""
    rows = list(bars)
    prices = [getattr(bar, name) for bar in rows for name in _PRICES]
    price = _number_type(prices)
    size = _number_type([bar.size for bar in rows])

    def column(name: str) -> list[Any]:
        return [getattr(bar, name) for bar in rows]

    fields: list[tuple[str, Any, list[Any]]] = [
        ("tr_id", pa.string(), column("tr_id")),
        ("symbol", pa.string(), column("symbol")),
        ("session", pa.string(), [None if b.session is None else b.session.label for b in rows]),
        ("kind", pa.string(), column("kind")),
        ("size", size, column("size")),
        ("start", _WHEN, column("start")),
        ("end", _WHEN, column("end")),
        *((name, price, column(name)) for name in ("open", "high", "low", "close")),
        ("volume", pa.int64(), column("volume")),
        ("value", price, column("value")),
        ("vwap", _VWAP, column("vwap")),
        ("trades", pa.int64(), column("trades")),
        ("buy_volume", pa.int64(), column("buy_volume")),
        ("sell_volume", pa.int64(), column("sell_volume")),
        ("first_trade", _WHEN, column("first_trade")),
        ("last_trade", _WHEN, column("last_trade")),
        ("complete", pa.bool_(), column("complete")),
        ("gap", pa.bool_(), column("gap")),
        ("missing_volume", pa.int64(), column("missing_volume")),
        ("revision", pa.int64(), column("revision")),
        ("late_trades", pa.int64(), column("late_trades")),
    ]
    schema = pa.schema([pa.field(name, kind) for name, kind, _ in fields])
    return pa.table([pa.array(values, type=kind) for _, kind, values in fields], schema=schema)


def export_bars(
    recording: str | Path,
    out_dir: str | Path,
    *,
    every: int | str = "1m",
    overwrite: bool = False,
    compression: str = "zstd",
    on_skip: Callable[[int, str], None] | None = None,
    **options: Any,
) -> dict[Path, int]:
    """Write a recording's time bars as Parquet beside its records: ``OUT/H0STCNT0.bars-1m.parquet``.

    One file per trade TR, of `kis_proto.bars.bars_from` over `read_recording` with ``every``
    (and `options`, `BarAggregator`'s): exactly those bars, in that order. Returns the rows per
    file written. Raises `FileExistsError` when a file of the same name exists (unless
    `overwrite`), `OSError` and `UnicodeDecodeError` as `read_recording` does.
    """
    label = interval_label(every)
    by_tr: dict[str, list[Bar]] = {}
    for bar in bars_from(read_recording(recording, on_skip=on_skip), every=every, **options):
        by_tr.setdefault(bar.tr_id, []).append(bar)
    out = Path(out_dir)
    make_private_dir(out)
    targets = {tr_id: out / f"{tr_id}.bars-{label}.parquet" for tr_id in by_tr}
    if not overwrite:
        for path in targets.values():
            if path.exists():
                raise FileExistsError(f"{path} exists (overwrite=True replaces it)")
    written: dict[Path, int] = {}
    for tr_id, rows in sorted(by_tr.items()):
        final = targets[tr_id]
        temporary = out / f".{final.name}.tmp"
        table = bars_table(rows)
        try:
            with open_private(temporary) as file:
                pq.write_table(table, file, compression=compression)
            temporary.replace(final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        written[final] = table.num_rows
    return written
