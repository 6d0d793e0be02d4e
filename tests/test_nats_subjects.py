"""The gateway's subject names (docs/gateway.md, "Subject tokens"): escaping, subjects, parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

pytest.importorskip("nats", reason="kis_nats needs nats-py: pip install 'kis-proto[nats]'")

from kis_nats.subjects import (
    Meta,
    ParsedSubject,
    ctl_subject,
    data_subject,
    escape_token,
    format_meta,
    format_received,
    leader_bucket,
    meta_sequence,
    notice_subject,
    parse_meta,
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


def test_the_meta_header_of_the_contract() -> None:
    value = format_meta(47, "2026-09", format_received(1764035000.1234567), 12, "gw-a1")
    assert value == "width=47 era=2026-09 received=1764035000.123457 seq=12 gateway=gw-a1"
    assert parse_meta(value) == Meta(47, "2026-09", 1764035000.123457, 12, "gw-a1")
    # A width no era has: the era item is there, empty.
    assert parse_meta(format_meta(49, "", "1.000000", 1, "g")).era == ""


def test_meta_items_in_any_order_and_unknown_items_are_read() -> None:
    later = "gateway=g2 seq=3 zone=seoul received=5.5 era=2026-08 width=46"
    assert parse_meta(later) == Meta(46, "2026-08", 5.5, 3, "g2")
    assert meta_sequence(later) == ("g2", 3)  # the consumer's cheap reading falls back, not wrong


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("width=47 era= received=1.0 seq=1", "no 'gateway' item"),
        ("width=x era= received=1.0 seq=1 gateway=g", "invalid literal"),
        ("width=47 era received=1.0 seq=1 gateway=g", "not name=value"),
        ("", "no 'width' item"),
        ("width=47 era= received=1.0 seq=x gateway=g", "invalid literal"),
    ],
)
def test_malformed_meta_is_a_value_error_that_says_why(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_meta(value)


def test_the_sequence_reading_needs_only_seq_and_gateway() -> None:
    """The consumer's per-message reading: strict about what it uses, blind to the rest."""
    assert meta_sequence("width=x era received=? seq=7 gateway=g") == ("g", 7)
    for bad, says in [
        ("width=47 era= received=1.0 seq=x gateway=g", "invalid literal"),
        ("width=47 era= received=1.0 seq=1", "no 'gateway' item"),
        ("seq=1", "no 'width' item"),  # too short to be the gateway's: read as parse_meta reads it
    ]:
        with pytest.raises(ValueError, match=says):
            meta_sequence(bad)


@given(
    st.integers(0, 10_000),
    st.sampled_from(["", "2026-08", "2026-09"]),
    st.floats(0, 4e9, allow_nan=False),
    st.integers(1, 2**63),
    st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
)
def test_meta_round_trips(width: int, era: str, received: float, seq: int, gateway: str) -> None:
    value = format_meta(width, era, format_received(received), seq, gateway)
    meta = parse_meta(value)
    assert (meta.width, meta.era, meta.seq, meta.gateway) == (width, era, seq, gateway)
    assert meta_sequence(value) == (gateway, seq)
    assert meta.received == pytest.approx(received, abs=1e-6)
