"""What the user gives ``kis-ws``, checked before anything connects: keys, URLs, credentials, ports.

Every problem becomes a `CLIError` that says what is wrong and what to do, so a typo costs one line
of output rather than a traceback after a connection.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

from kis_sim import Faults

from kis_proto import Credentials, LocalProtocolError
from kis_proto.feed import KIS_MAX_SUBSCRIPTIONS, split_ws_url
from kis_proto.layouts import Market, tr_spec
from kis_proto.symbols import key_problem, listing

from ._errors import CLIError

__all__ = [
    "Server",
    "approval_endpoint",
    "check_subscriptions",
    "credentials_from_env",
    "faults",
    "nats_urls",
    "parse_subscription",
    "port",
    "price",
    "server_for",
    "unknown_listings",
]


def parse_subscription(text: str) -> tuple[str, str]:
    """``TR:KEY`` or a bare key: ``D``/``R`` + exchange + symbol → HDFSCNT0, anything else H0STCNT0."""
    tr_id, sep, key = text.partition(":")
    if sep:
        return tr_id.upper(), key
    if len(text) > 4 and text[0] in "DR" and text[1:4].isalpha() and text[1:4].isupper():
        return "HDFSCNT0", text
    return "H0STCNT0", text


def check_subscriptions(texts: list[str]) -> list[tuple[str, str]]:
    """The subscriptions of the command line, each checked against the TR table and its market.

    Duplicates are dropped. Raises `CLIError` naming every bad one, with a hint where one helps,
    and when there are more than one KIS session takes.
    """
    wanted = list(dict.fromkeys(parse_subscription(text) for text in texts))
    problems = [problem for tr_id, key in wanted if (problem := key_problem(tr_id, key)) is not None]
    if problems:
        raise CLIError(
            "; ".join(problems),
            hint="give [TR:]KEY, e.g. 005930, H0STASP0:000660, DNASAAPL (see `kis-ws watch --help`)",
        )
    if len(wanted) > KIS_MAX_SUBSCRIPTIONS:
        raise CLIError(
            f"{len(wanted)} subscriptions: KIS allows {KIS_MAX_SUBSCRIPTIONS} per session (app key)",
            hint=f"watch at most {KIS_MAX_SUBSCRIPTIONS}, or spread them over several app keys",
        )
    return wanted


_LISTED_MARKETS = frozenset(
    {Market.DOMESTIC_STOCK, Market.DOMESTIC_ETF, Market.DOMESTIC_ELW, Market.OVERSEAS_STOCK}
)


def unknown_listings(subscriptions: list[tuple[str, str]]) -> list[str]:
    """A warning line for each stock key (domestic code, US symbol) kis-ws knows no listing of.

    A simulator invents prices for any key, so a typo (005390 for 005930) would look like real
    data; KIS itself answers an unknown code with silence. Index, futures, bond and notice keys
    are not checked: the table names stocks only.
    """
    lines = []
    for tr_id, key in subscriptions:
        spec = tr_spec(tr_id)
        if spec is None or spec.market not in _LISTED_MARKETS or listing(key) is not None:
            continue
        lines.append(
            f"warning: {key} is not a listing kis-ws knows (its table names the most traded KRX and US "
            "stocks); the simulator invents its prices. Check the code: KIS sends nothing for one that "
            "does not exist"
        )
    return lines


_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def nats_urls(text: str, option: str = "--nats") -> list[str]:
    """The NATS URLs of an option (comma-separated for a cluster), each checked; `CLIError` if not one.

    Checked before anything connects, so ``--gateway notaurl`` fails at once with exit 2 instead of
    after nats-py's retries.
    """
    urls = [part.strip() for part in text.split(",")]
    for url in urls:
        parts = urlsplit(url)
        try:
            given_port = parts.port
        except ValueError:
            given_port = -1
        if (
            parts.scheme not in _NATS_SCHEMES
            or not parts.hostname
            or (given_port is not None and not 0 < given_port < 65536)
        ):
            raise CLIError(
                f"{option} {url!r} is not a NATS URL",
                hint="give nats://host:port, e.g. nats://127.0.0.1:4222 (tls://host:port with TLS; "
                "several, comma-separated, for a cluster)",
            )
    return urls


def faults(text: str) -> Faults:
    """``--faults``: the simulator's fault list."""
    try:
        return Faults.parse(text)
    except (LocalProtocolError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def price(text: str) -> tuple[str, Decimal]:
    """``--price KEY=PRICE``."""
    key, sep, value = text.partition("=")
    try:
        amount = Decimal(value)
    except ArithmeticError:
        amount = Decimal(0)
    if not sep or not key or not amount.is_finite() or amount <= 0:
        raise argparse.ArgumentTypeError("use KEY=PRICE, e.g. 005930=75000 or DNASAAPL=190.5")
    return key, amount


def port(text: str) -> int:
    """``--port``: 0 (any free port) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 0 (any free one) to 65535")
    return int(text)


@dataclass(frozen=True)
class Server:
    """Where a live command streams from: the built-in simulator, a URL, or KIS with credentials."""

    url: str | None  # None: start the built-in simulator
    credentials: Credentials | None
    #: The approval endpoint's (host, port, tls) when it is not the credentials' own.
    approval: tuple[str, int, bool] | None
    #: A line for standard error saying which server this is.
    description: str


_ENV_VARIABLES = ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_HTS_ID", "KIS_ENV")


def server_for(url: str | None, env: str | None, approval_url: str | None) -> Server:
    """The server a live command uses, from its options and the environment, checked.

    Without `url` and without credentials it is the simulator; credentials are read from
    ``KIS_APP_KEY``, ``KIS_APP_SECRET`` (both or neither), ``KIS_HTS_ID`` and ``KIS_ENV`` (``real``
    or ``paper``). With `url` the credentials are not used unless `approval_url` says where their
    approval key comes from (a loopback server, the simulator's own endpoint).
    """
    if url is not None:
        try:
            if not url.startswith("ws://"):
                raise LocalProtocolError(url)
            split_ws_url(url)
        except LocalProtocolError:
            raise CLIError(
                f"--url {url!r} is not a KIS real-time URL",
                hint="give ws://host:port with a port from 1 to 65535 "
                "(KIS serves plain ws://; e.g. ws://127.0.0.1:21000 for kis-ws sim)",
            ) from None
    credentials = credentials_from_env(env)
    if approval_url is not None:
        if credentials is None:
            raise CLIError(
                "--approval-url needs credentials: set KIS_APP_KEY and KIS_APP_SECRET",
                hint="without credentials, --url alone connects with a placeholder approval key",
            )
        approval = approval_endpoint(approval_url)
        target = url or credentials.endpoint.ws_url
        return Server(
            target, credentials, approval, f"streaming from {target} (approval key from {approval_url})"
        )
    if url is not None:
        return Server(url, None, None, f"streaming from {url} (no credentials: a placeholder approval key)")
    if credentials is None:
        return Server(None, None, None, "")
    endpoint = credentials.endpoint
    return Server(
        None,
        credentials,
        None,
        f"streaming from KIS {credentials.env} at {endpoint.ws_url} "
        f"(approval key from https://{endpoint.rest_host}:{endpoint.rest_port})",
    )


def credentials_from_env(env: str | None) -> Credentials | None:
    """KIS credentials from ``KIS_APP_KEY``, ``KIS_APP_SECRET`` (both or neither), ``KIS_HTS_ID``, ``KIS_ENV``."""
    app_key, secret = os.environ.get("KIS_APP_KEY"), os.environ.get("KIS_APP_SECRET")
    if not app_key and not secret:
        return None
    missing = [name for name, value in (("KIS_APP_KEY", app_key), ("KIS_APP_SECRET", secret)) if not value]
    if missing:
        raise CLIError(
            f"{missing[0]} is not set, but {'KIS_APP_SECRET' if missing[0] == 'KIS_APP_KEY' else 'KIS_APP_KEY'} is",
            hint="set both to stream from KIS, or neither to stream from the built-in simulator",
        )
    chosen = (env or os.environ.get("KIS_ENV") or "real").strip().lower()
    if chosen not in ("real", "paper"):
        raise CLIError(
            f"KIS_ENV={os.environ.get('KIS_ENV')!r} is neither 'real' nor 'paper'",
            hint="set KIS_ENV=real (실전) or KIS_ENV=paper (모의), or leave it unset for real",
        )
    assert app_key is not None
    assert secret is not None
    try:
        return Credentials(
            app_key,
            secret,
            env="paper" if chosen == "paper" else "real",
            hts_id=os.environ.get("KIS_HTS_ID") or None,
        )
    except LocalProtocolError as exc:
        raise CLIError(f"the credentials in the environment are not usable: {exc}") from None


def approval_endpoint(text: str) -> tuple[str, int, bool]:
    """(host, port, TLS) of an ``--approval-url``; `CLIError` for anything but an http(s) URL."""
    parts = urlsplit(text)
    try:
        given_port = parts.port
    except ValueError:
        given_port = None
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(
            f"--approval-url {text!r} is not an http(s) URL",
            hint="e.g. http://127.0.0.1:21000 (kis-ws sim answers on its own port)",
        )
    tls = parts.scheme == "https"
    return parts.hostname, given_port or (443 if tls else 80), tls
