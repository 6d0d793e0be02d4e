"""The gateway's subject names (docs/gateway.md, "Subject tokens"): escaping, subjects, parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

pytest.importorskip("nats", reason="kis_nats needs nats-py: pip install 'kis-proto[nats]'")

from kis_nats._subjects import (
    ParsedSubject,
    ctl_subject,
    data_subject,
    escape_token,
    leader_bucket,
    notice_subject,
    parse_subject,
    unescape_token,
)

TOKEN = re.compile(r"[A-Za-z0-9_~-]+")
keys = st.text(min_size=1)


@given(keys)
@example("005930")
@example("BRK.B")
@example("~")
@example("a*b>c d\te\n.")
@example("삼성전자")
@example("\x00")
def test_escaping_round_trips_and_yields_a_valid_token(key: str) -> None:
    token = escape_token(key)
    assert TOKEN.fullmatch(token)
    assert not set(token) & {".", "*", ">", " ", "\t", "\r", "\n"}
    assert unescape_token(token) == key


@given(keys)
def test_escaping_is_the_documented_byte_rule(key: str) -> None:
    """Written again from the contract's sentence, byte by byte: an independent reading."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    expected = "".join(chr(b) if b in safe else "~%02X" % b for b in key.encode())  # noqa: UP031
    assert escape_token(key) == expected


def test_the_contract_examples() -> None:
    assert escape_token("005930") == "005930"
    assert escape_token("BRK.B") == "BRK~2EB"
    assert escape_token("~") == "~7E"
    assert escape_token("DNASAAPL") == "DNASAAPL"
    assert escape_token("my_hts-id") == "my_hts-id"
    assert escape_token("é") == "~C3~A9"
    assert unescape_token("BRK~2eB") == "BRK.B"  # lower-case hex digits are hex digits too


@pytest.mark.parametrize(
    "token",
    ["", "~", "~4", "a~G0", "a~~41", "BRK.B", "a b", "a*", ">", "~C3", "~FF", "é"],
)
def test_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match=r"token|~|UTF-8"):
        unescape_token(token)


def test_an_empty_key_has_no_token() -> None:
    with pytest.raises(ValueError, match="empty"):
        escape_token("")


def test_subjects() -> None:
    assert data_subject("sim", "H0STCNT0", "005930") == "kis.sim.H0STCNT0.005930"
    assert data_subject("real", "HDFSCNT0", "BRK.B") == "kis.real.HDFSCNT0.BRK~2EB"
    assert notice_subject("paper", "H0STCNI9", "my.id") == "kis.paper.notice.H0STCNI9.my~2Eid"
    assert ctl_subject("sim", "heartbeat") == "kis.sim.ctl.heartbeat"
    assert leader_bucket("paper") == "KIS_GATEWAY_PAPER"


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (data_subject, ("Sim.x", "H0STCNT0", "005930")),
        (data_subject, ("sim", "ctl", "subscribe")),  # lower case: could be taken for a control subject
        (data_subject, ("sim", "H0STCNT0.X", "005930")),
        (data_subject, ("sim", "H0STCNT0", "")),
        (notice_subject, ("sim", "notice", "id")),
        (ctl_subject, ("sim", "delete")),
        (ctl_subject, ("", "status")),
    ],
)
def test_malformed_parts_are_refused(call: object, args: tuple[str, ...]) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=r"malformed|not|empty"):
        call(*args)


@given(st.sampled_from(["real", "paper", "sim"]), st.sampled_from(["H0STCNT0", "H0STASP0", "HDFSCNT0"]), keys)
def test_parse_takes_apart_what_the_builders_make(env: str, tr_id: str, key: str) -> None:
    assert parse_subject(data_subject(env, tr_id, key)) == ParsedSubject(env, "data", tr_id, key)
    assert parse_subject(notice_subject(env, "H0STCNI0", key)) == ParsedSubject(
        env, "notice", "H0STCNI0", key
    )


def test_parse_control_subjects_and_refuse_strangers() -> None:
    assert parse_subject("kis.sim.ctl.status") == ParsedSubject("sim", "ctl", verb="status")
    for subject in (
        "kis.sim",
        "nats.sim.H0STCNT0.005930",
        "kis.sim.ctl.nope",
        "kis.sim.H0STCNT0.a.b",
        "kis.sim.x.1",
    ):
        with pytest.raises(ValueError, match=r"contract|token"):
            parse_subject(subject)
