"""The tables of an export: which records go where, their Arrow schemas, and the bulk conversion.

Records are grouped by TR id and layout (era), one table each; records of a width no era of
their TR has (drift) and records of TRs kis_proto does not know go to raw tables of strings, one
per TR and width. Field strings reach Arrow as text (a batch of record lines read by Arrow's CSV
reader) and are typed in bulk, by the reader itself or by Arrow compute casts. A value reads as
kis_proto's typed read of the same field (`rec[name]`) reads it: Arrow's parsers accept slightly
different text than Python's `int` and `Decimal` (Arrow reads ``0x10`` as 16; Python reads
``+5``, `` 5`` and ``1_000``), so Arrow converts only the forms both read alike, and the few values
of any other form are read one by one by the record class itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from typing import Any

from kis_proto import KST, MarketSession, Record, __version__
from kis_proto.layouts import TRS, FieldType, Layout

from ._arrow import pa, pc, pcsv

__all__ = ["FORMAT", "TableSpec", "layout_schema", "raw_table", "typed_table"]

#: Written into every file's schema metadata (``kis.format``); bumped when the layout of files changes.
FORMAT = "kis-data 1"

_INT64_MAX = 2**63 - 1
# The forms that Arrow and Python read alike (Python also takes "+5", " 5", "1_000" and other
# scripts' digits; Arrow also takes hex). 18 digits always fit in int64.
_PLAIN_INT = r"^-?[0-9]{1,18}$"
_PLAIN_DECIMAL = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_SESSION_CODES = [session.value for session in MarketSession]
_SESSION_LABELS = [session.label for session in MarketSession]


def _dict_str() -> Any:
    return pa.dictionary(pa.int32(), pa.string())


_ARROW_TYPES = {
    FieldType.STR: _dict_str,
    FieldType.INT: pa.int64,
    FieldType.DECIMAL: pa.float64,
    FieldType.DATE: pa.date32,
    FieldType.TIME: lambda: pa.time32("ms"),
    FieldType.SESSION: _dict_str,
}


_PARSED = {FieldType.INT: pa.int64, FieldType.DECIMAL: pa.float64, FieldType.STR: _dict_str}


@dataclass(frozen=True, slots=True, eq=False)
class TableSpec:
    """One table of an export: its file name (without ``.parquet``), records and Arrow schema."""

    #: ``H0STCNT0`` (today's layout), ``H0STCNT0-2026-08`` (an older era), ``FOO00000-w3.raw``.
    name: str
    tr_id: str
    #: Fields per record.
    width: int
    #: The layout the records are read with; None for a raw table.
    layout: Layout | None
    schema: Any

    @property
    def parse_types(self) -> list[Any] | None:
        """The types Arrow's parser may give each column as it reads (None: strings only).

        Integers, decimals and strings, whose plain forms Arrow's parser reads as kis_proto does
        (text with an ``x`` can hold a hex number that Arrow would read: such a batch is read as
        strings). Dates, times and sessions are converted after parsing.
        """
        if self.layout is None:
            return None
        return [_PARSED.get(field.type, pa.string)() for field in self.layout.fields]

    @property
    def raw(self) -> bool:
        """True for a table of strings (a TR kis_proto does not know, or a width no era has)."""
        return self.layout is None


def typed_table(tr_id: str, layout: Layout) -> TableSpec:
    """The table of `tr_id`'s records in `layout`: named ``TR`` for today's era, ``TR-ERA`` otherwise."""
    today = TRS[layout.tr_id].layouts[-1] is layout
    name = tr_id if today else f"{tr_id}-{layout.era}"
    return TableSpec(
        name=name, tr_id=tr_id, width=layout.width, layout=layout, schema=layout_schema(layout, tr_id)
    )


def raw_table(tr_id: str, width: int) -> TableSpec:
    """The table of `tr_id`'s records that are `width` fields wide and have no layout: strings."""
    fields = [_t_field(), _key_field()]
    fields += [pa.field(f"f{i}", pa.string()) for i in range(width)]
    spec = TRS.get(tr_id) or next((s for s in TRS.values() if tr_id in s.tr_ids), None)
    why = (
        f"no known era of {tr_id} has {width} fields (known: {', '.join(str(x.width) for x in spec.layouts)})"
        if spec is not None
        else f"kis_proto {__version__} does not know {tr_id}"
    )
    metadata = {
        "kis.format": FORMAT,
        "kis.tr_id": tr_id,
        "kis.width": str(width),
        "kis.raw": why + "; f0.. hold every field as received (empty fields as empty strings)",
        "kis.kis_proto": __version__,
    }
    return TableSpec(
        name=f"{tr_id}-w{width}.raw",
        tr_id=tr_id,
        width=width,
        layout=None,
        schema=pa.schema(fields, metadata=metadata),
    )


def _t_field() -> Any:
    return pa.field(
        "t",
        pa.timestamp("us", tz="UTC"),
        nullable=False,
        metadata={"kis.doc": "when the message arrived (the recording's t), UTC"},
    )


def _key_field() -> Any:
    return pa.field(
        "tr_key",
        _dict_str(),
        metadata={"kis.doc": "the record's key (its first field): the symbol, or the HTS ID on notices"},
    )


def layout_schema(layout: Layout, tr_id: str | None = None) -> Any:
    """The Arrow schema of a layout's table: ``t``, ``tr_key``, then the official columns, typed.

    INT → int64, DECIMAL → float64, DATE → date32, TIME → time32[ms] (field metadata ``kis.tz``
    says whether it is KST or the exchange's local time), STR → dictionary of strings, SESSION
    (``MARKET_CLS_CODE``) → dictionary of the session's label (``regular``, ``after-market``, …).
    Every field carries its Korean name (``kis.kor``) and kis_proto type (``kis.type``).
    """
    zones = {f.name: getattr(f, "tz", None) for f in layout.record_class.columns}
    fields = [_t_field(), _key_field()]
    for spec in layout.fields:
        meta = {"kis.type": spec.type.name, "kis.kor": spec.kor}
        if spec.aliases:
            meta["kis.aliases"] = ",".join(spec.aliases)
        if spec.type is FieldType.TIME:
            meta["kis.tz"] = "KST (UTC+9)" if zones.get(spec.name) is KST else "exchange local time"
        if spec.type is FieldType.SESSION:
            meta["kis.codes"] = json.dumps(dict(zip(_SESSION_CODES, _SESSION_LABELS, strict=True)))
        fields.append(pa.field(spec.name, _ARROW_TYPES[spec.type](), metadata=meta))
    kind = TRS[layout.tr_id]
    metadata = {
        "kis.format": FORMAT,
        "kis.tr_id": tr_id or layout.tr_id,
        "kis.era": layout.era,
        "kis.width": str(layout.width),
        "kis.kind": kind.kind.value,
        "kis.market": kind.market.value,
        "kis.source": layout.source,
        "kis.times": "t is UTC; time-of-day columns are in the zone their kis.tz says (KST is UTC+9)",
        "kis.kis_proto": __version__,
    }
    return pa.schema(fields, metadata=metadata)


# -- reading a batch of record lines ----------------------------------------------------------------


def read_lines(
    data: bytes, width: int, *, nullable: bool, multiline: bool, longest: int, types: list[Any] | None = None
) -> Any:
    """Split `data` (one record per line, fields separated by ``^``) into `width` columns.

    Fields that hold a ``"``, a newline or a carriage return arrive quoted, CSV style (only
    records that went through the decoder can have them). An empty field is null when `nullable`.
    `types` (one per column) lets Arrow type columns as it parses; it raises `pyarrow.ArrowInvalid`
    when a value does not convert, and the caller reads the text again as strings.
    """
    names = [f"c{i}" for i in range(width)]
    return pcsv.read_csv(
        pa.py_buffer(data),
        # A block holds whole lines; small inputs get small blocks (a block is allocated in full).
        read_options=pcsv.ReadOptions(
            column_names=names, block_size=max(2 * longest + 16, min(len(data) + 16, 1 << 22))
        ),
        parse_options=pcsv.ParseOptions(
            delimiter="^",
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=multiline,
            ignore_empty_lines=False,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict(zip(names, types or [pa.string()] * width, strict=True)),
            strings_can_be_null=nullable,
            null_values=[""],
            quoted_strings_can_be_null=nullable,
        ),
    )


def quote(field: str) -> str:
    """A field as a record line holds it: quoted when it has a ``"``, newline or carriage return."""
    if '"' in field or "\n" in field or "\r" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


# -- the bulk conversion ------------------------------------------------------------------------------


@dataclass(slots=True)
class Invalid:
    """Values of one column that did not convert (exported as null): how many, and the first one."""

    count: int
    example: str


def receive_times(seconds: Any) -> Any:
    """The ``t`` column: unix seconds (float64, as recorded, to the microsecond) → timestamp[us, UTC]."""
    micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
    return micros.cast(pa.timestamp("us", tz="UTC"))


def convert(
    spec: TableSpec, columns: list[Any], ts: Any, *, maybe_hex: bool
) -> tuple[Any, dict[str, Invalid]]:
    """The typed table of one batch: `columns` are its columns in wire order (strings, or already
    typed by the parser), `ts` (float64) the arrival time of each record.

    `maybe_hex` says whether the batch's text holds an ``x`` or ``X`` at all: when it does not,
    Arrow's integer cast cannot have read a hex number and may take a column whole.
    """
    invalid: dict[str, Invalid] = {}
    key = columns[0] if columns else pa.nulls(len(ts), pa.string())
    if spec.layout is None:
        tr_key = pc.dictionary_encode(pc.if_else(pc.equal(key, ""), pa.scalar(None, pa.string()), key))
        return pa.Table.from_arrays([receive_times(ts), tr_key, *columns], schema=spec.schema), invalid
    out = [receive_times(ts), None]
    for index, (field, column) in enumerate(zip(spec.layout.fields, columns, strict=True)):
        typed = _COLUMN[field.type](spec, index, field.name, column, maybe_hex)
        # Input nulls are the empty fields; any other null is a value that did not convert (or,
        # for a date, KIS's "no date", 00000000, which kis_proto reads as None too).
        lost = typed.null_count - column.null_count
        if lost and field.type is FieldType.DATE:
            lost -= pc.sum(pc.equal(column, "00000000")).as_py() or 0
        if lost:
            first = pc.and_(pc.is_valid(column), pc.is_null(typed))
            if field.type is FieldType.DATE:
                first = pc.and_(first, pc.not_equal(column, "00000000"))
            invalid[field.name] = Invalid(lost, str(column.filter(first)[0].as_py()))
        out.append(typed)
    first_column = out[2] if spec.layout.fields and spec.layout.fields[0].type is FieldType.STR else None
    out[1] = first_column if first_column is not None else pc.dictionary_encode(key)
    return pa.Table.from_arrays(out, schema=spec.schema), invalid


def _read_one(spec: TableSpec, index: int, name: str, text: str) -> Any:
    """`text` read as kis_proto reads field `name` of a record: the reference for odd forms."""
    assert spec.layout is not None
    row = [""] * spec.width
    row[index] = text
    rec: Record = spec.layout.record_class(spec.tr_id, row)
    return rec[name]


def _careful(
    spec: TableSpec, index: int, name: str, column: Any, plain: str, arrow_type: Any, fix: Any
) -> Any:
    """Cast the values of the `plain` form in bulk, and read every other one as kis_proto does."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    is_plain = pc.fill_null(pc.match_substring_regex(column, plain), False)
    values = pc.cast(pc.if_else(is_plain, column, pa.scalar(None, pa.string())), arrow_type)
    odd = pc.and_(pc.invert(is_plain), pc.is_valid(column))
    texts = column.filter(odd).to_pylist()
    if texts:
        read = [fix(_read_one(spec, index, name, text)) for text in texts]
        values = pc.replace_with_mask(values, odd, pa.array(read, arrow_type))
    return values


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and -_INT64_MAX - 1 <= value <= _INT64_MAX else None


def _float(value: object) -> float | None:
    if not isinstance(value, Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    if column.type == pa.int64():  # typed by the parser
        return column
    if not maybe_hex or not pc.any(pc.match_substring_regex(column, "[xX]")).as_py():
        try:
            return pc.cast(column, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return _careful(spec, index, name, column, _PLAIN_INT, pa.int64(), _int)


def _decimal_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    # Arrow's float parser takes a subset of what Decimal takes, with the same value (both round
    # correctly), plus inf and nan: kis_proto reads those as None, so they become null here too.
    if column.type == pa.float64():  # typed by the parser
        values = column
    else:
        try:
            values = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = _careful(spec, index, name, column, _PLAIN_DECIMAL, pa.float64(), _float)
    total = pc.sum(values).as_py()  # inf or nan when any value is (or, rarely, when the sum overflows)
    if total is not None and not math.isfinite(total):
        values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))
    return values


def _date(value: object) -> date | None:
    return value if isinstance(value, date) else None


def _date_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    column = pc.if_else(pc.equal(column, "00000000"), pa.scalar(None, pa.string()), column)
    plain = pc.fill_null(pc.and_(pc.ascii_is_decimal(column), pc.equal(pc.binary_length(column), 8)), False)
    text = pc.if_else(plain, column, pa.scalar(None, pa.string()))
    stamps = pc.strptime(text, format="%Y%m%d", unit="s", error_is_null=True)
    stamps = pc.if_else(pc.greater_equal(pc.year(stamps), 1), stamps, pa.scalar(None, stamps.type))
    values = pc.cast(stamps, pa.date32())
    odd = pc.and_(pc.invert(plain), pc.is_valid(column))
    if pc.any(odd).as_py():
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        odd = odd.combine_chunks() if isinstance(odd, pa.ChunkedArray) else odd
        read = [_date(_read_one(spec, index, name, t)) for t in column.filter(odd).to_pylist()]
        values = pc.replace_with_mask(values, odd, pa.array(read, pa.date32()))
    return values


def _time(value: object) -> int | None:
    """A time of day as time32[ms] holds it: milliseconds since midnight."""
    return (value.hour * 3600 + value.minute * 60 + value.second) * 1000 if isinstance(value, time) else None


def _time_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    plain = pc.fill_null(pc.and_(pc.ascii_is_decimal(column), pc.equal(pc.binary_length(column), 6)), False)
    hhmmss = pc.cast(pc.if_else(plain, column, pa.scalar(None, pa.string())), pa.int32())
    hours = pc.divide(hhmmss, 10000)
    minutes = pc.subtract(pc.divide(hhmmss, 100), pc.multiply(hours, 100))
    seconds = pc.subtract(hhmmss, pc.multiply(pc.divide(hhmmss, 100), 100))
    valid = pc.and_(pc.and_(pc.less(hours, 24), pc.less(minutes, 60)), pc.less(seconds, 60))
    total = pc.multiply(pc.add(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), seconds), 1000)
    total = pc.if_else(valid, pc.cast(total, pa.int32()), pa.scalar(None, pa.int32()))
    odd = pc.and_(pc.invert(plain), pc.is_valid(column))
    if pc.any(odd).as_py():
        total = total.combine_chunks() if isinstance(total, pa.ChunkedArray) else total
        odd = odd.combine_chunks() if isinstance(odd, pa.ChunkedArray) else odd
        read = [_time(_read_one(spec, index, name, t)) for t in column.filter(odd).to_pylist()]
        total = pc.replace_with_mask(total, odd, pa.array(read, pa.int32()))
    return pc.cast(pc.cast(total, pa.int32()), pa.time32("ms"))


def _str_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    return column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)


def _session_column(spec: TableSpec, index: int, name: str, column: Any, maybe_hex: bool) -> Any:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    indices = pc.index_in(column, value_set=pa.array(_SESSION_CODES))
    return pa.DictionaryArray.from_arrays(indices, pa.array(_SESSION_LABELS))


_COLUMN = {
    FieldType.STR: _str_column,
    FieldType.INT: _int_column,
    FieldType.DECIMAL: _decimal_column,
    FieldType.DATE: _date_column,
    FieldType.TIME: _time_column,
    FieldType.SESSION: _session_column,
}
