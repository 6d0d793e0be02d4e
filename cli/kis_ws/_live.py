"""``kis-ws watch`` and ``kis-ws record``: live feeds, from the simulator, a URL, or KIS."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import anyio
from kis_anyio import connect
from kis_sim import simulate

from kis_proto import (
    Connected,
    KISConfig,
    Reconnecting,
    Record,
    Subscribed,
    SubscribeFailed,
    SubscriptionError,
    TextReceived,
)
from kis_proto.layouts import tr_spec

from ._errors import EXIT_FEED, CLIError
from ._inputs import Server, check_subscriptions, server_for, unknown_listings
from ._metrics import check_metrics, metrics_server
from ._output import describe, json_line, status_line
from ._rotate import Recording

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator

    from kis_data.parquet import ParquetRecorder

    from kis_proto import FeedEvent
    from kis_proto.feed import FeedCounters

__all__ = [
    "Answers",
    "LiveFeed",
    "heed",
    "open_feed",
    "record",
    "simulator_options",
    "subscribe_all",
    "watch",
]


class LiveFeed(Protocol):
    """What a live command needs of a feed: a KIS transport's, or a gateway consumer's."""

    def __aiter__(self) -> AsyncIterator[FeedEvent]: ...

    def batches(self) -> AsyncIterator[list[FeedEvent]]: ...

    async def subscribe(self, tr_id: str, keys: str, /) -> object: ...


def simulator_options(args: argparse.Namespace) -> dict[str, Any]:
    """The built-in simulator's options as `simulate` takes them."""
    return {
        "seed": args.seed,
        "layout": args.layout,
        "layouts": args.layouts,
        "clock": args.clock,
        "prices": dict(args.price),
    }


@dataclass
class Answers:
    """The server's answers to our subscriptions, to tell when every one of them was refused."""

    wanted: list[tuple[str, str]]
    accepted: set[tuple[str, str]] = field(default_factory=set)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    connected: bool = False
    #: Why the last attempt failed, for "never connected" (a Reconnecting's reason).
    last_failure: str = ""

    def note(self, event: FeedEvent) -> None:
        if isinstance(event, Connected):
            self.connected = True
        elif isinstance(event, Reconnecting):
            self.last_failure = event.reason
        elif isinstance(event, Subscribed):
            self.accepted.add((event.tr_id, event.tr_key))
        elif isinstance(event, SubscribeFailed) and not event.timed_out:
            self.refused[(event.tr_id, event.tr_key)] = f"{event.msg_cd} {event.message}".strip()

    @property
    def all_refused(self) -> bool:
        return not self.accepted and len(self.refused) >= len(self.wanted)

    def never_connected(self, url: str) -> CLIError | None:
        """The failure when the whole run went by without one connection, else None."""
        if self.connected:
            return None
        why = (
            f": {self.last_failure}"
            if self.last_failure
            else " (no answer before the run ended: the approval key request or the connection was still waiting)"
        )
        return CLIError(
            f"never connected to {url}{why}",
            hint="is the server running and the URL right? (without --url: the credentials' KIS server)",
            code=EXIT_FEED,
        )

    def raise_failure(self, url: str) -> None:
        """End a live command that streamed nothing: every subscription refused, or never connected."""
        if self.all_refused:
            raise self.error()
        if (failure := self.never_connected(url)) is not None:
            raise failure

    def error(self) -> CLIError:
        reasons = "; ".join(f"{tr_id} {key}: {why}" for (tr_id, key), why in self.refused.items())
        return CLIError(
            f"the server refused every subscription ({reasons})",
            hint="check the TR ids and keys, and that your account may receive them (paid feeds, paper trading)",
            code=EXIT_FEED,
        )


@contextlib.asynccontextmanager
async def open_feed(
    args: argparse.Namespace, err: TextIO, *, config: KISConfig | None = None, max_retries: int | None = 5
) -> AsyncIterator[tuple[LiveFeed, str]]:
    """The feed a live command streams from (and the simulator, when it is the source); says which.

    With ``--gateway URL`` it is a `kis_nats` feed from a ``kis-ws gateway`` (the same face).
    """
    if getattr(args, "gateway", None) is not None:
        async with _gateway_feed(args, err) as opened:
            yield opened
        return
    server: Server = server_for(args.url, getattr(args, "env", None), args.approval_url)
    async with contextlib.AsyncExitStack() as stack:
        url = server.url
        if url is None and server.credentials is None:
            sim = await stack.enter_async_context(
                simulate(faults=getattr(args, "faults", None), **simulator_options(args))
            )
            url = sim.url
            err.write(
                "No KIS credentials (KIS_APP_KEY, KIS_APP_SECRET) in the environment: "
                f"streaming from the built-in simulator at {url}\n"
            )
        else:
            err.write(server.description + "\n")
        if server.credentials is None:  # KIS decides with real credentials; a simulator invents
            err.writelines(line + "\n" for line in unknown_listings(_subscriptions_of(args)))
        err.flush()
        host, port, tls = server.approval or (None, None, True)
        custtype = server.credentials.custtype if server.credentials else "P"
        feed = await stack.enter_async_context(
            connect(
                url,
                credentials=server.credentials,
                approval_key=None if server.credentials else "simulator",
                approval_host=host,
                approval_port=port,
                approval_tls=tls,
                config=config or KISConfig(custtype=custtype),
                max_retries=max_retries,
            )
        )
        yield feed, url or ""


@contextlib.asynccontextmanager
async def _gateway_feed(args: argparse.Namespace, err: TextIO) -> AsyncIterator[tuple[LiveFeed, str]]:
    try:
        import kis_nats
    except ImportError:
        raise CLIError("--gateway needs nats-py", hint="pip install 'kis-proto[nats]'") from None
    from ._nats import nats_login

    env = args.gateway_env
    # A notice key is an HTS ID: its notice reader's credential is the one that may read it.
    notices = [key for tr_id, key in _subscriptions_of(args) if _notice(tr_id)]
    urls, options = nats_login(
        args, args.gateway, "consumer", hts_id=notices[0] if notices else None, option="--gateway"
    )
    # No claim about the gateway yet: only its answer to a subscription says one serves this env.
    err.write(f"connecting to NATS at {args.gateway} for a kis-ws gateway of env {env}\n")
    err.flush()
    try:
        # A consumer of a service waits for it: retry forever unless told (record's --max-retries).
        retries = getattr(args, "max_retries", None)
        async with kis_nats.connect(urls, env=env, max_retries=retries, nats_options=options) as feed:
            yield feed, args.gateway
    except kis_nats.GatewayForbiddenError as exc:
        raise CLIError(str(exc)) from None
    except kis_nats.GatewayUnavailableError as exc:
        raise CLIError(str(exc), hint="is `kis-ws gateway` running, for this env?", code=EXIT_FEED) from None


def _subscriptions_of(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The checked subscriptions of a live command (``keys``, or ``book``'s one ``key``)."""
    keys = getattr(args, "keys", None) or [args.key]
    return check_subscriptions(keys)


def _notice(tr_id: str) -> bool:
    spec = tr_spec(tr_id)
    return spec is not None and spec.encrypted


def heed(event: FeedEvent, answers: Answers, err: TextIO) -> None:
    """A live command's reading of an event that is no record: noted, and a line on `err`."""
    answers.note(event)
    if (line := status_line(event)) is not None:
        err.write(line + "\n")


async def subscribe_all(feed: LiveFeed, subscriptions: list[tuple[str, str]], err: TextIO) -> None:
    """Subscribe each; a gateway's refusal (its capacity, KIS's answer) ends the command clearly.

    From a gateway, the first answer names it: only then does a line say which one streams.
    """
    for tr_id, key in subscriptions:
        try:
            await feed.subscribe(tr_id, key)
        except SubscriptionError as exc:
            raise CLIError(str(exc), code=EXIT_FEED) from None
    gateway = getattr(feed, "gateway", None)
    if isinstance(gateway, str):
        err.write(f"streaming from the kis-ws gateway {gateway} ({getattr(feed, 'env', '?')})\n")
        err.flush()


async def watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stream records: a live table in a terminal, lines or JSON otherwise."""
    subscriptions = check_subscriptions(args.keys)
    answers = Answers(subscriptions)
    async with open_feed(args, err) as (feed, url):
        await subscribe_all(feed, subscriptions, err)
        live = out.isatty() and not args.jsonl and not args.plain
        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
            if live:
                await _watch_table(feed, url, args.count, answers)
            else:
                await _watch_lines(feed, args, out, err, answers)
    answers.raise_failure(url)
    return 0


async def _watch_lines(
    feed: LiveFeed, args: argparse.Namespace, out: TextIO, err: TextIO, answers: Answers
) -> None:
    seen = 0
    async for event in feed:
        if isinstance(event, Record):
            out.write((json_line(event) if args.jsonl else describe(event)) + "\n")
            out.flush()
            seen += 1
            if args.count is not None and seen >= args.count:
                return
            continue
        heed(event, answers, err)
        if answers.all_refused:
            return


async def _watch_table(feed: LiveFeed, source: str, count: int | None, answers: Answers) -> None:
    from rich.live import Live

    from ._table import LiveBoard

    board = LiveBoard(source)
    with Live(board.render(), refresh_per_second=4, transient=False) as live:
        async for batch in feed.batches():
            for event in batch:
                if isinstance(event, Record):
                    board.update(event)
                    continue
                answers.note(event)
                if isinstance(event, Connected):
                    board.status = "connected"
                elif isinstance(event, Reconnecting):
                    board.status = f"reconnecting in {event.delay:.1f} s: {event.reason}"
                elif (line := status_line(event)) is not None:
                    board.note(line)
            live.update(board.render())
            if (count is not None and board.records >= count) or answers.all_refused:
                return


async def record(args: argparse.Namespace, err: TextIO) -> int:
    """Append every message of a live session to a recording; retries forever by default.

    The recording is created readable by its owner only (it holds the session's AES keys and the
    user's own notices) and written line by line. With ``--parquet DIR`` the records also go to
    Parquet as they arrive (`kis_data.parquet.ParquetRecorder`: parts that survive a crash).
    """
    subscriptions = check_subscriptions(args.keys)
    answers = Answers(subscriptions)
    recording = Recording(Path(args.file), every=getattr(args, "rotate", None))
    if recording.path_for(time.time()).is_dir():
        raise CLIError(f"{args.file} is a directory", hint="give the recording's file name, e.g. day.kisrec")
    parquet: ParquetRecorder | None = None
    if getattr(args, "parquet", None) is not None:
        from ._export import open_recorder  # pyarrow is loaded only when asked for

        parquet = open_recorder(args)
    check_metrics(args)  # a bad --metrics fails before anything connects
    written = 0
    config = KISConfig(emit_text=True)
    try:
        async with open_feed(args, err, config=config, max_retries=args.max_retries) as (feed, _):
            recording.open(time.time())
            counters: FeedCounters | None = getattr(feed, "counters", None)  # a gateway feed has none

            def ready() -> tuple[bool, str]:
                up = counters is None or counters.connected
                return up, "recording" if up else "not connected to the server"

            serving = metrics_server(
                args, lambda: [("record", counters)] if counters else [], ready=ready, err=err
            )
            async with serving:
                with contextlib.closing(recording):
                    await subscribe_all(feed, subscriptions, err)
                    async with anyio.create_task_group() as tasks:
                        if parquet is not None:
                            tasks.start_soon(_roll_when_due, parquet)
                        with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
                            async for event in feed:
                                if isinstance(event, TextReceived):
                                    now = time.time()
                                    recording.write(now, event.text)
                                    if parquet is not None:
                                        parquet.add(now, event.text)
                                    written += 1
                                    if args.count is not None and written >= args.count:
                                        break
                                    continue
                                heed(event, answers, err)
                                if answers.all_refused:
                                    break
                        tasks.cancel_scope.cancel()
    finally:  # also on Ctrl-C: what was kept is said either way
        if parquet is not None:
            summary = parquet.close()
            err.write(
                f"wrote {summary.records} records to {len(summary.files)} Parquet "
                f"part{'s' if len(summary.files) != 1 else ''} in {parquet.directory}\n"
            )
        if recording.paths:  # the summary is for a recording that was opened
            err.write(f"recorded {written} message{'' if written == 1 else 's'} to {recording.describe()}\n")
            err.flush()
    answers.raise_failure(args.url or "the server")
    return 0


async def _roll_when_due(parquet: ParquetRecorder) -> None:
    """Write the Parquet parts that are due, also while the feed is quiet.

    A part is written in the event loop: a batch of at most 32768 records takes a few tenths of a
    second, while the socket buffers what arrives (the feed's reader catches up after).
    """
    interval = min(1.0, parquet.roll_seconds / 4)
    while True:
        await anyio.sleep(interval)
        parquet.roll_if_due(time.time())
