"""Records: multi-record frames, layout drift, typed reads and the mapping interface."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import time
from decimal import Decimal
from typing import TypeVar

import pytest

from kis_proto import (
    KST,
    DecodeFailure,
    LayoutDrift,
    MarketSession,
    MessageDecoder,
    Record,
    UndecodableMessage,
    decode_message,
    records,
)
from kis_proto.layouts import EmptyFieldError, tr_spec

from .helpers import VECTOR_PLAINTEXT, encode_frame, fields_of, sample

TRADE = fields_of(sample("0|H0STCNT0", 0))
BOOK = fields_of(sample("0|H0STASP0", 0))
OVERSEAS = fields_of(sample("0|HDFSCNT0", 0))
NOTICE = VECTOR_PLAINTEXT.split("^")


def trade(symbol: str, price: int, volume: int) -> list[str]:
    fields = list(TRADE)
    fields[0], fields[2], fields[12] = symbol, str(price), str(volume)
    return fields


R = TypeVar("R", bound=Record)


def only(events: Sequence[object], cls: type[R]) -> list[R]:
    """The records of `cls` among `events`."""
    return [e for e in events if isinstance(e, cls)]


def only_records(events: Sequence[object]) -> list[Record]:
    return only(events, Record)


@pytest.mark.parametrize("count", [1, 2, 4, 19, 999])
def test_every_record_of_a_multi_record_frame_is_delivered_in_order(count: int) -> None:
    rows = [trade(f"{i:06d}", 1000 + i, i + 1) for i in range(count)]
    events = decode_message(encode_frame("H0STCNT0", rows))
    recs = only(events, records.H0STCNT0)
    assert len(events) == len(recs) == count
    assert [r.tr_key for r in recs] == [f"{i:06d}" for i in range(count)]
    assert [r.price for r in recs] == [1000 + i for i in range(count)]
    assert [r.volume for r in recs] == [i + 1 for i in range(count)]
    assert all(r.raw == tuple(row) for r, row in zip(recs, rows, strict=True))


def test_overseas_two_record_frame() -> None:
    second = list(OVERSEAS)
    second[11] = "170.0000"
    recs = only(decode_message(encode_frame("HDFSCNT0", [OVERSEAS, second])), records.HDFSCNT0)
    assert [r.price for r in recs] == [Decimal("169.8000"), Decimal("170.0000")]


@pytest.mark.parametrize(
    ("tr_id", "base", "known"),
    [
        ("H0STCNT0", [*TRADE, "2"], (46, 47)),  # today's 47, and two fields KIS might append next
        ("H0STASP0", [*BOOK, "358250", "4", "1", "2"], (59, 62, 63)),
    ],
)
@pytest.mark.parametrize("count", [1, 3])
def test_appended_fields_keep_known_ones_and_the_extras(
    tr_id: str, base: list[str], known: tuple[int, ...], count: int
) -> None:
    extra = ["7", "8"]
    rows = [[*base, *extra] for _ in range(count)]
    events = decode_message(encode_frame(tr_id, rows))
    assert events[0] == LayoutDrift(tr_id=tr_id, expected=len(base), received=len(base) + 2, known=known)
    recs = only(events[1:], getattr(records, tr_id))
    assert len(recs) == count
    for rec in recs:
        assert type(rec) is getattr(records, tr_id)  # today's layout names the prefix
        assert rec.extra == tuple(extra)
        assert rec.raw == (*base, *extra)
        assert rec.tr_key == "005930"
        assert rec.invalid_fields() == {}
    assert recs[0]["MKSC_SHRN_ISCD"] == "005930"
    assert recs[0]["MARKET_CLS_CODE"] is MarketSession.REGULAR


def test_older_shorter_notice_layout_reads_missing_fields_as_none() -> None:
    # python-kis and mojito know a 23-field H0STCNI0; today's has 26, and no era has 23.
    old = NOTICE[:23]
    events = decode_message(encode_frame("H0STCNI0", [old, old]))
    assert events[0] == LayoutDrift(tr_id="H0STCNI0", expected=26, received=23, known=(26,))
    recs = only(events, records.H0STCNI0)
    assert len(recs) == 2
    assert recs[1].symbol == "005930"
    assert recs[1].volume == 10
    assert recs[1].cntg_isnm40 is None  # index 24: not in a 23-field record
    assert recs[1].oder_prc is None
    assert recs[1]["ODER_PRC"] is None


def test_decoder_reports_drift_once_per_width_but_every_record() -> None:
    decoder = MessageDecoder()
    frame = encode_frame("H0STCNT0", [[*TRADE, "2", "x"]])
    first = decoder.decode(frame)
    second = decoder.decode(frame)
    assert isinstance(first[0], LayoutDrift)
    assert len(only_records(first)) == len(only_records(second)) == 1
    assert len(second) == 1
    # A different width is new drift.
    assert isinstance(decoder.decode(encode_frame("H0STCNT0", [[*TRADE, "2", "x", "y"]]))[0], LayoutDrift)
    # A known width is never drift.
    assert not any(isinstance(e, LayoutDrift) for e in decoder.decode(encode_frame("H0STCNT0", [TRADE])))
    # The stateless function has no memory, so it reports drift on every frame.
    assert isinstance(decode_message(frame)[0], LayoutDrift)
    assert isinstance(decode_message(frame)[0], LayoutDrift)


@pytest.mark.parametrize(("total", "count"), [(93, 2), (45, 2), (5, 7)])
def test_fields_that_do_not_split_into_the_count_are_reported_not_guessed(total: int, count: int) -> None:
    text = f"0|H0STCNT0|{count:03d}|" + "^".join(["1"] * total)
    [event] = decode_message(text)
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.BAD_RECORD_COUNT
    assert event.raw == text
    assert event.tr_id == "H0STCNT0"


@pytest.mark.parametrize(
    "text",
    [
        "0|H0STCNT0|000|1^2",
        "0|H0STCNT0|abc|1",
        "0|H0STCNT0|1000|1",
        "0|H0STCNT0|-01|1",
        "0|H0STCNT0|001",
        "01|H0STCNT0|001|1",
        "0|h0st cnt0|001|1",
        "0||001|1",
        "0|H0STCNT0|٠٠١|1",
    ],
)
def test_malformed_frame_headers(text: str) -> None:
    [event] = decode_message(text)
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.BAD_FRAME
    assert event.raw == text


def test_unknown_tr_gives_generic_records() -> None:
    [a, b] = decode_message("0|H0ZZCNT9|002|A^1^2^B^3^4")
    assert type(a) is Record
    assert isinstance(b, Record)
    assert (a.tr_id, a.tr_key, a.raw, a.extra) == ("H0ZZCNT9", "A", ("A", "1", "2"), ("A", "1", "2"))
    assert b.raw == ("B", "3", "4")
    assert len(a) == 0
    assert "fields=3" in repr(a)


def test_paper_notice_id_uses_the_real_layout() -> None:
    [rec] = decode_message(encode_frame("H0STCNI9", [NOTICE]))
    assert isinstance(rec, records.H0STCNI0)
    assert rec.tr_id == "H0STCNI9"
    spec = tr_spec("H0STCNI9")
    assert spec is not None
    assert spec.tr_id == "H0STCNI0"
    assert spec.encrypted


@pytest.mark.parametrize(
    ("sign", "diff", "expected"),
    [
        ("2", "0.2100", Decimal("0.21")),
        ("5", "0.2100", Decimal("-0.21")),
        ("4", "1.5", Decimal("-1.5")),
        ("1", "3", Decimal(3)),
        ("3", "0.0000", Decimal(0)),
        ("5", "-0.21", Decimal("-0.21")),
        ("", "0.5", Decimal("0.5")),
    ],
)
def test_overseas_change_takes_its_sign_from_the_sign_column(sign: str, diff: str, expected: Decimal) -> None:
    fields = list(OVERSEAS)
    fields[12], fields[13] = sign, diff
    [rec] = decode_message(encode_frame("HDFSCNT0", [fields]))
    assert isinstance(rec, records.HDFSCNT0)
    assert rec.change == expected
    assert rec.diff == Decimal(diff)  # the column itself stays as sent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+0.11", Decimal("0.11")),
        ("-0.11", Decimal("-0.11")),
        ("0", Decimal(0)),
        ("", None),
        ("12", Decimal(12)),
    ],
)
def test_decimal_reads(text: str, expected: Decimal | None) -> None:
    fields = list(TRADE)
    fields[5] = text
    [rec] = decode_message(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.prdy_ctrt == expected


@pytest.mark.parametrize(("text", "expected"), [("+400", 400), ("-400", -400), ("0", 0), ("", None)])
def test_int_reads(text: str, expected: int | None) -> None:
    fields = list(TRADE)
    fields[4] = text
    [rec] = decode_message(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.prdy_vrss == expected
    assert rec.change == expected


def test_absent_date_reads_as_none() -> None:
    fields = list(TRADE)
    fields[33] = "00000000"
    [rec] = decode_message(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.bsop_date is None
    assert rec.invalid_fields() == {}


@pytest.mark.parametrize(
    ("index", "name", "bad"),
    [
        (2, "STCK_PRPR", "62,700"),
        (5, "PRDY_CTRT", "NaN"),
        (5, "PRDY_CTRT", "1.2.3"),
        (1, "STCK_CNTG_HOUR", "256161"),
        (33, "BSOP_DATE", "20231345"),
        (1, "STCK_CNTG_HOUR", "11:26"),
        (33, "BSOP_DATE", "2023-03-24"),
    ],
)
def test_invalid_value_reads_as_none_is_listed_and_logged_once(
    index: int, name: str, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = list(TRADE)
    fields[index] = bad
    [rec] = decode_message(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    descriptor = type(rec)._by_key[name]
    descriptor._warned = False  # a fresh field, as in a fresh process
    with caplog.at_level(logging.WARNING, logger="kis_proto.records"):
        assert rec[name] is None
        assert rec[name] is None
    assert rec.raw[index] == bad
    assert rec.invalid_fields() == {name: bad}
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1


def test_mapping_interface() -> None:
    [rec] = decode_message(sample("0|H0STCNT0", 0))
    assert isinstance(rec, Mapping)
    names = list(rec)
    assert names[:3] == ["MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "STCK_PRPR"]
    assert names[-5:] == ["symbol", "time", "price", "change", "volume"]
    assert len(rec) == 46 + 5
    assert "STCK_PRPR" in rec
    assert "stck_prpr" not in rec  # keys are the official names; attributes are lower case
    assert not rec.__contains__(3)
    assert rec.get("NOPE") is None
    assert rec.get("PRDY_VRSS") == 400
    with pytest.raises(KeyError):
        rec["NOPE"]
    as_dict = rec.to_dict()
    assert as_dict["STCK_PRPR"] == as_dict["price"] == 62700
    assert as_dict["STCK_CNTG_HOUR"] == time(11, 26, 16, tzinfo=KST)
    assert dict(rec) == as_dict


def test_records_are_immutable_and_compare_by_value() -> None:
    text = sample("0|H0STCNT0", 0)
    [a] = decode_message(text)
    [b] = decode_message(text)
    [c] = decode_message(sample("0|H0STCNT0", 1))
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert isinstance(a, records.H0STCNT0)
    with pytest.raises(AttributeError):
        a.price = 1
    with pytest.raises(AttributeError):
        a.tr_id = "X"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        a.anything = 1  # type: ignore[attr-defined]  # no __dict__: slots only
    with pytest.raises(TypeError):
        a["price"] = 1  # type: ignore[index]


def test_records_built_by_hand_equal_decoded_ones() -> None:
    [decoded] = decode_message(sample("0|H0STCNT0", 0))  # a 46-field frame of 2023
    assert records.H0STCNT0_2026_08("H0STCNT0", TRADE) == decoded
    assert records.H0STCNT0_2026_08("H0STCNT0", TRADE) != records.H0NXCNT0_2026_08("H0STCNT0", TRADE)
    [today] = decode_message(encode_frame("H0STCNT0", [[*TRADE, "3"]]))
    assert records.H0STCNT0("H0STCNT0", [*TRADE, "3"]) == today
    assert today != decoded


def test_repr_is_short_and_readable() -> None:
    [rec] = decode_message(sample("0|H0STCNT0", 1))
    text = repr(rec)
    assert text.startswith("<H0STCNT0 2026-08 tr_key='005930'")
    assert "price=250500" in text
    assert "change=-19500" in text
    [rec] = decode_message(encode_frame("H0STCNT0", [[*TRADE, "3"]]))
    assert repr(rec).startswith("<H0STCNT0 2026-09 tr_key='005930'")
    assert repr(rec).endswith("session=after-market>")
    [rec] = decode_message("0|FOOBAR01|001|a^b^c")
    assert repr(rec) == "<FOOBAR01 tr_key='a' fields=3>"


def test_korean_text_survives() -> None:
    fields = list(NOTICE)
    fields[17] = "김철수 (법인)"
    [rec] = decode_message(encode_frame("H0STCNI0", [fields]))
    assert isinstance(rec, records.H0STCNI0)
    assert rec.acnt_name == "김철수 (법인)"


@pytest.mark.parametrize("text", ["2|H0STCNT0|001|1", "", "hello", " 0|H0STCNT0|001|1", "PINGPONG"])
def test_text_that_is_neither_frame_nor_json(text: str) -> None:
    [event] = decode_message(text)
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.UNKNOWN_MESSAGE
    assert event.raw == text


def test_descriptors_on_the_class() -> None:
    field = records.H0STCNT0.stck_prpr
    assert field.name == "STCK_PRPR"
    assert field.index == 2
    assert repr(field) == "<RequiredIntField [2] STCK_PRPR>"
    assert records.H0STCNT0.symbol is records.H0STCNT0.mksc_shrn_iscd
    assert records.H0STCNT0.__dict__["change"].is_valid("-5")
    assert not records.H0STCNT0.__dict__["change"].is_valid("five")
    assert records.H0STCNT0.__dict__["change"].convert("+5") == 5


def test_a_record_class_with_a_gap_in_its_columns_is_refused() -> None:
    from kis_proto._fields import StrField

    with pytest.raises(TypeError, match=r"0\.\.n-1"):
        type("Broken", (Record,), {"__slots__": (), "a": StrField(0, "A"), "c": StrField(2, "C")})


def test_fields_kis_always_sends_raise_when_empty_through_the_attribute_only() -> None:
    fields = [*TRADE, "2"]
    fields[2] = ""  # no price: KIS never sends that, but a record must say so clearly
    fields[12] = "12x"  # a volume that is no number
    [rec] = decode_message(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    with pytest.raises(
        EmptyFieldError, match=r"H0STCNT0 STCK_PRPR is empty in this record; rec\['STCK_PRPR'\]"
    ):
        _ = rec.price
    with pytest.raises(EmptyFieldError, match=r"CNTG_VOL is not a valid int \('12x'\)"):
        _ = rec.volume
    assert rec["STCK_PRPR"] is None  # the mapping never raises
    assert rec.get("price") is None
    assert rec["volume"] is None
    assert rec.to_dict()["CNTG_VOL"] is None
    assert rec.symbol == "005930"
    assert rec.change == 400  # optional fields read as before
    assert isinstance(EmptyFieldError("x"), LookupError)
