"""Layouts by era: each record is read with the layout of its width (the 2026-09-14 change and before).

Rows are built by column name from the layouts table's names, so a test says which value sits
under which name on the wire and fails if the decoder reads it from another position.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from kis_proto import LayoutDrift, MarketSession, MessageDecoder, Record, Subscribed, decode_message, records
from kis_proto.layouts import TRS
from kis_proto.recording import recording_line, replay_lines

from .helpers import encode_frame, fields_of, sample

TRADE_2023 = fields_of(sample("0|H0STCNT0", 0))  # 46 fields, a real frame of 2023-03-24
BOOK_59 = fields_of(sample("0|H0STASP0", 0))  # 59 fields
KEY, IV = "abcdefghijklmnopqrstuvwxyzabcdef", "0123456789abcdef"


def row(tr_id: str, era: str, **values: str) -> list[str]:
    """A record of `tr_id` in `era`'s layout: the named values, "0" elsewhere."""
    names = [f.name for f in TRS[tr_id].layout(era).fields]
    unknown = set(values) - set(names)
    assert not unknown, f"{tr_id} {era} has no {unknown}"
    return [values.get(name, "0") for name in names]


def decode_one(text: str, decoder: MessageDecoder | None = None) -> Record:
    events = (decoder or MessageDecoder()).decode(text)
    assert not any(isinstance(e, LayoutDrift) for e in events), events
    [rec] = events
    assert isinstance(rec, Record)
    return rec


@pytest.mark.parametrize("tr_id", ["H0STCNT0", "H0NXCNT0", "H0UNCNT0"])
def test_trades_before_and_after_the_after_market_change(tr_id: str) -> None:
    old = decode_one(encode_frame(tr_id, [TRADE_2023]))
    assert type(old) is getattr(records, f"{tr_id}_2026_08")
    assert isinstance(old, getattr(records, tr_id))
    assert old.era == "2026-08"
    assert (old.price, old.volume, old.change) == (62700, 125, 400)
    assert old.session is None  # the column did not exist: absent, not an error
    assert "MARKET_CLS_CODE" not in old
    assert "session" not in list(old.keys())
    assert old.extra == ()

    new = decode_one(encode_frame(tr_id, [[*TRADE_2023, "3"]]))
    assert type(new) is getattr(records, tr_id)
    assert new.era == "2026-09"
    assert (new["price"], new["volume"]) == (62700, 125)
    assert new["MARKET_CLS_CODE"] is MarketSession.AFTER_MARKET
    assert new["session"] is MarketSession.AFTER_MARKET
    assert new.extra == ()


def test_nxt_and_unified_trades_name_index_21_as_their_sheets_do() -> None:
    [krx] = decode_message(encode_frame("H0STCNT0", [[*TRADE_2023, "2"]]))
    [nxt] = decode_message(encode_frame("H0NXCNT0", [[*TRADE_2023, "2"]]))
    assert isinstance(krx, records.H0STCNT0)
    assert isinstance(nxt, records.H0NXCNT0)
    assert krx.ccld_dvsn == nxt.cntg_cls_code == "1"


def test_krx_books_have_three_eras() -> None:
    old = decode_one(encode_frame("H0STASP0", [BOOK_59]))
    assert type(old) is records.H0STASP0_2026_08
    assert old.askp1 == 77900
    assert old.mid_prc is None
    assert old.session is None
    assert "MID_PRC" not in old

    mid = decode_one(encode_frame("H0STASP0", [[*BOOK_59, "77850.5", "1200", "1"]]))
    assert type(mid) is records.H0STASP0_2026_08_MID
    assert mid.era == "2026-08+mid"
    assert mid.mid_prc == Decimal("77850.5")
    assert mid["MIDP_TOTAL_RSQN"] == 1200
    assert mid.market_cls_code is None

    today = decode_one(encode_frame("H0STASP0", [[*BOOK_59, "77850", "1200", "1", "1"]]))
    assert type(today) is records.H0STASP0
    assert today.mid_prc == 77850
    assert today.session is MarketSession.PRE_MARKET
    assert (today.askp1, today.bidp10) == (77900, 76900)
    assert today.extra == ()


def test_nxt_book_of_today_names_its_own_mid_price_not_krx_s() -> None:
    # The silent misnaming the single-layout table had: 62 fields read with the 65-field list.
    today = decode_one(
        encode_frame("H0NXASP0", [row("H0NXASP0", "2026-09", NMID_PRC="71450", NMID_TOTAL_RSQN="300")])
    )
    assert type(today) is records.H0NXASP0
    assert today.nmid_prc == Decimal(71450)
    assert today["NMID_TOTAL_RSQN"] == 300
    assert "KMID_PRC" not in today
    assert not hasattr(records.H0NXASP0, "kmid_prc")

    old = decode_one(
        encode_frame("H0NXASP0", [row("H0NXASP0", "2026-08", KMID_PRC="71400", NMID_PRC="71450")])
    )
    assert type(old) is records.H0NXASP0_2026_08
    assert (old.kmid_prc, old.nmid_prc) == (Decimal(71400), Decimal(71450))
    assert old.raw.index("71450") == 62


def test_unified_book_of_today_has_the_expected_price_exchange() -> None:
    rec = decode_one(encode_frame("H0UNASP0", [row("H0UNASP0", "2026-09", ANTC_EXCH_CLS_CODE="2")]))
    assert type(rec) is records.H0UNASP0
    assert rec.antc_exch_cls_code == "2"
    assert rec.raw[65] == "2"
    old = decode_one(encode_frame("H0UNASP0", [row("H0UNASP0", "2026-08")]))
    assert type(old) is records.H0UNASP0_2026_08


def test_us_book_has_ten_levels() -> None:
    values = {f"PBID{n}": f"{200 - n}.{n:02d}00" for n in range(1, 11)}
    values |= {f"VASK{n}": str(100 * n) for n in range(1, 11)}
    rec = decode_one(encode_frame("HDFSASP0", [row("HDFSASP0", "2026-09", RSYM="DNASAAPL", **values)]))
    assert type(rec) is records.HDFSASP0
    assert rec.width == 71
    assert rec.tr_key == "DNASAAPL"
    assert [rec[f"PBID{n}"] for n in range(1, 11)] == [Decimal(f"{200 - n}.{n:02d}") for n in range(1, 11)]
    assert rec.vask10 == 1000
    old = decode_one(encode_frame("HDFSASP0", [row("HDFSASP0", "2026-08", RSYM="DNASAAPL", PBID1="199.5")]))
    assert type(old) is records.HDFSASP0_2026_08
    assert old.pbid1 == Decimal("199.5")
    assert old.pbid10 is None


@pytest.mark.parametrize("tr_id", ["HDFFF1C0", "HDFFF2C0"])
def test_encrypted_overseas_futures_notices_start_with_the_user_id(tr_id: str) -> None:
    decoder = MessageDecoder()
    ack = {
        "header": {"tr_id": tr_id, "tr_key": "myhts", "encrypt": "Y"},
        "body": {
            "rt_cd": "0",
            "msg_cd": "OPSP0000",
            "msg1": "SUBSCRIBE SUCCESS",
            "output": {"key": KEY, "iv": IV},
        },
    }
    [subscribed] = decoder.decode(json.dumps(ack))
    assert isinstance(subscribed, Subscribed)
    values = {
        "USER_ID": "myhts",
        "ACCT_NO": "12345678",
        "ODNO": "0000001234",
        "SERIES": "6EZ26",
        "ORD_QTY": "3",
    }
    rec = decode_one(encode_frame(tr_id, [row(tr_id, "2026-09", **values)], key=KEY, iv=IV), decoder)
    assert type(rec) is getattr(records, tr_id)
    assert rec.width == 33
    assert rec.tr_key == "myhts"
    assert tuple(rec[name] for name in ("USER_ID", "ACCT_NO", "ODNO", "SERIES", "ORD_QTY")) == (
        "myhts",
        "12345678",
        "0000001234",
        "6EZ26",
        3,
    )


def test_an_unknown_width_is_reported_once_and_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    decoder = MessageDecoder()
    wider = [*row("H0NXASP0", "2026-09", NMID_PRC="71450"), "2"]  # 63: perhaps a session appended next
    frames = [encode_frame("H0NXASP0", [wider, wider]), encode_frame("H0NXASP0", [wider])]
    with caplog.at_level(logging.WARNING):
        events = [e for text in frames for e in decoder.decode(text)]
    assert events[0] == LayoutDrift(tr_id="H0NXASP0", expected=62, received=63, known=(65, 62))
    assert sum(isinstance(e, LayoutDrift) for e in events) == 1
    recs = [e for e in events if isinstance(e, Record)]
    assert len(recs) == 3
    for rec in recs:
        assert type(rec) is records.H0NXASP0  # today's layout names the prefix: NMID at 59, not KMID
        assert rec.nmid_prc == Decimal(71450)
        assert rec.extra == ("2",)
        assert rec.raw == tuple(wider)


def test_no_known_width_is_drift() -> None:
    for spec in TRS.values():
        for layout in spec.layouts:
            if spec.encrypted:
                continue
            text = encode_frame(spec.tr_id, [["1"] * layout.width])
            [rec] = decode_message(text)
            assert type(rec) is layout.record_class, (spec.tr_id, layout.era)


def test_market_session_codes(caplog: pytest.LogCaptureFixture) -> None:
    for code, session, label in [
        ("1", MarketSession.PRE_MARKET, "pre-market"),
        ("2", MarketSession.REGULAR, "regular"),
        ("3", MarketSession.AFTER_MARKET, "after-market"),
        ("5", MarketSession.CLOSING, "closing"),
    ]:
        [rec] = decode_message(encode_frame("H0STCNT0", [[*TRADE_2023, code]]))
        assert isinstance(rec, records.H0STCNT0)
        assert rec.session is session
        assert session.label == label
    [empty] = decode_message(encode_frame("H0STCNT0", [[*TRADE_2023, ""]]))
    assert isinstance(empty, records.H0STCNT0)
    assert empty.session is None
    assert empty.invalid_fields() == {}
    [odd] = decode_message(encode_frame("H0STCNT0", [[*TRADE_2023, "4"]]))
    assert isinstance(odd, records.H0STCNT0)
    with caplog.at_level(logging.WARNING, logger="kis_proto.records"):
        assert odd.session is None
    assert odd.invalid_fields() == {"MARKET_CLS_CODE": "4"}
    assert odd.raw[-1] == "4"


def test_a_recording_spanning_the_change_replays_each_era_with_its_names() -> None:
    lines = [
        "# kis-ws recording v1",
        recording_line(1_757_000_000.0, encode_frame("H0STCNT0", [TRADE_2023, TRADE_2023])),  # 2026-09-04
        recording_line(1_757_000_001.0, encode_frame("H0STASP0", [BOOK_59])),
        recording_line(1_757_000_002.0, encode_frame("H0NXASP0", [row("H0NXASP0", "2026-08", KMID_PRC="5")])),
        recording_line(1_758_000_000.0, encode_frame("H0STCNT0", [[*TRADE_2023, "2"]])),  # 2026-09-16
        recording_line(1_758_000_001.0, encode_frame("H0STASP0", [[*BOOK_59, "1", "2", "3", "3"]])),
        recording_line(1_758_000_002.0, encode_frame("H0NXASP0", [row("H0NXASP0", "2026-09", NMID_PRC="7")])),
    ]
    events = [event for _, event in replay_lines(lines)]
    assert not any(isinstance(e, LayoutDrift) for e in events)
    assert [(type(e).__name__, e.era) for e in events if isinstance(e, Record)] == [
        ("H0STCNT0_2026_08", "2026-08"),
        ("H0STCNT0_2026_08", "2026-08"),
        ("H0STASP0_2026_08", "2026-08"),
        ("H0NXASP0_2026_08", "2026-08"),
        ("H0STCNT0", "2026-09"),
        ("H0STASP0", "2026-09"),
        ("H0NXASP0", "2026-09"),
    ]
    nxt_old, nxt_new = [e for e in events if isinstance(e, records.H0NXASP0)]
    assert isinstance(nxt_old, records.H0NXASP0_2026_08)
    assert (nxt_old.kmid_prc, nxt_new.nmid_prc) == (Decimal(5), Decimal(7))
