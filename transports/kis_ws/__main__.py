"""The ``kis-ws`` command line (also ``python -m kis_ws``).

``kis-ws decode FILE`` reads KIS text messages, one per line (``#`` lines are comments), and
prints what the codec makes of each: records with their friendly fields, acks, errors, keep-alives.
``--jsonl`` prints one JSON object per event instead, every field under its official name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import date
from datetime import time as day_time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from kis_anyio import Faults, Feed, connect, read_recording, simulate

from kis_proto import (
    ERAS,
    RECORDING_HEADER,
    Connected,
    ConnectionClosed,
    Credentials,
    EventsDropped,
    KISConfig,
    KISServerConfig,
    LayoutDrift,
    LocalProtocolError,
    MarketSession,
    MessageDecoder,
    PingPong,
    Reconnecting,
    Record,
    ServerError,
    Subscribed,
    SubscribeFailed,
    TextReceived,
    UndecodableMessage,
    Unsubscribed,
    listing,
    recording_line,
)
from kis_proto import Event as KISEvent

from ._table import LiveBoard

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


def _json_default(value: object) -> str:
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
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return f"{value:+}" if value < 0 else f"{value}"
    return "-" if value is None else str(value)


def describe(event: KISEvent) -> str:
    """One event as one readable line."""
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


def parse_subscription(text: str) -> tuple[str, str]:
    """``TR:KEY`` or a bare key: 6 digits → H0STCNT0, ``D``/``R`` + exchange + symbol → HDFSCNT0."""
    tr_id, sep, key = text.partition(":")
    if sep:
        return tr_id.upper(), key
    if len(text) > 4 and text[0] in "DR" and text[1:4].isalpha():
        return "HDFSCNT0", text
    return "H0STCNT0", text


def _faults(text: str) -> Faults:
    try:
        return Faults.parse(text)
    except (LocalProtocolError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _price(text: str) -> tuple[str, Decimal]:
    key, sep, value = text.partition("=")
    try:
        price = Decimal(value)
    except ArithmeticError:
        price = Decimal(0)
    if not sep or not key or not price.is_finite() or price <= 0:
        raise argparse.ArgumentTypeError("use KEY=PRICE, e.g. 005930=75000 or DNASAAPL=190.5")
    return key, price


def _add_simulator_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The options that shape the simulated market (for watch and record: when it is used)."""
    parser.add_argument("--seed", type=int, default=None, help=f"{prefix}the random seed")
    parser.add_argument(
        "--layouts",
        choices=ERAS,
        default=None,
        metavar="ERA",
        help=f"{prefix}the layouts of an era: {', '.join(ERAS)} (default: today's, {ERAS[-1]})",
    )
    parser.add_argument(
        "--layout",
        type=int,
        default=0,
        help=f"{prefix}+N fields per record (a layout newer than any known), -N (older)",
    )
    parser.add_argument(
        "--clock",
        choices=["open", "kst"],
        default="open",
        help=f"{prefix}'open': always open, cycling through the sessions (default); "
        "'kst': the real KRX timetable in KST, nothing sent while closed",
    )
    parser.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="KEY=PRICE",
        help=f"{prefix}a start price (repeatable), e.g. 005930=75000 or DNASAAPL=190.5",
    )


def _simulator_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "layout": args.layout,
        "layouts": args.layouts,
        "clock": args.clock,
        "prices": dict(args.price),
    }


def _credentials_from_env(env: str | None = None) -> Credentials | None:
    """Credentials from KIS_APP_KEY, KIS_APP_SECRET, KIS_HTS_ID and KIS_ENV (or `env`)."""
    app_key, secret = os.environ.get("KIS_APP_KEY"), os.environ.get("KIS_APP_SECRET")
    if not app_key or not secret:
        return None
    hts_id = os.environ.get("KIS_HTS_ID") or None
    if (env or os.environ.get("KIS_ENV", "real")).lower() == "paper":
        return Credentials(app_key, secret, env="paper", hts_id=hts_id)
    return Credentials(app_key, secret, env="real", hts_id=hts_id)


def _status(event: object) -> str | None:
    """A line for the state of the connection, or None for data."""
    if isinstance(
        event, Connected | ConnectionClosed | Subscribed | SubscribeFailed | ServerError | UndecodableMessage
    ):
        return describe(event)
    if isinstance(event, Reconnecting):
        return f"reconnecting in {event.delay:.1f} s (attempt {event.attempt}): {event.reason}"
    if isinstance(event, EventsDropped):
        return f"dropped     {event.count} records (the terminal fell behind)"
    return None


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    subscriptions = [parse_subscription(text) for text in args.keys]
    credentials = None if args.url else _credentials_from_env(args.env)
    async with contextlib.AsyncExitStack() as stack:
        url = args.url
        if url is None and credentials is None:
            sim = await stack.enter_async_context(simulate(faults=args.faults, **_simulator_options(args)))
            url = sim.url
            err.write(
                f"No KIS credentials (KIS_APP_KEY, KIS_APP_SECRET) in the environment: "
                f"streaming from the built-in simulator at {url}\n"
            )
        feed = await stack.enter_async_context(
            connect(url, credentials=credentials, approval_key=None if credentials else "simulator")
        )
        for tr_id, key in subscriptions:
            await feed.subscribe(tr_id, key)
        live = out.isatty() and not args.jsonl and not args.plain
        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
            if live:
                await _watch_table(feed, url or "", args.count)
            else:
                await _watch_lines(feed, args, out, err)
    return 0


async def _watch_lines(feed: Feed, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    seen = 0
    async for event in feed:
        if isinstance(event, Record):
            if args.jsonl:
                out.write(json.dumps(event_to_json(event), ensure_ascii=False, default=_json_default) + "\n")
            else:
                out.write(describe(event) + "\n")
            out.flush()
            seen += 1
            if args.count is not None and seen >= args.count:
                return
        elif (line := _status(event)) is not None:
            err.write(line + "\n")


async def _watch_table(feed: Feed, source: str, count: int | None) -> None:
    from rich.live import Live  # only for a terminal

    board = LiveBoard(source)
    with Live(board.render(), refresh_per_second=4, transient=False) as live:
        async for batch in feed.batches():
            for event in batch:
                if isinstance(event, Record):
                    board.update(event)
                elif isinstance(event, Connected):
                    board.status = "connected"
                elif isinstance(event, Reconnecting):
                    board.status = f"reconnecting (attempt {event.attempt}, next try in {event.delay:.1f} s)"
                elif (line := _status(event)) is not None:
                    board.note(line)
            live.update(board.render())
            if count is not None and board.records >= count:
                return


async def _record(args: argparse.Namespace, err: TextIO) -> int:
    subscriptions = [parse_subscription(text) for text in args.keys]
    credentials = None if args.url else _credentials_from_env()
    path = Path(args.file)
    new_file = not path.exists() or path.stat().st_size == 0
    written = 0
    async with contextlib.AsyncExitStack() as stack:
        url = args.url
        if url is None and credentials is None:
            sim = await stack.enter_async_context(simulate(**_simulator_options(args)))
            url = sim.url
            err.write(f"No KIS credentials in the environment: recording the built-in simulator at {url}\n")
        config = KISConfig(emit_text=True, custtype=credentials.custtype if credentials else "P")
        feed = await stack.enter_async_context(
            connect(
                url, credentials=credentials, approval_key=None if credentials else "simulator", config=config
            )
        )
        # A local file, appended line by line as messages arrive: blocking writes are negligible here.
        out = stack.enter_context(path.open("a", encoding="utf-8"))  # noqa: ASYNC230
        if new_file:
            out.write(RECORDING_HEADER + "\n")
        for tr_id, key in subscriptions:
            await feed.subscribe(tr_id, key)
        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
            async for event in feed:
                if isinstance(event, TextReceived):
                    out.write(recording_line(time.time(), event.text) + "\n")
                    written += 1
                    if args.count is not None and written >= args.count:
                        break
                elif (line := _status(event)) is not None:
                    err.write(line + "\n")
    err.write(f"recorded {written} messages to {path}\n")
    return 0


async def _replay(args: argparse.Namespace, out: TextIO) -> int:
    previous: float | None = None
    for t, event in read_recording(args.file):
        if not isinstance(event, Record):
            continue
        if not args.fast and previous is not None and t > previous:
            await anyio.sleep((t - previous) / args.speed)
        previous = t
        if args.jsonl:
            out.write(json.dumps(event_to_json(event), ensure_ascii=False, default=_json_default) + "\n")
        else:
            out.write(describe(event) + "\n")
    return 0


async def _sim(args: argparse.Namespace, err: TextIO) -> int:
    config = KISServerConfig(pingpong_interval=args.pingpong, strict_pingpong=args.strict_pingpong)
    async with simulate(
        args.host,
        args.port,
        tick=args.tick,
        faults=args.faults,
        config=config,
        **_simulator_options(args),
    ) as sim:
        err.write(
            f"KIS simulator on {sim.url} (any approval key is accepted; layouts of {sim.era}, "
            f"clock {sim.clock}); Ctrl-C stops it\n"
        )
        err.flush()
        await anyio.sleep_forever()
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
    watch = commands.add_parser("watch", help="stream live records (from the simulator without credentials)")
    watch.add_argument("keys", nargs="+", metavar="[TR:]KEY", help="e.g. 005930, H0STASP0:000660, DNASAAPL")
    watch.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    watch.add_argument("--count", type=int, default=None, help="stop after this many records")
    watch.add_argument("--jsonl", action="store_true", help="one JSON object per record")
    watch.add_argument("--plain", action="store_true", help="one line per record even in a terminal")
    watch.add_argument("--url", default=None, help="a KIS-compatible server (skips credentials)")
    watch.add_argument(
        "--env", choices=["real", "paper"], default=None, help="with credentials: the KIS server"
    )
    watch.add_argument(
        "--faults", type=_faults, default=None, help="simulator faults, e.g. drop=5,garbage=20"
    )
    _add_simulator_options(watch, prefix="simulator: ")
    record = commands.add_parser("record", help="append the raw messages of a live session to FILE")
    record.add_argument("file")
    record.add_argument("keys", nargs="+", metavar="[TR:]KEY")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    record.add_argument("--count", type=int, default=None, help="stop after this many messages")
    record.add_argument("--url", default=None, help="a KIS-compatible server (skips credentials)")
    _add_simulator_options(record, prefix="simulator: ")
    replay = commands.add_parser("replay", help="print the records of a recording, as watch does")
    replay.add_argument("file")
    replay.add_argument("--jsonl", action="store_true", help="one JSON object per record")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="replay speed (2 = twice as fast)")
    pace.add_argument("--fast", action="store_true", help="no pauses: as fast as possible")
    sim = commands.add_parser("sim", help="run the KIS simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=21000)
    sim.add_argument("--tick", type=float, default=0.25, help="seconds between market updates")
    sim.add_argument("--pingpong", type=float, default=100.0, help="seconds between PINGPONGs (KIS: ~100)")
    sim.add_argument(
        "--strict-pingpong",
        action="store_true",
        help="drop clients that do not answer PINGPONG (text echo, equal JSON, or a PONG carrying it)",
    )
    _add_simulator_options(sim)
    sim.add_argument(
        "--faults",
        type=_faults,
        default=None,
        help="drop=S,garbage=N,utf8=N,oversize=N,stall=S,in_use,refuse_approval,slow_accept=S",
    )
    args = parser.parse_args(argv)
    stdout = out or sys.stdout
    try:
        if args.command == "decode":
            return _decode_command(args, stdout)
        if args.command == "watch":
            return anyio.run(_watch, args, stdout, sys.stderr)
        if args.command == "record":
            return anyio.run(_record, args, sys.stderr)
        if args.command == "replay":
            return anyio.run(_replay, args, stdout)
        return anyio.run(_sim, args, sys.stderr)
    except BrokenPipeError:  # `kis-ws … | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
