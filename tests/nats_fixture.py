"""A real nats-server for the tests: a child process on a free loopback port, JetStream on, a tmp store.

Use it with ``from .nats_fixture import nats_server_fixture`` and a ``nats_server`` argument. It skips,
with the reason, only when nats-py or the nats-server binary is missing (CI installs both). The
handle can stop the server and start it again on the same port and store directory, as a NATS
restart looks to its clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

from kis_nats import NatsServer, NatsServerUnavailable, find_nats_server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["NatsProcess", "nats_server_fixture"]


class NatsProcess:
    """The fixture's server: its `url`, and `stop`, `start` and `restart` on the same port and store."""

    def __init__(self, binary: str, store_dir: Path) -> None:
        self.binary = binary
        self.store_dir = store_dir
        self.port = 0  # the first start picks a free one; restarts keep it
        self._server: NatsServer | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def start(self) -> None:
        assert not self.running
        self._server = start_server("127.0.0.1", self.port, store_dir=self.store_dir, binary=self.binary)
        self.port = self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(name="nats_server")
def nats_server_fixture(tmp_path: Path) -> Iterator[NatsProcess]:
    """A nats-server with JetStream on 127.0.0.1, killed on teardown."""
    try:
        binary = find_nats_server()
    except NatsServerUnavailable as exc:
        pytest.skip(str(exc))
    process = NatsProcess(binary, tmp_path / "nats")
    process.start()
    try:
        yield process
    finally:
        process.stop()
