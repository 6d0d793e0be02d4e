"""Property tests: the codec never raises, and encoding random records then decoding gives them back."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Any, get_args

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kis_proto import (
    Event,
    LayoutDrift,
    MarketSession,
    MessageDecoder,
    Record,
    UndecodableMessage,
    decode_message,
)
from kis_proto._fields import SignedChange
from kis_proto.layouts import TRS, FieldType, Layout, TRSpec

from .helpers import VECTOR_IV, VECTOR_KEY, encode_frame, sample_lines

EVENT_TYPES = tuple(t for t in get_args(Event))
SAMPLES = [line.text for line in sample_lines()]
KEYS = {"H0STCNI0": (VECTOR_KEY, VECTOR_IV)}


def check_events(events: list[Event]) -> None:
    """What every decode must give: events only, and records whose every read is safe."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, EVENT_TYPES)
        if isinstance(event, Record):
            event.to_dict()
            event.invalid_fields()
            repr(event)
            assert isinstance(event.raw, tuple)


frame_like = st.one_of(
    st.text(),
    st.builds(
        lambda head, rest: head + rest,
        st.sampled_from(["0|", "1|", "{", "0|H0STCNT0|", "1|H0STCNI0|001|", '{"header":', '{"body":']),
        st.text(),
    ),
    st.builds(
        lambda flag, tr, count, fields: f"{flag}|{tr}|{count}|{'^'.join(fields)}",
        st.sampled_from(["0", "1", "01", ""]),
        st.sampled_from([*list(TRS)[:10], "H0STCNT0", "H0STCNI0", "XX", ""]),
        st.one_of(st.integers(0, 1200).map(lambda n: f"{n:03d}"), st.text(max_size=4)),
        st.lists(st.text(max_size=8), max_size=120),
    ),
)


@given(frame_like)
def test_decode_never_raises_on_arbitrary_text(text: str) -> None:
    check_events(decode_message(text, keys=KEYS))
    check_events(MessageDecoder(KEYS).decode(text))


@st.composite
def mutated_sample(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate"]))
        if action == "delete":
            end = draw(st.integers(position, min(len(text), position + 10)))
            text = text[:position] + text[end:]
        elif action == "insert":
            text = (
                text[:position]
                + draw(st.sampled_from(["^", "|", "{", "}", '"', "\x00", "001", "-", "+"]))
                + text[position:]
            )
        elif action == "replace":
            text = text[:position] + draw(st.characters()) + text[position + 1 :]
        elif action == "truncate":
            text = text[:position]
        else:
            text = text[:position] + text[position:] * 2
    return text


@given(mutated_sample())
def test_decode_never_raises_on_mutated_samples(text: str) -> None:
    check_events(decode_message(text, keys=KEYS))


# --- round trip ------------------------------------------------------------------------------------

WIRE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="^", blacklist_categories=("Cc", "Cs")), max_size=12
)


def typed_value(ftype: FieldType) -> st.SearchStrategy[tuple[str, Any]]:
    """(wire text, expected read) for one field of the given type; empty reads as None."""
    if ftype is FieldType.INT:
        value: st.SearchStrategy[tuple[str, Any]] = st.builds(
            lambda n, plus: ((f"+{n}" if plus and n >= 0 else str(n)), n),
            st.integers(-(10**15), 10**15),
            st.booleans(),
        )
    elif ftype is FieldType.DECIMAL:
        value = st.builds(
            lambda d, plus: ((f"+{d:f}" if plus and d >= 0 else f"{d:f}"), d),
            st.decimals(
                allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12
            ),
            st.booleans(),
        )
    elif ftype is FieldType.DATE:
        value = st.dates(min_value=date(1000, 1, 1)).map(lambda d: (d.strftime("%Y%m%d"), d))
    elif ftype is FieldType.TIME:
        value = st.times().map(lambda t: (t.strftime("%H%M%S"), t.replace(microsecond=0)))
    elif ftype is FieldType.SESSION:
        value = st.sampled_from(MarketSession).map(lambda s: (s.value, s))
    else:
        value = WIRE_TEXT.map(lambda s: (s, s or None))
    return st.one_of(st.just(("", None)), value)


@st.composite
def random_frame(draw: st.DrawFn) -> tuple[TRSpec, Layout, list[list[tuple[str, Any]]]]:
    spec = draw(st.sampled_from(list(TRS.values())))
    layout = draw(st.sampled_from(spec.layouts))
    count = draw(st.integers(1, 6))
    rows = [[draw(typed_value(f.type)) for f in layout.fields] for _ in range(count)]
    return spec, layout, rows


def expected_change(rec: Record, descriptor: SignedChange[Any], row: list[tuple[str, Any]]) -> Any:
    value = row[descriptor.index][1]
    sign = row[descriptor.sign_index][0]
    return -value if value is not None and value > 0 and sign in ("4", "5") else value


# Each example draws up to a few hundred field values; 100 examples keep this under ~10 s on CI.
@settings(max_examples=100)
@given(random_frame(), st.data())
def test_encoded_records_decode_to_the_same_values(
    frame: tuple[TRSpec, Layout, list[list[tuple[str, Any]]]], data: st.DataObject
) -> None:
    spec, layout, rows = frame
    wire = [[text for text, _ in row] for row in rows]
    # Records whose first field is empty everywhere are still records, but the width must be >= 1.
    assume(spec.width >= 1)
    tr_id = data.draw(st.sampled_from(spec.tr_ids))
    keys = {}
    if spec.encrypted:
        key = data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=32, max_size=32))
        iv = data.draw(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16))
        text = encode_frame(tr_id, wire, key=key, iv=iv)
        keys[tr_id] = (key, iv)
    else:
        text = encode_frame(tr_id, wire)
    events = decode_message(text, keys=keys)
    assert not any(isinstance(e, UndecodableMessage | LayoutDrift) for e in events), events
    assert len(events) == len(rows)
    for rec, row, raw in zip(events, rows, wire, strict=True):
        assert type(rec) is layout.record_class  # the era of the record's width, without drift
        assert isinstance(rec, spec.record_class)
        assert rec.era == layout.era
        assert rec.tr_id == tr_id
        assert rec.raw == tuple(raw)
        assert rec.tr_key == raw[0]
        assert rec.invalid_fields() == {}
        for field, (_, value) in zip(layout.fields, row, strict=True):
            tz = getattr(layout.record_class.__dict__[field.name.lower()], "tz", None)
            expected = value.replace(tzinfo=tz) if isinstance(value, time) else value
            assert rec[field.name] == expected, field.name
        change = type(rec).__dict__.get("change")
        if isinstance(change, SignedChange):
            assert rec["change"] == expected_change(rec, change, row)


@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=30))
def test_decoder_and_function_agree_on_sample_streams(texts: list[str]) -> None:
    decoder = MessageDecoder(KEYS)
    for text in texts:
        stateless = [e for e in decode_message(text, keys=KEYS) if not isinstance(e, LayoutDrift)]
        stateful = [e for e in decoder.decode(text) if not isinstance(e, LayoutDrift)]
        assert stateless == stateful


def test_decimal_and_time_values_keep_their_types() -> None:
    # Guards the round trip's expectations: the reads are real Decimal/date/time, not strings.
    [rec] = decode_message(
        encode_frame(
            "HDFSCNT0",
            [
                [
                    "DNASAAPL",
                    "AAPL",
                    "4",
                    "20230502",
                    "20230502",
                    "091913",
                    "20230502",
                    "221913",
                    *["1.5"] * 4,
                    "2",
                    "0.1",
                    "+0.1",
                    *["1"] * 11,
                ]
            ],
        )
    )
    assert isinstance(rec, Record)
    assert isinstance(rec["LAST"], Decimal)
    assert isinstance(rec["XHMS"], time)
    assert isinstance(rec["XYMD"], date)
