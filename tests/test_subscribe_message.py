"""The request encoder (PROTOCOL.md §3): the approval key in every header, tr_type 1 and 2."""

from __future__ import annotations

import json

import pytest

from kis_proto import LocalProtocolError, subscribe_message, unsubscribe_message

KEY = "3daa450a-0685-4c31-b015-99c5e5f4b11d"


def test_subscribe_shape() -> None:
    message = json.loads(subscribe_message(KEY, "H0STCNT0", "005930"))
    assert message == {
        "header": {"approval_key": KEY, "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
        "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
    }


def test_unsubscribe_is_tr_type_2_with_the_key_too() -> None:
    # PROTOCOL.md §3: "2" releases (the official docstrings' "0" is wrong), and the key goes in
    # every message, not in a login frame (§11a).
    for text in (
        subscribe_message(KEY, "HDFSCNT0", "DNASAAPL", subscribe=False),
        unsubscribe_message(KEY, "HDFSCNT0", "DNASAAPL"),
    ):
        message = json.loads(text)
        assert message["header"]["tr_type"] == "2"
        assert message["header"]["approval_key"] == KEY
        assert message["body"]["input"] == {"tr_id": "HDFSCNT0", "tr_key": "DNASAAPL"}


def test_corporate_customer_and_compact_text() -> None:
    text = subscribe_message(KEY, "H0STCNI0", "my_hts.id-1", custtype="B")
    assert json.loads(text)["header"]["custtype"] == "B"
    assert " " not in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", "H0STCNT0", "005930"), "approval_key"),
        (("a\nb", "H0STCNT0", "005930"), "approval_key"),
        ((KEY, "h0stcnt0", "005930"), "tr_id"),
        ((KEY, "H0STCNT", "005930"), "tr_id"),
        ((KEY, "H0STCNT0X", "005930"), "tr_id"),
        ((KEY, "", "005930"), "tr_id"),
        ((KEY, "H0STCNT0", ""), "tr_key"),
        ((KEY, "H0STCNT0", "005930^000660"), "tr_key"),
        ((KEY, "H0STCNT0", "00 5930"), "tr_key"),
        ((KEY, "H0STCNT0", "x" * 33), "tr_key"),
    ],
)
def test_malformed_arguments_raise_without_leaking_the_key(args: tuple[str, str, str], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match) as info:
        subscribe_message(*args)
    assert KEY not in str(info.value)


def test_bad_custtype() -> None:
    with pytest.raises(LocalProtocolError, match="custtype"):
        subscribe_message(KEY, "H0STCNT0", "005930", custtype="X")
