"""The ``kis-ws`` command line (also ``python -m kis_ws``).

``kis-ws watch`` streams live records (from the built-in simulator without credentials), ``bars``
live bars of the trades, ``record`` and ``replay`` keep a session for later, ``decode`` reads messages from a file, and
``sim`` runs the simulator for any client. Expected failures are one or two lines and an exit code
(0 done, 1 the feed failed, 2 bad usage or input, 130 Ctrl-C); ``--debug`` adds the logs and,
on an unexpected error, the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

import anyio
from kis_sim import simulate

from kis_proto import ApprovalError, __version__
from kis_proto.layouts import ERAS
from kis_proto.server import KISServerConfig

from . import _bars, _book, _dash, _export, _files, _live, _rotate
from ._errors import EXIT_FEED, EXIT_INTERRUPTED, EXIT_USAGE, CLIError
from ._inputs import faults, port, price
from ._metrics import add_metrics_options
from ._nats import add_nats_options

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["main"]

logger = logging.getLogger("kis_ws")


def _key_iv(text: str) -> tuple[str, str, str]:
    tr_id, sep, rest = text.partition("=")
    key, sep2, iv = rest.partition(":")
    if not (sep and sep2 and tr_id and key and iv):
        raise argparse.ArgumentTypeError("use TR_ID=KEY:IV, e.g. H0STCNI0=<32-char key>:<16-char iv>")
    return tr_id, key, iv


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
        type=price,
        action="append",
        default=[],
        metavar="KEY=PRICE",
        help=f"{prefix}a start price (repeatable), e.g. 005930=75000 or DNASAAPL=190.5",
    )


def _add_stream_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The options of a command that streams a live feed: watch, bars."""
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--count", type=int, default=None, help=f"stop after this many {what}s")
    parser.add_argument("--jsonl", action="store_true", help=f"one JSON object per {what}")
    parser.add_argument("--plain", action="store_true", help=f"one line per {what} even in a terminal")
    _add_server_options(parser)
    parser.add_argument(
        "--env", choices=["real", "paper"], default=None, help="with credentials: the KIS server"
    )
    parser.add_argument(
        "--faults", type=faults, default=None, help="simulator faults, e.g. drop=5,garbage=20"
    )
    _add_simulator_options(parser, prefix="simulator: ")


def _add_server_options(parser: argparse.ArgumentParser, *, gateway: bool = True) -> None:
    parser.add_argument(
        "--url", default=None, help="a KIS-compatible server, ws://host:port (without credentials)"
    )
    if gateway:
        parser.add_argument(
            "--gateway",
            default=None,
            metavar="NATS_URL",
            help="stream from a `kis-ws gateway` through NATS, e.g. nats://127.0.0.1:4222 (needs the nats extra)",
        )
        parser.add_argument(
            "--gateway-env",
            choices=["real", "paper", "sim"],
            default="sim",
            help="with --gateway: the gateway's env (default sim)",
        )
        add_nats_options(parser)
    parser.add_argument(
        "--approval-url",
        default=None,
        metavar="URL",
        help="with credentials (KIS_APP_KEY, KIS_APP_SECRET): where to get the approval key, "
        "e.g. http://127.0.0.1:21000 for kis-ws sim",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``kis-ws`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="log at DEBUG; tracebacks on unexpected errors")
    common.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per log line (time, level, logger, message), for journald or Loki",
    )
    parser = argparse.ArgumentParser(
        prog="kis-ws",
        description="KIS real-time feed tools",
        epilog="exit codes: 0 done, 1 the feed failed, 2 bad usage or input, 130 Ctrl-C",
    )
    parser.add_argument("--version", action="version", version=f"kis-ws (kis-proto {__version__})")
    commands = parser.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", parents=[common], help="decode KIS messages or a recording")
    decode.add_argument("file", help="messages one per line, or a kis-ws recording ('-': standard input)")
    decode.add_argument("--jsonl", action="store_true", help="one JSON object per event")
    decode.add_argument(
        "--key",
        action="append",
        type=_key_iv,
        default=[],
        metavar="TR_ID=KEY:IV",
        help="the AES key and IV of a TR's ack, for encrypted frames (repeatable)",
    )

    watch = commands.add_parser(
        "watch", parents=[common], help="stream live records (from the simulator without credentials)"
    )
    watch.add_argument("keys", nargs="+", metavar="[TR:]KEY", help="e.g. 005930, H0STASP0:000660, DNASAAPL")
    _add_stream_options(watch, "record")

    bars = commands.add_parser(
        "bars",
        parents=[common],
        help="live bars (OHLCV) of trades, by time, ticks, volume or value (from the simulator without credentials)",
        epilog="a bar is printed when it completes; when the run ends the bars still open are printed too, "
        "marked gap (cut short). docs/bars.md says how bars are cut and what complete means.",
    )
    bars.add_argument(
        "keys", nargs="+", metavar="[TR:]KEY", help="e.g. 005930, H0UNCNT0:005930, DNASAAPL (trade TRs)"
    )
    size = bars.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--every",
        type=_bars.interval,
        default=None,
        metavar="TIME",
        help="time bars: 10s, 1m, 5m, 1h (KST-aligned)",
    )
    size.add_argument(
        "--ticks", type=_bars.positive_int, default=None, metavar="N", help="a bar per N trades"
    )
    size.add_argument(
        "--volume",
        type=_bars.positive_int,
        default=None,
        metavar="N",
        help="a bar per N shares (or contracts)",
    )
    size.add_argument(
        "--value", type=_bars.positive_number, default=None, metavar="N", help="a bar per N of price × volume"
    )
    bars.add_argument(
        "--grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time bars: how long past its end a bar waits for its trades (default 2)",
    )
    _add_stream_options(bars, "bar")

    book = commands.add_parser(
        "book", parents=[common], help="a live 10-level order book (호가창) of one key"
    )
    book.add_argument("key", metavar="KEY", help="a KRX code (005930) or an overseas key (DNASAAPL)")
    book.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    book.add_argument("--count", type=int, default=None, help="stop after this many book updates")
    book.add_argument("--plain", action="store_true", help="print each update even in a terminal")
    _add_server_options(book)
    book.add_argument(
        "--env", choices=["real", "paper"], default=None, help="with credentials: the KIS server"
    )
    _add_simulator_options(book, prefix="simulator: ")

    record = commands.add_parser("record", parents=[common], help="append a live session's messages to FILE")
    record.add_argument("file")
    record.add_argument("keys", nargs="+", metavar="[TR:]KEY")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    record.add_argument("--count", type=int, default=None, help="stop after this many messages")
    record.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="give up after N failed reconnects in a row (default: retry forever)",
    )
    record.add_argument(
        "--parquet",
        default=None,
        metavar="DIR",
        help="also write the records as Parquet while recording: DIR/<table>/<part>.parquet, "
        "each part a complete file (needs the data extra)",
    )
    record.add_argument(
        "--roll",
        type=_export.duration,
        default=300.0,
        metavar="TIME",
        help="with --parquet: write the buffered records as parts this often, e.g. 30s, 5m, 1h "
        "(default 5m: a crash loses at most that)",
    )
    record.add_argument(
        "--roll-size",
        type=_export.size,
        default=16 << 20,
        metavar="SIZE",
        help="with --parquet: write a part early once this much record text is buffered, "
        "e.g. 64MB (default 16MB; bounds memory)",
    )
    _add_server_options(record)
    record.add_argument(
        "--env", choices=["real", "paper"], default=None, help="with credentials: the KIS server"
    )
    record.add_argument(
        "--rotate",
        type=_rotate.rotation,
        default=None,
        metavar="EVERY",
        help="a new file per KST day ('day') or interval (1h, 30m): {date} and {time} in FILE are "
        "filled in, else -YYYYMMDD[-HHMM] goes before its suffix; each file replays alone",
    )
    add_metrics_options(record)
    _add_simulator_options(record, prefix="simulator: ")

    replay = commands.add_parser(
        "replay", parents=[common], help="print a recording's records, as watch does"
    )
    replay.add_argument("file")
    replay.add_argument("--jsonl", action="store_true", help="one JSON object per record")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="replay speed (2 = twice as fast)")
    pace.add_argument("--fast", action="store_true", help="no pauses: as fast as possible")

    export = commands.add_parser(
        "export", parents=[common], help="a recording's records as Parquet files, one per TR and era"
    )
    export.add_argument("file", help="a kis-ws recording")
    export.add_argument(
        "--to", required=True, metavar="DIR", help="the folder to write to (created readable by you only)"
    )
    export.add_argument("--format", choices=["parquet"], default="parquet", help="the file format (parquet)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace files of the same names already in DIR"
    )
    export.add_argument(
        "--bars",
        type=_bars.interval,
        action="append",
        default=[],
        metavar="TIME",
        help="also the recording's time bars, e.g. 1m: DIR/<TR>.bars-1m.parquet (repeatable; "
        "the recorded receive times are the clock)",
    )

    gateway = commands.add_parser(
        "gateway",
        parents=[common],
        help="share KIS sessions through NATS (many programs, more than 41 subscriptions)",
        description="Hold KIS sessions (one per app key) and share them through NATS; see docs/gateway.md. "
        "Credentials: --credentials FILE (TOML: env = 'real'|'paper', then [[app]] tables with "
        "name, app_key, app_secret, hts_id), or KIS_APP_KEY/KIS_APP_SECRET, or none: the simulator.",
    )
    gateway.add_argument(
        "action",
        nargs="?",
        choices=["run", "status", "nats-config"],
        default="run",
        help="run (default), status, or nats-config (print a nats-server configuration with the roles)",
    )
    gateway.add_argument(
        "--nats", default=None, metavar="URL", help="your NATS (default: start an embedded one)"
    )
    gateway.add_argument(
        "--nats-port", type=port, default=4222, help="the embedded NATS's port (default 4222)"
    )
    gateway.add_argument("--credentials", default=None, metavar="FILE", help="app keys (TOML, see above)")
    gateway.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="WS_URL",
        help="without credentials: a KIS-compatible server (kis-ws sim) for one session; repeatable",
    )
    gateway.add_argument(
        "--sim-sessions", type=int, default=1, metavar="N", help="without credentials: N simulated app keys"
    )
    gateway.add_argument(
        "--state-dir", default="~/.kis-proto/gateway", help="held notices, the embedded NATS's store"
    )
    gateway.add_argument(
        "--lease", type=float, default=30.0, help="seconds a consumer's demand lives without a heartbeat"
    )
    gateway.add_argument("--id", default=None, help="this gateway's id (default: random)")
    gateway.add_argument(
        "--env", choices=["real", "paper", "sim"], default="sim", help="status: the gateway's env"
    )
    gateway.add_argument("--json", action="store_true", help="status: print the JSON as the gateway sent it")
    gateway.add_argument("--seed", type=int, default=None, help="simulator: the random seed")
    gateway.add_argument("--tick", type=float, default=0.25, help="simulator: seconds between market updates")
    gateway.add_argument(
        "--hts-id",
        action="append",
        default=[],
        metavar="ID",
        help="take the execution notices of this HTS ID and keep them in its JetStream stream (repeatable; "
        "the credentials file's hts_id count too)",
    )
    gateway.add_argument(
        "--overseas-notices",
        action="store_true",
        help="take the HTS IDs' overseas notices too (one more slot each)",
    )
    gateway.add_argument(
        "--client-limit",
        type=int,
        default=41,
        metavar="N",
        help="the most subscriptions one consumer may hold (default 41, one app key's worth)",
    )
    gateway.add_argument(
        "--approval-url",
        default=None,
        metavar="URL",
        help="with credentials: where to get approval keys (e.g. a kis-ws sim), to try them without KIS",
    )
    add_metrics_options(gateway)
    config = gateway.add_argument_group("nats-config")
    config.add_argument(
        "--listen",
        default="127.0.0.1:4222",
        metavar="HOST:PORT",
        help="where your server listens (default 127.0.0.1:4222)",
    )
    config.add_argument("--store-dir", default=None, metavar="DIR", help="your server's JetStream store")
    config.add_argument("--tls-cert", default=None, metavar="FILE", help="your server's TLS certificate")
    config.add_argument("--tls-key", default=None, metavar="FILE", help="its key")
    config.add_argument(
        "--tls-ca", default=None, metavar="FILE", help="require client certificates signed by this CA too"
    )
    config.add_argument(
        "--out", default=None, metavar="FILE", help="write it to FILE (0600) instead of stdout"
    )
    add_nats_options(gateway)

    dash = commands.add_parser(
        "dash",
        parents=[common],
        help="a live web dashboard: quotes, 호가창, candles, the feed's health (needs the dash extra)",
        description="Serve a web page of the feed on 127.0.0.1 behind a random token (the printed URL): "
        "a watchlist, the 10-level book and a candlestick chart of a chosen key, the feed's health and "
        "execution notices; from the simulator without credentials, KIS with them, or a gateway. "
        "See docs/dashboard.md.",
    )
    dash.add_argument(
        "keys",
        nargs="*",
        metavar="[TR:]KEY",
        help="stock keys (005930, DNASAAPL) and notice keys (H0STCNI0:<HTS ID>); "
        "default: eight large KRX listings",
    )
    dash.add_argument(
        "--listen",
        type=_dash.listen,
        default=("127.0.0.1", 8700),
        metavar="HOST:PORT",
        help="where the page is served (default 127.0.0.1:8700; port 0 for any free one; "
        "beyond loopback only when you name the host)",
    )
    dash.add_argument(
        "--every",
        type=_bars.interval,
        default=60,
        metavar="TIME",
        help="the chart's bar interval: 10s, 1m, 5m (default 1m)",
    )
    dash.add_argument(
        "--grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long past its end a bar waits for its trades (default 2)",
    )
    dash.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    _add_server_options(dash)
    dash.add_argument(
        "--env", choices=["real", "paper"], default=None, help="with credentials: the KIS server"
    )
    dash.add_argument("--faults", type=faults, default=None, help="simulator faults, e.g. drop=5,garbage=20")
    _add_simulator_options(dash, prefix="simulator: ")

    sim = commands.add_parser("sim", parents=[common], help="run the KIS simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=port, default=21000, help="0 for any free port (default: 21000)")
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
        type=faults,
        default=None,
        help="drop=S,garbage=N,utf8=N,oversize=N,stall=S,in_use,refuse_approval,slow_accept=S",
    )
    return parser


async def _sim(args: argparse.Namespace, err: TextIO) -> int:
    config = KISServerConfig(pingpong_interval=args.pingpong, strict_pingpong=args.strict_pingpong)
    try:
        server = simulate(
            args.host,
            args.port,
            tick=args.tick,
            faults=args.faults,
            config=config,
            **_live.simulator_options(args),
        )
        async with server as sim:
            err.write(
                f"KIS simulator on {sim.url} (any approval key is accepted; layouts of {sim.era}, "
                f"clock {sim.clock}); Ctrl-C stops it\n"
            )
            err.flush()
            await anyio.sleep_forever()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(
                f"cannot listen on {args.host}:{args.port}: the port is in use (another kis-ws sim?)",
                hint="choose another with --port, or --port 0 for any free one",
            ) from None
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "decode":
        return _files.decode(args, out)
    if args.command == "watch":
        return anyio.run(_live.watch, args, out, err)
    if args.command == "bars":
        return anyio.run(_bars.bars, args, out, err)
    if args.command == "book":
        return anyio.run(_book.book, args, out, err)
    if args.command == "record":
        return anyio.run(_live.record, args, err)
    if args.command == "replay":
        return anyio.run(_files.replay, args, out, err)
    if args.command == "export":
        return _export.export(args, out, err)
    if args.command == "dash":
        return anyio.run(_dash.dash, args, out, err)
    if args.command == "gateway":
        from . import _gateway

        return _gateway.gateway(args, out, err)
    return anyio.run(_sim, args, err)


class _JsonFormatter(logging.Formatter):
    """One JSON object per log record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
    (and ``exception`` with the traceback), for journald, Loki or any log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _LevelFormatter(logging.Formatter):
    """``warning: …`` rather than ``WARNING: …``: log lines read as the rest of the output."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace(record.levelname, record.levelname.lower(), 1)


@contextlib.contextmanager
def _logging_to(err: TextIO, *, debug: bool, json_lines: bool = False) -> Iterator[None]:
    """Show the libraries' log records on `err` while a command runs; put everything back after.

    Without --debug: warnings only (a field that does not convert, records dropped), and not the
    transports' lines about refusals and server errors, which kis-ws shows itself, once. Restoring
    matters when `main` runs inside another program (the tests).
    """
    handler = logging.StreamHandler(err)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    elif debug:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    else:
        handler.setFormatter(_LevelFormatter("%(levelname)s: %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("kis_anyio"), logging.getLogger("kis_asyncio")]
    levels = [logger.level for logger in loggers]
    root = loggers[0]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        for transport in loggers[1:]:
            transport.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _single(error: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, as the task groups raise them."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``kis-ws``; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)  # bad usage: argparse prints it and exits with 2
    err = sys.stderr
    try:
        with _logging_to(err, debug=args.debug, json_lines=getattr(args, "log_format", "text") == "json"):
            return _run(args, out or sys.stdout, err)
    except BaseException as raised:
        error = _single(raised)
        if isinstance(error, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if isinstance(error, BrokenPipeError):  # `kis-ws … | head` closed the pipe: not an error
            err.close()
            return 0
        if isinstance(error, CLIError):
            lines, code = error.lines(), error.code
        elif isinstance(error, ApprovalError):
            lines = [f"could not get an approval key: {error}"]
            lines.append("check KIS_APP_KEY, KIS_APP_SECRET and KIS_ENV (real or paper)")
            code = EXIT_FEED
        elif isinstance(error, ConnectionError):
            lines, code = [f"the feed failed: {error}"], EXIT_FEED
        elif isinstance(error, SystemExit):
            raise
        else:
            if args.debug:
                raise
            lines = [
                f"unexpected error: {type(error).__name__}: {error}",
                "run again with --debug for the traceback",
            ]
            code = EXIT_USAGE if isinstance(error, ValueError) else EXIT_FEED
        for line in lines:
            err.write(f"kis-ws: {line}\n")
        err.flush()
        return code


if __name__ == "__main__":
    raise SystemExit(main())
