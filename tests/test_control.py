"""Control JSON: acks, refusals, session errors, keep-alives and malformed JSON."""

from __future__ import annotations

import json

import pytest

from kis_proto import (
    DecodeFailure,
    MsgCode,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    UndecodableMessage,
    Unsubscribed,
    decode_message,
)
from kis_proto._codes import SESSION_CODES

APPROVAL_KEY = "3daa450a-0685-4c31-b015-99c5e5f4b11d"


def reply(
    code: str,
    msg: str,
    *,
    rt_cd: str = "1",
    tr_id: str = "H0STCNT0",
    tr_key: str = "005930",
    encrypt: str = "N",
    output: dict[str, str] | None = None,
    header: bool = True,
) -> str:
    """A control reply shaped like the captured ones (PROTOCOL.md §4)."""
    body: dict[str, object] = {"rt_cd": rt_cd, "msg_cd": code, "msg1": msg}
    if output is not None:
        body["output"] = output
    message: dict[str, object] = {"body": body}
    if header:
        message = {"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt}, **message}
    return json.dumps(message)


# The event every documented code becomes when it answers a request for H0STCNT0/005930.
EXPECTED_CLASS = {
    MsgCode.SUBSCRIBE_SUCCESS: Subscribed,
    MsgCode.ALREADY_IN_SUBSCRIBE: Subscribed,
    MsgCode.UNSUBSCRIBE_SUCCESS: Unsubscribed,
    MsgCode.UNSUBSCRIBE_NOT_FOUND: SubscribeFailed,
    MsgCode.SUBSCRIBE_INTERNAL_ERROR: SubscribeFailed,
    MsgCode.MAX_SUBSCRIBE_OVER: SubscribeFailed,
    MsgCode.MCI_SEND_FAILED: SubscribeFailed,
    MsgCode.INVALID_TR_ID: SubscribeFailed,
    MsgCode.INVALID_TR_KEY: SubscribeFailed,
} | dict.fromkeys(SESSION_CODES, ServerError)


def test_every_documented_code_is_classified() -> None:
    assert set(EXPECTED_CLASS) == set(MsgCode)
    assert len(MsgCode) == 28  # the table of PROTOCOL.md §4


@pytest.mark.parametrize("code", list(MsgCode), ids=lambda c: c.value)
def test_each_code_becomes_its_event(code: MsgCode) -> None:
    rt_cd = "0" if code in (MsgCode.SUBSCRIBE_SUCCESS, MsgCode.UNSUBSCRIBE_SUCCESS) else "1"
    [event] = decode_message(reply(code.value, code.text, rt_cd=rt_cd))
    assert type(event) is EXPECTED_CLASS[code]
    assert isinstance(event, Subscribed | Unsubscribed | SubscribeFailed | ServerError)
    assert event.msg_cd == code.value
    if isinstance(event, SubscribeFailed | ServerError):
        assert event.code is code
        assert event.rt_cd == rt_cd
    if not isinstance(event, ServerError):
        assert (event.tr_id, event.tr_key) == ("H0STCNT0", "005930")


def test_subscribe_success_of_a_notice_tr() -> None:
    text = reply(
        "OPSP0000",
        "SUBSCRIBE SUCCESS",
        rt_cd="0",
        tr_id="H0STCNI0",
        tr_key="myhtsid",
        encrypt="Y",
        output={"iv": "d59d91fcf9fd0044", "key": "iuheqrmvfxoceaxeyqgjwesozgizmmgx"},
    )
    [event] = decode_message(text)
    assert event == Subscribed(
        tr_id="H0STCNI0",
        tr_key="myhtsid",
        encrypted=True,
        key="iuheqrmvfxoceaxeyqgjwesozgizmmgx",
        iv="d59d91fcf9fd0044",
        message="SUBSCRIBE SUCCESS",
    )
    # The AES key and IV are secrets of the session: not in the repr.
    assert "iuheq" not in repr(event)
    assert "d59d9" not in repr(event)


def test_already_in_subscribe_counts_as_subscribed() -> None:
    [event] = decode_message(reply("OPSP0002", "ALREADY IN SUBSCRIBE"))
    assert isinstance(event, Subscribed)
    assert event.already_subscribed
    assert event.key is None


def test_unknown_code_is_kept_and_reported() -> None:
    [event] = decode_message(reply("OPSP7777", "SOMETHING NEW", rt_cd="1"))
    assert isinstance(event, SubscribeFailed)
    assert event.msg_cd == "OPSP7777"
    assert event.code is None
    assert event.message == "SOMETHING NEW"


def test_unknown_success_code_decided_by_message_text() -> None:
    [sub] = decode_message(
        reply("OPSP0100", "SUBSCRIBE OK", rt_cd="0", output={"iv": "a" * 16, "key": "b" * 32})
    )
    assert isinstance(sub, Subscribed)
    assert sub.key == "b" * 32
    [unsub] = decode_message(reply("OPSP0101", "UNSUBSCRIBE OK", rt_cd="0"))
    assert isinstance(unsub, Unsubscribed)


def test_body_only_reply_is_a_session_event() -> None:
    [event] = decode_message(
        '{"body":{"rt_cd":"1","msg_cd":"OPSP0003","msg1":"UNSUBSCRIBE ERROR(not found!)"}}'
    )
    assert isinstance(event, ServerError)
    assert event.code is MsgCode.UNSUBSCRIBE_NOT_FOUND


@pytest.mark.parametrize(
    "msg1",
    [
        f"invalid approval : {APPROVAL_KEY}",
        f"invalid approval:{APPROVAL_KEY} (expired)",
        f"INVALID APPROVAL : {APPROVAL_KEY}",
        f"key {APPROVAL_KEY} is unknown",
    ],
)
def test_echoed_approval_key_is_redacted(msg1: str) -> None:
    [event] = decode_message(reply("OPSP0011", msg1, tr_id="(null)", tr_key=""))
    assert isinstance(event, ServerError)
    assert event.code is MsgCode.INVALID_APPROVAL
    assert APPROVAL_KEY not in event.message
    assert APPROVAL_KEY not in repr(event)
    assert "<redacted>" in event.message


def test_session_error_with_a_tr_keeps_it() -> None:
    [event] = decode_message(reply("OPSP0011", "invalid approval : x", tr_id="H0STASP0", tr_key="005930"))
    assert isinstance(event, ServerError)
    assert (event.tr_id, event.tr_key) == ("H0STASP0", "005930")


@pytest.mark.parametrize(
    "text",
    [
        '{"header":{"tr_id":"PINGPONG","datetime":"20230502221924"}}',
        '{"header": {"datetime": "20260101000000", "tr_id": "PINGPONG"}}',
        '  {"header":{"tr_id":"PINGPONG"}}',
    ],
)
def test_pingpong_variants_keep_their_exact_text(text: str) -> None:
    assert decode_message(text) == [PingPong(text=text)]


@pytest.mark.parametrize(
    ("text", "failure"),
    [
        ("{", DecodeFailure.UNKNOWN_MESSAGE),
        ("{'header': {'tr_id': '(null)'}}", DecodeFailure.UNKNOWN_MESSAGE),  # a Python repr, not JSON
        ("[1, 2]", DecodeFailure.UNKNOWN_MESSAGE),
        ('{"header": 1, "body": {}}', DecodeFailure.BAD_CONTROL),
        ('{"header": {}, "body": []}', DecodeFailure.BAD_CONTROL),
        ('{"header": {"tr_id": "H0STCNT0"}}', DecodeFailure.BAD_CONTROL),
        ('{"header": {"tr_id": "H0STCNT0"}, "body": {}}', DecodeFailure.BAD_CONTROL),
        ("{}", DecodeFailure.BAD_CONTROL),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, DecodeFailure.UNKNOWN_MESSAGE),
        ('{"body": {"msg_cd": ' + "9" * 5000 + "}}", DecodeFailure.UNKNOWN_MESSAGE),
    ],
    ids=[
        "truncated",
        "python-repr",
        "array",
        "header-int",
        "body-list",
        "no-body",
        "empty-body",
        "empty",
        "deep",
        "huge-int",
    ],
)
def test_malformed_json_is_reported_not_raised(text: str, failure: DecodeFailure) -> None:
    [event] = decode_message(text)
    assert isinstance(event, UndecodableMessage)
    assert event.failure is failure
    assert event.raw == text


def test_non_string_scalars_are_tolerated() -> None:
    [event] = decode_message(
        '{"header":{"tr_id":"H0STCNT0","tr_key":5930},"body":{"rt_cd":1,"msg_cd":"OPSP0008","msg1":null}}'
    )
    assert event == SubscribeFailed(tr_id="H0STCNT0", tr_key="5930", msg_cd="OPSP0008", message="", rt_cd="1")
