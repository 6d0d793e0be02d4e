"""How events look on the command line: one readable line each, or one JSON object each."""

from __future__ import annotations

import json
from datetime import date
from datetime import time as day_time
from decimal import Decimal

from kis_proto import (
    Connected,
    ConnectionClosed,
    EventsDropped,
    FeedEvent,
    LayoutDrift,
    MarketSession,
    PingPong,
    Reconnecting,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
)
from kis_proto import Event as KISEvent
from kis_proto.symbols import listing

__all__ = ["describe", "event_to_json", "json_line", "status_line"]


def json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, MarketSession):
        return value.label
    if isinstance(value, date | day_time):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def event_to_json(event: KISEvent) -> dict[str, object]:
    """One event as a JSON-ready dict: records with every column and friendly name, typed."""
    if isinstance(event, Record):
        return {
            "event": "record",
            "tr_id": event.tr_id,
            "tr_key": event.tr_key,
            **event.to_dict(),
            "extra": list(event.extra),
        }
    if isinstance(event, UndecodableMessage):
        return {
            "event": "undecodable",
            "failure": event.failure.name,
            "reason": event.reason,
            "tr_id": event.tr_id,
        }
    if isinstance(event, Subscribed):
        return {
            "event": "subscribed",
            "tr_id": event.tr_id,
            "tr_key": event.tr_key,
            "encrypted": event.encrypted,
            "already_subscribed": event.already_subscribed,
        }
    fields = {name: getattr(event, name) for name in event.__dataclass_fields__}
    return {"event": type(event).__name__, **fields}


def _fmt(value: object) -> str:
    if isinstance(value, MarketSession):
        return value.label
    if isinstance(value, day_time):  # the zone (KST for Korean times) is implied on screen
        return value.strftime("%H:%M:%S")
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return f"{value:+}" if value < 0 else f"{value}"
    return "-" if value is None else str(value)


def describe(event: KISEvent) -> str:
    """One event as one readable line."""
    if isinstance(event, Record) and (notice := notice_text(event)) is not None:
        return f"{event.tr_id:<9} {mask(event.tr_key):<10} {notice}"
    if isinstance(event, Record):
        shown = " ".join(f"{key}={_fmt(event[key])}" for key in event.friendly if key != "symbol")
        shown += _best_quotes(event)
        extra = f" (+{len(event.extra)} unnamed fields)" if event.extra else ""
        if not event.columns:
            return f"{event.tr_id:<9} {event.tr_key:<10} unknown TR, {len(event.raw)} fields"
        listed = listing(event.tr_key)
        name = f"{listed.name} " if listed is not None else ""
        return f"{event.tr_id:<9} {event.tr_key:<10} {name}{shown}{extra}".rstrip()
    if isinstance(event, Subscribed):
        again = " (already subscribed)" if event.already_subscribed else ""
        kind = "encrypted" if event.encrypted else "plain"
        return f"subscribed  {event.tr_id} {event.tr_key} ({kind}){again}"
    if isinstance(event, Unsubscribed):
        return f"unsubscribed {event.tr_id} {event.tr_key}"
    if isinstance(event, SubscribeFailed):
        return f"refused     {event.tr_id} {event.tr_key}: {event.msg_cd} {event.message}"
    if isinstance(event, ServerError):
        return f"server error {event.msg_cd}: {event.message}"
    if isinstance(event, PingPong):
        return "PINGPONG    (a client echoes this text back)"
    if isinstance(event, LayoutDrift):
        widths = ", ".join(map(str, event.known or (event.expected,)))
        return f"layout      {event.tr_id} records have {event.received} fields; known layouts have {widths}"
    if isinstance(event, Connected):
        return f"connected   {event.path}"
    if isinstance(event, ConnectionClosed):
        return f"closed      {event.code} {event.reason}".rstrip()
    if isinstance(event, TextReceived):
        return f"text        {len(event.text)} characters"
    return f"undecodable {event.failure.name}: {event.reason}"


def mask(secretish: str) -> str:
    """An HTS ID or account number as shown on screen: the first two characters, then stars."""
    return secretish[:2] + "*" * max(3, len(secretish) - 2) if secretish else secretish


_SIDES = {"01": "sell", "02": "buy"}
# The stock and futures notices' side, symbol, quantity, price and order number columns.
_NOTICE_COLUMNS = ("SELN_BYOV_CLS", "STCK_SHRN_ISCD", "CNTG_QTY", "CNTG_UNPR", "ODER_NO")


def notice_text(rec: Record) -> str | None:
    """What an execution notice says, readably: acceptance, fill or refusal; side, symbol, quantity,
    price and order number. None for a record that is no notice."""
    if "CNTG_YN" in rec:  # domestic and overseas stock, domestic futures and options
        refused, filled = rec.get("RFUS_YN") == "1", rec.get("CNTG_YN") == "2"
        kind = "refused" if refused else "fill" if filled else "accepted"
        side, symbol, qty, price, order = (rec.get(name) for name in _NOTICE_COLUMNS)
    elif "SLL_BUY_DVSN_CD" in rec:  # overseas futures: HDFFF2C0 fills, HDFFF1C0 orders
        filled = "CCLD_QTY" in rec
        kind = "fill" if filled else "order"
        side, symbol = rec.get("SLL_BUY_DVSN_CD"), rec.get("SERIES")
        qty = rec.get("CCLD_QTY" if filled else "ORD_QTY")
        price = rec.get("FM_CCLD_PRIC" if filled else "FM_LMT_PRIC")
        order = rec.get("ODNO")
    else:
        return None
    listed = listing(str(symbol)) if symbol else None
    name = f" {listed.name}" if listed is not None else ""
    side_text = _SIDES.get(str(side), f"side {side}")
    return f"{kind:<8} {side_text:<4} {symbol}{name} qty={_fmt(qty)} price={_fmt(price)} order={order}"


def _best_quotes(rec: Record) -> str:
    """`` bid=… ask=… mid=…`` for an order book (KRX ``BIDP1``/``ASKP1``, overseas ``PBID1``/``PASK1``)."""
    if "price" in rec.friendly:
        return ""
    bid, ask = rec.get("BIDP1", rec.get("PBID1")), rec.get("ASKP1", rec.get("PASK1"))
    if not isinstance(bid, int | Decimal) or not isinstance(ask, int | Decimal):
        return ""
    total = Decimal(bid) + Decimal(ask)
    # Won: a whole number or .5; decimals keep their scale (269.99 and 270.01 give 270.0000).
    mid = total // 2 if isinstance(bid, int) and isinstance(ask, int) and total % 2 == 0 else total / 2
    return f" bid={_fmt(bid)} ask={_fmt(ask)} mid={_fmt(mid)}"


def json_line(event: KISEvent) -> str:
    """`event_to_json` as one line of JSON (Decimal as text, sessions by label, times ISO)."""
    return json.dumps(event_to_json(event), ensure_ascii=False, default=json_default)


def status_line(event: FeedEvent) -> str | None:
    """A line about the connection (for standard error), or None for data."""
    # A ConnectionClosed gets no line: the Reconnecting after it says the cause once.
    if isinstance(event, Connected | Subscribed | SubscribeFailed | ServerError | UndecodableMessage):
        return describe(event)
    if isinstance(event, Reconnecting):
        return f"reconnecting in {event.delay:.1f} s (attempt {event.attempt}): {event.reason}"
    if isinstance(event, EventsDropped):
        # The feed's buffer overflowed, or (from a gateway) its seq says they were lost upstream.
        return f"dropped     {event.count} records (lost before they reached this terminal)"
    return None
