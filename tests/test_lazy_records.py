"""Lazy records: split on first read and no further than needed, one shared split per frame, and
every field through one converter per layout, against records built by hand from the same fields.

A record built by hand (``records.X(tr_id, fields)``) holds its fields split, as every record
did before; a decoded record starts from its text (one-record frames) or from its frame's one
split (multi-record frames). Whatever is read first, and in whatever order, both must answer
alike: the values, the errors of required fields, the mapping, equality, hashing and pickling.
"""

from __future__ import annotations

import copy
import gc
import logging
import pickle
import sys
import threading
import tracemalloc
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kis_proto import MarketSession, MessageDecoder, Record, UndecodableMessage, decode_message, records
from kis_proto import _codec as codec
from kis_proto._fields import _MEMO_SIZE, DecimalField, Field, IntField, SignedChange, StrField, _Memo, _times
from kis_proto.layouts import TRS, EmptyFieldError, FieldType, Layout, TRSpec

from .helpers import encode_frame, fields_of, sample

TRADE = [*fields_of(sample("0|H0STCNT0", 0)), "2"]  # today's 47 fields
DEPTH = records.H0STCNT0._depth


def trade(symbol: str, price: int, volume: int) -> list[str]:
    fields = list(TRADE)
    fields[0], fields[2], fields[12] = symbol, str(price), str(volume)
    return fields


# --- strategies ---------------------------------------------------------------------------------

GARBAGE = st.sampled_from(
    ["x", "1.2.3", "NaN", "-Infinity", "sNaN", "1e5", " 7", "+5", "0x10", "٣", "99999999", "25"]
)


def field_text(ftype: FieldType, clean: bool) -> st.SearchStrategy[str]:
    """A field string of `ftype`: valid; or, unless `clean`, sometimes empty or something else."""
    if ftype is FieldType.INT:
        valid: st.SearchStrategy[str] = st.integers(-(10**15), 10**15).map(str)
    elif ftype is FieldType.DECIMAL:
        valid = st.one_of(
            st.sampled_from(["0", "0.0000", "-0.21", "+0.11", "190.5000"]),
            st.decimals(
                allow_nan=False, allow_infinity=False, places=3, min_value=-(10**9), max_value=10**9
            ).map(lambda d: f"{d:f}"),
        )
    elif ftype is FieldType.DATE:
        valid = st.sampled_from(["20260914", "00000000", "20240229"])
    elif ftype is FieldType.TIME:
        valid = st.sampled_from(["093015", "235959", "000000", "112616"])
    elif ftype is FieldType.SESSION:
        valid = st.sampled_from(["1", "2", "3", "5"])
    else:  # codes and names; the sign codes often, for the signed changes
        valid = st.one_of(
            st.sampled_from(["1", "2", "3", "4", "5"]), st.text(alphabet="0123456789ABCDEFYN", max_size=8)
        )
    if clean:
        return valid
    return st.one_of(valid, valid, valid, st.just(""), GARBAGE)


@st.composite
def frames(draw: st.DrawFn) -> tuple[TRSpec, Layout, str, list[list[str]], str]:
    """(spec, layout, tr_id, rows, frame text): 1 to 5 records of a known layout or a drifted
    width (fields missing at the end, or extra ones appended), plain or encrypted. Half the
    records are clean (every value valid, as KIS sends them: the converter's fast path); the
    others have empty and invalid values too."""
    spec = draw(st.sampled_from(list(TRS.values())))
    layout = draw(st.sampled_from(spec.layouts))
    types = [f.type for f in layout.fields]
    width = draw(st.sampled_from([layout.width, layout.width, max(1, layout.width - 3), layout.width + 2]))
    count = draw(st.sampled_from([1, 1, 1, 2, 4, 5]))
    rows = []
    for _ in range(count):
        clean = draw(st.booleans())
        rows.append(
            [draw(field_text(types[i] if i < len(types) else FieldType.STR, clean)) for i in range(width)]
        )
    tr_id = draw(st.sampled_from(spec.tr_ids))
    if spec.encrypted:
        key, iv = "k" * 32, "0123456789abcdef"
        return spec, layout, tr_id, rows, encode_frame(tr_id, rows, key=key, iv=iv)
    return spec, layout, tr_id, rows, encode_frame(tr_id, rows)


KEYS = {
    tr_id: ("k" * 32, "0123456789abcdef") for spec in TRS.values() if spec.encrypted for tr_id in spec.tr_ids
}


def h0stcnt0(fields: list[str]) -> records.H0STCNT0:
    """The record of a one-record H0STCNT0 frame of `fields` (drift events dropped)."""
    [rec] = decoded(encode_frame("H0STCNT0", [fields]))
    assert isinstance(rec, records.H0STCNT0)
    return rec


def decoded(text: str) -> list[Record]:
    events = decode_message(text, keys=KEYS)
    assert not any(isinstance(e, UndecodableMessage) for e in events), events
    return [e for e in events if isinstance(e, Record)]


def outcome(action: Any) -> tuple[str, Any]:
    """What an action gives: its value (exactly: type and repr), or the error it raises."""
    try:
        value = action()
    except EmptyFieldError as exc:
        return ("raises", str(exc))
    if isinstance(value, dict):
        return ("dict", [(k, type(v), repr(v)) for k, v in value.items()])
    return ("value", (type(value), repr(value)))


def roundtrip(rec: Record) -> Record:
    back: Record = pickle.loads(pickle.dumps(rec))  # noqa: S301  # the test's own bytes
    return back


def operations(cls: type[Record]) -> list[tuple[str, Any]]:
    """Every way to read a record of `cls`, as (name, function of the record)."""
    ops: list[tuple[str, Any]] = [
        ("tr_key", lambda r: r.tr_key),
        ("raw", lambda r: r.raw),
        ("extra", lambda r: r.extra),
        ("to_dict", lambda r: r.to_dict()),
        ("items", lambda r: dict(r.items())),
        ("values", lambda r: list(r.values())),
        ("invalid_fields", lambda r: r.invalid_fields()),
        ("repr", repr),
        ("hash", hash),
        ("pickle", lambda r: roundtrip(r).to_dict()),
    ]
    ops += [(f"[{name}]", lambda r, name=name: r[name]) for name in cls._by_key]
    ops += [(f"get({name})", lambda r, name=name: r.get(name)) for name in cls._by_key]
    # The typed attributes: every column's, and the friendly ones (required ones raise when empty).
    attrs = {attr for klass in cls.__mro__ for attr, value in vars(klass).items() if isinstance(value, Field)}
    ops += [(f".{attr}", lambda r, attr=attr: getattr(r, attr)) for attr in sorted(attrs)]
    return ops


# --- equivalence with records built by hand ------------------------------------------------------


@settings(max_examples=150)
@given(frames(), st.data())
def test_every_read_in_any_order_answers_as_a_record_built_by_hand(
    frame: tuple[TRSpec, Layout, str, list[list[str]], str], data: st.DataObject
) -> None:
    logging.getLogger("kis_proto.records").disabled = True  # invalid values are meant here
    try:
        _, _, tr_id, rows, text = frame
        recs = decoded(text)
        assert len(recs) == len(rows)
        for rec, row in zip(recs, rows, strict=True):
            by_hand = type(rec)(tr_id, row)
            assert rec == by_hand
            assert by_hand == rec
            ops = operations(type(rec))
            for name, op in data.draw(st.lists(st.sampled_from(ops), min_size=1, max_size=12), label="reads"):
                assert outcome(partial(op, rec)) == outcome(partial(op, by_hand)), name
            assert rec == by_hand
            assert hash(rec) == hash(by_hand)
            assert rec.raw == tuple(row)
    finally:
        logging.getLogger("kis_proto.records").disabled = False


@settings(max_examples=150)
@given(frames())
def test_to_dict_is_every_key_read_one_by_one(
    frame: tuple[TRSpec, Layout, str, list[list[str]], str],
) -> None:
    logging.getLogger("kis_proto.records").disabled = True
    try:
        for rec in decoded(frame[4]):
            one_by_one = {key: rec[key] for key in rec}
            assert outcome(rec.to_dict) == outcome(partial(dict, one_by_one))
            assert list(rec.to_dict()) == list(rec)
    finally:
        logging.getLogger("kis_proto.records").disabled = False


def test_the_fast_path_of_the_decoders_builds_what_the_general_path_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = [
        encode_frame("H0STCNT0", [TRADE]),
        encode_frame("H0STCNT0", [TRADE[:46]]),  # the 2026-08 era
        encode_frame("H0STASP0", [fields_of(sample("0|H0STASP0", 0))]),
        encode_frame("HDFSCNT0", [fields_of(sample("0|HDFSCNT0", 0))]),
    ]
    fast = [decode_message(text) for text in texts]
    stateful = [MessageDecoder().decode(text) for text in texts]
    monkeypatch.setattr(codec, "_WIDTHS", {})  # every frame takes the general path
    general = [decode_message(text) for text in texts]
    assert fast == general == stateful
    assert [[type(e) for e in events] for events in fast] == [[type(e) for e in events] for events in general]
    assert [type(events[0]) for events in fast] == [
        records.H0STCNT0,
        records.H0STCNT0_2026_08,
        type(fast[2][0]),
        records.HDFSCNT0,
    ]


# --- the split ----------------------------------------------------------------------------------


def test_a_one_record_frame_is_split_on_first_read_and_no_further_than_needed() -> None:
    rec = h0stcnt0(TRADE)
    assert isinstance(rec, records.H0STCNT0)
    assert (rec._n, rec._p) == (0, "^".join(TRADE))  # counted, not split
    assert rec.price == int(TRADE[2])
    assert rec._n == len(rec._f) == DEPTH == 13  # as far as the friendly columns (volume: 12)
    head = rec._f
    assert (rec.symbol, rec.volume, rec.change) == ("005930", 125, 400)
    assert rec.time == rec["STCK_CNTG_HOUR"]
    assert rec._f is head  # those reads needed no other split
    assert rec.session is MarketSession.REGULAR  # the last column: the rest is split
    assert rec._n == 47
    assert rec._p is rec._f  # the text is let go
    assert rec.raw == tuple(TRADE)


def test_a_column_the_era_lacks_reads_none_without_splitting() -> None:
    [rec] = decode_message(encode_frame("H0STCNT0", [TRADE[:46]]))
    assert isinstance(rec, records.H0STCNT0_2026_08)
    assert rec.market_cls_code is None
    assert rec.session is None
    assert rec._n == 0


def test_the_key_is_read_without_splitting() -> None:
    """Dispatch by key reads it first, and what comes next often needs every field (raw, to_dict):
    one split then, not a short one and then the rest."""
    rec = h0stcnt0(TRADE)
    assert rec.tr_key == "005930"
    assert rec._n == 0
    assert rec.raw == tuple(TRADE)
    assert rec._n == 47
    assert rec.tr_key == "005930"
    [alone] = decoded("0|H0ZZCNT9|001|A")  # one field, no caret: a TR this version does not know
    assert alone.tr_key == "A"
    assert Record("H0ZZCNT9", []).tr_key == ""


def test_a_record_shorter_than_the_first_split_is_split_in_full() -> None:
    [rec] = decoded("0|H0ZZCNT9|001|A^1^2")  # a TR this version does not know: plain Record
    assert rec.raw == ("A", "1", "2")
    short = h0stcnt0(["005930", "093015", "100"])  # drift: 3 of 47
    assert short.price == 100
    assert short._n == 3
    assert short._p is short._f  # nothing left to split
    assert short["volume"] is None
    with pytest.raises(EmptyFieldError, match="CNTG_VOL is absent"):
        _ = short.volume
    assert short.raw == ("005930", "093015", "100")


def test_records_of_a_multi_record_frame_share_one_split_without_slices() -> None:
    rows = [trade(f"00000{i}", 1000 + i, 10 + i) for i in range(4)]
    recs = decoded(encode_frame("H0STCNT0", rows))
    assert len({id(rec._f) for rec in recs}) == 1
    assert len(recs[0]._f) == 4 * 47
    assert [rec._o for rec in recs] == [0, 47, 94, 141]
    for rec, row in zip(recs, rows, strict=True):
        assert rec.raw == tuple(row)
        assert rec.extra == ()
        assert rec.to_dict() == records.H0STCNT0("H0STCNT0", row).to_dict()
        assert rec.get("NOPE") is None
    # Records narrower than their layout would read the next record's fields: each gets its own.
    short = decoded(encode_frame("H0STCNT0", [row[:40] for row in rows]))
    assert len({id(rec._f) for rec in short}) == 4
    assert [rec["VI_STND_PRC"] for rec in short] == [None] * 4
    assert [rec.raw for rec in short] == [tuple(row[:40]) for row in rows]
    # Wider ones (appended fields) share: the layout's columns all lie within each record.
    wide = decoded(encode_frame("H0STCNT0", [[*row, "x"] for row in rows]))
    assert len({id(rec._f) for rec in wide}) == 1
    assert [rec.extra for rec in wide] == [("x",)] * 4
    assert [rec.tr_key for rec in wide] == [row[0] for row in rows]


def test_text_is_the_records_part_of_the_frame_as_kis_sent_it() -> None:
    """What the gateway publishes: a one-record frame's payload itself, unsplit; any other record's
    fields give back the same text, byte for byte, in every state of its split."""
    frame = encode_frame("H0STCNT0", [TRADE])
    payload = frame.split("|", 3)[3]
    [rec] = decoded(frame)
    assert rec.text == payload
    assert rec._n == 0  # neither split nor copied
    assert rec["price"] == int(TRADE[2])  # split as far as the friendly columns: the text is kept
    assert rec.text == payload
    assert rec.raw == tuple(TRADE)  # split in full: the text is let go, the fields give it back
    assert rec.text == payload
    # Fields that are not numbers, empty ones, non-ASCII ones, trailing ones no era has: as sent.
    odd = ["005930", "", "한글 텍스트", " 7 ", *TRADE[4:]]
    rows = [odd, trade("000660", 1000, 5), odd]
    for row_set in ([odd], rows, [[*row, "extra", ""] for row in rows], [row[:40] for row in rows]):
        frame = encode_frame("H0STCNT0", row_set)
        recs = decoded(frame)
        assert [rec.text for rec in recs] == ["^".join(row) for row in row_set]
        assert "^".join(rec.text for rec in recs) == frame.split("|", 3)[3]  # the frame, cut at records
        assert all(rec.text.split("^") == list(rec.raw) for rec in recs)
    by_hand = records.H0STCNT0("H0STCNT0", TRADE)
    assert by_hand.text == "^".join(TRADE)
    assert copy.copy(recs[0]).text == recs[0].text


# --- value semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_and_copies_hold_only_the_records_own_fields(protocol: int) -> None:
    rows = [trade(f"SYM00{i}", 1000 + i, 10 + i) for i in range(4)]
    for text in (encode_frame("H0STCNT0", rows), encode_frame("H0STCNT0", rows[:1])):
        for i, rec in enumerate(decoded(text)):
            blob = pickle.dumps(rec, protocol)
            assert all(f"SYM00{j}".encode() not in blob for j in range(4) if j != i)
            back = pickle.loads(blob)  # noqa: S301  # the test's own bytes
            assert type(back) is type(rec)
            assert back == rec
            assert back.raw == rec.raw
            assert back.to_dict() == rec.to_dict()
            for twin in (copy.copy(rec), copy.deepcopy(rec)):
                assert twin == rec
                assert twin._f is not rec._f
                assert len(twin._f) == 47
    [unknown] = decoded("0|H0ZZCNT9|001|A^1^2")
    assert roundtrip(unknown) == unknown


def test_unsplit_records_compare_by_their_text_and_split_ones_by_their_fields() -> None:
    text = encode_frame("H0STCNT0", [TRADE])
    [a], [b] = decoded(text), decoded(text)
    assert a == b
    assert (a._n, b._n) == (0, 0)  # compared without splitting
    assert a == records.H0STCNT0("H0STCNT0", TRADE) == b
    c = h0stcnt0(trade("005930", 1, 1))
    assert a != c
    assert len({a, b, c, records.H0STCNT0("H0STCNT0", TRADE)}) == 2
    assert a != records.H0STCNT0_2026_08("H0STCNT0", TRADE[:46])
    assert a != records.H0STCNT0("H0STCNI9", TRADE)


# --- threads --------------------------------------------------------------------------------------


def test_a_read_whose_split_state_is_out_of_date_still_reads_right() -> None:
    """What a reader can see while another thread splits the same record: a count ahead of the
    list, or a list put back to the short split after the full one."""
    expected = records.H0STCNT0("H0STCNT0", TRADE).to_dict()
    rec = h0stcnt0(TRADE)
    full = rec._list()
    rec._f = full[:DEPTH]  # the count says 47, the list has 13
    assert {key: rec[key] for key in rec} == expected
    assert rec.vi_stnd_prc == int(TRADE[45])
    rec._f, rec._n = full[:DEPTH], DEPTH  # the short split, published after the full one
    assert rec.session is MarketSession.REGULAR
    assert rec.to_dict() == expected
    lazy = h0stcnt0(TRADE)
    lazy._o, lazy._f, lazy._n = 0, TRADE[:DEPTH], 47  # the full count, the text still unsplit
    assert lazy.session is MarketSession.REGULAR
    assert {key: lazy[key] for key in lazy} == expected


def test_threads_reading_the_same_fresh_records_all_read_right() -> None:
    rows = [trade(f"{i:06d}", 1000 + i, 1 + i) for i in range(300)]
    expected = [records.H0STCNT0("H0STCNT0", row).to_dict() for row in rows]
    names = list(expected[0])
    recs = [decoded(encode_frame("H0STCNT0", [row]))[0] for row in rows]
    failures: list[str] = []
    start = threading.Barrier(4)

    def reader(offset: int) -> None:
        start.wait()
        for n, (rec, want) in enumerate(zip(recs, expected, strict=True)):
            failures.extend(
                f"record {n} {name}: {rec[name]!r}"
                for name in names[offset::3] + names[: offset + 1]
                if rec[name] != want[name]
            )
            if rec.to_dict() != want:
                failures.append(f"record {n} to_dict")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=reader, args=(i % 3,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


# --- the converter --------------------------------------------------------------------------------


def test_an_empty_or_invalid_number_converts_as_its_read_does(caplog: pytest.LogCaptureFixture) -> None:
    fields = list(TRADE)
    fields[13] = ""  # ACML_VOL: empty reads as None
    fields[5] = "NaN"  # PRDY_CTRT: no number reads as None, logged once
    fields[1] = "256161"  # STCK_CNTG_HOUR: no time
    rec = h0stcnt0(fields)
    for name in ("PRDY_CTRT", "STCK_CNTG_HOUR"):
        records.H0STCNT0._by_key[name]._warned = False
    with caplog.at_level(logging.WARNING, logger="kis_proto.records"):
        first, second = rec.to_dict(), rec.to_dict()
    assert first == second
    assert (first["ACML_VOL"], first["PRDY_CTRT"], first["STCK_CNTG_HOUR"], first["time"]) == (None,) * 4
    assert first["STCK_PRPR"] == 62700
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert any("PRDY_CTRT" in line for line in warned)
    assert any("STCK_CNTG_HOUR" in line for line in warned)
    only_empty = list(TRADE)
    only_empty[13] = ""
    rec = h0stcnt0(only_empty)
    assert rec.to_dict() == {**records.H0STCNT0("H0STCNT0", TRADE).to_dict(), "ACML_VOL": None}


CLEAN = {
    FieldType.INT: "5",
    FieldType.DECIMAL: "1.5",
    FieldType.DATE: "20260914",
    FieldType.TIME: "093015",
    FieldType.SESSION: "2",
    FieldType.STR: "A",
}


@pytest.mark.parametrize(
    "layout",
    [layout for spec in TRS.values() for layout in spec.layouts if "change" in layout.record_class._by_key],
    ids=lambda layout: f"{layout.tr_id}-{layout.era}",
)
def test_to_dict_signs_every_change_as_its_read_does(layout: Layout) -> None:
    cls = layout.record_class
    change = cls._by_key["change"]
    assert isinstance(change, SignedChange)
    row = [CLEAN[f.type] for f in layout.fields]
    for value in ("7", "-7", "0", "0.21", "-0.21", "0.0000"):
        for sign in "12345":
            row[change.index], row[change.sign_index] = value, sign
            if not change.value.is_valid(value):
                continue
            for rec in (cls(layout.tr_id, row), *decoded(encode_frame(layout.tr_id, [row]))):
                assert outcome(rec.to_dict) == outcome(lambda rec=rec: {key: rec[key] for key in rec}), (
                    value,
                    sign,
                )
                assert rec.to_dict()["change"] == getattr(rec, "change")  # noqa: B009  # typed per class


def test_items_and_values_convert_at_once_as_to_dict_does() -> None:
    rec = h0stcnt0(TRADE)
    assert dict(rec.items()) == rec.to_dict() == dict(rec)
    assert list(rec.values()) == list(rec.to_dict().values())
    assert list(rec.keys()) == list(rec.to_dict())


def test_a_record_class_made_by_hand_converts_its_own_fields() -> None:
    """Fields the converter has no expression for are read by their descriptors."""

    class Shout(StrField):
        __slots__ = ()

        def read(self, obj: Record) -> str | None:
            text = super().read(obj)
            return None if text is None else text.upper()

    class Cents(DecimalField):
        __slots__ = ()

        def convert(self, text: str) -> Decimal:
            return Decimal(text) / 100

    class Custom(Record):
        __slots__ = ()
        key = StrField(0, "KEY")
        name = Shout(1, "NAME")
        amount = Cents(2, "AMOUNT")
        count = IntField(3, "COUNT")
        symbol = key

    for row in (["k", "abc", "1250", "3"], ["k", "", "x", ""], ["k"]):
        rec = Custom("X0000000", row)
        assert rec.to_dict() == {key: rec[key] for key in rec}
    assert Custom("X0000000", ["k", "abc", "1250", "3"]).to_dict() == {
        "KEY": "k",
        "NAME": "ABC",
        "AMOUNT": Decimal("12.5"),
        "COUNT": 3,
        "symbol": "k",
    }
    assert Record("X0000000", ["a", "b"]).to_dict() == {}


def test_memos_of_times_and_dates_stay_bounded_and_keep_no_invalid_text() -> None:
    memo = _Memo(int)
    for n in range(_MEMO_SIZE + 10):
        memo[str(n)]
    assert 0 < len(memo) <= _MEMO_SIZE
    assert memo[""] is None
    times = _times(None)
    with pytest.raises(ValueError, match="hour"):
        times["256161"]
    assert "256161" not in times
    assert times["093015"] is times["093015"]  # one object per text, shared by the records


# --- memory ---------------------------------------------------------------------------------------


def kept(build: Any, n: int = 2000) -> float:
    """Bytes per record of `n` records kept (each made by `build(i)`), the list not counted."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [build(i) for i in range(n)]
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before - sys.getsizeof(keep)
    tracemalloc.stop()
    return used / n


def test_a_kept_record_costs_no_more_than_one_holding_its_fields_split() -> None:
    texts = [encode_frame("H0STCNT0", [trade(f"{i:06d}", 1000 + i, i)]) for i in range(2000)]
    frames4 = [encode_frame("H0STCNT0", [trade(f"{i:06d}", 1000 + i, i)] * 4) for i in range(500)]
    rows = [trade(f"{i:06d}", 1000 + i, i) for i in range(2000)]
    # Records built by hand hold their fields split, as every record did before: the yardstick.
    split = kept(lambda i: records.H0STCNT0("H0STCNT0", "^".join(rows[i]).split("^")))

    def unread(i: int) -> Record:
        return decode_message(texts[i])[0]  # type: ignore[return-value]

    def read(i: int) -> Record:
        rec: records.H0STCNT0 = decode_message(texts[i])[0]  # type: ignore[assignment]
        _ = rec.price + rec.volume
        return rec

    def converted(i: int) -> Record:
        rec: Record = decode_message(texts[i])[0]  # type: ignore[assignment]
        rec.to_dict()
        return rec

    every: list[Record] = []

    def of_four(i: int) -> Record:
        if not every:
            every.extend(decoded(frames4[i // 4 % 500]))
        return every.pop()

    assert kept(unread) < 0.3 * split
    assert kept(read) < 0.6 * split
    assert kept(converted) < 1.05 * split
    assert kept(of_four) < 1.05 * split
