"""``kis-ws dash [KEY…]``: a live web dashboard of the feed (`kis_dash`), from the same sources as watch.

The feed is `kis-ws watch`'s (the built-in simulator without credentials, KIS with them, ``--url``,
or ``--gateway URL``); the page is served on 127.0.0.1 behind a random token, and its URL printed
as Jupyter prints its own. Each key's trades (H0STCNT0, HDFSCNT0 overseas) feed the watchlist and
the chart, and its book (H0STASP0, HDFSASP0) the 호가창 while they fit in the 41 subscriptions of a
session; a notice key (``H0STCNI0:<HTS ID>``) feeds the notices panel.
"""

from __future__ import annotations

import argparse
import errno
import math
from typing import TYPE_CHECKING, TextIO

import anyio

from kis_proto.bars import TRADE_TRS, BarAggregator
from kis_proto.feed import KIS_MAX_SUBSCRIPTIONS
from kis_proto.layouts import tr_spec
from kis_proto.symbols import LISTINGS

from ._errors import EXIT_USAGE, CLIError
from ._inputs import check_subscriptions, credentials_from_env
from ._live import Answers, heed, open_feed, subscribe_all

if TYPE_CHECKING:
    from collections.abc import Callable

    from kis_proto import FeedEvent

__all__ = ["DEFAULT_KEYS", "dash", "listen"]

#: The watchlist without keys: the largest KRX listings of kis_proto.symbols.
DEFAULT_KEYS = tuple(key for key, listed in LISTINGS.items() if not listed.overseas)[:8]
_BOOK_OF = {"H0STCNT0": "H0STASP0", "HDFSCNT0": "HDFSASP0"}


def listen(text: str) -> tuple[str, int]:
    """``--listen HOST:PORT`` (or ``:PORT``, ``PORT``; host 127.0.0.1, port 0 for any free one)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8700 (port 0 for any free one)"
        )
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plan(texts: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(trades, books, notices) to subscribe: every key's trades, its book while it fits."""
    wanted = check_subscriptions(texts)
    trades, notices, others = [], [], []
    for tr_id, key in wanted:
        spec = tr_spec(tr_id)
        if tr_id in _BOOK_OF:
            trades.append((tr_id, key))
        elif spec is not None and spec.encrypted:
            notices.append((tr_id, key))
        else:
            others.append(f"{tr_id}:{key}")
    if others:
        raise CLIError(
            f"the dashboard shows stocks and notices; {', '.join(others)} "
            f"{'is' if len(others) == 1 else 'are'} neither a stock key nor a notice subscription",
            hint="give KRX codes (005930), overseas keys (DNASAAPL) or H0STCNI0:<HTS ID>",
        )
    if not trades:
        raise CLIError("give at least one stock key, e.g. kis-ws dash 005930 000660")
    room = KIS_MAX_SUBSCRIPTIONS - len(trades) - len(notices)
    books = [(_BOOK_OF[tr_id], key) for tr_id, key in trades][: max(0, room)]
    return trades, books, notices


async def dash(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve the dashboard until Ctrl-C (or ``--duration``)."""
    try:
        import kis_dash
    except ImportError:
        raise CLIError(
            "kis-ws dash needs the dash extra (aiohttp)",
            hint="pip install 'kis-proto[dash]'",
            code=EXIT_USAGE,
        ) from None
    trades, books, notices = _plan(list(args.keys) or list(DEFAULT_KEYS))
    host, port = args.listen
    if not _is_loopback(host):
        err.write(
            f"warning: the dashboard listens on {host}, beyond this machine: anyone who reaches it with "
            "the URL's token sees the feed (plain HTTP, no TLS)\n"
        )
    if len(books) < len(trades):
        err.write(
            f"note: {len(trades)} keys leave room for {len(books)} books in {KIS_MAX_SUBSCRIPTIONS} "
            "subscriptions: the 호가창 shows the first ones\n"
        )
    subscriptions = [*trades, *books, *notices]
    answers = Answers(subscriptions)
    aggregator = BarAggregator(
        every=args.every, grace=args.grace, tr_ids=sorted({t for t, _ in trades} & set(TRADE_TRS))
    )
    args.keys = [f"{tr_id}:{key}" for tr_id, key in subscriptions]  # what open_feed checks and names
    async with open_feed(args, err, max_retries=None) as (feed, url):
        state = kis_dash.DashState(
            keys=trades,
            books=books,
            notices=notices,
            aggregator=aggregator,
            counters=getattr(feed, "counters", None),
            subscribed=_held(feed),
            source=_source(args, url),
        )
        try:
            serving = kis_dash.serve(state, host, port)
            async with serving as server:
                out.write(f"dashboard on {server.url}\n")
                out.flush()
                await subscribe_all(feed, subscriptions, err)
                err.flush()

                def note(event: FeedEvent) -> None:
                    heed(event, answers, err)

                with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
                    await kis_dash.follow(feed, state, on_event=lambda e: None if _is_data(e) else note(e))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CLIError(
                    f"cannot listen on {host}:{port}: the port is in use",
                    hint="choose another with --listen 127.0.0.1:PORT, or port 0 for any free one",
                ) from None
            raise
    return 0


def _held(feed: object) -> Callable[[], int] | None:
    """A gateway consumer's count of its subscriptions (a KIS feed counts its own)."""
    if getattr(feed, "counters", None) is not None or not hasattr(feed, "subscriptions"):
        return None
    return lambda: len(getattr(feed, "subscriptions", ()))


def _is_data(event: FeedEvent) -> bool:
    from kis_proto import Record, TextReceived

    return isinstance(event, Record | TextReceived)


def _source(args: argparse.Namespace, url: str) -> str:
    """Where the feed comes from, for the page: no credentials, no NATS user names."""
    if getattr(args, "gateway", None):
        return f"kis-ws gateway ({args.gateway_env})"
    if args.url:
        return str(args.url)
    if credentials_from_env(args.env) is None:
        return f"simulator {url}"
    return f"KIS {url}".strip()
