"""Checked by mypy, never run: the public types say what the docs say."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import TYPE_CHECKING, assert_never, assert_type

from kis_proto import (
    Connected,
    ConnectionClosed,
    Event,
    LayoutDrift,
    MarketSession,
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
from kis_proto.layouts import FieldValue

if TYPE_CHECKING:
    import kis_anyio
    from kis_anyio import blocking


def typed_attributes(rec: records.H0STCNT0, overseas: records.HDFSCNT0) -> None:
    # What KIS always sends on a trade is typed without None (EmptyFieldError if it ever is not).
    assert_type(rec.stck_prpr, int)
    assert_type(rec.price, int)
    assert_type(rec.volume, int)
    assert_type(rec.time, time)
    assert_type(rec.symbol, str)
    assert_type(rec.change, int | None)
    assert_type(rec.prdy_ctrt, Decimal | None)
    assert_type(rec.session, MarketSession | None)
    assert_type(overseas.price, Decimal)
    assert_type(overseas.change, Decimal | None)
    assert_type(rec.get("STCK_PRPR"), FieldValue)
    assert_type(rec["STCK_PRPR"], FieldValue)
    assert_type(rec.raw, tuple[str, ...])


def vwap(trades: list[records.H0STCNT0]) -> Decimal:
    """A small program of the kind users write: arithmetic on price and volume, no casts."""
    amount = sum(trade.price * trade.volume for trade in trades)
    volume = sum(trade.volume for trade in trades)
    return Decimal(amount) / volume if volume else Decimal(0)


async def typed_callbacks(ws: kis_anyio.WSClient, blocking_ws: blocking.WSClient) -> None:
    """A callback per TR, typed by its record class: no isinstance, no casts."""

    def on_trade(rec: records.H0STCNT0) -> None:
        assert_type(rec.price * rec.volume, int)

    async def on_book(rec: records.H0STASP0) -> None:
        assert_type(rec.askp1, int | None)

    await ws.subscribe(records.H0STCNT0, "005930", on_trade)
    await ws.subscribe(records.H0STASP0, ["005930"], on_book)
    blocking_ws.subscribe(records.H0STCNT0, "005930", on_trade)


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
