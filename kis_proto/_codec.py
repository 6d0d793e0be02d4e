"""The KIS message codec: one WebSocket text message in, events out; requests out as JSON.

Pure functions and one small stateful helper (`MessageDecoder`), no I/O. The wire format is in
PROTOCOL.md §3–§7:

* data frames ``E|TR_ID|NNN|f^f^…``: E is ``0`` (plain) or ``1`` (AES, payload base64), NNN the
  record count; records are concatenated with the same ``^``, so a record is ``len(fields) // NNN``
  fields wide, whatever this version expects (KIS appends fields over time);
* control JSON ``{"header": {...}, "body": {"rt_cd", "msg_cd", "msg1", "output": {"iv", "key"}}}``;
* the keep-alive ``{"header": {"tr_id": "PINGPONG", "datetime": ...}}``, to be echoed verbatim.

Decoding never raises, whatever the input: what cannot be used becomes an `UndecodableMessage`
that keeps the raw text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._codes import MsgCode
from ._crypto import DecryptError, decrypt_payload
from ._errors import LocalProtocolError
from ._events import (
    DecodeFailure,
    Event,
    LayoutDrift,
    PingPong,
    ServerError,
    Subscribed,
    SubscribeFailed,
    UndecodableMessage,
    Unsubscribed,
)
from ._fields import Record
from .records import LAYOUTS_BY_ID

__all__ = ["MessageDecoder", "decode_message", "subscribe_message", "unsubscribe_message"]

#: KIS allows up to 999 records in one frame (a three-digit count); 19 have been seen.
MAX_RECORDS_PER_FRAME = 999

# Every spelling of a valid record count ("001", "01", "1" … "999"): one lookup on the hot path
# instead of isdigit/isascii/int, and it refuses "000", "-01", "+1", " 1" and non-ASCII digits.
_COUNTS: dict[str, int] = {
    text: n for n in range(1, MAX_RECORDS_PER_FRAME + 1) for text in (str(n), f"{n:02d}", f"{n:03d}")
}
_TR_ID = re.compile(r"[A-Z0-9]{1,16}\Z")
# Real TR ids are eight upper-case letters and digits (H0STCNT0, HDFSCNT0, H0STCNI9).
_SEND_TR_ID = re.compile(r"[A-Z][A-Z0-9]{7}\Z")
# Symbols, index codes, ISINs, futures codes, D/R-prefixed overseas keys and HTS ids.
_TR_KEY = re.compile(r"[0-9A-Za-z._\-]{1,32}\Z")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# A TR this version does not know: plain records, no layout to drift from.
_UNKNOWN_TR: tuple[type[Record], dict[int, type[Record]]] = (Record, {})
# Each TR id's classes by width: the hot path's one lookup.
_WIDTHS: dict[str, dict[int, type[Record]]] = {tr_id: widths for tr_id, (_, widths) in LAYOUTS_BY_ID.items()}
# Records are built without __init__ (which copies its list): the decoder sets their slots.
_new = object.__new__
_APPROVAL_ECHO = re.compile(r"(invalid approval\s*:\s*)\S.*", re.IGNORECASE | re.DOTALL)

Keys = Mapping[str, tuple[str, str]]


def _redact(message: str) -> str:
    """Remove an echoed approval key (KIS puts it in ``invalid approval : <key>``)."""
    message = _APPROVAL_ECHO.sub(r"\1<redacted>", message)
    return _UUID.sub("<redacted>", message)


def _text(value: object) -> str:
    """A JSON scalar as text; anything else (objects, lists, null) as empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value)


def _decode_unsplit(text: str, learn: dict[str, tuple[str, str]] | None) -> list[Event]:
    """A message that is not four ``|``-separated parts (or not text at all): no data frame."""
    if not isinstance(text, str):  # the type says str; "never raises" covers callers who err
        return [_undecodable(DecodeFailure.UNKNOWN_MESSAGE, "not text", repr(text)[:200])]  # type: ignore[unreachable]
    if text.split("|", 1)[0] not in ("0", "1"):
        return [_decode_other(text, learn)]
    return [_undecodable(DecodeFailure.BAD_FRAME, "expected E|TR_ID|COUNT|payload", text)]


def _decode_frame(
    text: str,
    flag: str,
    tr_id: str,
    count_text: str,
    payload: str,
    keys: Keys | None,
    drift_seen: set[tuple[str, int]] | None,
    learn: dict[str, tuple[str, str]] | None,
) -> list[Event]:
    """Any message of four ``|``-separated parts but the usual frame, which `decode_message` and
    `MessageDecoder.decode` build themselves: control JSON, checks, decryption, drift, counts.

    `learn`, when given, takes the (key, iv) of every SUBSCRIBE SUCCESS decoded (`MessageDecoder`).
    """
    if flag != "0" and flag != "1":
        return [_decode_other(text, learn)]
    known = LAYOUTS_BY_ID.get(tr_id)
    if known is None:
        if not _TR_ID.match(tr_id):
            return [_undecodable(DecodeFailure.BAD_FRAME, "the TR id is malformed", text)]
        known = _UNKNOWN_TR
    count = _COUNTS.get(count_text)
    if count is None:
        return [_undecodable(DecodeFailure.BAD_FRAME, "the record count is not 1 to 999", text, tr_id)]
    if flag == "1":
        pair = keys.get(tr_id) if keys is not None else None
        if pair is None:
            reason = f"encrypted {tr_id} frame but no key: no SUBSCRIBE SUCCESS with a key was seen for it"
            return [_undecodable(DecodeFailure.NO_KEY, reason, text, tr_id)]
        try:
            payload = decrypt_payload(payload, pair[0], pair[1])
        except DecryptError as exc:
            return [_undecodable(DecodeFailure.DECRYPT_FAILED, f"{tr_id}: {exc}", text, tr_id)]

    events: list[Event] = []
    if count == 1:
        width = payload.count("^") + 1
        cls = known[1].get(width) or _drifted(known, tr_id, width, drift_seen, events)
        rec = _new(cls)
        rec._tr_id = tr_id
        rec._p = payload
        rec._n = 0
        events.append(rec)
        return events

    fields = payload.split("^")
    total = len(fields)
    width, rest = divmod(total, count)
    if rest or not width:
        reason = f"{total} fields do not split into {count} records"
        return [_undecodable(DecodeFailure.BAD_RECORD_COUNT, reason, text, tr_id)]
    cls = known[1].get(width) or _drifted(known, tr_id, width, drift_seen, events)
    # The records share the frame's one split, each at its offset, without a slice of its own;
    # except where the layout is wider than the records (drift): its columns past a record's end
    # would read the next record, so each gets its own fields.
    new = _new
    if width >= (cls.width or 0):
        for start in range(0, total, width):
            rec = new(cls)
            rec._tr_id = tr_id
            rec._f = fields
            rec._o = start
            rec._n = width
            rec._p = None
            events.append(rec)
        return events
    for start in range(0, total, width):
        rec = new(cls)
        own = fields[start : start + width]
        rec._tr_id = tr_id
        rec._o = 0
        rec._f = own
        rec._n = width
        rec._p = own
        events.append(rec)
    return events


def _drifted(
    known: tuple[type[Record], dict[int, type[Record]]],
    tr_id: str,
    width: int,
    drift_seen: set[tuple[str, int]] | None,
    events: list[Event],
) -> type[Record]:
    """The class of records `width` fields wide, which no era of the TR has: today's layout names
    the prefix and the rest stays in `raw`. Adds the `LayoutDrift` to `events` (once per (TR,
    width) for a `MessageDecoder`; a TR this version does not know has no layout to drift from)."""
    cls = known[0]
    if cls is not Record and (drift_seen is None or (tr_id, width) not in drift_seen):
        if drift_seen is not None:
            drift_seen.add((tr_id, width))
        events.append(
            LayoutDrift(tr_id=tr_id, expected=cls.width or 0, received=width, known=tuple(known[1]))
        )
    return cls


def _undecodable(
    failure: DecodeFailure, reason: str, raw: str, tr_id: str | None = None
) -> UndecodableMessage:
    return UndecodableMessage(failure=failure, reason=reason, raw=raw, tr_id=tr_id)


def _decode_control(text: str) -> Event:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return _undecodable(DecodeFailure.UNKNOWN_MESSAGE, "starts like JSON but does not parse", text)
    # Text that starts with "{" and parses is a JSON object: no other type can follow.
    header = message.get("header")
    body = message.get("body")
    if header is not None and not isinstance(header, dict):
        return _undecodable(DecodeFailure.BAD_CONTROL, "the header is not an object", text)
    if body is not None and not isinstance(body, dict):
        return _undecodable(DecodeFailure.BAD_CONTROL, "the body is not an object", text)
    header = header or {}
    tr_id = _text(header.get("tr_id"))
    if tr_id == "PINGPONG":
        return PingPong(text=text)
    if body is None:
        return _undecodable(DecodeFailure.BAD_CONTROL, "a control message without a body", text)
    tr_key = _text(header.get("tr_key"))
    msg_cd = _text(body.get("msg_cd"))
    rt_cd = _text(body.get("rt_cd"))
    message_text = _redact(_text(body.get("msg1")))
    if not msg_cd and not rt_cd:
        return _undecodable(DecodeFailure.BAD_CONTROL, "a body without msg_cd or rt_cd", text)
    code = MsgCode.lookup(msg_cd)
    if tr_id in ("", "(null)") or (code is not None and code.session_level):
        if tr_id == "(null)":
            tr_id = ""
        return ServerError(msg_cd=msg_cd, message=message_text, rt_cd=rt_cd, tr_id=tr_id, tr_key=tr_key)
    if code is MsgCode.SUBSCRIBE_SUCCESS or code is MsgCode.ALREADY_IN_SUBSCRIBE:
        return _subscribed(header, body, tr_id, tr_key, msg_cd, message_text, code)
    if code is MsgCode.UNSUBSCRIBE_SUCCESS:
        return Unsubscribed(tr_id=tr_id, tr_key=tr_key, msg_cd=msg_cd, message=message_text)
    if code is None and rt_cd == "0":
        # An unknown success code: decide as the official client does, by the message text.
        if message_text.upper().startswith("UNSUB"):
            return Unsubscribed(tr_id=tr_id, tr_key=tr_key, msg_cd=msg_cd, message=message_text)
        return _subscribed(header, body, tr_id, tr_key, msg_cd, message_text, code)
    return SubscribeFailed(tr_id=tr_id, tr_key=tr_key, msg_cd=msg_cd, message=message_text, rt_cd=rt_cd)


def _subscribed(
    header: dict[str, Any],
    body: dict[str, Any],
    tr_id: str,
    tr_key: str,
    msg_cd: str,
    message: str,
    code: MsgCode | None,
) -> Subscribed:
    output = body.get("output")
    key = iv = None
    if isinstance(output, dict):
        key = _text(output.get("key")) or None
        iv = _text(output.get("iv")) or None
    return Subscribed(
        tr_id=tr_id,
        tr_key=tr_key,
        encrypted=_text(header.get("encrypt")) == "Y",
        key=key,
        iv=iv,
        already_subscribed=code is MsgCode.ALREADY_IN_SUBSCRIBE,
        msg_cd=msg_cd,
        message=message,
    )


def _decode_other(text: str, learn: dict[str, tuple[str, str]] | None = None) -> Event:
    """Anything that is not a well-flagged data frame: control JSON, or an undecodable message."""
    if text[:1] in ("0", "1"):
        return _undecodable(DecodeFailure.BAD_FRAME, "the encryption flag is neither 0 nor 1", text)
    if text.lstrip()[:1] == "{":
        event = _decode_control(text)
        if learn is not None and type(event) is Subscribed and event.key is not None and event.iv is not None:
            learn[event.tr_id] = (event.key, event.iv)
        return event
    return _undecodable(DecodeFailure.UNKNOWN_MESSAGE, "neither a data frame nor JSON", text)


def decode_message(text: str, *, keys: Keys | None = None) -> list[Event]:
    """Decode one KIS text message (the content of one WebSocket TEXT frame) into events.

    Data frames give one `Record` per record (of the TR's generated class, or plain `Record` for
    a TR this version does not know) and, when the record width differs from the known layout, a
    `LayoutDrift` before them. Control JSON gives `Subscribed`, `Unsubscribed`, `SubscribeFailed`,
    `ServerError` or `PingPong`. Anything else gives an `UndecodableMessage` carrying the text.

    `keys` maps a TR id to the (key, iv) strings of its SUBSCRIBE SUCCESS ack, for encrypted
    frames. This function keeps no state, so it reports drift on every frame; `MessageDecoder`
    reports it once and learns keys from the acks it decodes.

    Never raises.
    """
    try:
        flag, tr_id, count_text, payload = text.split("|", 3)
    except (ValueError, AttributeError, TypeError):
        return _decode_unsplit(text, None)
    if count_text == "001" and flag == "0":
        # The usual frame, one plain record of a known TR and width, built here without a call
        # (the same lines are in MessageDecoder.decode; `_decode_frame` takes the rest). Its width is
        # counted, not split: the record splits its text when first read (Record._tail).
        try:
            cls = _WIDTHS[tr_id][payload.count("^") + 1]
        except KeyError:
            pass
        else:
            rec = _new(cls)
            rec._tr_id = tr_id
            rec._p = payload
            rec._n = 0
            return [rec]
    return _decode_frame(text, flag, tr_id, count_text, payload, keys, None, None)


class MessageDecoder:
    """`decode_message` with memory: AES keys learned from acks, drift reported once per width.

    One per connection. Not thread-safe (like the connection that owns it).
    """

    __slots__ = ("_drift_seen", "_keys")

    def __init__(self, keys: Keys | None = None) -> None:
        self._keys: dict[str, tuple[str, str]] = dict(keys or {})
        self._drift_seen: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"<MessageDecoder keys for {sorted(self._keys)}>"

    @property
    def keys(self) -> Mapping[str, tuple[str, str]]:
        """The (key, iv) pair held for each TR id."""
        return self._keys

    def set_key(self, tr_id: str, key: str, iv: str) -> None:
        """Hold `key`/`iv` for `tr_id`'s encrypted frames, replacing any earlier pair."""
        self._keys[tr_id] = (key, iv)

    def decode(self, text: str) -> list[Event]:
        """Decode one text message; see `decode_message`. Never raises."""
        try:
            flag, tr_id, count_text, payload = text.split("|", 3)
        except (ValueError, AttributeError, TypeError):
            return _decode_unsplit(text, self._keys)
        if count_text == "001" and flag == "0":
            # The usual frame, one plain record of a known TR and width, built here without a call
            # (the same lines are in decode_message; `_decode_frame` takes the rest). Its width is
            # counted, not split: the record splits its text when first read (Record._tail).
            try:
                cls = _WIDTHS[tr_id][payload.count("^") + 1]
            except KeyError:
                pass
            else:
                rec = _new(cls)
                rec._tr_id = tr_id
                rec._p = payload
                rec._n = 0
                return [rec]
        return _decode_frame(text, flag, tr_id, count_text, payload, self._keys, self._drift_seen, self._keys)


def check_approval_key(approval_key: str) -> None:
    """Raise `LocalProtocolError` unless `approval_key` looks usable; the error never repeats it."""
    if not isinstance(approval_key, str) or not approval_key or not approval_key.isprintable():
        raise LocalProtocolError(
            "approval_key must be the non-empty key from POST /oauth2/Approval (printable text)"
        )


def check_subscription(tr_id: str, tr_key: str) -> None:
    """Raise `LocalProtocolError` unless (tr_id, tr_key) could be sent in a request."""
    if not isinstance(tr_id, str) or not _SEND_TR_ID.match(tr_id):
        raise LocalProtocolError(
            f"tr_id {tr_id!r} is malformed: real-time TR ids are 8 upper-case letters and digits, "
            "e.g. 'H0STCNT0'"
        )
    if not isinstance(tr_key, str) or not _TR_KEY.match(tr_key):
        raise LocalProtocolError(
            f"tr_key {tr_key!r} is malformed: give a symbol ('005930', 'DNASAAPL') or, for execution "
            "notices, your HTS ID (1-32 letters, digits, '.', '_' or '-')"
        )


def subscribe_message(
    approval_key: str,
    tr_id: str,
    tr_key: str,
    *,
    custtype: str = "P",
    subscribe: bool = True,
) -> str:
    """The JSON text of one register (tr_type "1") or release (tr_type "2") request.

    Every request carries the approval key in its own header; there is no login message
    (PROTOCOL.md §3, §11a). Raises `LocalProtocolError` for a malformed argument; the error never
    repeats the approval key.
    """
    check_approval_key(approval_key)
    check_subscription(tr_id, tr_key)
    if custtype not in ("P", "B"):
        raise LocalProtocolError(f"custtype must be 'P' (individual) or 'B' (corporate), not {custtype!r}")
    message = {
        "header": {
            "approval_key": approval_key,
            "custtype": custtype,
            "tr_type": "1" if subscribe else "2",
            "content-type": "utf-8",
        },
        "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
    }
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def unsubscribe_message(approval_key: str, tr_id: str, tr_key: str, *, custtype: str = "P") -> str:
    """The JSON text of a release request: `subscribe_message(..., subscribe=False)`."""
    return subscribe_message(approval_key, tr_id, tr_key, custtype=custtype, subscribe=False)
