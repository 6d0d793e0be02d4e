"""kis_data: recordings as Arrow tables and Parquet files, checked against kis_proto's own reads.

Every test compares what the export holds with what replaying the recording gives: the same
records, once each, in arrival order, with every column equal to the decoder's typed read
(`rec[name]`; a Decimal as the float nearest to it, a session by its label).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import stat
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pa = pytest.importorskip("pyarrow", reason="kis_data needs pyarrow: pip install -e '.[dev]' (the data extra)")
pq = pytest.importorskip("pyarrow.parquet", reason="kis_data needs pyarrow")

import kis_data.parquet
from kis_data import read_recording
from kis_ws.__main__ import main

from kis_proto import MarketSession, Record
from kis_proto.layouts import TRS, FieldType, Layout
from kis_proto.recording import RECORDING_HEADER, recording_line, replay_lines

from .helpers import encode_frame
from .peers import ack

ROOT = Path(__file__).resolve().parent.parent
KEY, IV = "abcdefghijklmnopqrstuvwxyzabcdef", "0123456789abcdef"
APPROVAL_KEY = "062f61cb-0c1d-4a2f-9b5e-approvalkey"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_789_000_000.0

# Field strings by type: plain values, and the forms KIS sends that a naive parser gets wrong.
SAMPLES: dict[FieldType, list[str]] = {
    FieldType.INT: ["0", "71500", "-19500", "", "000125", "9000000000"],
    FieldType.DECIMAL: ["0.70", "+0.12", "-1.50", "", "190.5000", "3"],
    FieldType.DATE: ["20260914", "00000000", "", "20231231"],
    FieldType.TIME: ["093015", "235959", "", "000000"],
    FieldType.STR: ["1", "", "N", "삼성전자", "A"],
    FieldType.SESSION: ["1", "2", "3", "5", ""],
}


# -- building recordings --------------------------------------------------------------------------


def write_recording(path: Path, messages: list[str], *, start: float = T0, step: float = 0.25) -> Path:
    lines = [RECORDING_HEADER] + [recording_line(start + i * step, m) for i, m in enumerate(messages)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row_for(layout: Layout, rng: random.Random, key: str = "005930") -> list[str]:
    """A record of `layout` with a value of its type in every column (the first: the key)."""
    row = [rng.choice(SAMPLES[field.type]) for field in layout.fields]
    row[0] = key
    return row


def every_layout_messages(rng: random.Random) -> list[str]:
    """Frames of every era of every TR (one of two records, one of one), notices encrypted."""
    messages = ['{"header":{"tr_id":"PINGPONG","datetime":"20260914093000"}}']
    for spec in TRS.values():
        tr_id = spec.tr_ids[0]
        key: str | None = None
        if spec.encrypted:
            messages.append(ack(tr_id, "myhtsid", key=KEY, iv=IV, encrypt="Y"))
            key = KEY
        for layout in spec.layouts:
            first = [row_for(layout, rng), row_for(layout, rng, "000660")]
            messages.append(encode_frame(tr_id, first, key=key, iv=IV))
            messages.append(encode_frame(tr_id, [row_for(layout, rng)], key=key, iv=IV))
    return messages


# -- comparing an export with the replay ------------------------------------------------------------


def expected(value: object) -> object:
    """`rec[name]` as the export holds it: what int64 and float64 cannot hold is null (and counted)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    if isinstance(value, Decimal):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, MarketSession):
        return value.label
    if isinstance(value, time_of_day):
        return value.replace(tzinfo=None)
    return value


def table_of(rec: Record) -> str:
    """The documented file name of a record's table (without .parquet)."""
    width = len(rec.raw)
    if rec.era is None or type(rec).width != width:
        return f"{rec.tr_id}-w{width}.raw"
    spec = next(s for s in TRS.values() if rec.tr_id in s.tr_ids)
    return rec.tr_id if spec.layouts[-1].era == rec.era else f"{rec.tr_id}-{rec.era}"


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def assert_same_as_replay(tables: dict[str, Any], recording: Path) -> int:
    """Every record of `recording` is in `tables` exactly once, in order, with equal values."""
    rows = {name: table.to_pylist() for name, table in tables.items()}
    used = dict.fromkeys(rows, 0)
    compared = 0
    for t, rec in read_recording(recording):
        if not isinstance(rec, Record):
            continue
        name = table_of(rec)
        assert name in rows, f"no table {name} for {rec!r}"
        row = rows[name][used[name]]
        used[name] += 1
        assert micros(row["t"]) == round(t * 1e6)
        assert row["tr_key"] == (rec.tr_key or None)
        if name.endswith(".raw"):
            assert [row[f"f{i}"] for i in range(len(rec.raw))] == list(rec.raw)
        else:
            for column in type(rec).columns:
                assert row[column.name] == expected(rec[column.name]), (name, column.name, rec.raw)
            assert len(row) == 2 + len(type(rec).columns)
        compared += 1
    assert used == {name: len(r) for name, r in rows.items()}, "rows that no record accounts for"
    return compared


# -- round trips ------------------------------------------------------------------------------------


def test_every_era_of_every_tr_round_trips_in_memory_and_through_parquet(tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "all.kisrec", every_layout_messages(random.Random(12)))
    in_memory = kis_data.parquet.read_recording_arrow(recording)
    expected_records = sum(3 * len(spec.layouts) for spec in TRS.values())
    assert assert_same_as_replay(in_memory, recording) == expected_records

    summary = kis_data.parquet.export(recording, tmp_path / "out")
    assert summary.records == expected_records
    assert summary.undecodable == {}
    assert summary.raw_tables == []
    on_disk = kis_data.parquet.read_export(tmp_path / "out")
    assert assert_same_as_replay(on_disk, recording) == expected_records
    assert sorted(on_disk) == sorted(in_memory)
    for name, table in on_disk.items():
        assert table.schema == in_memory[name].schema, name
        assert table.schema.metadata[b"kis.format"] == kis_data.parquet.FORMAT.encode()
    # Notices were decrypted: their text is there, not ciphertext.
    assert on_disk["H0STCNI0"].column("CUST_ID").to_pylist() == ["005930", "000660", "005930"]


def test_two_eras_of_one_tr_get_two_files(tmp_path: Path) -> None:
    old = TRS["H0STCNT0"].layout("2026-08")
    new = TRS["H0STCNT0"].layout("2026-09")
    assert (old.width, new.width) == (46, 47)
    rng = random.Random(1)
    recording = write_recording(
        tmp_path / "eras.kisrec",
        [
            encode_frame("H0STCNT0", [row_for(old, rng)]),
            encode_frame("H0STCNT0", [row_for(new, rng), row_for(new, rng)]),
            encode_frame("H0STCNT0", [row_for(old, rng), row_for(old, rng), row_for(old, rng)]),
        ],
    )
    summary = kis_data.parquet.export(recording, tmp_path / "out")
    assert sorted(p.name for p in summary.files) == ["H0STCNT0-2026-08.parquet", "H0STCNT0.parquet"]
    assert summary.rows == {"H0STCNT0-2026-08": 4, "H0STCNT0": 2}
    today = pq.read_table(tmp_path / "out" / "H0STCNT0.parquet")
    before = pq.read_table(tmp_path / "out" / "H0STCNT0-2026-08.parquet")
    assert today.schema.metadata[b"kis.era"] == b"2026-09"
    assert before.schema.metadata[b"kis.era"] == b"2026-08"
    assert "MARKET_CLS_CODE" in today.column_names
    assert "MARKET_CLS_CODE" not in before.column_names
    assert today.schema.field("MARKET_CLS_CODE").type == pa.dictionary(pa.int32(), pa.string())
    assert assert_same_as_replay(kis_data.parquet.read_export(tmp_path / "out"), recording) == 6


def test_schema_types_and_metadata() -> None:
    schema = kis_data.parquet.layout_schema(TRS["HDFSCNT0"].layout())
    assert schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert schema.field("tr_key").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("LAST").type == pa.float64()  # an overseas price: DECIMAL
    assert schema.field("EVOL").type == pa.int64()
    assert schema.field("KYMD").type == pa.date32()
    assert schema.field("KHMS").type == pa.time32("ms")
    assert schema.field("KHMS").metadata[b"kis.tz"] == b"KST (UTC+9)"
    assert schema.field("XHMS").metadata[b"kis.tz"] == b"exchange local time"
    trade = kis_data.parquet.layout_schema(TRS["H0STCNT0"].layout())
    assert trade.field("STCK_PRPR").metadata[b"kis.aliases"] == b"price"
    assert trade.field("STCK_PRPR").metadata[b"kis.kor"] == "주식 현재가".encode()
    codes = json.loads(trade.field("MARKET_CLS_CODE").metadata[b"kis.codes"])
    assert codes == {s.value: s.label for s in MarketSession}


# -- odd values -------------------------------------------------------------------------------------

ODD: list[tuple[str, str, object, bool]] = [
    # (column, text, value, counted as invalid)
    ("STCK_PRPR", "", None, False),
    ("STCK_PRPR", "abc", None, True),
    ("STCK_PRPR", "0x10", None, True),  # Arrow reads 16; Python's int() refuses: so does the export
    ("STCK_PRPR", "+5", 5, False),  # Python reads it; Arrow's cast refuses: read one by one
    ("STCK_PRPR", " 7", 7, False),
    ("STCK_PRPR", "1_000", 1000, False),
    ("STCK_PRPR", "١٢", 12, False),  # Arabic-Indic digits: int() reads them
    ("STCK_PRPR", "99999999999999999999", None, True),  # beyond int64
    ("PRDY_CTRT", "+0.12", 0.12, False),
    ("PRDY_CTRT", "nan", None, True),
    ("PRDY_CTRT", "inf", None, True),
    ("PRDY_CTRT", "1e400", None, True),  # a Decimal, but no float64
    ("PRDY_CTRT", " 1.5", 1.5, False),
    ("PRDY_CTRT", "1.2.3", None, True),
    ("BSOP_DATE", "00000000", None, False),  # KIS's "no date"
    ("BSOP_DATE", "20261301", None, True),
    ("BSOP_DATE", "2026091", None, True),
    ("BSOP_DATE", "00001231", None, True),  # year 0: no date for Python
    ("STCK_CNTG_HOUR", "246000", None, True),
    ("STCK_CNTG_HOUR", "0930", None, True),
    ("STCK_CNTG_HOUR", "０９３０１５", None, True),  # full-width digits: isdigit() but not ASCII
    ("MARKET_CLS_CODE", "9", None, True),
    ("MARKET_CLS_CODE", "", None, False),
]


def test_odd_values_read_as_kis_proto_reads_them_and_are_counted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = TRS["H0STCNT0"].layout()
    base = row_for(layout, random.Random(3))
    names = [f.name for f in layout.fields]
    frames = []
    for column, text, _, _ in ODD * 3:  # three times: with batch_rows=10, across several batches
        row = list(base)
        row[names.index(column)] = text
        frames.append(encode_frame("H0STCNT0", [row]))
    recording = write_recording(tmp_path / "odd.kisrec", frames)
    with caplog.at_level(logging.WARNING, logger="kis_data"):
        summary = kis_data.parquet.export(recording, tmp_path / "out", batch_rows=10)
    table = pq.read_table(tmp_path / "out" / "H0STCNT0.parquet")
    assert assert_same_as_replay({"H0STCNT0": table}, recording) == len(ODD) * 3
    for i, (column, text, value, _) in enumerate(ODD):
        assert table.column(column)[i].as_py() == value, (column, text)
    invalid: dict[str, int] = {}
    for column, _, _, counted in ODD * 3:
        invalid[column] = invalid.get(column, 0) + counted
    assert summary.invalid == {"H0STCNT0": {c: n for c, n in invalid.items() if n}}
    warned = [r.getMessage() for r in caplog.records if r.name == "kis_data"]
    assert sorted(m.split(":")[0] for m in warned) == sorted(f"H0STCNT0 {c}" for c, n in invalid.items() if n)


# Digits, signs, exponents, hex, blanks, underscores, other scripts' digits, nan and inf; with no
# "x" in a batch Arrow's parser types the columns itself, with one the casts are careful: both.
NUMBERISH = st.sampled_from(["0123456789+-.eE _١０nafi", "0123456789+-.eExX _١０nafi"]).flatmap(
    lambda alphabet: st.lists(st.text(alphabet=alphabet, max_size=9), min_size=1, max_size=30)
)


# An example reads a whole recording (about 15 ms), so a quarter of the profile's examples, each
# carrying up to 30 texts in 9 typed columns.
@settings(max_examples=max(50, settings().max_examples // 4))
@given(texts=NUMBERISH)
def test_bulk_casts_agree_with_typed_reads(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str]
) -> None:
    """Any text in a numeric, date, time or session column reads as `rec[name]` reads it."""
    layout = TRS["H0STCNT0"].layout()
    base = row_for(layout, random.Random(5))
    typed = [i for i, f in enumerate(layout.fields) if f.type is not FieldType.STR]
    rows = []
    for text in texts:
        row = list(base)
        for i in typed:
            row[i] = text
        rows.append(row)
    path = tmp_path_factory.mktemp("agree") / "r.kisrec"
    write_recording(path, [encode_frame("H0STCNT0", rows)])
    tables = kis_data.parquet.read_recording_arrow(path)
    assert assert_same_as_replay(tables, path) == len(texts)


def test_unknown_trs_and_drifted_widths_are_kept_as_strings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = TRS["H0STCNT0"].layout()
    drifted = [*row_for(new, random.Random(2)), "extra"]
    recording = write_recording(
        tmp_path / "raw.kisrec",
        [
            "0|FOO00000|002|a^^c^d^e^",
            encode_frame("H0STCNT0", [drifted, drifted]),
            encode_frame("H0STCNT0", [row_for(new, random.Random(4))]),
            "0|FOO00000|001|x^y",  # another width of the same unknown TR: a table of its own
            "0|FOO00000|001|p^q^r",  # a raw table's buffer exists now: the fast path fills it too
            encode_frame("H0STCNT0", [drifted, drifted, drifted]),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="kis_data"):
        summary = kis_data.parquet.export(recording, tmp_path / "out")
    assert sorted(summary.raw_tables) == ["FOO00000-w2.raw", "FOO00000-w3.raw", "H0STCNT0-w48.raw"]
    tables = kis_data.parquet.read_export(tmp_path / "out")
    assert assert_same_as_replay(tables, recording) == 10
    foo = tables["FOO00000-w3.raw"]
    assert foo.column_names == ["t", "tr_key", "f0", "f1", "f2"]
    assert foo.column("f1").to_pylist() == ["", "e", "q"]  # raw: empty stays empty
    assert tables["H0STCNT0-w48.raw"].column("f47").to_pylist() == ["extra"] * 5
    assert b"no known era of H0STCNT0 has 48 fields" in tables["H0STCNT0-w48.raw"].schema.metadata[b"kis.raw"]
    warned = [r.getMessage() for r in caplog.records if r.name == "kis_data"]
    assert len(warned) == 3
    assert all("exported as strings" in m for m in warned)


def test_undecodable_messages_and_foreign_lines_are_counted_not_exported(tmp_path: Path) -> None:
    notice = encode_frame("H0STCNI0", [row_for(TRS["H0STCNI0"].layout(), random.Random(1))], key=KEY, iv=IV)
    recording = write_recording(
        tmp_path / "bad.kisrec", [notice, "garbage", "0|H0STCNT0|002|a^b^c", "0|H0STCNT0|000|"]
    )
    with recording.open("a", encoding="utf-8") as out:
        out.write("not a recording line\n\n# a comment\n")
    skipped: list[int] = []
    summary = kis_data.parquet.export(recording, tmp_path / "out", on_skip=lambda n, _: skipped.append(n))
    assert summary.records == 0
    assert summary.files == []
    assert summary.undecodable == {"NO_KEY": 1, "UNKNOWN_MESSAGE": 1, "BAD_RECORD_COUNT": 1, "BAD_FRAME": 1}
    assert summary.skipped_lines == 1
    assert skipped == [6]
    assert summary.messages == 4


def test_lines_that_need_json_parsing_read_as_the_replay_reads_them(tmp_path: Path) -> None:
    layout = TRS["H0STCNT0"].layout()
    rng = random.Random(8)
    names = [f.name for f in layout.fields]
    quoted = row_for(layout, rng)
    quoted[names.index("PRDY_VRSS_SIGN")] = 'say "hi"\\ there'  # a quote and a backslash: escaped in JSON
    newline = row_for(layout, rng)
    newline[names.index("NEW_MKOP_CLS_CODE")] = "two\nlines\r"
    korean = row_for(layout, rng)
    korean[names.index("PRDY_VRSS_SIGN")] = "한글 없음"
    plain = encode_frame("H0STCNT0", [row_for(layout, rng)])
    lines = [
        RECORDING_HEADER,
        recording_line(T0, encode_frame("H0STCNT0", [quoted])),
        json.dumps({"m": encode_frame("H0STCNT0", [newline]), "t": T0 + 1}),  # other key order
        recording_line(T0 + 2, encode_frame("H0STCNT0", [korean])) + "\r",  # CRLF
        "",
        '{"t": 1.5e9, "m": "' + plain + '"}',  # an exponent
        '{"t": 01, "m": "' + plain + '"}',  # not JSON (a leading zero): skipped by both
        '{"t": 3, "m": "0|H0STCNT0|001|a\tb"}',  # a raw tab: not JSON either
        recording_line(T0 + 4, plain),  # the last line without a newline
    ]
    path = tmp_path / "forms.kisrec"
    path.write_text("\n".join(lines), encoding="utf-8")
    replayed = [rec for _, rec in read_recording(path) if isinstance(rec, Record)]
    assert len(replayed) == 5
    tables = kis_data.parquet.read_recording_arrow(path)
    assert assert_same_as_replay(tables, path) == 5
    assert tables["H0STCNT0"].column("PRDY_VRSS_SIGN").to_pylist()[:3] == [
        'say "hi"\\ there',
        None,
        "한글 없음",
    ]
    assert tables["H0STCNT0"].column("NEW_MKOP_CLS_CODE").to_pylist()[1] == "two\nlines\r"


def test_a_recording_that_is_not_utf8_fails_as_the_replay_does(tmp_path: Path) -> None:
    path = tmp_path / "binary.kisrec"
    path.write_bytes(b'{"t": 1, "m": "0|H0STCNT0|001|\xff\xfe"}\n')
    with pytest.raises(UnicodeDecodeError):
        list(read_recording(path))
    with pytest.raises(UnicodeDecodeError):
        kis_data.parquet.export(path, tmp_path / "out")
    assert not any((tmp_path / "out").glob("*"))  # nothing half-written left behind


# -- files: privacy, streaming, parts ---------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_and_hold_no_keys(tmp_path: Path) -> None:
    notice = row_for(TRS["H0STCNI0"].layout(), random.Random(6), key="myhtsid")
    notice[1] = "5012345601"  # the account number
    error = json.dumps(  # KIS echoes a bad approval key in its error text
        {
            "header": {"tr_id": "H0STCNT0"},
            "body": {"rt_cd": "1", "msg_cd": "OPSP0011", "msg1": f"invalid approval : {APPROVAL_KEY}"},
        }
    )
    recording = write_recording(
        tmp_path / "notices.kisrec",
        [
            error,
            ack("H0STCNI0", "myhtsid", key=KEY, iv=IV, encrypt="Y"),
            encode_frame("H0STCNI0", [notice], key=KEY, iv=IV),
        ],
    )
    out = tmp_path / "a" / "b"
    summary = kis_data.parquet.export(recording, out, compression="none")
    assert summary.rows == {"H0STCNI0": 1}
    assert mode(tmp_path / "a") == 0o700
    assert mode(out) == 0o700
    [file] = summary.files
    assert mode(file) == 0o600
    data = file.read_bytes()
    assert b"5012345601" in data
    assert b"myhtsid" in data
    for secret in (KEY, IV, APPROVAL_KEY):
        assert secret.encode() not in data, secret
    table = pq.read_table(file)
    shown = json.dumps(
        {
            "schema": str(table.schema),
            "metadata": {k.decode(): v.decode() for k, v in table.schema.metadata.items()},
        },
        ensure_ascii=False,
    ) + json.dumps(table.to_pylist(), default=str, ensure_ascii=False)
    for secret in (KEY, IV, APPROVAL_KEY):
        assert secret not in shown

    recorder = kis_data.parquet.ParquetRecorder(tmp_path / "live" / "parts", roll_seconds=60)
    for number, line in enumerate(recording.read_text(encoding="utf-8").splitlines()[1:]):
        recorder.add(T0 + number, json.loads(line)["m"])
    [part] = recorder.close().files
    assert mode(tmp_path / "live") == 0o700
    assert mode(part.parent) == 0o700
    assert mode(part) == 0o600


def test_export_streams_in_batches_and_keeps_arrival_order(tmp_path: Path) -> None:
    layout = TRS["H0STCNT0"].layout()
    rng = random.Random(9)
    messages = []
    for i in range(300):
        count = rng.choice([1, 1, 2, 3, 5])
        messages.append(encode_frame("H0STCNT0", [row_for(layout, rng, f"{i:06d}") for _ in range(count)]))
        if i % 7 == 0:
            messages.append(encode_frame("H0STASP0", [row_for(TRS["H0STASP0"].layout(), rng)]))
    recording = write_recording(tmp_path / "many.kisrec", messages, step=0.001)
    summary = kis_data.parquet.export(recording, tmp_path / "out", batch_rows=64, buffer_bytes=20_000)
    trades = pq.ParquetFile(tmp_path / "out" / "H0STCNT0.parquet")
    assert trades.metadata.num_row_groups > 5  # written as it went, one row group per batch
    biggest = max(trades.metadata.row_group(i).num_rows for i in range(trades.metadata.num_row_groups))
    assert biggest <= 64 + 4  # a batch ends with the frame that fills it (frames of up to 5 here)
    assert assert_same_as_replay(kis_data.parquet.read_export(tmp_path / "out"), recording) == summary.records


def test_an_export_does_not_replace_files_unless_asked(tmp_path: Path) -> None:
    layout = TRS["H0STCNT0"].layout()
    recording = write_recording(
        tmp_path / "r.kisrec", [encode_frame("H0STCNT0", [row_for(layout, random.Random())])]
    )
    kis_data.parquet.export(recording, tmp_path / "out")
    with pytest.raises(FileExistsError):
        kis_data.parquet.export(recording, tmp_path / "out")
    assert kis_data.parquet.export(recording, tmp_path / "out", overwrite=True).rows == {"H0STCNT0": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["H0STCNT0.parquet"]  # no temporaries


def test_the_parquet_recorder_writes_complete_parts_by_time_and_size(tmp_path: Path) -> None:
    rng = random.Random(10)
    trade, book = TRS["H0STCNT0"].layout(), TRS["H0STASP0"].layout()
    messages = [
        encode_frame("H0STCNT0", [row_for(trade, rng)] * rng.choice([1, 2]))
        if i % 3
        else encode_frame("H0STASP0", [row_for(book, rng)])
        for i in range(60)
    ]
    recorder = kis_data.parquet.ParquetRecorder(tmp_path / "parts", roll_seconds=10, roll_bytes=1 << 30)
    for i, message in enumerate(messages):
        recorder.add(T0 + i, message)
        recorder.roll_if_due(T0 + i)
    assert len(recorder.summary.files) == 10  # a roll every 10 s, both tables: 5 rolls before the last
    recorder.roll_if_due(T0 + 59)  # not due: the current roll started at T0 + 50
    summary = recorder.close()
    assert len(summary.files) == 12
    with pytest.raises(ValueError, match="closed"):
        recorder.add(T0, messages[0])
    (tmp_path / "parts" / "H0STCNT0" / ".20991231T000000Z-00099.parquet.tmp").write_bytes(b"half a part")
    recording = write_recording(tmp_path / "same.kisrec", messages, step=1.0)
    parts = kis_data.parquet.read_export(tmp_path / "parts")
    assert assert_same_as_replay(parts, recording) == summary.records

    by_size = kis_data.parquet.ParquetRecorder(tmp_path / "sized", roll_seconds=3600, roll_bytes=4000)
    for i, message in enumerate(messages):
        by_size.add(T0 + i, message)
    assert len(by_size.summary.files) > 3  # written as the buffer filled, not at the end
    by_size.close()
    assert (
        assert_same_as_replay(kis_data.parquet.read_export(tmp_path / "sized"), recording) == summary.records
    )


# -- the command line -------------------------------------------------------------------------------


def test_kis_ws_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(11)
    recording = write_recording(
        tmp_path / "day.kisrec",
        [encode_frame("H0STCNT0", [row_for(TRS["H0STCNT0"].layout(), rng)] * 2), "0|FOO00000|001|a^b"],
    )
    assert main(["export", str(recording), "--to", str(tmp_path / "day")]) == 0
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'day' / 'H0STCNT0.parquet'}  2 rows" in out
    assert "kept as strings (no known layout): FOO00000-w2.raw" in err
    assert main(["export", str(recording), "--to", str(tmp_path / "day")]) == 2
    assert "already holds Parquet files" in capsys.readouterr().err
    assert main(["export", str(recording), "--to", str(tmp_path / "day"), "--overwrite"]) == 0
    capsys.readouterr()

    assert main(["export", str(tmp_path / "missing.kisrec"), "--to", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    frames = tmp_path / "frames.txt"
    frames.write_text("0|H0STCNT0|001|005930^1\n", encoding="utf-8")
    assert main(["export", str(frames), "--to", str(tmp_path / "x")]) == 2
    assert "is not a kis-ws recording" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _env_without_credentials() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_a_parquet_recording_killed_with_sigkill_leaves_readable_parts(tmp_path: Path) -> None:
    recording, folder = tmp_path / "live.kisrec", tmp_path / "live"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "kis_ws",
            "record",
            str(recording),
            "005930",
            "H0STASP0:005930",
            "H0STCNI0:myhtsid",
            "--parquet",
            str(folder),
            "--roll",
            "0.5s",
            "--seed",
            "7",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env_without_credentials(),
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(folder.glob("H0STCNT0/*.parquet"))) < 3:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
    parts = sorted(folder.glob("*/*.parquet"))
    assert len(parts) >= 3, "no parts were written within 30 s"
    tables = kis_data.parquet.read_export(folder)
    for part in parts:
        assert pq.read_table(part).num_rows > 0  # every part is a complete file
        assert mode(part) == 0o600
    assert mode(recording) == 0o600
    # What the parts hold is what the recording holds, up to where the parts end (the recording
    # is written line by line, before the record reaches the Parquet recorder).
    for name, table in tables.items():
        replayed = kis_data.parquet.read_recording_arrow(recording)[name].slice(0, table.num_rows)
        assert table.to_pylist() == replayed.to_pylist(), name
    assert {"H0STCNT0", "H0STASP0"} <= set(tables)


# -- packaging -------------------------------------------------------------------------------------


def test_pyarrow_comes_with_the_data_extra_and_the_dev_one() -> None:
    """The layering of kis_data is import-linter's (pyproject.toml); its extra is checked here."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = config["project"]["optional-dependencies"]
    assert any(d.startswith("pyarrow") for d in extras["data"])
    assert any("data" in d for d in extras["dev"] if d.startswith("kis-proto"))
    assert (ROOT / "data" / "kis_data" / "py.typed").exists()


def test_replay_lines_and_the_export_agree_on_a_simulated_session(tmp_path: Path) -> None:
    """The built-in market model's records (today's layouts) through both readers."""
    from kis_sim import MarketModel, layout_row

    from kis_proto import KST

    model = MarketModel(random.Random(4))
    at = datetime(2026, 9, 15, 9, 0, tzinfo=KST)
    trade, book = TRS["H0STCNT0"].layout(), TRS["H0STASP0"].layout()
    messages = []
    for i in range(200):
        at += timedelta(seconds=1)
        symbol = ("005930", "000660")[i % 2]
        rows = [layout_row(trade, model.trade(symbol, at)) for _ in range(1 + i % 3)]
        messages.append(encode_frame("H0STCNT0", rows))
        messages.append(encode_frame("H0STASP0", [layout_row(book, model.book(symbol, at))]))
    path = write_recording(tmp_path / "sim.kisrec", messages)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [rec for _, rec in replay_lines(lines) if isinstance(rec, Record)]
    tables = kis_data.parquet.read_recording_arrow(path)
    assert assert_same_as_replay(tables, path) == len(records) == sum(1 + i % 3 for i in range(200)) + 200
