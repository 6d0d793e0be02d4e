"""Typed fields and the record base class.

A data frame carries records as runs of `^`-separated strings. A record keeps the strings of its
run exactly as received and converts a field only when it is read: most consumers read two or
three fields of a 47-field trade, so converting everything up front would cost more than the split
itself (measured in `bench/bench_codec.py`; see docs/decisions.md). It splits lazily too: the
record of a one-record frame holds its text and splits it on the first read, no further than
the layout's friendly columns unless a read needs more; the records of a multi-record frame share
the frame's one split. A conversion is not cached; reading the same attribute twice converts
twice, which is cheaper than the bookkeeping a cache would need on every record. Every field at
once (`Record.to_dict`) goes through one converter per layout, compiled from the descriptors.

Each real-time TR has a generated subclass of `Record` (`kis_proto.records`) whose class
attributes are the descriptors below, one per official column, so `rec.stck_prpr` is typed
`int | None` for mypy and editors, and `rec["STCK_PRPR"]` works through the mapping interface.
"""

from __future__ import annotations

import enum
import linecache
import logging
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
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


#: How many texts a memo holds before it starts over (a few hundred kB at most).
_MEMO_SIZE = 4096


class _Memo(dict[str, Any]):
    """Field text → converted value, for the types whose parsing costs far more than a lookup.

    Times, dates and session codes repeat all day (a trade's time, the opening time, today's
    date), and a lookup costs ~40 ns against ~0.8 µs for parsing a time. The values are immutable,
    so records share them. The texts in `absent` map to None. An invalid text raises the parser's
    ValueError and is not kept. When full, the memo starts over: it stays bounded.
    """

    __slots__ = ("_absent", "_parse")

    def __init__(self, parse: Callable[[str], Any], absent: tuple[str, ...] = ("",)) -> None:
        super().__init__()
        self._parse = parse
        self._absent = absent

    def __missing__(self, text: str) -> Any:
        value = None if text in self._absent else self._parse(text)
        if len(self) >= _MEMO_SIZE:
            self.clear()
        self[text] = value
        return value


def _not_finite(text: str) -> Decimal:
    """Refuse a decimal text that is no number (``NaN``, ``Infinity``): the converters' way."""
    raise ValueError(text)


def _parse_date(text: str) -> date:
    if len(text) != 8 or not text.isdigit() or not text.isascii():
        raise ValueError(text)
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _parse_session(text: str) -> MarketSession:
    try:
        return _SESSION_BY_CODE[text]
    except KeyError:
        raise ValueError(text) from None


_DATES = _Memo(_parse_date, ("", "00000000"))
_SESSIONS = _Memo(_parse_session)
_TIMES: dict[tzinfo | None, _Memo] = {}


def _times(tz: tzinfo | None) -> _Memo:
    """The memo of HHMMSS times in zone `tz` (one per zone: KST, or naive)."""
    memo = _TIMES.get(tz)
    if memo is None:

        def parse(text: str) -> time:
            if len(text) != 6 or not text.isdigit() or not text.isascii():
                raise ValueError(text)
            return time(int(text[:2]), int(text[2:4]), int(text[4:]), tzinfo=tz)

        memo = _TIMES[tz] = _Memo(parse)
    return memo


#: The sign codes that make a positive change negative (4 limit down, 5 down).
_DOWN = ("4", "5")


class Field(Generic[T]):
    """A descriptor reading one column of a record by index and converting it lazily.

    An empty or absent field reads as None. A value that does not convert also reads as None: it
    is logged once per field (at WARNING, on the ``kis_proto.records`` logger), listed by
    `Record.invalid_fields()`, and kept as received in `Record.raw`. Reading never raises.

    Every read starts the same way, inlined in each hot descriptor: field ``i`` is
    ``obj._f[obj._o + i]`` when ``i < obj._n`` (the record's split reaches it), and otherwise
    ``obj._tail(i)`` splits as far as needed (`Record` explains the state).
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
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:  # another thread is splitting this record (Record._tail)
            text = obj._tail(i)
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
        text = obj._text(self.index)
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

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        """Python source of an expression that reads the field string in variable `text` as `read`
        does, but raises ValueError or ArithmeticError where `read` would log and give None; None
        if this field has no such expression. It may put the names it uses into `names`.

        `Record.to_dict` compiles these into one converter per layout (`_converter_source`).
        """
        if type(self).read is not Field.read:
            return None
        name = f"_convert{len(names)}"
        names[name] = self.convert
        return f"({name}({text}) if {text} and {text} != {self._ABSENT!r} else None)"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.index}] {self.name}>"


class StrField(Field[str]):
    """A text field (codes, flags, names): the string as received."""

    __slots__ = ()
    _TYPE = FieldType.STR

    def convert(self, text: str) -> str:
        return text

    def read(self, obj: Record) -> str | None:
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
        return text or None

    # Text needs no conversion, so the hot path skips the generic machinery.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: Record, owner: type[Any] | None = None) -> str | None: ...
    def __get__(self, obj: Record | None, owner: type[Any] | None = None) -> Self | str | None:
        if obj is None:
            return self
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
        return text or None

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).read is not StrField.read:
            return super()._code(text, names)
        return f"({text} or None)"


class IntField(Field[int]):
    """An integer field (quantities, volumes, KRW prices); a leading sign is allowed."""

    __slots__ = ()
    _TYPE = FieldType.INT

    def convert(self, text: str) -> int:
        return int(text)

    def read(self, obj: Record) -> int | None:
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
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
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            return self._invalid(obj, text)

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).read is not IntField.read:
            return super()._code(text, names)
        return f"(int({text}) if {text} else None)"


class DecimalField(Field[Decimal]):
    """A decimal field (rates, index values, foreign prices); `+0.12` reads as Decimal("0.12")."""

    __slots__ = ()
    _TYPE = FieldType.DECIMAL

    def convert(self, text: str) -> Decimal:
        value = Decimal(text)
        if not value.is_finite():
            raise ValueError(text)
        return value

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).convert is not DecimalField.convert or type(self).read is not Field.read:
            return super()._code(text, names)
        names["Decimal"] = Decimal
        names["_not_finite"] = _not_finite
        return f"((_d if (_d := Decimal({text})).is_finite() else _not_finite({text})) if {text} else None)"


class DateField(Field[date]):
    """A YYYYMMDD date; the all-zero date KIS uses for "no date" reads as None."""

    __slots__ = ()
    _TYPE = FieldType.DATE
    _ABSENT = "00000000"

    def convert(self, text: str) -> date:
        value: date = _DATES[text]
        return value

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).convert is not DateField.convert or type(self).read is not Field.read:
            return super()._code(text, names)
        names["_dates"] = _DATES
        return f"_dates[{text}]"


class TimeField(Field[time]):
    """An HHMMSS time of day: aware (`KST`) for Korean times, naive for an exchange's local time."""

    __slots__ = ("_memo", "tz")
    _TYPE = FieldType.TIME

    def __init__(self, index: int, name: str, kor: str = "", *, tz: tzinfo | None = None) -> None:
        super().__init__(index, name, kor)
        self.tz = tz
        self._memo = _times(tz)

    def convert(self, text: str) -> time:
        value: time = self._memo[text]
        return value

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).convert is not TimeField.convert or type(self).read is not Field.read:
            return super()._code(text, names)
        name = next((k for k, v in names.items() if v is self._memo), f"_times{len(names)}")
        names[name] = self._memo
        return f"{name}[{text}]"


class SessionField(Field[MarketSession]):
    """A ``MARKET_CLS_CODE`` column, read as a `MarketSession`; an unknown code reads as None."""

    __slots__ = ()
    _TYPE = FieldType.SESSION

    def convert(self, text: str) -> MarketSession:
        value: MarketSession = _SESSIONS[text]
        return value

    def _code(self, text: str, names: dict[str, object]) -> str | None:
        if type(self).convert is not SessionField.convert or type(self).read is not Field.read:
            return super()._code(text, names)
        names["_sessions"] = _SESSIONS
        return f"_sessions[{text}]"


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
        if value is not None and value > 0 and obj._text(self.sign_index) in _DOWN:
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
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
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
        i = self.index
        try:
            text = obj._f[obj._o + i] if i < obj._n else obj._tail(i)
        except IndexError:
            text = obj._tail(i)
        try:
            return int(text)  # type: ignore[arg-type]  # None (absent) raises TypeError
        except (TypeError, ValueError):
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

#: A converter: a record and its field strings (exactly its own) → every key with its value.
Converter: TypeAlias = "Callable[[Record, list[str]], dict[str, FieldValue]]"


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

    # How a record holds its fields (docs/codec.md, "Why it is fast"). Field i is `_f[_o + i]`
    # whenever i < `_n`; anything else goes through `_tail`. `_p` says where the fields come from:
    #
    # * the payload text of a one-record frame, not split yet (`_n` 0) or split up to `_depth`
    #   fields (`_f` holds exactly those, `_n` == `_depth`): `_tail` splits further;
    # * the record's own list of every field once split (built by hand, or split in full): `_f`
    #   is that list too;
    # * None: a record of a multi-record frame, whose `_f` is the frame's one split, shared by its
    #   records, from offset `_o`, `_n` fields wide.
    #
    # The state only ever grows, each step writes `_f` before `_n`, and `_p` (never shrinking:
    # text, then the full list) is the truth `_tail` falls back on, so a record read by several
    # threads at once can at worst split twice: an out-of-date (`_f`, `_n`) pair either still
    # reads right or raises IndexError, which the readers catch and send to `_tail`.
    __slots__ = ("_f", "_n", "_o", "_p", "_tr_id")
    _f: list[str]
    _n: int
    _o: int
    _p: str | list[str] | None
    _tr_id: str

    #: The number of fields of this layout (None for an unknown TR).
    width: ClassVar[int | None] = None
    #: The era of this layout, e.g. ``"2026-09"`` (None for an unknown TR).
    era: ClassVar[str | None] = None
    #: Official columns in wire order.
    columns: ClassVar[tuple[Field[Any], ...]] = ()
    #: Friendly names (symbol, time, price, change, volume, session) this layout offers.
    friendly: ClassVar[tuple[str, ...]] = ()
    _by_key: ClassVar[dict[str, Field[Any]]] = {}
    # How many fields the first read of a one-record frame splits: past the friendly columns
    # (the session excepted: KIS appended it at the end), so a consumer's usual reads cost one
    # short split. A read past it splits the rest.
    _depth: ClassVar[int] = 1
    # The converter of this layout, compiled on first use (`_converter`).
    _convert: ClassVar[Converter | None] = None

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
        reach = [0]  # the key column: tr_key
        for label, field in friendly.items():
            if label != "session":
                reach.append(field.index)
                if isinstance(field, SignedChange):
                    reach.append(field.sign_index)
        cls._depth = max(reach) + 1
        cls._convert = None

    def __init__(self, tr_id: str, fields: tuple[str, ...] | list[str]) -> None:
        """Build a record from its field strings (the decoder builds records; tests may too)."""
        own = list(fields)
        self._tr_id = tr_id
        self._o = 0
        self._f = own
        self._n = len(own)
        self._p = own

    # -- the split -------------------------------------------------------------------------------
    def _tail(self, i: int) -> str | None:
        """Field `i` when ``i >= self._n``: split as far as needed, or None when there is no field i."""
        depth = self._depth
        try:
            if i < depth:
                fields = self._p.split("^", depth)  # type: ignore[union-attr]
                try:
                    del fields[depth]  # the rest of the text: `_p` still has it
                except IndexError:
                    pass  # the record has no more than `depth` fields: split in full
                else:
                    self._o = 0
                    self._f = fields
                    self._n = depth
                    return fields[i]
            elif i < MISSING:
                fields = self._p.split("^")  # type: ignore[union-attr]
            else:
                return None
        except AttributeError:  # `_p` is no text: the record is split in full, or shared
            return self._split(i)
        self._o = 0
        self._f = fields
        self._n = len(fields)
        self._p = fields
        return fields[i] if i < len(fields) else None

    def _split(self, i: int) -> str | None:
        """`_tail` of a record split in full (`_p` its list) or of a multi-record frame (`_p` None).

        Only a reader that raced another thread's split finds a field here: the list has it.
        """
        src = self._p
        if src is None or isinstance(src, str) or i >= len(src):
            return None
        self._f = src
        self._n = len(src)
        return src[i]

    def _text(self, i: int) -> str | None:
        """The string of field `i`, or None when this record has no field `i`."""
        try:
            return self._f[self._o + i] if i < self._n else self._tail(i)
        except IndexError:
            return self._tail(i)

    def _list(self) -> list[str]:
        """Every field string of this record: split in full and kept (a shared list: do not change it)."""
        src = self._p
        if src is None:
            o = self._o
            return self._f[o : o + self._n]
        if isinstance(src, str):
            fields = src.split("^")
            self._o = 0
            self._f = fields
            self._n = len(fields)
            self._p = fields
            return fields
        return src

    # -- what every record has -------------------------------------------------------------------
    @property
    def tr_id(self) -> str:
        """The TR id of the frame, e.g. ``H0STCNT0`` (``H0STCNI9`` for paper notices)."""
        return self._tr_id

    @property
    def tr_key(self) -> str:
        """The record's key column: the symbol, index code, or HTS ID on notices."""
        if self._n:  # every list a record ever holds has its key column
            return self._f[self._o]
        # Not split yet: cut the key out of the text instead. Dispatch by key reads it first, and
        # the next read may well need the rest (raw, to_dict, a far column): one split, not two.
        src = self._p
        if isinstance(src, str):
            end = src.find("^")
            return src if end < 0 else src[:end]
        return src[0] if src else ""

    @property
    def raw(self) -> tuple[str, ...]:
        """Every field string of this record as received, unknown trailing fields included."""
        return tuple(self._list())

    @property
    def text(self) -> str:
        """This record's fields as KIS sent them: its part of the frame, ``^`` between the fields.

        For a one-record frame not split in full yet, the frame's payload itself, neither copied
        nor split (what the gateway publishes: docs/gateway.md); otherwise the fields joined, which
        is the same text (the split cut at every ``^``). ``text.split("^") == list(raw)``.
        """
        src = self._p
        if isinstance(src, str):
            return src
        if src is None:
            o = self._o
            return "^".join(self._f[o : o + self._n])
        return "^".join(src)

    @property
    def extra(self) -> tuple[str, ...]:
        """The trailing fields this version has no name for (KIS appends fields over time)."""
        return tuple(self._list()[len(self.columns) :])

    def invalid_fields(self) -> dict[str, str]:
        """Map each column whose value does not convert under its declared type to the raw text."""
        fields = self._list()
        return {
            f.name: fields[f.index]
            for f in self.columns
            if f.index < len(fields) and not f.is_valid(fields[f.index])
        }

    def to_dict(self) -> dict[str, FieldValue]:
        """Every official column and friendly name with its converted value.

        One compiled function per layout converts them all (the cost of building a dict of
        strings, not of one read per column); a record with an invalid or missing value falls back
        to reading field by field, which logs as the reads do.
        """
        cls = type(self)
        convert = cls._convert
        if convert is None:
            convert = cls._convert = _converter(cls)
        try:
            return convert(self, self._list())
        except (ValueError, ArithmeticError):
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
        """(name, converted value) pairs, converted at once as `to_dict` does."""
        return self.to_dict().items()

    def values(self) -> ValuesView[FieldValue]:
        """The converted values, converted at once as `to_dict` does."""
        return self.to_dict().values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    # -- value semantics ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        if self._tr_id != other._tr_id:
            return False
        mine, theirs = self._p, other._p
        if type(mine) is str and type(theirs) is str:  # both unsplit: the texts say it all
            return mine == theirs
        return self._list() == other._list()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._tr_id, tuple(self._list())))

    def __reduce__(self) -> tuple[type[Record], tuple[str, tuple[str, ...]]]:
        # A record pickles (and copies) as its own fields, never the frame it shares a split with.
        return (type(self), (self._tr_id, tuple(self._list())))

    def __repr__(self) -> str:
        if self.friendly:
            shown = ", ".join(f"{key}={_short(self[key])}" for key in self.friendly)
        else:
            shown = f"fields={len(self._list())}"
        era = f" {self.era}" if self.era else ""
        return f"<{self._tr_id}{era} tr_key={self.tr_key!r} {shown}>"


def _converter_source(cls: type[Record]) -> tuple[str, dict[str, object]]:
    """The source of `cls`'s converter and the names it uses: two functions of one pattern.

    Both unpack the record's field strings into locals (``v0`` …) and return every column, then
    every friendly name, in the mapping's order. ``convert``, the one `Record.to_dict` calls,
    converts all the integer columns with one ``map(int, …)`` and all the decimal ones with one
    ``map(Decimal, …)`` (C loops, no bytecode per field) and fills a copy of a template dict
    (cheaper than a dict display of fifty keys, which grows as it is built). An empty or invalid
    number there sends the record to ``exact``, which converts each column with its descriptor's
    `Field._code` expression, so that an empty field reads as None; an invalid value raises
    there, and `Record.to_dict` reads field by field instead (and logs, as the reads do).
    """
    columns = cls.columns
    width = len(columns)
    keys = cls._by_key
    names: dict[str, object] = {"_DOWN": _DOWN, "Decimal": Decimal, "_template": dict.fromkeys(keys)}
    unpack = [f"    if len(f) != {width}:", f"        f = f[:{width}]"] if width else []
    if width:
        unpack.append("    " + ", ".join(f"v{i}" for i in range(width)) + ", = f")

    def by_descriptor(field: Field[Any]) -> str:
        name = f"_field{len(names)}"
        names[name] = field
        return f"{name}.read(rec)"

    # Each column's exact expression; a column a friendly name reads too gets a local (c2), so
    # that its value is converted once.
    code = {id(f): f._code(f"v{f.index}", names) or by_descriptor(f) for f in columns}
    shared = {
        id(target): f"c{target.index}"
        for label, field in keys.items()
        if id(target := field.value if isinstance(field, SignedChange) else field) in code
        and label != target.name
    }

    def entry(field: Field[Any], value: dict[int, str], never_none: set[int]) -> str:
        if isinstance(field, SignedChange) and id(field.value) in value and field.sign_index < width:
            n, sign = value[id(field.value)], f"v{field.sign_index}"
            if id(field.value) in never_none:
                return f"(-{n} if {n} > 0 and {sign} in _DOWN else {n})"
            return f"(-{n} if {n} is not None and {n} > 0 and {sign} in _DOWN else {n})"
        return value.get(id(field)) or code.get(id(field)) or by_descriptor(field)

    exact = ["def exact(rec, f):", *unpack]
    exact += [f"    {local} = {code[ident]}" for ident, local in shared.items()]
    exact.append("    return {")
    exact += [f"        {label!r}: {entry(field, shared, set())}," for label, field in keys.items()]
    exact.append("    }")

    ints = [f for f in columns if type(f).read is IntField.read and type(f).convert is IntField.convert]
    decimals = [
        f
        for f in columns
        if isinstance(f, DecimalField)
        and type(f).convert is DecimalField.convert
        and type(f).read is Field.read
    ]
    numbers = {id(f): f"n{f.index}" for f in [*ints, *decimals]}
    fast = ["def convert(rec, f):", *unpack]
    if numbers:
        fast.append("    try:")
        for group, how in ((ints, "int"), (decimals, "Decimal")):
            if group:
                targets = ", ".join(f"n{f.index}" for f in group)
                texts = ", ".join(f"v{f.index}" for f in group)
                fast.append(f"        {targets}, = map({how}, ({texts},))")
        fast += ["    except (ValueError, ArithmeticError):", "        return exact(rec, f)"]
    if decimals:
        finite = " and ".join(f"n{f.index}.is_finite()" for f in decimals)
        fast += [f"    if not ({finite}):", "        return exact(rec, f)"]
    value = {**shared, **numbers}
    fast += [f"    {local} = {code[ident]}" for ident, local in shared.items() if ident not in numbers]
    fast.append("    d = _template.copy()")
    fast += [f"    d[{label!r}] = {entry(field, value, set(numbers))}" for label, field in keys.items()]
    fast.append("    return d")
    return "\n".join(exact) + "\n\n\n" + "\n".join(fast) + "\n", names


def _converter(cls: type[Record]) -> Converter:
    """Compile `cls`'s converter (`_converter_source`); tracebacks through it show its lines."""
    source, names = _converter_source(cls)
    filename = f"<converter of {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), names)  # noqa: S102  # source built from our descriptors
    convert: Converter = names["convert"]  # type: ignore[assignment]
    return convert


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
