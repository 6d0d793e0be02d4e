"""Event classes: frozen, slotted, keyword-only, and the `Event` union lists them all."""

from __future__ import annotations

import dataclasses
import doctest
from typing import get_args

import pytest

import kis_proto
from kis_proto import (
    Connected,
    ConnectionClosed,
    DecodeFailure,
    Event,
    LayoutDrift,
    MsgCode,
    PingPong,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
)

DATACLASS_EVENTS = [
    Subscribed,
    Unsubscribed,
    SubscribeFailed,
    ServerError,
    PingPong,
    UndecodableMessage,
    LayoutDrift,
    Connected,
    ConnectionClosed,
    TextReceived,
]


def test_the_union_is_every_event_class() -> None:
    assert set(get_args(Event)) == {Record, *DATACLASS_EVENTS}


@pytest.mark.parametrize("cls", DATACLASS_EVENTS, ids=lambda c: c.__name__)
def test_events_are_frozen_slotted_keyword_only(cls: type) -> None:
    params = dataclasses.fields(cls)
    assert all(f.kw_only for f in params)
    assert "__slots__" in cls.__dict__
    kwargs = {f.name: _example(f.type) for f in params if f.default is dataclasses.MISSING}
    event = cls(**kwargs)
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, params[0].name, None)


def _example(annotation: object) -> object:
    text = str(annotation)
    if "DecodeFailure" in text:
        return DecodeFailure.BAD_FRAME
    if text == "bool":
        return False
    if text == "int":
        return 1
    return "x"


def test_reply_events_give_the_typed_code() -> None:
    assert Subscribed(tr_id="A", tr_key="B", encrypted=False).code is MsgCode.SUBSCRIBE_SUCCESS
    assert Unsubscribed(tr_id="A", tr_key="B").code is MsgCode.UNSUBSCRIBE_SUCCESS
    assert (
        SubscribeFailed(tr_id="A", tr_key="B", msg_cd="OPSP0008", message="").code
        is MsgCode.MAX_SUBSCRIBE_OVER
    )
    assert ServerError(msg_cd="OPSP1234", message="").code is None


def test_msg_code_texts_and_levels() -> None:
    assert MsgCode.ALREADY_IN_USE_APPKEY.text == "ALREADY IN USE appkey"
    assert MsgCode.ALREADY_IN_USE_APPKEY.session_level
    assert not MsgCode.MAX_SUBSCRIBE_OVER.session_level
    assert MsgCode.lookup("OPSP9999") is MsgCode.JSON_INVALID_FORMAT
    assert MsgCode.lookup("nope") is None


def test_package_docstring_example_runs() -> None:
    result = doctest.testmod(kis_proto, raise_on_error=False)
    assert result.attempted >= 2
    assert result.failed == 0
