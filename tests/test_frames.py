"""Every message of the sample file, decoded, with values checked against the raw text."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import pytest

from kis_proto import (
    KST,
    PingPong,
    Record,
    ServerError,
    Subscribed,
    UndecodableMessage,
    decode_message,
    records,
)

from .helpers import VECTOR_IV, VECTOR_KEY, VECTOR_PLAINTEXT, SampleLine, sample, sample_lines

KEYS = {"H0STCNI0": (VECTOR_KEY, VECTOR_IV)}


@pytest.mark.parametrize("line", sample_lines(), ids=lambda s: f"{s.section[:40]}:{s.text[:24]}")
def test_every_sample_line_decodes_to_something_usable(line: SampleLine) -> None:
    text = line.text
    events = decode_message(text, keys=KEYS)
    assert events, "no events for a sample line"
    assert not any(isinstance(e, UndecodableMessage) for e in events), events
    if text.startswith(("0|", "1|")):
        count = int(text.split("|")[2])
        recs = [e for e in events if isinstance(e, Record)]
        assert len(recs) == count
        for rec in recs:
            assert rec.invalid_fields() == {}, rec.invalid_fields()
            assert rec.extra == ()


def test_domestic_trade_2023_capture() -> None:
    [rec] = decode_message(sample("0|H0STCNT0", 0))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.tr_id == "H0STCNT0"
    assert rec.tr_key == rec.symbol == "005930"
    assert rec.time == time(11, 26, 16, tzinfo=KST)  # Korean times are aware
    assert rec.price == 62700
    assert rec.stck_prpr == 62700
    assert rec.prdy_vrss_sign == "2"
    # PROTOCOL.md §11c: the change is index 4, not index 3 (the sign code).
    assert rec.change == 400
    assert rec.prdy_ctrt == Decimal("0.64")
    assert rec.wghn_avrg_stck_prc == Decimal("62700.41")
    assert rec.volume == 125
    assert rec.acml_vol == 9694968
    assert rec.ntby_cntg_csnu == -9889
    assert rec.hgpr_vrss_prpr == -300
    assert rec.bsop_date == date(2023, 3, 24)
    assert rec.mrkt_trtm_cls_code is None  # empty field [44]
    assert rec.vi_stnd_prc == 62700
    assert rec["STCK_PRPR"] == 62700
    assert rec["price"] == 62700
    assert len(rec.raw) == 46


def test_domestic_trade_falling_price_has_negative_change() -> None:
    [rec] = decode_message(sample("0|H0STCNT0", 1))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.prdy_vrss_sign == "5"
    assert rec.change == -19500
    assert rec.prdy_ctrt == Decimal("-7.22")
    assert rec.bsop_date == date(2026, 7, 24)


def test_domestic_order_book() -> None:
    [rec] = decode_message(sample("0|H0STASP0", 0))
    assert isinstance(rec, records.H0STASP0)
    assert rec.askp1 == 77900
    assert rec.askp10 == 78800
    assert rec.bidp1 == 77800
    assert rec.bidp10 == 76900
    assert rec.askp_rsqn1 == 265881
    assert rec.total_askp_rsqn == 1760795
    assert rec.antc_cntg_vrss == -77200
    assert rec.antc_cntg_prdy_ctrt == Decimal("-100.00")
    assert rec.time == time(11, 30, 19, tzinfo=KST)
    assert "price" not in rec  # an order book has no single price
    with pytest.raises(KeyError):
        rec["price"]


def test_overseas_trade() -> None:
    [rec] = decode_message(sample("0|HDFSCNT0", 0))
    assert isinstance(rec, records.HDFSCNT0)
    assert rec.tr_key == "DNASAAPL"
    assert rec.symbol == "AAPL"
    assert rec.zdiv == 4
    assert rec.xymd == date(2023, 5, 2)
    assert rec.time == time(9, 19, 13)  # the exchange's local time: naive
    assert rec.khms == time(22, 19, 13, tzinfo=KST)
    assert rec.price == Decimal("169.8000")
    assert rec.rate == Decimal("0.12")  # sent as "+0.12"
    assert rec.change == Decimal("0.2100")  # sign 2: up
    assert rec.volume == 3
    assert rec.tvol == 108470


def test_pingpong_is_kept_verbatim() -> None:
    text = sample('{"header":{"tr_id":"PINGPONG"')
    assert decode_message(text) == [PingPong(text=text)]


def test_acks_carry_their_key_and_iv() -> None:
    text = sample('{"header":{"tr_id":"H0STCNT0"')
    [event] = decode_message(text)
    assert event == Subscribed(
        tr_id="H0STCNT0",
        tr_key="005930",
        encrypted=False,
        key="tvldhmfplvgcovaqrspclzhdotfzzequ",
        iv="55ce3d099479ce11",
        message="SUBSCRIBE SUCCESS",
    )


def test_session_errors() -> None:
    [in_use] = decode_message(sample('{"header":{"tr_id":"(null)"'))
    assert isinstance(in_use, ServerError)
    assert (in_use.msg_cd, in_use.rt_cd, in_use.tr_id) == ("OPSP8996", "9", "")
    [approval] = decode_message(sample('{"body":{"rt_cd":"1","msg_cd":"OPSP0011"'))
    assert isinstance(approval, ServerError)
    assert "062f61cb" not in approval.message
    assert "062f61cb" not in repr(approval)


def test_encrypted_notice_vector() -> None:
    [rec] = decode_message(sample("1|H0STCNI0"), keys=KEYS)
    assert isinstance(rec, records.H0STCNI0)
    assert rec.raw == tuple(VECTOR_PLAINTEXT.split("^"))
    assert rec.tr_key == "myhtsid"
    assert rec.symbol == "005930"
    assert rec.acnt_name == "홍길동"
    assert rec.cntg_isnm40 == "삼성전자"
    assert rec.cntg_yn == "2"  # a fill
    assert rec.volume == 10
    assert rec.price == 71500
    assert rec.time == time(9, 30, 15, tzinfo=KST)
    assert rec.ord_cond_prc is None
