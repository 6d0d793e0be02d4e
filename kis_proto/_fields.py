"""Typed fields and the record base class.

A data frame carries records as runs of `^`-separated strings. A record keeps the strings of its
run exactly as received and converts a field only when it is read: most consumers read two or
three fields of a 46-field trade, so converting everything up front would cost more than the split
itself (measured in `bench/bench_codec.py`; see docs/decisions.md). A conversion is not cached;
reading the same attribute twice converts twice, which is cheaper than the bookkeeping a cache
would need on every record.

Each real-time TR has a generated subclass of `Record` (`kis_proto.records`) whose class
attributes are the descriptors below, one per official column, so `rec.stck_prpr` is typed
`int | None` for mypy and editors, and `rec["STCK_PRPR"]` works through the mapping interface.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import date, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar, overload

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "KST",
    "MISSING",
    "DateField",
    "DecimalField",
    "EmptyFieldError",
    "Field",
    "FieldSpec",
    "FieldType",
    "FieldValue",
    "IntField",
    "Layout",
    "Market",
    "MarketSession",
    "Record",
    "RequiredDecimalField",
    "RequiredIntField",
    "RequiredStrField",
    "RequiredTimeField",
    "SessionField",
    "SignedChange",
    "StrField",
    "TRKind",
    "TRSpec",
    "TimeField",
]

logger = logging.getLogger("kis_proto.records")


class MarketSession(enum.Enum):
    """The trading session of a KRX trade or book (``MARKET_CLS_CODE``, since 2026-09-14).

    KRX runs a pre-market (NXT, 08:00–08:50 KST), the regular session with its closing auction
    (09:00–15:30) and, since 2026-09-14, an after-market (16:00–20:00). The values are KIS's codes.
    """

    PRE_MARKET = "1"
    REGULAR = "2"
    AFTER_MARKET = "3"
    CLOSING = "5"

    @property
    def label(self) -> str:
        """A short English name: ``pre-market``, ``regular``, ``after-market`` or ``closing``."""
        return _SESSION_LABELS[self]

    @property
    def korean(self) -> str:
        """The Korean name: 장전, 정규장, 장후 or 종가."""
        return _SESSION_KOREAN[self]


_SESSION_LABELS = {
    MarketSession.PRE_MARKET: "pre-market",
    MarketSession.REGULAR: "regular",
    MarketSession.AFTER_MARKET: "after-market",
    MarketSession.CLOSING: "closing",
}
_SESSION_KOREAN = {
    MarketSession.PRE_MARKET: "장전",
    MarketSession.REGULAR: "정규장",
    MarketSession.AFTER_MARKET: "장후",
    MarketSession.CLOSING: "종가",
}
_SESSION_BY_CODE = {session.value: session for session in MarketSession}

T = TypeVar("T", int, Decimal, str, date, time, MarketSession)
N = TypeVar("N", int, Decimal)

#: What reading a field can give: its declared type, or None when the field is empty or absent.
FieldValue: TypeAlias = int | Decimal | str | date | time | MarketSession | None

#: Korean Standard Time (UTC+9, no daylight saving): the zone of every KIS time of day in Korea.
KST = timezone(timedelta(hours=9), "KST")

#: The index of a column that a layout does not have (an older era of the TR): it reads as None.
MISSING = 1 << 30


class FieldType(enum.Enum):
    """The declared type of a field; the value is the Python type a read gives."""

    STR = str
    INT = int
    DECIMAL = Decimal
    DATE = date
    TIME = time
    SESSION = MarketSession


class Market(enum.Enum):
    """Which market a TR belongs to."""

    DOMESTIC_STOCK = "domestic_stock"
    DOMESTIC_INDEX = "domestic_index"
    DOMESTIC_ELW = "domestic_elw"
    DOMESTIC_ETF = "domestic_etf"
    DOMESTIC_BOND = "domestic_bond"
    DOMESTIC_FUTURES_OPTIONS = "domestic_futures_options"
    OVERSEAS_STOCK = "overseas_stock"
    OVERSEAS_FUTURES_OPTIONS = "overseas_futures_options"


class TRKind(enum.Enum):
    """What a TR's records describe."""

    TRADE = "trade"
    ORDER_BOOK = "order_book"
    EXPECTED_TRADE = "expected_trade"
    NOTICE = "notice"
    MARKET_STATUS = "market_status"
    PROGRAM_TRADING = "program_trading"
    MEMBERS = "members"
    NAV = "nav"


class Field(Generic[T]):
    """A descriptor reading one column of a record by index and converting it lazily.

    An empty or absent field reads as None. A value that does not convert also reads as None: it
    is logged once per field (at WARNING, on the ``kis_proto.records`` logger), listed by
    `Record.invalid_fields()`, and kept as received in `Record.raw`. Reading never raises.
    """

    __slots__ = ("_warned", "index", "kor", "name", "type")
    _TYPE: ClassVar[FieldType] = FieldType.STR
    #: A non-empty value that also means "no value" (KIS writes an absent date as 00000000).
    _ABSENT: ClassVar[str] = ""

    def __init__(self, index: int, name: str, kor: str = "") -> None:
        self.index = index
        self.name = name
        self.kor = kor
        self.type = self._TYPE
        self._warned = False

    def convert(self, text: str) -> T:
        """Convert a non-empty field string; raise ValueError or ArithmeticError if it is invalid."""
        raise NotImplementedError

    def read(self, obj: Record) -> T | None:
        """The field's value in `obj`, or None (empty, absent, or invalid): never raises.

        The mapping interface reads through this; the attribute of a required field raises instead
        of giving None (`RequiredField`).
        """
        try:
            text = obj._f[self.index]
        except IndexError:
            return None
        if not text or text == self._ABSENT:
            return None
        try:
            return self.convert(text)
        except (ValueError, ArithmeticError):
            self._invalid(obj, text)
            return None

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> T | None: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | T | None:
        return self if obj is None else self.read(obj)

    def missing(self, obj: Record) -> EmptyFieldError:
        """The error a required field's attribute raises when `obj` has no valid value for it."""
        try:
            text = obj._f[self.index]
        except IndexError:
            text = None
        what = (
            "absent" if text is None else "empty" if not text else f"not a valid {self.type.value.__name__}"
        )
        shown = "" if not text else f" ({text[:24]!r})"
        return EmptyFieldError(
            f"{obj.tr_id} {self.name} is {what}{shown} in this record; "
            f"rec[{self.name!r}] reads it as None instead of raising"
        )

    def _invalid(self, obj: Record, text: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s field %s: %r is not a valid %s; it reads as None (raw value kept in .raw)",
                obj.tr_id,
                self.name,
                text[:24],
                self.type.value.__name__,
            )

    def is_valid(self, text: str) -> bool:
        """Tell whether `text` converts under this field's declared type (empty counts as valid)."""
        if not text or text == self._ABSENT:
            return True
        try:
            self.convert(text)
        except (ValueError, ArithmeticError):
            return False
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.index}] {self.name}>"


class StrField(Field[str]):
    """A text field (codes, flags, names): the string as received."""

    __slots__ = ()
    _TYPE = FieldType.STR

    def convert(self, text: str) -> str:
        return text

    def read(self, obj: Record) -> str | None:
        try:
            return obj._f[self.index] or None
        except IndexError:
            return None

    # Text needs no conversion, so the hot path skips the generic machinery.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> str | None: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | str | None:
        if obj is None:
            return self
        try:
            return obj._f[self.index] or None
        except IndexError:
            return None


class IntField(Field[int]):
    """An integer field (quantities, volumes, KRW prices); a leading sign is allowed."""

    __slots__ = ()
    _TYPE = FieldType.INT

    def convert(self, text: str) -> int:
        return int(text)

    def read(self, obj: Record) -> int | None:
        try:
            text = obj._f[self.index]
        except IndexError:
            return None
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            self._invalid(obj, text)
            return None

    # The hot read (price, volume): the generic path inlined, without the convert() call.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> int | None: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | int | None:
        if obj is None:
            return self
        try:
            text = obj._f[self.index]
        except IndexError:
            return None
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            return self._invalid(obj, text)


class DecimalField(Field[Decimal]):
    """A decimal field (rates, index values, foreign prices); `+0.12` reads as Decimal("0.12")."""

    __slots__ = ()
    _TYPE = FieldType.DECIMAL

    def convert(self, text: str) -> Decimal:
        value = Decimal(text)
        if not value.is_finite():
            raise ValueError(text)
        return value


class DateField(Field[date]):
    """A YYYYMMDD date; the all-zero date KIS uses for "no date" reads as None."""

    __slots__ = ()
    _TYPE = FieldType.DATE

    def convert(self, text: str) -> date:
        if len(text) != 8 or not text.isdigit() or not text.isascii():
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))

    _ABSENT = "00000000"


class TimeField(Field[time]):
    """An HHMMSS time of day: aware (`KST`) for Korean times, naive for an exchange's local time."""

    __slots__ = ("tz",)
    _TYPE = FieldType.TIME

    def __init__(self, index: int, name: str, kor: str = "", *, tz: tzinfo | None = None) -> None:
        super().__init__(index, name, kor)
        self.tz = tz

    def convert(self, text: str) -> time:
        if len(text) != 6 or not text.isdigit() or not text.isascii():
            raise ValueError(text)
        return time(int(text[:2]), int(text[2:4]), int(text[4:]), tzinfo=self.tz)


class SessionField(Field[MarketSession]):
    """A ``MARKET_CLS_CODE`` column, read as a `MarketSession`; an unknown code reads as None."""

    __slots__ = ()
    _TYPE = FieldType.SESSION

    def convert(self, text: str) -> MarketSession:
        try:
            return _SESSION_BY_CODE[text]
        except KeyError:
            raise ValueError(text) from None


class SignedChange(Field[N]):
    """A change from the previous close, signed by its sign column.

    Domestic TRs already send the change signed (`-19500` with sign `5`); overseas TRs send it
    unsigned (`0.2100`) with the direction only in `SIGN`. Codes 4 (limit down) and 5 (down) make a
    positive value negative; a value that already carries its sign is left alone (PROTOCOL.md §8).
    """

    __slots__ = ("sign_index", "value")

    def __init__(self, value: Field[N], sign_index: int) -> None:
        super().__init__(value.index, value.name, value.kor)
        self.value: Field[N] = value
        self.sign_index = sign_index
        self.type = value.type

    def convert(self, text: str) -> N:
        return self.value.convert(text)

    def is_valid(self, text: str) -> bool:
        return self.value.is_valid(text)

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> N | None: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | N | None:
        return self if obj is None else self.read(obj)

    def read(self, obj: Record) -> N | None:
        value = self.value.read(obj)
        if value is not None and value > 0:
            fields = obj._f
            if self.sign_index < len(fields) and fields[self.sign_index] in ("4", "5"):
                return -value
        return value


class EmptyFieldError(LookupError):
    """A required field's attribute was read on a record that has no valid value for it.

    Raised only by the typed attributes of fields KIS always sends (a trade's price, volume, time
    and symbol; every record's key): they are typed without None so that arithmetic type-checks.
    The mapping (``rec["STCK_PRPR"]``) reads the same field as None instead.
    """


class RequiredStrField(StrField):
    """A text field KIS always sends: the attribute is `str` and raises `EmptyFieldError` if empty."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> str: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | str:
        if obj is None:
            return self
        try:
            text = obj._f[self.index]
        except IndexError:
            raise self.missing(obj) from None
        if not text:
            raise self.missing(obj)
        return text


class RequiredIntField(IntField):
    """An integer KIS always sends (a trade's price and volume): `int`, or `EmptyFieldError`."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> int: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | int:
        if obj is None:
            return self
        try:
            return int(obj._f[self.index])
        except (ValueError, IndexError):
            raise self.missing(obj) from None


class RequiredDecimalField(DecimalField):
    """A decimal KIS always sends (an overseas trade's price): `Decimal`, or `EmptyFieldError`."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> Decimal: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | Decimal:
        if obj is None:
            return self
        value = self.read(obj)
        if value is None:
            raise self.missing(obj)
        return value


class RequiredTimeField(TimeField):
    """A time KIS always sends (a trade's time): `time`, or `EmptyFieldError`."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> time: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | time:
        if obj is None:
            return self
        value = self.read(obj)
        if value is None:
            raise self.missing(obj)
        return value


if TYPE_CHECKING:
    _RecordBase = Mapping[str, FieldValue]
else:
    # Not an ABC subclass at run time: isinstance() against ABCMeta classes costs a Python-level
    # __instancecheck__ per call, and every consumer asks "is this a record?" of every event.
    # Record is registered as a virtual Mapping below and implements the mixin methods itself.
    _RecordBase = object


class Record(_RecordBase):
    """One data record of a real-time TR: one event per record, however many a frame carries.

    `tr_id` and `tr_key` say where it came from (`tr_key` is the record's key column: the symbol,
    or the HTS ID on execution notices). `raw` holds every field string exactly as received,
    unknown trailing fields included. The mapping interface reads a converted field by its official
    column name (`rec["STCK_PRPR"]`) or by a friendly name (`rec["price"]`); the attributes
    (`rec.stck_prpr`, `rec.price`) are the same reads, typed. Records are immutable and compare by
    TR, key and raw fields.

    A TR has one class per known layout ("era"), chosen by the record's width: the TR's class
    (`records.H0STCNT0`) is today's layout, and the classes of older layouts
    (`records.H0STCNT0_2026_08`) subclass it, so ``isinstance(rec, records.H0STCNT0)`` holds for
    every era. A column an era lacks reads as None through its attribute and is not among its keys.

    `Record` itself is used for TRs this version does not know: it has no named columns, and its
    `raw` and `extra` still hold everything.
    """

    __slots__ = ("_f", "_tr_id")

    #: The number of fields of this layout (None for an unknown TR).
    width: ClassVar[int | None] = None
    #: The era of this layout, e.g. ``"2026-09"`` (None for an unknown TR).
    era: ClassVar[str | None] = None
    #: Official columns in wire order.
    columns: ClassVar[tuple[Field[Any], ...]] = ()
    #: Friendly names (symbol, time, price, change, volume, session) this layout offers.
    friendly: ClassVar[tuple[str, ...]] = ()
    _by_key: ClassVar[dict[str, Field[Any]]] = {}
    _key_index: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        columns: list[Field[Any]] = []
        friendly: dict[str, Field[Any]] = {}
        for attr, value in vars(cls).items():
            if isinstance(value, Field) and value.index != MISSING:
                if attr == value.name.lower() and not isinstance(value, SignedChange):
                    columns.append(value)
                else:
                    friendly[attr] = value
        columns.sort(key=lambda f: f.index)
        if [f.index for f in columns] != list(range(len(columns))):
            raise TypeError(f"{cls.__name__}: column indices must run 0..n-1")
        cls.columns = tuple(columns)
        cls.width = len(columns)
        cls.friendly = tuple(friendly)
        cls._by_key = {f.name: f for f in columns} | friendly

    def __init__(self, tr_id: str, fields: tuple[str, ...] | list[str]) -> None:
        """Build a record from its field strings (the decoder builds records; tests may too)."""
        self._tr_id = tr_id
        self._f = list(fields)

    @property
    def tr_id(self) -> str:
        """The TR id of the frame, e.g. ``H0STCNT0`` (``H0STCNI9`` for paper notices)."""
        return self._tr_id

    @property
    def tr_key(self) -> str:
        """The record's key column: the symbol, index code, or HTS ID on notices."""
        fields = self._f
        return fields[self._key_index] if self._key_index < len(fields) else ""

    @property
    def raw(self) -> tuple[str, ...]:
        """Every field string of this record as received, unknown trailing fields included."""
        return tuple(self._f)

    @property
    def extra(self) -> tuple[str, ...]:
        """The trailing fields this version has no name for (KIS appends fields over time)."""
        return tuple(self._f[len(self.columns) :])

    def invalid_fields(self) -> dict[str, str]:
        """Map each column whose value does not convert under its declared type to the raw text."""
        fields = self._f
        return {
            f.name: fields[f.index]
            for f in self.columns
            if f.index < len(fields) and not f.is_valid(fields[f.index])
        }

    def to_dict(self) -> dict[str, FieldValue]:
        """Every official column and friendly name with its converted value."""
        return {key: self[key] for key in self}

    # -- Mapping ---------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> FieldValue:
        try:
            field = self._by_key[key]
        except (KeyError, TypeError):
            raise KeyError(key) from None
        value: FieldValue = field.read(self)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._by_key

    def get(self, key: str, default: FieldValue = None) -> FieldValue:  # type: ignore[override]
        """The converted value of `key`, or `default` when the record has no such column."""
        field = self._by_key.get(key) if isinstance(key, str) else None
        return default if field is None else field.read(self)

    def keys(self) -> KeysView[str]:
        """The official column names, then the friendly names."""
        return KeysView(self)

    def items(self) -> ItemsView[str, FieldValue]:
        """(name, converted value) pairs."""
        return ItemsView(self)

    def values(self) -> ValuesView[FieldValue]:
        """The converted values."""
        return ValuesView(self)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    # -- value semantics ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._tr_id == other._tr_id and self._f == other._f

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._tr_id, tuple(self._f)))

    def __repr__(self) -> str:
        if self.friendly:
            shown = ", ".join(f"{key}={_short(self[key])}" for key in self.friendly)
        else:
            shown = f"fields={len(self._f)}"
        era = f" {self.era}" if self.era else ""
        return f"<{self._tr_id}{era} tr_key={self.tr_key!r} {shown}>"


Mapping.register(Record)


def _short(value: FieldValue) -> str:
    """A value as a record's repr shows it: sessions by their label, the rest as repr()."""
    return value.label if isinstance(value, MarketSession) else repr(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """One official column of a layout."""

    index: int
    name: str
    kor: str
    type: FieldType
    #: The friendly names that read this column (``price`` for ``STCK_PRPR``), if any.
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """One era of a TR's layout: its columns, the record class that reads them, and its source."""

    tr_id: str
    #: A label that sorts by time: ``"2026-08"`` (the official sample of August 2026, and the live
    #: feed before 2026-09-14) or ``"2026-09"`` (since KIS's change of 2026-09-14).
    era: str
    record_class: type[Record]
    #: Where the layout comes from.
    source: str
    #: What is inferred rather than seen.
    note: str = ""

    @property
    def width(self) -> int:
        """The number of fields of a record in this layout."""
        return len(self.record_class.columns)

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The official columns in wire order."""
        cls = self.record_class
        aliases: dict[str, list[str]] = {}
        for label in cls.friendly:
            aliases.setdefault(cls._by_key[label].name, []).append(label)
        return tuple(
            FieldSpec(
                index=f.index, name=f.name, kor=f.kor, type=f.type, aliases=tuple(aliases.get(f.name, ()))
            )
            for f in cls.columns
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TRSpec:
    """What kis_proto knows about one real-time TR: its market, kind and layouts by era."""

    tr_id: str
    #: Every TR id that uses these layouts (the paper-trading notice ids share the real ones').
    tr_ids: tuple[str, ...]
    market: Market
    kind: TRKind
    #: True when data frames come AES-encrypted (execution notices).
    encrypted: bool
    #: The known layouts, oldest era first; each has a width of its own.
    layouts: tuple[Layout, ...]
    note: str = ""

    @property
    def record_class(self) -> type[Record]:
        """The class of today's layout (the TR's class; older eras subclass it)."""
        return self.layouts[-1].record_class

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """Today's columns in wire order."""
        return self.layouts[-1].fields

    @property
    def width(self) -> int:
        """The number of fields per record in today's layout."""
        return self.layouts[-1].width

    @property
    def eras(self) -> tuple[str, ...]:
        """The era labels of the known layouts, oldest first."""
        return tuple(layout.era for layout in self.layouts)

    def layout(self, era: str | None = None) -> Layout:
        """The layout in force at `era`: the newest whose label sorts at or before it.

        None gives today's. An era before every known layout gives the oldest.
        """
        if era is None:
            return self.layouts[-1]
        eligible = [layout for layout in self.layouts if layout.era <= era]
        return eligible[-1] if eligible else self.layouts[0]

    def layout_for_width(self, width: int) -> Layout | None:
        """The layout whose records are `width` fields wide, or None."""
        return next((layout for layout in self.layouts if layout.width == width), None)
