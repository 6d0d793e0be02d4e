"""A loopback KIS server on anyio: `KISServerConnection` for every accepted socket.

For the tests now and the simulator later. Each session runs the same loop as the client
(flush, read or wait for the deadline, feed); the test or the simulator drives sessions through
their commands (`send_records`, `refuse_in_use`, `drop`).
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from kis_proto import KISServerConfig, KISServerConnection, LocalProtocolError, ServerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["KISServer", "ServerSession", "serve"]

logger = logging.getLogger("kis_anyio.serve")


@dataclass(eq=False)
class ServerSession:
    """One client connection on the server side."""

    conn: KISServerConnection
    stream: anyio.abc.ByteStream
    events: list[ServerEvent] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def flush(self) -> None:
        async with self.lock:
            data = self.conn.data_to_send()
            if data:
                try:
                    await self.stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    self.conn.abort("the client's socket broke")

    async def send_records(self, tr_id: str, rows: list[list[str]]) -> None:
        """Send one frame of `rows` (encrypted on notice TRs)."""
        self.conn.send_records(tr_id, rows)
        await self.flush()

    async def send_text(self, text: str) -> None:
        self.conn.send_text(text)
        await self.flush()

    async def refuse_in_use(self) -> None:
        """OPSP8996, then drop the socket, as KIS does to a second session of an appkey."""
        self.conn.refuse_in_use()
        await self.flush()
        await self.drop()

    async def drop(self) -> None:
        """Drop the socket without a close frame."""
        self.conn.abort("dropped by the server")
        await self.stream.aclose()


@dataclass(eq=False)
class KISServer:
    """The running server: its port and its live sessions."""

    host: str
    port: int
    sessions: list[ServerSession] = field(default_factory=list)
    accepted: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def subscribed(self, tr_id: str, tr_key: str) -> list[ServerSession]:
        """The live sessions subscribed to (tr_id, tr_key)."""
        return [s for s in self.sessions if (tr_id, tr_key) in s.conn.subscriptions]

    async def broadcast(self, tr_id: str, rows: list[list[str]]) -> int:
        """Send `rows` to every session subscribed to `tr_id` for the first row's key."""
        targets = self.subscribed(tr_id, rows[0][0])
        for session in targets:
            try:
                await session.send_records(tr_id, rows)
            except LocalProtocolError:
                continue  # closing meanwhile
        return len(targets)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked whenever a session changes)."""
        with anyio.fail_after(timeout):
            while not predicate():
                self._changed = anyio.Event()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    approval_ok: Callable[[str], bool] = lambda key: bool(key),
    config: KISServerConfig | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> AsyncIterator[KISServer]:
    """Serve the KIS real-time protocol on `host:port` (0: any free port) until the block exits."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    server = KISServer(host=host, port=bound)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        now = anyio.current_time()
        conn = KISServerConnection(now=now, approval_ok=approval_ok, random_bytes=random_bytes, config=config)
        session = ServerSession(conn=conn, stream=stream)
        server.sessions.append(session)
        server.accepted += 1
        try:
            while not conn.closed:
                deadline = conn.timer()
                data = b""
                with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                    try:
                        data = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        data = b""
                now = anyio.current_time()
                if scope.cancelled_caught:
                    conn.handle_timer(now)
                elif data:
                    conn.receive_data(data, now=now)
                else:
                    conn.receive_eof(now=now)
                await session.flush()
                session.events += conn.events()
                server._notify()
        finally:
            server.sessions.remove(session)
            server._notify()
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
