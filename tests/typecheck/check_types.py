"""Checked by mypy, never run: the public types say what the docs say."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import assert_never, assert_type

from kis_proto import (
    Connected,
    ConnectionClosed,
    Event,
    FieldValue,
    LayoutDrift,
    PingPong,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
    decode_message,
    records,
)


def typed_attributes(rec: records.H0STCNT0, overseas: records.HDFSCNT0) -> None:
    assert_type(rec.stck_prpr, int | None)
    assert_type(rec.price, int | None)
    assert_type(rec.change, int | None)
    assert_type(rec.prdy_ctrt, Decimal | None)
    assert_type(rec.time, time | None)
    assert_type(rec.symbol, str | None)
    assert_type(overseas.price, Decimal | None)
    assert_type(overseas.change, Decimal | None)
    assert_type(rec["STCK_PRPR"], FieldValue)
    assert_type(rec.raw, tuple[str, ...])


def exhaustive(text: str) -> None:
    for event in decode_message(text):
        assert_type(event, Event)
        match event:
            case Record():
                pass
            case Subscribed() | Unsubscribed() | SubscribeFailed() | ServerError():
                pass
            case PingPong() | UndecodableMessage() | LayoutDrift():
                pass
            case Connected() | ConnectionClosed() | TextReceived():
                pass
            case _:
                assert_never(event)
