"""A real nats-server for the tests, with the authentication the gateway really uses.

Use it with ``from .nats_fixture import nats_server_fixture`` and a ``nats_server`` argument. It
runs on a free loopback port with JetStream in a tmp store, and with the users and permissions of
the gateway's roles (`kis_gateway.server_config`), their credentials made in a tmp state dir by
`kis_gateway.ensure_credentials`, as ``kis-ws gateway`` does for its embedded server. Tests log in
with ``nats_server.options(role)`` (nats.connect options) or ``nats_server.creds(role)`` (the
credential file, for ``--nats-creds`` and ``nats_creds=``). Notice readers exist for `HTS_IDS`.

It skips, with the reason, only when nats-py or the nats-server binary is missing (CI installs
both). The handle can stop the server and start it again on the same port and store directory,
as a NATS restart looks to its clients.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import nats
from kis_gateway import (
    NatsServer,
    NatsServerUnavailable,
    ensure_credentials,
    find_nats_server,
    server_config,
    start_server,
)
from kis_nats import Role, credential_path, read_credential

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nats.aio.client import Client as NATSClient

__all__ = ["HTS_IDS", "NatsProcess", "nats_server_fixture"]

#: The HTS IDs with a notice reader on the fixture's server.
HTS_IDS = ("myhtsid", "otherhts")
SNIFFER = "kis-test-sniffer"


class NatsProcess:
    """The fixture's server: its `url`, the roles' credentials, and `stop`, `start`, `restart`."""

    def __init__(self, binary: str, store_dir: Path, state_dir: Path) -> None:
        self.binary = binary
        self.store_dir = store_dir
        #: The state dir of the credentials (``credentials/<role>.json``), as a gateway's.
        self.state_dir = state_dir
        self.port = 0  # the first start picks a free one; restarts keep it
        self._server: NatsServer | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def creds(self, role: Role = "consumer", hts_id: str | None = None) -> Path:
        """The credential file of `role` (a notice reader's: of `hts_id`)."""
        return credential_path(self.state_dir, role, hts_id)

    def options(self, role: Role = "consumer", hts_id: str | None = None) -> dict[str, Any]:
        """``nats.connect`` options logging in as `role`."""
        return read_credential(self.creds(role, hts_id)).connect_options()

    async def client(self, role: Role = "consumer", hts_id: str | None = None, **options: Any) -> NATSClient:
        """A nats-py client logged in as `role`."""
        return await nats.connect(self.url, **self.options(role, hts_id), **options)

    async def sniffer(self, **options: Any) -> NATSClient:
        """A client that may read every subject and publish none: the tests' eyes on the wire.

        Not a role of the gateway's: a user only the fixture's server has, to check what goes over it.
        """
        return await nats.connect(self.url, user=SNIFFER, password=SNIFFER, **options)

    def start(self) -> None:
        assert not self.running
        creds = ensure_credentials(self.state_dir, HTS_IDS)
        text = server_config(creds, port=self.port, jetstream=False)
        body = json.loads("".join(line for line in text.splitlines() if not line.startswith("#")))
        spy = {"subscribe": {"allow": [">"]}, "publish": {"deny": [">"]}}
        body["authorization"]["users"].append({"user": SNIFFER, "password": SNIFFER, "permissions": spy})
        config = json.dumps(body)
        self._server = start_server(
            "127.0.0.1", self.port, store_dir=self.store_dir, binary=self.binary, config=config
        )
        self.port = self._server.port
        ensure_credentials(self.state_dir, HTS_IDS, url=self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(name="nats_server")
def nats_server_fixture(tmp_path: Path) -> Iterator[NatsProcess]:
    """A nats-server with JetStream and the gateway's roles on 127.0.0.1, killed on teardown."""
    try:
        binary = find_nats_server()
    except NatsServerUnavailable as exc:
        pytest.skip(str(exc))
    process = NatsProcess(binary, tmp_path / "nats", tmp_path / "state")
    process.start()
    try:
        yield process
    finally:
        process.stop()
