"""The ``kis-ws`` command line (also ``python -m kis_anyio``).

``kis-ws decode FILE`` reads KIS text messages, one per line (``#`` lines are comments), and
prints what the codec makes of each: records with their friendly fields, acks, errors, keep-alives.
``--jsonl`` prints one JSON object per event instead, every field under its official name.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, time
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from kis_proto import (
    Connected,
    ConnectionClosed,
    LayoutDrift,
    MessageDecoder,
    PingPong,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    UndecodableMessage,
    Unsubscribed,
)
from kis_proto import Event as KISEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | time):
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
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return f"{value:+}" if value < 0 else f"{value}"
    return "-" if value is None else str(value)


def describe(event: KISEvent) -> str:
    """One event as one readable line."""
    if isinstance(event, Record):
        shown = " ".join(f"{key}={_fmt(event[key])}" for key in event.friendly if key != "symbol")
        extra = f" (+{len(event.extra)} unnamed fields)" if event.extra else ""
        if not event.columns:
            return f"{event.tr_id:<9} {event.tr_key:<10} unknown TR, {len(event.raw)} fields"
        return f"{event.tr_id:<9} {event.tr_key:<10} {shown}{extra}".rstrip()
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
        return f"layout      {event.tr_id} records have {event.received} fields, {event.expected} known"
    if isinstance(event, Connected):
        return f"connected   {event.path}"
    if isinstance(event, ConnectionClosed):
        return f"closed      {event.code} {event.reason}".rstrip()
    return f"undecodable {event.failure.name}: {event.reason}"


def decode_lines(lines: Iterable[str], decoder: MessageDecoder) -> Iterable[KISEvent]:
    """Decode each non-comment line as one KIS message."""
    for line in lines:
        text = line.rstrip("\r\n")
        if text and not text.startswith("#"):
            yield from decoder.decode(text)


def _parse_key(text: str) -> tuple[str, str, str]:
    tr_id, sep, rest = text.partition("=")
    key, sep2, iv = rest.partition(":")
    if not (sep and sep2 and tr_id and key and iv):
        raise argparse.ArgumentTypeError("use TR_ID=KEY:IV, e.g. H0STCNI0=<32-char key>:<16-char iv>")
    return tr_id, key, iv


def _decode_command(args: argparse.Namespace, out: TextIO) -> int:
    decoder = MessageDecoder()
    for tr_id, key, iv in args.key:
        decoder.set_key(tr_id, key, iv)
    with (
        open(args.file, encoding="utf-8", errors="surrogateescape") if args.file != "-" else sys.stdin as src
    ):
        for event in decode_lines(src, decoder):
            if args.jsonl:
                out.write(json.dumps(event_to_json(event), ensure_ascii=False, default=_json_default) + "\n")
            else:
                out.write(describe(event) + "\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = argparse.ArgumentParser(prog="kis-ws", description="KIS real-time feed tools")
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode", help="decode recorded KIS text messages, one per line")
    decode.add_argument("file", help="a file of messages, one per line ('-' for standard input)")
    decode.add_argument("--jsonl", action="store_true", help="one JSON object per event")
    decode.add_argument(
        "--key",
        action="append",
        type=_parse_key,
        default=[],
        metavar="TR_ID=KEY:IV",
        help="the AES key and IV of a TR's ack, for encrypted frames (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        return _decode_command(args, out or sys.stdout)
    except BrokenPipeError:  # `kis-ws decode … | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
