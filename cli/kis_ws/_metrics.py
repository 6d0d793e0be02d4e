"""``--metrics HOST:PORT`` of the long-running commands: `kis_metrics` served beside the work.

`kis_metrics` (the ``metrics`` extra) is imported only when the option is given, so ``kis-ws``
runs without prometheus_client; without the extra, the option fails at once with what to install.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import CLIError

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Callable, Iterable

    from kis_proto.feed import FeedCounters

__all__ = ["add_metrics_options", "check_metrics", "metrics_server"]


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics`` and ``--metrics-token-file``."""
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and /healthz, /readyz probes, e.g. 127.0.0.1:9464 "
        "(loopback unless a token is given; needs the metrics extra)",
    )
    parser.add_argument(
        "--metrics-token-file",
        default=None,
        metavar="FILE",
        help="a bearer token that /metrics requires (readable by its owner only); needed beyond loopback",
    )


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    file = Path(path)
    try:
        mode = file.stat().st_mode
        token = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CLIError(f"cannot read --metrics-token-file {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CLIError(f"--metrics-token-file {path} is readable by other users", hint=f"chmod 600 {path}")
    if not token:
        raise CLIError(f"--metrics-token-file {path} is empty", hint="put one line of random text in it")
    return token


def check_metrics(args: argparse.Namespace) -> tuple[str, int] | None:
    """The ``--metrics`` address checked before anything starts (exit 2 on a bad one), or None."""
    if args.metrics is None:
        if args.metrics_token_file is not None:
            raise CLIError("--metrics-token-file goes with --metrics")
        return None
    try:
        import kis_metrics
    except ImportError:
        raise CLIError("--metrics needs prometheus_client", hint="pip install 'kis-proto[metrics]'") from None
    try:
        host, port = kis_metrics.parse_listen(args.metrics)
    except ValueError as exc:
        raise CLIError(f"--metrics: {exc}") from None
    if not kis_metrics.is_loopback(host) and args.metrics_token_file is None:
        raise CLIError(
            f"--metrics {args.metrics}: beyond loopback the metrics need a token",
            hint="give --metrics-token-file FILE (Prometheus: authorization: credentials_file), or 127.0.0.1",
        )
    return host, port


@contextlib.asynccontextmanager
async def metrics_server(
    args: argparse.Namespace,
    feeds: Callable[[], Iterable[tuple[str, FeedCounters]]] | None,
    *,
    ready: Callable[[], tuple[bool, str]],
    err: TextIO,
    collectors: Iterable[Any] = (),
) -> AsyncIterator[None]:
    """Serve the metrics of `feeds` (and of `collectors`, and the process's) while the block runs, if asked.

    The process's own (``process_start_time_seconds``, resident memory, open file descriptors)
    come from prometheus_client's process collector, on Linux.
    """
    where = check_metrics(args)
    if where is None:
        yield
        return
    import kis_metrics
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    if feeds is not None:
        registry.register(kis_metrics.FeedCollector(feeds))
    for collector in collectors:
        registry.register(collector)
    async with contextlib.AsyncExitStack() as stack:
        serving = kis_metrics.serve_metrics(
            where[0], where[1], registry=registry, ready=ready, token=_token(args.metrics_token_file)
        )
        try:
            server = await stack.enter_async_context(serving)
        except OSError as exc:
            raise CLIError(
                f"cannot serve metrics on {args.metrics}: {exc.strerror or exc}",
                hint="pick another port, e.g. --metrics 127.0.0.1:0 for any free one",
            ) from None
        err.write(f"metrics on {server.url}/metrics (probes: /healthz, /readyz)\n")
        err.flush()
        yield
